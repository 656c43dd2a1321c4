"""Incident operations on SQLite and PostgreSQL: every transition writes its state and its
evidence record in one transaction; dedup; compare-and-set; illegal transitions leave no trace."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringward.core.errors import NotFoundError, StoreConflictError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.incidents.record import (
    DisclosureField,
    IncidentLinks,
    IncidentSeverity,
    IncidentStateError,
    IncidentType,
    kev_dedup_key,
)
from ringward.operations.incidents import incident_ops as ops
from ringward.store import Store
from ringward.store.incidents.state import DEDUP_NAMESPACE, RECORDS_NAMESPACE
from tests.incidents.conftest import DIGEST, T0

CVE = "CVE-2026-20001"


def _kev(store: Store, *, at: timedelta = timedelta(0)) -> dict[str, object]:
    return ops.open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                             summary=f"KEV match {CVE}", links=IncidentLinks(cves=(CVE,), packages=(DIGEST,)),
                             dedup_key=kev_dedup_key(CVE, DIGEST), actor="kev", now=T0 + at)


def _kinds(store: Store) -> list[str]:
    return [r.kind for r in reversed(store.search_evidence(EvidenceQuery(limit=100)).items)]


def test_lifecycle_records_state_and_evidence_per_transition(store: Store) -> None:
    opened = _kev(store)
    iid = opened["incident"]["incident_id"]  # type: ignore[index]
    assert opened["changed"] is True and opened["evidence_id"] is not None
    acked = ops.acknowledge(store, iid, actor="bob", now=T0 + timedelta(hours=1))
    updated = ops.update(store, iid, actor="bob", now=T0 + timedelta(days=1), note="pinned x/sys",
                         disclosure={DisclosureField.FIX: T0 + timedelta(hours=20)})
    closed = ops.close(store, iid, actor="bob", now=T0 + timedelta(days=2), resolution="VEX not_affected")
    assert [r["incident"]["state"] for r in (acked, updated, closed)] == ["acknowledged", "acknowledged", "closed"]
    assert _kinds(store) == [ops.KIND_OPENED, ops.KIND_ACKNOWLEDGED, ops.KIND_UPDATED, ops.KIND_CLOSED]
    record = store.get_evidence(updated["evidence_id"])
    assert record.payload["changed"]["disclosure"] == {"fix": (T0 + timedelta(hours=20)).isoformat()}
    assert record.payload["incident"]["incident_id"] == iid and record.subject.status == "acknowledged"
    stored, version = ops.get(store, iid)
    assert stored.state.value == "closed" and version == 4
    shown = ops.show(store, iid, now=T0 + timedelta(days=30))
    assert {c["clock"]: c["state"] for c in shown["clocks"]} == {"first-action": "met", "response": "met"}
    assert ops.list_incidents(store, only_open=True) == [] and len(ops.list_incidents(store)) == 1


def test_same_dedup_key_opens_one_incident_until_closed_then_a_new_generation(store: Store) -> None:
    first = _kev(store)
    again = _kev(store, at=timedelta(hours=5))
    assert again["changed"] is False and again["evidence_id"] is None
    assert again["incident"] == first["incident"]
    assert [b["clock"] for b in again["breaches"]] == ["first-action"]  # 5 h > 4 h: breached, reported
    iid = first["incident"]["incident_id"]  # type: ignore[index]
    ops.acknowledge(store, iid, actor="bob", now=T0 + timedelta(hours=6))
    ops.close(store, iid, actor="bob", now=T0 + timedelta(hours=7), resolution="fixed")
    recurrence = _kev(store, at=timedelta(days=3))
    new = recurrence["incident"]
    assert recurrence["changed"] is True and new["generation"] == 2 and new["supersedes"] == iid  # type: ignore[index]
    assert new["incident_id"] != iid  # type: ignore[index]
    assert _kev(store, at=timedelta(days=4))["incident"] == new
    pointer = store_state(store).get(DEDUP_NAMESPACE, kev_dedup_key(CVE, DIGEST))
    assert pointer is not None
    assert pointer.value == {"incident_id": new["incident_id"], "generation": 2}  # type: ignore[index]


def test_open_without_dedup_key_is_idempotent_per_request(store: Store) -> None:
    args = {"type": IncidentType.LEAKED_CREDENTIAL, "severity": IncidentSeverity.HIGH, "summary": "npm token leaked",
            "actor": "secops", "now": T0}
    first = ops.open_incident(store, **args)  # type: ignore[arg-type]
    assert ops.open_incident(store, **args)["changed"] is False  # type: ignore[arg-type]
    other = ops.open_incident(store, **{**args, "now": T0 + timedelta(minutes=1)})  # type: ignore[arg-type]
    assert other["incident"]["incident_id"] != first["incident"]["incident_id"]  # type: ignore[index]


def test_illegal_transitions_write_nothing(store: Store) -> None:
    iid = _kev(store)["incident"]["incident_id"]  # type: ignore[index]
    with pytest.raises(IncidentStateError, match="acknowledge it first"):
        ops.close(store, iid, actor="bob", now=T0, resolution="x")
    ops.acknowledge(store, iid, actor="bob", now=T0)
    assert ops.acknowledge(store, iid, actor="bob", now=T0 + timedelta(hours=1))["changed"] is False
    with pytest.raises(IncidentStateError, match="already acknowledged"):
        ops.acknowledge(store, iid, actor="carol", now=T0)
    ops.close(store, iid, actor="bob", now=T0 + timedelta(hours=1), resolution="done")
    for call in (lambda: ops.update(store, iid, actor="b", now=T0 + timedelta(hours=2), note="late"),
                 lambda: ops.close(store, iid, actor="b", now=T0 + timedelta(hours=2), resolution="again"),
                 lambda: ops.acknowledge(store, iid, actor="x", now=T0 + timedelta(hours=2))):
        with pytest.raises(IncidentStateError, match="closed is final"):
            call()
    assert _kinds(store) == [ops.KIND_OPENED, ops.KIND_ACKNOWLEDGED, ops.KIND_CLOSED]
    with pytest.raises(NotFoundError, match="inc-00000000000000000000"):
        ops.acknowledge(store, "inc-00000000000000000000", actor="b", now=T0)


def test_a_lost_compare_and_set_writes_neither_state_nor_evidence(store: Store) -> None:
    iid = _kev(store)["incident"]["incident_id"]  # type: ignore[index]
    incident, version = ops.get(store, iid)
    state = store_state(store)
    # a concurrent writer bumps the row between our read and our write
    state.decide([(RECORDS_NAMESPACE, iid, incident.document(), version)], [], actor="other", now=T0)
    from ringward.core.incidents import record as model

    acked = model.acknowledge(incident, actor="bob", now=T0)
    assert acked is not None
    with pytest.raises(StoreConflictError, match="expected version 1, found 2"):
        state.decide([(RECORDS_NAMESPACE, iid, acked.document(), version)],
                     [ops._draft(ops.KIND_ACKNOWLEDGED, acked, action="ack", actor="bob", changed={},
                                 flow_run_id=None)], actor="bob", now=T0)
    assert _kinds(store) == [ops.KIND_OPENED]
    assert ops.get(store, iid)[0].state.value == "open"


def test_a_stored_record_altered_by_hand_is_refused(store: Store) -> None:
    from ringward.core.errors import EvidenceIntegrityError

    iid = _kev(store)["incident"]["incident_id"]  # type: ignore[index]
    _, version = ops.get(store, iid)
    store_state(store).decide([(RECORDS_NAMESPACE, iid, {"incident_id": iid, "state": "closed"}, version)], [],
                              actor="mallory", now=T0)
    with pytest.raises(EvidenceIntegrityError, match=r"not a valid ringward\.incident\.v1"):
        ops.get(store, iid)


def store_state(store: Store):  # type: ignore[no-untyped-def]
    return ops.repo(store)


def test_a_racing_open_of_the_same_key_returns_the_winner(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = ops.plan_open(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL, summary="race",
                          reporter=None, links=IncidentLinks(), dedup_key="race-key", actor="a", now=T0)
    winner = ops.open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                               summary="race", dedup_key="race-key", actor="b", now=T0)
    # the loser's plan (read before the winner committed) cannot be written ...
    assert stale.draft is not None
    with pytest.raises(StoreConflictError):
        ops.repo(store).decide(stale.changes, [stale.draft], actor="a", now=T0)
    # ... and open_incident, handed that stale plan first, retries and returns the winner's incident
    real = ops.plan_open
    calls: list[int] = []

    def first_stale(*args: object, **kwargs: object) -> ops.OpenPlan:
        calls.append(1)
        return stale if len(calls) == 1 else real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ops, "plan_open", first_stale)
    again = ops.open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                              summary="race", dedup_key="race-key", actor="a", now=T0)
    assert len(calls) == 2 and again["changed"] is False and again["incident"] == winner["incident"]
    assert _kinds(store) == [ops.KIND_OPENED]


def test_breach_report_covers_open_incidents_only(store: Store) -> None:
    kev = _kev(store)["incident"]["incident_id"]  # type: ignore[index]
    report = ops.open_incident(store, type=IncidentType.VULNERABILITY_REPORT, severity=IncidentSeverity.LOW,
                               summary="font over http", reporter="carol", actor="secops", now=T0)
    rid = report["incident"]["incident_id"]  # type: ignore[index]
    ops.acknowledge(store, kev, actor="bob", now=T0 + timedelta(hours=1))
    ops.close(store, kev, actor="bob", now=T0 + timedelta(hours=2), resolution="done")
    result = ops.breach_report(store, now=T0 + timedelta(days=15))
    assert result["incidents_checked"] == 1
    assert [(b["incident_id"], b["clock"], b["state"]) for b in result["breaches"]] == [
        (rid, "first-action", "breached"), (rid, "reporter-acknowledgement", "breached"), (rid, "response", "breached")]
    late = ops.breach_report(store, now=T0 + timedelta(days=80))  # 80 d >= 75 % of the 90 d window
    assert (rid, "disclosure", "at-risk") in [(b["incident_id"], b["clock"], b["state"]) for b in late["breaches"]]
    from ringward.core.errors import InputError

    with pytest.raises(InputError, match="--at-risk-fraction"):
        ops.breach_report(store, now=T0, at_risk_fraction=1.5)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_credentials_never_reach_the_record(store: Store) -> None:
    from ringward.core.errors import InputError

    token = "ghp_" + "A1b2C3d4E5" * 4
    with pytest.raises(InputError, match=r"--summary: looks like a credential \(ghp_\.\.\.\)"):
        ops.open_incident(store, type=IncidentType.LEAKED_CREDENTIAL, severity=IncidentSeverity.CRITICAL,
                          summary=f"token {token} in CI log", actor="secops", now=T0)
    iid = ops.open_incident(store, type=IncidentType.LEAKED_CREDENTIAL, severity=IncidentSeverity.CRITICAL,
                            summary="GitHub PAT of ci-bot (fingerprint 3f2a) in CI log", actor="secops",
                            now=T0)["incident"]["incident_id"]  # type: ignore[index]
    with pytest.raises(InputError, match="--note: looks like a credential"):
        ops.update(store, iid, actor="b", now=T0, note="key: " + "-----BEGIN OPENSSH " + "PRIVATE KEY-----")
    ops.acknowledge(store, iid, actor="b", now=T0)
    with pytest.raises(InputError, match="--resolution: looks like a credential"):
        ops.close(store, iid, actor="b", now=T0, resolution="revoked " + "AKIA" + "ABCDEFGHIJKLMNOP")
    assert token not in str([r.payload for r in store.search_evidence(EvidenceQuery(limit=50)).items])
    assert _kinds(store) == [ops.KIND_OPENED, ops.KIND_ACKNOWLEDGED]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plan_note_only_for_a_not_closed_incident(store: Store) -> None:
    assert ops.plan_note(store, "no-such-key", note="x", actor="a", now=T0) is None
    iid = _kev(store)["incident"]["incident_id"]  # type: ignore[index]
    planned = ops.plan_note(store, kev_dedup_key(CVE, DIGEST), note="VEX resolves", actor="kev", now=T0)
    assert planned is not None and planned[0][1] == iid and planned[1].kind == ops.KIND_UPDATED
    ops.acknowledge(store, iid, actor="b", now=T0)
    ops.close(store, iid, actor="b", now=T0, resolution="done")
    assert ops.plan_note(store, kev_dedup_key(CVE, DIGEST), note="late", actor="kev", now=T0) is None
