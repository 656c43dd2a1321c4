"""The SLA report (§9.5 with the §11.14 fixes) and the handoff models (§9.3/§9.4 + transitions)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from ringward.core.errors import InputError, StateError
from ringward.core.remediation.handoff import (
    HandoffStatus,
    RemediationHandoff,
    check_transition,
    handoff_id_for,
    status_id_for,
    status_sequence_problems,
)
from ringward.core.sla.report import Severity, SlaState, build_report, report_id_for
from tests.sla.factory import T0, handoff, status

H = timedelta(hours=1)


def test_severity_orders_by_rank_not_by_string() -> None:
    assert sorted(Severity, key=lambda s: s.rank) == [Severity.CRITICAL, Severity.WARNING, Severity.HEALTHY]
    assert sorted(s.value for s in Severity) == ["critical", "healthy", "warning"]  # what the reference did


def test_report_classifies_and_sorts_critical_first() -> None:
    fresh, aging, old, broken, done = (handoff(i) for i in range(5))
    statuses = [
        status(broken, "blocked", T0 + H),
        status(done, "completed", T0 + 10 * H),
    ]
    hs = [
        fresh.model_copy(update={"created_at": T0 + 40 * H}),
        aging.model_copy(update={"created_at": T0 + 20 * H}),
        old,
        broken,
        done,
    ]
    report = build_report(hs, statuses, now=T0 + 50 * H)
    by = {w.handoff_id: w for w in report.work_items}
    assert by[old.handoff_id].sla_state is SlaState.BREACHED and by[old.handoff_id].overdue_hours == 2.0
    assert by[aging.handoff_id].severity is Severity.WARNING and by[aging.handoff_id].overdue_hours == 6.0
    assert by[fresh.handoff_id].severity is Severity.HEALTHY
    assert by[broken.handoff_id].severity is Severity.CRITICAL
    assert by[broken.handoff_id].firing_since == T0 + H
    # completed: the clock stopped at completion (10 h), healthy
    assert by[done.handoff_id].age_hours == 10.0 and by[done.handoff_id].severity is Severity.HEALTHY
    assert [w.severity for w in report.work_items] == [
        Severity.CRITICAL,
        Severity.CRITICAL,
        Severity.WARNING,
        Severity.HEALTHY,
        Severity.HEALTHY,
    ]
    # within a severity the oldest first; equal ages by handoff id (a total order)
    assert [w.handoff_id for w in report.work_items[:2]] == sorted([old.handoff_id, broken.handoff_id])
    assert report.alert_level is Severity.CRITICAL
    s = report.executive_summary
    assert (s.tracked_work_item_count, s.breached_count, s.at_risk_count, s.completed_count) == (5, 2, 1, 1)
    assert s.completion_rate == 0.2 and s.critical_provider_count == 1
    assert [e.severity for e in report.escalations] == [Severity.CRITICAL, Severity.CRITICAL, Severity.WARNING]
    assert by[old.handoff_id].recommended_action.startswith("Confirm that the handoff")  # not_started first
    assert by[broken.handoff_id].recommended_action.startswith("Escalate to endpoint operations")


def test_report_id_follows_the_formula() -> None:
    report = build_report([handoff(1)], [], now=T0 + 30 * H)
    body = {
        "generated_at": (T0 + 30 * H).isoformat(),
        "thresholds": {"warning_hours": 24, "critical_hours": 48},
        "work_items": [
            {"handoff_id": handoff(1).handoff_id, "provider": "jira", "status": "not_started", "severity": "warning"}
        ],
    }
    expected = "ersla_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    assert report.report_id == expected == report_id_for(T0 + 30 * H, 24, 48, report.work_items)


def test_thresholds_are_checked() -> None:
    with pytest.raises(InputError, match="warning_hours must be less than or equal to critical_hours"):
        build_report([], [], now=T0, warning_hours=50, critical_hours=48)
    with pytest.raises(InputError, match=r"warning_hours: expected at least 1 hour, found 0\.5"):
        build_report([], [], now=T0, warning_hours=0.5, critical_hours=0.5)
    assert build_report([], [], now=T0).warnings == ("no endpoint remediation handoff metadata found",)


def test_handoff_ids_follow_the_formulas() -> None:
    h = handoff(7, providers=("slack", "jira"))
    h.check_id()
    body = {"request_id": h.request_id, "providers": ["jira", "slack"], "request_sha256": h.request_sha256}
    assert h.handoff_id == "erh_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    s = status(h, "delivered", T0, provider="slack")
    s.check_id()
    assert s.status_id == status_id_for(h.handoff_id, "slack", "delivered", None, T0)
    assert h.handoff_id == handoff_id_for(h.request_id, ["slack", "jira"], h.request_sha256)
    with pytest.raises(InputError, match="handoff_id: expected"):
        h.model_copy(update={"handoff_id": "erh_000000000000"}).check_id()


def test_handoff_parsing_rejects_bad_fields() -> None:
    document = handoff(1).model_dump(mode="json")
    with pytest.raises(ValidationError, match="provider must be one of"):
        RemediationHandoff.model_validate({**document, "providers": ["pagerduty"]})
    with pytest.raises(ValidationError, match="schema_version"):
        RemediationHandoff.model_validate({**document, "schema_version": "cavra.endpoint-remediation-handoff.v2"})
    assert RemediationHandoff.model_validate({**document, "providers": ["Private-Queue"]}).providers[0].value == (
        "private_queue"
    )


@pytest.mark.parametrize(
    ("previous", "following", "ok"),
    [
        (None, "completed", True),
        ("queued", "delivered", True),
        ("delivered", "queued", False),
        ("in_progress", "queued", False),
        ("completed", "queued", False),
        ("completed", "in_progress", False),
        ("failed", "completed", False),
        ("cancelled", "delivered", False),
        ("blocked", "in_progress", True),
        ("acknowledged", "acknowledged", True),
        ("in_progress", "acknowledged", False),
    ],
)
def test_status_transitions(previous: str | None, following: str, ok: bool) -> None:
    before = HandoffStatus(previous) if previous else None
    if ok:
        check_transition(before, HandoffStatus(following))
    else:
        with pytest.raises(StateError):
            check_transition(before, HandoffStatus(following))


def test_record_status_checks_provider_and_history() -> None:
    h = handoff(1)
    first = status(h, "delivered", T0)
    with pytest.raises(InputError, match="provider is not present in the handoff package"):
        status(h, "delivered", T0, provider="slack")
    with pytest.raises(InputError, match="status must be one of"):
        status(h, "done", T0)
    done = status(h, "completed", T0 + H, previous=[first])
    with pytest.raises(StateError, match="completed is final"):
        status(h, "queued", T0 + 2 * H, previous=[first, done])
    assert status_sequence_problems([first, done]) == []
    regress = first.model_copy(update={"recorded_at": T0 + 3 * H, "status": HandoffStatus.QUEUED})
    assert status_sequence_problems([first, done, regress])[0].endswith("completed is final; queued cannot follow it")
    assert done.evidence_refs[0] == f"endpoint-remediation-handoff://{h.handoff_id}"
    assert "approval://apr-1" in done.evidence_refs
