"""How the engine runs multi-call publications (native Jamf here; the rules are provider-neutral):
each call has its own timeout while the conversation is bounded by the budget, every call is kept
(redacted) in the attempt's evidence, and a publisher bug ends the delivery instead of the run."""

# ruff: noqa: F811  (pytest fixtures imported from test_jamf_pro are parameters here)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.providers.jamf_pro import JamfPro
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import DeliveryStatus
from ringward.operations.delivery import delivery_ops as ops
from ringward.operations.delivery.delivery_ops import DeliveryHooks
from ringward.store import Store
from tests.connectors.conftest import FakeClock, config_of, make_event
from tests.connectors.jamf_emulator import JamfEmulator
from tests.connectors.test_jamf_pro import (  # noqa: F401  (fixtures)
    FULL_CONVERSATION,
    TOKEN,
    destination,
    jamf,
    only,
    publication_event,
    root,
    run,
)


def test_each_call_has_its_own_timeout_within_the_budget(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    # eight calls of 0.2 s each: 1.6 s in all, longer than the 0.6 s per-call timeout
    jamf.latency = 0.2
    result = only(run(destination(jamf, root), clock, timeout_seconds=0.6, budget_seconds=30))
    assert result.status is DeliveryStatus.DELIVERED, result.error
    assert len(result.attempts) == 1


def test_a_conversation_cannot_outlive_the_budget(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.latency = 0.3
    result = only(run(destination(jamf, root), clock, timeout_seconds=1, budget_seconds=0.7))
    assert result.status is DeliveryStatus.FAILED
    assert "timeout" in (result.attempts[0].error or "")


def test_calls_are_recorded_redacted_in_the_attempt_and_the_evidence(
    jamf: JamfEmulator, root: Path, clock: FakeClock, sqlite_store: Store
) -> None:
    config = config_of(destination(jamf, root), max_attempts=1)
    hooks = DeliveryHooks(clock=clock, sleep=clock.sleep)
    run_ = ops.deliver_event(publication_event(), config, store=sqlite_store, hooks=hooks)
    (result,) = run_.results
    calls = result.attempts[0].calls
    assert calls is not None and [c.split(":")[0] for c in calls] == FULL_CONVERSATION[1:]
    assert calls[0].startswith(f"find package: GET {jamf.url}/api/v1/packages?REDACTED -> 200")
    record = sqlite_store.get_evidence(run_.evidence_id)
    (delivery,) = record.payload["delivery"]["deliveries"]
    assert delivery["attempts"][0]["calls"] == list(calls)
    assert TOKEN not in json.dumps(record.payload)
    # the delivery log keeps them too
    from ringward.store.delivery.delivery_log import DeliveryLog

    (entry,), _total = DeliveryLog(sqlite_store).history(limit=10, with_attempts=True)
    assert entry.attempts[0].calls == calls


def test_a_publisher_bug_ends_the_delivery_not_the_run(
    jamf: JamfEmulator, root: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("results")

    monkeypatch.setattr(JamfPro, "publish", broken)
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert result.attempts[0].outcome is Outcome.REJECTED
    assert result.error == "unexpected error in the jamf publisher: KeyError: 'results'"


def test_a_provider_bug_ends_that_delivery_and_the_others_go_on(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, httpserver: Any, secret_env: dict[str, str]
) -> None:
    import random

    from connectors import DeliveryEngine, MemoryLedger, SecretResolver, resolve_destinations
    from connectors.providers.webhook import PrivateQueue, Webhook

    def broken(self: Webhook, status: int, text: str) -> None:
        raise AttributeError("'list' object has no attribute 'get'")

    def unreadable(self: PrivateQueue, *args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Webhook, "interpret", broken)
    monkeypatch.setattr(PrivateQueue, "interpret", unreadable)
    httpserver.expect_request("/hook").respond_with_data("", 204)
    httpserver.expect_request("/queue").respond_with_data("", 201)
    httpserver.expect_request("/fleet").respond_with_data("", 202)
    config = config_of(
        {
            "name": "hook",
            "provider": "webhook",
            "url": httpserver.url_for("/hook"),
            "signing_secret": "env:RW_WEBHOOK_SECRET",
        },
        {"name": "queue", "provider": "private_queue", "url": httpserver.url_for("/queue")},
        {"name": "fleet", "provider": "linux", "url": httpserver.url_for("/fleet")},
        max_attempts=2,
    )
    dests, _ = resolve_destinations(config, config.providers, resolver=SecretResolver())
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(1))
    results = {r.destination: r for r in engine.deliver([make_event()], dests).all_results()}
    assert results["fleet"].status is DeliveryStatus.QUEUED
    assert results["hook"].status is DeliveryStatus.REJECTED and len(results["hook"].attempts) == 1
    assert results["hook"].error == (
        "unexpected error in the webhook provider: AttributeError: 'list' object has no attribute 'get'"
    )
    # an OS error may pass: retried, then reported as failed (redelivered later), never final
    assert results["queue"].status is DeliveryStatus.FAILED and len(results["queue"].attempts) == 2
