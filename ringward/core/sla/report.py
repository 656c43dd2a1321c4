"""The SLA report over remediation handoffs (``cavra.endpoint-remediation-sla-report.v1``, §9.5).

Fields, id formula and schema string are the reference's. What differs (§11.14): work items are
sorted by severity *rank* (critical first, then warning, then healthy; ties by age, oldest first),
never by the severity string; and thresholds are checked when the report is built.

Rules (numbered so tests can cite them):

- R1 one work item per (handoff, provider of the handoff); its state is the latest status record
  (by ``recorded_at``, then ``status_id``) or ``not_started``.
- R2 terminal = completed or cancelled: the item's clock stops at that status's time.
- R3 failed or blocked -> critical / breached, whatever the age.
- R4 not terminal and age >= critical_hours -> critical / breached; >= warning_hours -> warning /
  at_risk; otherwise healthy / met.
- R5 the instant an item started being at risk / breached (``firing_since``, used by notification
  grouping) is deterministic: created_at + warning (or critical) hours, or the failed/blocked
  status time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from ringward.core.errors import InputError
from ringward.core.remediation.handoff import (
    HandoffStatus,
    RemediationHandoff,
    RemediationHandoffStatus,
)

REPORT_SCHEMA = "cavra.endpoint-remediation-sla-report.v1"
REPORT_CONTROLS = (
    "sla-derived-from-handoff-status-metadata",
    "severity-ordered-by-rank",
    "public-report-contains-no-connector-credentials",
    "endpoint-mutation-remains-private-connector-responsibility",
)


class Severity(StrEnum):
    """Severity of a work item or report. Order by :attr:`rank`, never by the string."""

    CRITICAL = "critical"
    WARNING = "warning"
    HEALTHY = "healthy"

    @property
    def rank(self) -> int:
        """0 = most severe."""
        return _RANK[self]


_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.HEALTHY: 2}


def most_severe(values: Sequence[Severity]) -> Severity:
    return min(values, key=lambda s: s.rank, default=Severity.HEALTHY)


class SlaState(StrEnum):
    BREACHED = "breached"
    AT_RISK = "at_risk"
    MET = "met"


TERMINAL = frozenset({HandoffStatus.COMPLETED.value, HandoffStatus.CANCELLED.value})

ACTIONS = {
    "not_started": "Confirm that the handoff was accepted by the provider or private connector queue.",
    "failed": "Escalate to endpoint operations and release governance for manual recovery review.",
    "critical": "Escalate overdue remediation to the release owner and change advisory board.",
    "warning": "Notify provider owner before the remediation handoff breaches SLA.",
    "completed": "Retain completion evidence with the release governance record.",
    "other": "Continue monitoring provider callback status.",
}


class WorkItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    handoff_id: str
    request_id: str
    reconciliation_id: str
    provider: str
    status: str
    severity: Severity
    sla_state: SlaState
    age_hours: float
    overdue_hours: float
    warning_hours: float
    critical_hours: float
    created_at: datetime
    latest_status_at: datetime | None
    external_ref: str | None = None
    external_url: str | None = None
    approval_id: str | None = None
    approval_state: str | None = None
    action_count: int = 0
    release: str | None = None
    channel: str | None = None
    recommended_action: str
    #: R5: since when the item has been at its current severity (None when healthy)
    firing_since: datetime | None = None
    #: incident work items only (:mod:`ringward.core.sla.incidents`); absent from handoff reports
    incident_type: str | None = Field(default=None, exclude_if=lambda v: v is None)
    incident_severity: str | None = Field(default=None, exclude_if=lambda v: v is None)

    @property
    def key(self) -> str:
        """The work item's identity: ``<handoff_id>/<provider>``."""
        return f"{self.handoff_id}/{self.provider}"


class ExecutiveSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tracked_work_item_count: int
    completed_count: int
    at_risk_count: int
    breached_count: int
    completion_rate: float
    critical_provider_count: int
    release_channels: tuple[str, ...]


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Severity
    handoff_id: str
    request_id: str
    provider: str
    status: str
    age_hours: float
    overdue_hours: float
    external_ref: str | None = None
    external_url: str | None = None
    recommended_action: str


class SlaReport(BaseModel):
    """``cavra.endpoint-remediation-sla-report.v1``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["cavra.endpoint-remediation-sla-report.v1"] = "cavra.endpoint-remediation-sla-report.v1"
    report_id: str = Field(pattern=r"^ersla_[0-9a-f]{12}$")
    generated_at: datetime
    generated_by: str
    warning_hours: float
    critical_hours: float
    alert_level: Severity
    executive_summary: ExecutiveSummary
    work_items: tuple[WorkItem, ...]
    escalation_payloads: dict[str, Any]
    controls: tuple[str, ...] = REPORT_CONTROLS
    evidence_refs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, value: Any) -> Any:
        # ``escalations`` is derived from the work items (written out, never trusted back in)
        if isinstance(value, dict) and "escalations" in value:
            value = {k: v for k, v in value.items() if k != "escalations"}
        return value

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def escalations(self) -> tuple[Escalation, ...]:
        """Breached then at-risk items (§9.5), computed when read or written, not per evaluation."""
        firing = [w for w in self.work_items if w.sla_state is not SlaState.MET]
        firing.sort(key=lambda w: 0 if w.sla_state is SlaState.BREACHED else 1)
        return tuple(
            Escalation(
                severity=w.severity,
                handoff_id=w.handoff_id,
                request_id=w.request_id,
                provider=w.provider,
                status=w.status,
                age_hours=w.age_hours,
                overdue_hours=w.overdue_hours,
                external_ref=w.external_ref,
                external_url=w.external_url,
                recommended_action=w.recommended_action,
            )
            for w in firing
        )

    def firing(self) -> tuple[WorkItem, ...]:
        return tuple(w for w in self.work_items if w.severity is not Severity.HEALTHY)


def check_thresholds(warning_hours: float, critical_hours: float) -> None:
    for name, value in (("warning_hours", warning_hours), ("critical_hours", critical_hours)):
        if not value >= 1:
            raise InputError(f"{name}: expected at least 1 hour, found {value}")
    if warning_hours > critical_hours:
        raise InputError("warning_hours must be less than or equal to critical_hours")


def _latest(statuses: Sequence[RemediationHandoffStatus]) -> dict[tuple[str, str], RemediationHandoffStatus]:
    latest: dict[tuple[str, str], RemediationHandoffStatus] = {}
    for record in statuses:
        key = (record.handoff_id, record.provider.value)
        current = latest.get(key)
        if current is None or (record.recorded_at, record.status_id) > (current.recorded_at, current.status_id):
            latest[key] = record
    return latest


def _action(status: str, severity: Severity) -> str:
    if status == "not_started":
        return ACTIONS["not_started"]
    if status in ("failed", "blocked"):
        return ACTIONS["failed"]
    if severity is Severity.CRITICAL:
        return ACTIONS["critical"]
    if severity is Severity.WARNING:
        return ACTIONS["warning"]
    if status == "completed":
        return ACTIONS["completed"]
    return ACTIONS["other"]


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 4)


def work_item(
    handoff: RemediationHandoff,
    provider: str,
    latest: RemediationHandoffStatus | None,
    *,
    warning_hours: float,
    critical_hours: float,
    now: datetime,
) -> WorkItem:
    """One work item by R1-R5."""
    status = latest.status.value if latest else "not_started"
    terminal = status in TERMINAL
    end = latest.recorded_at if (latest is not None and terminal) else now
    age = end - handoff.created_at
    warn_at = handoff.created_at + timedelta(hours=warning_hours)
    crit_at = handoff.created_at + timedelta(hours=critical_hours)
    firing_since: datetime | None = None
    if status in ("failed", "blocked"):
        severity, state = Severity.CRITICAL, SlaState.BREACHED
        assert latest is not None
        firing_since = latest.recorded_at
        overdue = max(0.0, _hours(age) - critical_hours)
    elif not terminal and end >= crit_at:
        severity, state, firing_since = Severity.CRITICAL, SlaState.BREACHED, crit_at
        overdue = _hours(age) - critical_hours
    elif not terminal and end >= warn_at:
        severity, state, firing_since = Severity.WARNING, SlaState.AT_RISK, warn_at
        overdue = _hours(age) - warning_hours
    else:
        severity, state, overdue = Severity.HEALTHY, SlaState.MET, 0.0
    return WorkItem(
        handoff_id=handoff.handoff_id,
        request_id=handoff.request_id,
        reconciliation_id=handoff.reconciliation_id,
        provider=provider,
        status=status,
        severity=severity,
        sla_state=state,
        age_hours=_hours(age),
        overdue_hours=round(overdue, 4),
        warning_hours=warning_hours,
        critical_hours=critical_hours,
        created_at=handoff.created_at,
        latest_status_at=latest.recorded_at if latest else None,
        external_ref=latest.external_ref if latest else None,
        external_url=latest.external_url if latest else None,
        approval_id=handoff.approval_id,
        approval_state=handoff.approval_state,
        action_count=handoff.action_count,
        release=handoff.release,
        channel=handoff.channel,
        recommended_action=_action(status, severity),
        firing_since=firing_since,
    )


def report_id_for(
    generated_at: datetime, warning_hours: float, critical_hours: float, items: Sequence[WorkItem]
) -> str:
    """``ersla_`` + sha256(json{generated_at, thresholds, [{handoff_id, provider, status, severity}]})[:12]."""
    body = {
        "generated_at": generated_at.astimezone(UTC).isoformat(),
        "thresholds": {"warning_hours": warning_hours, "critical_hours": critical_hours},
        "work_items": [
            {"handoff_id": w.handoff_id, "provider": w.provider, "status": w.status, "severity": w.severity.value}
            for w in items
        ],
    }
    return "ersla_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def build_report(
    handoffs: Sequence[RemediationHandoff],
    statuses: Sequence[RemediationHandoffStatus],
    *,
    now: datetime,
    warning_hours: float = 24,
    critical_hours: float = 48,
    generated_by: str = "release-manager",
) -> SlaReport:
    """The §9.5 report at ``now``.

    Raises:
        InputError: bad thresholds, naive ``now``, two handoffs with one id.
    """
    check_thresholds(warning_hours, critical_hours)
    if now.tzinfo is None:
        raise InputError("now: expected a time with a UTC offset")
    now = now.astimezone(UTC)
    ids = [h.handoff_id for h in handoffs]
    if len(set(ids)) != len(ids):
        raise InputError("handoffs: the same handoff_id appears twice")
    latest = _latest(statuses)
    items = [
        work_item(
            h,
            p.value,
            latest.get((h.handoff_id, p.value)),
            warning_hours=warning_hours,
            critical_hours=critical_hours,
            now=now,
        )
        for h in handoffs
        for p in h.providers
    ]
    # rank first (critical first), then the oldest first; the key makes the order total
    items.sort(key=lambda w: (w.severity.rank, -w.age_hours, w.handoff_id, w.provider))
    breached = [w for w in items if w.sla_state is SlaState.BREACHED]
    at_risk = [w for w in items if w.sla_state is SlaState.AT_RISK]
    completed = [w for w in items if w.status == "completed"]
    channels = tuple(sorted({w.channel for w in items if w.channel}))
    level = Severity.CRITICAL if breached else Severity.WARNING if at_risk else Severity.HEALTHY
    summary = ExecutiveSummary(
        tracked_work_item_count=len(items),
        completed_count=len(completed),
        at_risk_count=len(at_risk),
        breached_count=len(breached),
        completion_rate=round(len(completed) / len(items), 4) if items else 0.0,
        critical_provider_count=len({w.provider for w in breached}),
        release_channels=channels,
    )
    report_id = report_id_for(now, warning_hours, critical_hours, items)
    message = (
        f"{len(breached)} breached and {len(at_risk)} at-risk endpoint remediation handoffs "
        f"across {len(items)} tracked work items."
    )
    payloads: dict[str, Any] = {
        "slack": {"text": f"CAVRA endpoint remediation SLA {level.value}: {message}"},
        "teams": {"title": f"CAVRA endpoint remediation SLA {level.value}", "text": message},
        "jira": {
            "project": {"key": "CAVRA"},
            "issuetype": {"name": "Task"},
            "summary": f"CAVRA endpoint remediation SLA {level.value}: {report_id}",
            "labels": ["cavra", "endpoint-remediation", "sla"],
        },
        "executive_summary": {
            "report_id": report_id,
            "critical_count": len(breached),
            "warning_count": len(at_risk),
            "message": message,
        },
    }
    refs = sorted({f"endpoint-remediation-handoff://{h.handoff_id}" for h in handoffs})
    refs += sorted(f"endpoint-remediation-handoff-status://{s.status_id}" for s in latest.values())
    return SlaReport(
        report_id=report_id,
        generated_at=now,
        generated_by=generated_by,
        warning_hours=warning_hours,
        critical_hours=critical_hours,
        alert_level=level,
        executive_summary=summary,
        work_items=tuple(items),
        escalation_payloads=payloads,
        evidence_refs=tuple(refs),
        warnings=() if handoffs else ("no endpoint remediation handoff metadata found",),
    )
