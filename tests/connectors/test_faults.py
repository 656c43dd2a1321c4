"""The delivery engine against a real loopback server that injects faults: 5xx, 503 + Retry-After,
429, 408, 413 (batch split), 410 (disable), 400/401/403/404 (final), redirects, timeouts, slow
bodies, truncated responses and refused connections; budgets, concurrency and idempotency."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from connectors import (
    DeliveryEngine,
    EngineReport,
    MemoryLedger,
    SecretResolver,
    resolve_destinations,
)
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import Completion, DeliveryKey, DeliveryState, DeliveryStatus
from tests.connectors.conftest import FakeClock, config_of, make_event
from tests.connectors.fault_server import Fault, FaultServer, Route, closed_port_url


def linux(route_or_url: Route | str, name: str = "fleet", **extra: Any) -> dict[str, Any]:
    url = route_or_url if isinstance(route_or_url, str) else route_or_url.url
    return {"name": name, "provider": "linux", "url": url, **extra}


def datadog(route: Route, name: str = "dd", **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "datadog", "url": route.url, "api_key": "env:RW_DD_API_KEY", **extra}


def run(
    providers: Sequence[dict[str, Any]],
    events: Sequence[ConnectorEvent],
    clock: FakeClock | None = None,
    ledger: Any = None,
    run_id: str = "run-1",
    **defaults: Any,
) -> EngineReport:
    config = config_of(*providers, **defaults)
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors
    kwargs: dict[str, Any] = {"rng": random.Random(3)}
    if clock is not None:
        kwargs.update(clock=clock, sleep=clock.sleep)
    engine = DeliveryEngine(ledger if ledger is not None else MemoryLedger(), run_id=run_id, **kwargs)
    return engine.deliver(list(events), dests)


def only(report: EngineReport) -> Any:
    (result,) = report.all_results()
    return result


def test_5xx_is_retried_with_exponential_backoff_and_jitter(
    fault_server: FaultServer, clock: FakeClock
) -> None:
    route = fault_server.route().script(500, 502, default=200)
    result = only(run([linux(route)], [make_event()], clock, backoff_base_seconds=0.5))
    assert result.status is DeliveryStatus.DELIVERED
    assert [a.outcome for a in result.attempts] == [Outcome.RETRY, Outcome.RETRY, Outcome.DELIVERED]
    assert [a.status_code for a in result.attempts] == [500, 502, 200]
    assert len(route.requests) == 3
    first, second = clock.sleeps
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0
    assert [a.wait_seconds for a in result.attempts] == [first, second, None]


def test_503_retry_after_seconds_is_honoured(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(Fault.of(503, '{"text":"Server is busy","code":9}', Retry_After="7"))
    result = only(run([linux(route)], [make_event()], clock, backoff_base_seconds=0.01))
    assert result.status is DeliveryStatus.DELIVERED
    assert clock.sleeps == [7.0]
    assert result.attempts[0].retry_after_seconds == 7.0
    assert "Server is busy" in (result.attempts[0].error or "")


def test_429_retry_after_http_date_is_honoured(fault_server: FaultServer, clock: FakeClock) -> None:
    when = (clock.now + timedelta(seconds=12)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    route = fault_server.route().script(Fault.of(429, "slow down", Retry_After=when))
    result = only(run([linux(route)], [make_event()], clock, backoff_base_seconds=0.01))
    assert result.status is DeliveryStatus.DELIVERED and clock.sleeps == [12.0]


def test_408_is_retried(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(408)
    result = only(run([linux(route)], [make_event()], clock))
    assert [a.status_code for a in result.attempts] == [408, 200]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_final_and_not_retried(
    fault_server: FaultServer, clock: FakeClock, status: int
) -> None:
    route = fault_server.route().script(Fault.of(status, '{"errorMessages":["Field project is required"]}'))
    result = only(run([linux(route)], [make_event()], clock))
    assert result.status is DeliveryStatus.REJECTED and not result.retryable
    assert len(route.requests) == 1 and clock.sleeps == []
    assert result.error.startswith(f"HTTP {status} ") and "Field project is required" in result.error


def test_redirects_are_not_followed(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(Fault.of(302, "", Location="https://elsewhere.example.com/"))
    result = only(run([linux(route)], [make_event()], clock))
    assert result.status is DeliveryStatus.REJECTED and "redirect not followed" in result.error
    assert len(route.requests) == 1


def test_410_disables_the_destination_until_re_enabled(fault_server: FaultServer, clock: FakeClock) -> None:
    ledger = MemoryLedger()
    route = fault_server.route().script(Fault.of(410, "channel_is_archived"))
    first = only(run([linux(route)], [make_event("e1")], clock, ledger))
    assert first.status is DeliveryStatus.DISABLED and len(route.requests) == 1
    assert "fleet" in ledger.disabled_destinations()
    second = only(run([linux(route)], [make_event("e2")], clock, ledger, run_id="run-2"))
    assert second.status is DeliveryStatus.DESTINATION_DISABLED and second.attempt_count == 0
    assert len(route.requests) == 1
    assert ledger.enable_destination("fleet")
    third = only(run([linux(route)], [make_event("e2")], clock, ledger, run_id="run-3"))
    assert third.status is DeliveryStatus.DELIVERED and len(route.requests) == 2


def test_410_during_a_batch_run_stops_every_queued_event(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(410, default=200)
    events = [make_event(f"e{n}") for n in range(6)]
    report = run([linux(route, max_in_flight=1)], events, clock)
    statuses = sorted(r.status.value for r in report.all_results())
    assert statuses == ["destination-disabled"] * 5 + ["disabled"]
    assert len(route.requests) == 1


def test_413_splits_a_batch_until_it_fits(
    fault_server: FaultServer, clock: FakeClock, secret_env: Any
) -> None:
    route = fault_server.route().script(413, 413, default=202)
    events = [make_event(f"e{n}") for n in range(4)]
    report = run([datadog(route, max_in_flight=1)], events, clock)
    sizes = [len(json.loads(r.body)) for r in route.requests]
    assert sizes[0] == 4 and sorted(sizes) == [1, 1, 2, 2, 4]
    for result in report.all_results():
        assert result.status is DeliveryStatus.QUEUED
        assert result.attempts[-1].outcome is Outcome.QUEUED
        assert all(a.outcome is Outcome.SPLIT for a in result.attempts[:-1])
    received = sorted(e["event_id"] for r in route.successes for e in json.loads(r.body))
    assert received == ["e0", "e1", "e2", "e3"]


def test_413_on_a_single_event_is_final(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(413)
    result = only(run([linux(route)], [make_event()], clock))
    assert result.status is DeliveryStatus.TOO_LARGE and len(route.requests) == 1


def test_timeouts_are_retried(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(Fault(status=200, delay=1.0), default=200)
    result = only(run([linux(route)], [make_event()], clock, timeout_seconds=0.2))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].outcome is Outcome.RETRY and result.attempts[0].status_code is None
    assert result.attempts[0].error.startswith("timeout after 0.2s")


def test_a_slow_body_is_a_timeout_and_the_id_lets_the_receiver_dedupe(
    fault_server: FaultServer, clock: FakeClock
) -> None:
    route = fault_server.route().script(Fault(status=200, body=b"x" * 40, slow_body=0.05), default=200)
    result = only(run([linux(route)], [make_event()], clock, timeout_seconds=0.3))
    assert [a.outcome for a in result.attempts] == [Outcome.RETRY, Outcome.DELIVERED]
    # the receiver saw the same event twice (the first answer never completed): at-least-once with a
    # stable idempotency key, which every request carries
    assert {r.headers["idempotency-key"] for r in route.requests} == {"evt-promotion-0001"}


def test_truncated_responses_are_retried(fault_server: FaultServer, clock: FakeClock) -> None:
    route = fault_server.route().script(Fault(status=200, body=b'{"ok": true}', truncate=True), default=200)
    result = only(run([linux(route)], [make_event()], clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].outcome is Outcome.RETRY and result.attempts[0].status_code is None


def test_refused_connections_are_retried_then_left_for_redelivery(clock: FakeClock) -> None:
    ledger = MemoryLedger()
    result = only(run([linux(closed_port_url("/x"))], [make_event()], clock, ledger, max_attempts=3))
    assert result.status is DeliveryStatus.FAILED and result.retryable
    assert [a.outcome for a in result.attempts] == [Outcome.RETRY] * 3
    assert all(a.status_code is None and "connection failed" in (a.error or "") for a in result.attempts)
    assert result.error.startswith("gave up after 3 attempt(s) (3 attempts): connection failed")
    entry = ledger.entry(DeliveryKey("evt-promotion-0001", "linux", "fleet"))
    assert entry is not None and entry.state is DeliveryState.FAILED
    assert entry.next_attempt_after is not None and entry.next_attempt_after > clock.now


def test_the_time_budget_stops_retrying_and_schedules_redelivery(
    fault_server: FaultServer, clock: FakeClock
) -> None:
    ledger = MemoryLedger()
    route = fault_server.route().script(Fault.of(503, "", Retry_After="30"), default=200)
    result = only(run([linux(route)], [make_event()], clock, ledger, budget_seconds=10))
    assert result.status is DeliveryStatus.FAILED and len(route.requests) == 1 and clock.sleeps == []
    assert "time budget of 10s" in result.error
    entry = ledger.entry(result.key)
    assert entry is not None and entry.next_attempt_after == clock.now + timedelta(seconds=30)
    assert entry.redeliver_until == result.attempts[0].started_at + timedelta(days=1)


def test_a_slow_destination_never_delays_the_others(fault_server: FaultServer) -> None:
    # The slow destination answers only after every fast one has been completed. Were the
    # destinations served one after another, the fast ones would wait for the slow answer and
    # the hold would end by its own timeout instead. No wall-clock bound: a busy box cannot
    # turn this red, and a sequential engine cannot turn it green.
    completed: list[str] = []
    batches: list[set[str]] = []
    fast_done = threading.Event()

    class TimedLedger(MemoryLedger):
        def complete(self, completions: Sequence[Completion], *, owner: str, now: datetime) -> None:
            batches.append({c.result.destination for c in completions})
            for c in completions:
                completed.append(c.result.destination)
            if {"fast0", "fast1", "fast2"} <= set(completed):
                fast_done.set()
            super().complete(completions, owner=owner, now=now)

    slow = fault_server.route().script(Fault(status=200, hold_until=fast_done, hold_seconds=20))
    fast = [fault_server.route() for _ in range(3)]
    report = run(
        [linux(slow, "slow"), *(linux(r, f"fast{n}") for n, r in enumerate(fast))],
        [make_event()],
        ledger=TimedLedger(),
        timeout_seconds=40,
    )
    assert all(r.success for r in report.all_results())
    assert fast_done.is_set()
    assert sorted(completed[:3]) == ["fast0", "fast1", "fast2"] and completed[3] == "slow"
    # the slow answer was completed on its own, after the fast ones (not in one final batch)
    assert batches[-1] == {"slow"} and all("slow" not in b for b in batches[:-1])


def test_a_rerun_never_sends_twice_and_a_held_claim_is_respected(
    fault_server: FaultServer, clock: FakeClock
) -> None:
    ledger = MemoryLedger()
    route = fault_server.route()
    events = [make_event("a"), make_event("b")]
    assert run([linux(route)], events, clock, ledger).success
    again = run([linux(route)], events, clock, ledger, run_id="run-2")
    assert [r.status for r in again.all_results()] == [DeliveryStatus.ALREADY_DELIVERED] * 2
    assert len(route.requests) == 2
    # another run holds "c": this run reports it in flight and sends nothing
    ledger.claim(
        [DeliveryKey("c", "linux", "fleet")], event_types={}, owner="other", now=clock.now, lease_seconds=60
    )
    held = only(run([linux(route)], [make_event("c")], clock, ledger, run_id="run-3"))
    assert held.status is DeliveryStatus.IN_FLIGHT and not held.success and len(route.requests) == 2
    clock.advance(61)  # the other run's lease expired: the key can be taken over
    taken = only(run([linux(route)], [make_event("c")], clock, ledger, run_id="run-4"))
    assert taken.status is DeliveryStatus.DELIVERED and len(route.requests) == 3


def test_routing_filters_select_destinations(fault_server: FaultServer, clock: FakeClock) -> None:
    audit, pager = fault_server.route(), fault_server.route()
    report = run(
        [
            linux(audit, "audit", event_types=["ringward.promotion.*"]),
            linux(pager, "pager", min_severity="critical"),
        ],
        [make_event("p1"), make_event("r1", event_type="ringward.rollback.executed", severity="critical")],
        clock,
    )
    assert {(r.event_id, r.destination) for r in report.all_results()} == {("p1", "audit"), ("r1", "pager")}
    assert report.filtered == {"p1": ["pager"], "r1": ["audit"]}


def test_many_events_many_destinations_each_delivered_once(
    fault_server: FaultServer, secret_env: Any
) -> None:
    routes = [fault_server.route() for _ in range(3)]
    for route in routes:
        for n in range(0, 60, 7):
            route.script(500 if n % 2 else 503)
    events = [make_event(f"bulk-{n}") for n in range(60)]
    report = run(
        [
            linux(routes[0], "a"),
            linux(routes[1], "b", max_in_flight=4),
            datadog(routes[2], batch_max_events=8),
        ],
        events,
        backoff_base_seconds=0.001,
    )
    assert report.success
    for route in routes[:2]:
        ids = [json.loads(r.body)["event_id"] for r in route.successes]
        assert sorted(ids) == sorted(e.event_id for e in events)
    ids = [e["event_id"] for r in routes[2].successes for e in json.loads(r.body)]
    assert sorted(ids) == sorted(e.event_id for e in events)


def test_the_engine_works_when_called_from_a_running_event_loop(fault_server: FaultServer) -> None:
    route = fault_server.route()

    async def inner() -> EngineReport:
        return run([linux(route)], [make_event()])

    assert asyncio.run(inner()).success and len(route.requests) == 1
