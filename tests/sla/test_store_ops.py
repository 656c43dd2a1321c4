"""The SLA ledger on SQLite and PostgreSQL, and whole cycles delivered to loopback servers."""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import ConfigError, InputError, StateError, StoreConflictError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.sla.acks import AcknowledgementRefused
from ringward.core.sla.history import AckRefused, NotificationKind, SendFailed, SentOk
from ringward.core.sla.report import build_report
from ringward.operations.delivery.delivery_ops import DeliveryHooks, load_connector_config
from ringward.operations.sla import sla_ops
from ringward.store import Store, open_store
from ringward.store.sla.ledger import SlaLedger
from tests.connectors.conftest import FakeClock, write_config
from tests.connectors.fault_server import FaultServer, Route
from tests.sla.factory import handoff, policy_of, status
from tests.sla.test_time_travel import BREACH, ladder_policy

M = timedelta(minutes=1)


@pytest.fixture
def setup(tmp_path: Path, fault_server: FaultServer) -> dict[str, Any]:
    routes = {name: fault_server.route() for name in ("slack-ops", "pager-ops", "jira-gov")}
    config = write_config(
        tmp_path / "connectors.yaml",
        *({"name": name, "provider": "linux", "url": route.url} for name, route in routes.items()),
        budget_seconds=5.0,
    )
    h = handoff(1, created_at=BREACH - timedelta(hours=2))
    report = build_report([h], [status(h, "failed", BREACH)], now=BREACH + M)
    policy = policy_of(ladder_policy())
    return {"routes": routes, "config": load_connector_config(config), "report": report, "policy": policy}


def hooks() -> DeliveryHooks:
    clock = FakeClock()
    return DeliveryHooks(clock=clock, sleep=clock.sleep, rng=random.Random(3), flush_interval=0.01)


def cycle(store: Store, setup: dict[str, Any], minutes: int, **kwargs: Any) -> sla_ops.CycleResult:
    return sla_ops.run_cycle(
        store, setup["policy"], setup["report"], setup["config"], now=BREACH + minutes * M, hooks=hooks(), **kwargs
    )


def test_a_cycle_delivers_records_and_a_second_run_of_the_window_does_nothing(
    store: Store, setup: dict[str, Any]
) -> None:
    first = cycle(store, setup, 1)
    assert sorted((r["receiver"], r["reason"]) for r in first.sent) == [
        ("pager-ops", "rung_due"),
        ("slack-ops", "first_notification"),
    ]
    assert len(setup["routes"]["slack-ops"].successes) == 1
    body = json.loads(setup["routes"]["slack-ops"].successes[0].body)
    assert "critical" in json.dumps(body)
    again = cycle(store, setup, 2)  # same 5-minute window
    assert again.skipped_window and again.sent == []
    history = SlaLedger(store).history(setup["policy"].scope)
    assert [type(e) for e in history] == [SentOk, SentOk]
    plan_records = store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_PLAN)).items
    assert len(plan_records) == 1
    assert plan_records[0].payload["sent"] and plan_records[0].payload["window"] == "2026-03-04T08:00:00Z"
    deliveries = store.search_evidence(EvidenceQuery(kind="release-connector-delivery")).items
    assert {d.payload["connector_delivery_source"] for d in deliveries} == {
        sla_ops.SOURCE_GROUP,
        sla_ops.SOURCE_ESCALATION,
    }
    # the next window sends nothing new until governance is due at 09:00
    assert cycle(store, setup, 6).sent == []
    assert [r["receiver"] for r in cycle(store, setup, 60).sent] == ["jira-gov"]


def test_two_schedulers_in_the_same_window_send_once(store: Store, db_url: str, setup: dict[str, Any]) -> None:
    results: list[sla_ops.CycleResult] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with open_store(db_url) as own:
                results.append(cycle(own, setup, 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.skipped_window for r in results) == [False, True]
    assert len(setup["routes"]["slack-ops"].requests) == 1
    assert len(setup["routes"]["pager-ops"].requests) == 1


def test_a_manual_run_and_the_scheduler_never_send_the_same_decision_twice(store: Store, setup: dict[str, Any]) -> None:
    manual = cycle(store, setup, 1, claim_window=False, kinds=(NotificationKind.GROUP,))
    scheduled = cycle(store, setup, 1)
    assert [r["receiver"] for r in manual.sent] == ["slack-ops"]
    assert [r["receiver"] for r in scheduled.sent] == ["pager-ops"]
    assert len(setup["routes"]["slack-ops"].requests) == 1


def test_a_failed_send_is_recorded_and_retried_then_succeeds(store: Store, setup: dict[str, Any]) -> None:
    route: Route = setup["routes"]["slack-ops"]
    route.script(503, 503, 503, 503, 503, 503, 503, 503, 503, 503)  # the connector's own retries fail too
    first = cycle(store, setup, 1)
    assert [r["receiver"] for r in first.failed] == ["slack-ops"]
    route.faults.clear()
    assert cycle(store, setup, 6).sent == []  # backoff: 15 minutes
    retried = cycle(store, setup, 16)
    assert [(r["receiver"], r["reason"]) for r in retried.sent] == [("slack-ops", "first_notification")]
    kinds = [type(e).__name__ for e in SlaLedger(store).history(setup["policy"].scope)]
    assert kinds == ["SentOk", "SendFailed", "SentOk"] or kinds == ["SendFailed", "SentOk", "SentOk"]
    failed = [e for e in SlaLedger(store).history(setup["policy"].scope) if isinstance(e, SendFailed)]
    assert "503" in failed[0].error


def test_acknowledgements_are_recorded_and_refusals_too(store: Store, setup: dict[str, Any]) -> None:
    cycle(store, setup, 1)
    with pytest.raises(AcknowledgementRefused):
        sla_ops.acknowledge(
            store,
            setup["policy"],
            setup["report"],
            group="critical",
            state="acknowledged",
            by="mallory",
            at=BREACH + 10 * M,
        )
    payload = sla_ops.acknowledge(
        store, setup["policy"], setup["report"], group="critical", state="acknowledged", by="alice", at=BREACH + 11 * M
    )
    assert payload["acknowledgement_id"].startswith("erslaack-")
    history = SlaLedger(store).history(setup["policy"].scope)
    assert [e.kind for e in history][-2:] == ["ack-refused", "ack"]
    assert isinstance(history[-2], AckRefused) and history[-2].by == "mallory"
    assert store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_ACK_REFUSED)).items
    # the ladder stopped: governance is not sent at 09:00
    assert cycle(store, setup, 60).sent == []
    with pytest.raises(InputError, match="acknowledgement_state must be one of"):
        sla_ops.acknowledge(
            store, setup["policy"], setup["report"], group="critical", state="seen", by="alice", at=BREACH + 12 * M
        )
    with pytest.raises(InputError, match="group: expected one of"):
        sla_ops.acknowledge(
            store, setup["policy"], setup["report"], group="nope", state="acknowledged", by="alice", at=BREACH + 12 * M
        )


def test_silences_add_list_expire(store: Store, setup: dict[str, Any]) -> None:
    scope = setup["policy"].scope
    silence = sla_ops.add_silence(
        store,
        scope,
        ["owner=endpoint-ops"],
        starts_at=BREACH,
        ends_at=BREACH + 30 * M,
        by="alice",
        comment="known",
        at=BREACH,
    )
    assert cycle(store, setup, 1).sent == []
    rows = sla_ops.list_silences(store, scope, now=BREACH + M)
    assert [(r["silence_id"], r["state"], r["matchers"]) for r in rows] == [
        (silence.silence_id, "active", ["owner='endpoint-ops'"])
    ]
    sla_ops.expire_silence(store, scope, silence.silence_id, by="alice", at=BREACH + 7 * M)
    assert sla_ops.list_silences(store, scope, now=BREACH + 8 * M)[0]["state"] == "expired"
    assert len(cycle(store, setup, 10).sent) == 2
    with pytest.raises(StateError):
        sla_ops.expire_silence(store, scope, silence.silence_id, by="alice", at=BREACH + 11 * M)
    with pytest.raises(InputError, match="expected name=value"):
        sla_ops.parse_matchers(["owner"])
    with pytest.raises(InputError, match="matcher 'colour=red'"):
        sla_ops.parse_matchers(["colour=red"])


def test_ledger_refuses_a_duplicate_event_and_writes_nothing(store: Store, setup: dict[str, Any]) -> None:
    cycle(store, setup, 1)
    ledger = SlaLedger(store)
    scope = setup["policy"].scope
    existing = ledger.history(scope)
    before = store.count_evidence()
    with pytest.raises(StoreConflictError):
        ledger.record(scope, [existing[0]], [], now=BREACH + M)
    assert ledger.history(scope) == existing and store.count_evidence() == before
    assert ledger.claim_send(scope, "w1", "k1", group_key="g", at=BREACH, now=BREACH)
    assert not ledger.claim_send(scope, "w1", "k1", group_key="g", at=BREACH, now=BREACH)
    assert ledger.claim_send(scope, "w2", "k1", group_key="g", at=BREACH, now=BREACH)


def test_receivers_missing_from_the_connector_config_are_refused(store: Store, setup: dict[str, Any]) -> None:
    policy = policy_of(ladder_policy(default_providers=["nowhere"]))
    with pytest.raises(ConfigError, match=r"receivers not configured .*: nowhere"):
        sla_ops.run_cycle(store, policy, setup["report"], setup["config"], now=BREACH + M, hooks=hooks())
    with pytest.raises(InputError, match="after --at"):
        sla_ops.run_cycle(store, setup["policy"], setup["report"], setup["config"], now=BREACH - M, hooks=hooks())


def test_load_handoffs_reads_directories_and_refuses_bad_inputs(tmp_path: Path) -> None:
    h = handoff(1)
    s1 = status(h, "delivered", BREACH)
    s2 = status(h, "completed", BREACH + M, previous=[s1])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "h.json").write_text(json.dumps({"handoff": h.model_dump(mode="json")}))
    (folder / "s1.json").write_text(s1.model_dump_json())
    (folder / "s2.json").write_text(s2.model_dump_json())
    (folder / "other.json").write_text('{"schema_version": "something.else"}')
    handoffs, statuses = sla_ops.load_handoffs([folder])
    assert [x.handoff_id for x in handoffs] == [h.handoff_id] and len(statuses) == 2
    regress = s2.model_copy(update={"recorded_at": BREACH + 2 * M})
    (folder / "s3.json").write_text(
        json.dumps({**regress.model_dump(mode="json"), "status": "queued", "status_id": "erhs_000000000000"})
    )
    with pytest.raises(InputError, match="status_id: expected erhs_"):
        sla_ops.load_handoffs([folder])
    (folder / "s3.json").unlink()
    bad = h.model_dump(mode="json")
    bad["created_at"] = "yesterday"
    (folder / "h.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"h.json: created_at"):
        sla_ops.load_handoffs([folder])
    (folder / "h.json").unlink()
    with pytest.raises(InputError, match="is not among the inputs"):
        sla_ops.load_handoffs([folder])


def test_sla_table_matches_its_migration(db_url: str) -> None:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ringward.store.tables import METADATA

    with open_store(db_url) as opened, opened.engine.connect() as conn:
        ours = sa.MetaData()
        METADATA.tables["sla_event"].to_metadata(ours)
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), ours)
        mine = [d for d in diffs if "sla_event" in repr(d)]
        assert mine == []
        assert "sla_event" in sa.inspect(conn).get_table_names()
