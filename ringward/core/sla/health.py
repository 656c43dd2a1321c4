"""Health of the SLA automation itself (§9.14 health), from the Prefect flow-run states of the SLA
deployments, and its alerts as work items the engine notifies (scope ``health.scope``).

The reference computed ``failed_job`` from a status its runs never set (always 0, §11.14) and keyed
alert suppression on a ``health_id`` that included ``generated_at`` (a new id every evaluation, so
nothing was ever suppressed, §11.13). Here the runs are Prefect's own (state types read from the
Prefect API) and the id is the identity of the *condition*.

Rules:

- H1 ``not_deployed`` (critical): the Prefect server does not know the deployment.
- H2 ``disabled_schedule`` (warning): the deployment is paused or has no active schedule; missed
  and late runs are not judged then (nothing is expected to run).
- H3 ``missed_run`` (critical): no run of the deployment started within 2 x the expected interval.
- H4 ``late_run`` (warning; critical once the oldest is 2 intervals late): runs still scheduled
  (or pending) more than a minute after their expected start (Prefect's ``Late``).
- H5 ``failed_job``: runs that ended ``FAILED`` or ``CRASHED`` within the lookback -- critical while
  the newest finished run is one of them, warning once a later run completed (recovered);
  ``CANCELLED`` runs alone are a warning.
- H6 ``connector_failure`` (critical): SLA sends whose latest attempt failed within the lookback.
- H7 ``stale_metadata`` (warning): the newest recorded SLA evaluation is older than ``stale_after``.
- H8 ``health_id`` = ``erslah-`` + sha256(json{scope, sorted [category, subject, level]})[:16]: the
  same conditions give the same id in every evaluation, whatever the counts and the time, so a
  delivered alert suppresses its repeats; a new condition (or a level change) is a new id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ringward.core.errors import InputError
from ringward.core.sla.engine import iso
from ringward.core.sla.report import ExecutiveSummary, Severity, SlaReport, SlaState, WorkItem, report_id_for

HEALTH_SCHEMA = "cavra.endpoint_remediation_sla.escalation_recurrence_automation_health.v1"
LATE_GRACE = timedelta(minutes=1)
FAILED_TYPES = frozenset({"FAILED", "CRASHED"})
WAITING_TYPES = frozenset({"SCHEDULED", "PENDING"})
Category = Literal[
    "not_deployed", "disabled_schedule", "missed_run", "late_run", "failed_job", "connector_failure",
    "stale_metadata",
]
RECOMMENDATIONS = {
    "not_deployed": "Deploy the SLA flows (`ringward up`, or `prefect deploy` from prefect.yaml).",
    "disabled_schedule": "Resume the deployment or activate its schedule; nothing escalates meanwhile.",
    "missed_run": "Check the worker / served process of the deployment: no run started when one was due.",
    "late_run": "Runs wait for a worker: start one for the deployment's work pool or raise its concurrency.",
    "failed_job": "Open the failed flow run in the Prefect UI; fix the cause, the next window re-runs.",
    "connector_failure": "Check the receiving endpoint and connector credentials; failed sends are retried.",
    "stale_metadata": "No SLA evaluation was recorded recently: check the store and the scheduled flow.",
}


class FlowRunView(BaseModel):
    """What health reads of one Prefect flow run."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str = ""
    state_type: str
    state_name: str = ""
    expected_start_time: AwareDatetime | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    message: str = Field(default="", max_length=500)


class DeploymentView(BaseModel):
    """One SLA deployment as the Prefect API reports it, with its recent runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    found: bool
    deployment_id: str | None = None
    paused: bool = False
    active_schedules: int = 0
    created: AwareDatetime | None = None
    runs: tuple[FlowRunView, ...] = ()


class SendFailure(BaseModel):
    """An SLA send whose latest attempt failed (from the ledger)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str
    group_key: str
    receiver: str
    at: AwareDatetime
    error: str = ""


class HealthAlert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Category
    subject: str
    level: Literal["critical", "warning"]
    count: int
    since: datetime | None
    message: str
    recommendation: str


def _alert(category: Category, subject: str, level: Literal["critical", "warning"], count: int,
           since: datetime | None, message: str) -> HealthAlert:
    return HealthAlert(category=category, subject=subject, level=level, count=count, since=since, message=message,
                       recommendation=RECOMMENDATIONS[category])


def health_id_for(scope: str, alerts: Sequence[HealthAlert]) -> str:
    """H8: the identity of the conditions, not of the evaluation."""
    identity = sorted([a.category, a.subject, a.level] for a in alerts)
    body = json.dumps({"scope": scope, "alerts": identity}, sort_keys=True, separators=(",", ":"))
    return "erslah-" + hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _deployment_alerts(d: DeploymentView, now: datetime, expected: timedelta, lookback: timedelta) -> list[HealthAlert]:
    if not d.found:
        return [_alert("not_deployed", d.name, "critical", 1, None,
                       f"deployment {d.name} is not known to the Prefect server")]
    out: list[HealthAlert] = []
    scheduled = not d.paused and d.active_schedules > 0
    if not scheduled:
        why = "paused" if d.paused else "has no active schedule"
        out.append(_alert("disabled_schedule", d.name, "warning", 1, None, f"deployment {d.name} {why}"))
    runs = sorted(d.runs, key=lambda r: r.expected_start_time or r.start_time or r.end_time or now)
    if scheduled:
        started = [r.start_time for r in runs if r.start_time is not None]
        newest = max(started, default=None)
        if newest is None or newest < now - 2 * expected:
            since = (newest + 2 * expected) if newest is not None else (d.created + 2 * expected if d.created else None)
            last_start = f"last run started {iso(newest)}" if newest else "no run ever started"
            out.append(_alert("missed_run", d.name, "critical", 1, since,
                              f"{d.name}: no run started within {int(2 * expected.total_seconds() // 60)} minutes "
                              f"({last_start})"))
        late = [r for r in runs if r.state_type in WAITING_TYPES and r.expected_start_time is not None
                and (r.state_name == "Late" or r.expected_start_time < now - LATE_GRACE)]
        if late:
            oldest = min(r.expected_start_time for r in late if r.expected_start_time is not None)
            late_level: Literal["critical", "warning"] = "critical" if oldest < now - 2 * expected else "warning"
            out.append(_alert("late_run", d.name, late_level, len(late), oldest,
                              f"{d.name}: {len(late)} run(s) late, the oldest expected at {iso(oldest)}"))
    finished = [r for r in runs if r.end_time is not None and r.end_time >= now - lookback
                and r.state_type in FAILED_TYPES | {"COMPLETED", "CANCELLED"}]
    finished.sort(key=lambda r: r.end_time or now)
    failed = [r for r in finished if r.state_type in FAILED_TYPES]
    cancelled = [r for r in finished if r.state_type == "CANCELLED"]
    if failed:
        newest_failed = finished[-1].state_type in FAILED_TYPES
        streak = []
        for run in reversed(finished):
            if run.state_type not in FAILED_TYPES:
                break
            streak.append(run)
        since = min((r.end_time for r in streak if r.end_time), default=failed[-1].end_time)
        last = failed[-1]
        detail = f"{last.state_name or last.state_type} {last.name}: {last.message[:120]}".rstrip(": ")
        failed_level: Literal["critical", "warning"] = "critical" if newest_failed else "warning"
        state = "failing" if newest_failed else "recovered"
        out.append(_alert("failed_job", d.name, failed_level, len(failed), since,
                          f"{d.name}: {len(failed)} run(s) failed or crashed in the lookback ({state}); last: "
                          f"{detail}"))
    elif cancelled:
        out.append(_alert("failed_job", d.name, "warning", len(cancelled), cancelled[0].end_time,
                          f"{d.name}: {len(cancelled)} run(s) cancelled in the lookback"))
    return out


def evaluate_health(
    deployments: Sequence[DeploymentView],
    *,
    now: datetime,
    scope: str = "sla-health",
    expected_interval: timedelta = timedelta(minutes=5),
    lookback: timedelta = timedelta(hours=1),
    stale_after: timedelta = timedelta(hours=2),
    latest_evaluation_at: datetime | None = None,
    failing_sends: Sequence[SendFailure] = (),
) -> dict[str, Any]:
    """The health report (rules H1-H8) at ``now``.

    Raises:
        InputError: naive ``now`` or a non-positive interval.
    """
    if now.tzinfo is None:
        raise InputError("now: expected a time with a UTC offset")
    if expected_interval <= timedelta(0) or lookback <= timedelta(0) or stale_after <= timedelta(0):
        raise InputError("expected_interval, lookback and stale_after: expected durations above 0")
    now = now.astimezone(UTC)
    alerts: list[HealthAlert] = []
    for deployment in deployments:
        alerts.extend(_deployment_alerts(deployment, now, expected_interval, lookback))
    recent = [f for f in failing_sends if f.at >= now - lookback]
    if recent:
        receivers = sorted({f.receiver for f in recent})
        alerts.append(_alert("connector_failure", ",".join(receivers)[:200], "critical", len(recent),
                             min(f.at for f in recent),
                             f"{len(recent)} SLA send(s) failing (latest attempt failed) to {', '.join(receivers)}"))
    if latest_evaluation_at is None or latest_evaluation_at < now - stale_after:
        since = latest_evaluation_at + stale_after if latest_evaluation_at is not None else None
        last = iso(latest_evaluation_at) if latest_evaluation_at is not None else "never"
        alerts.append(_alert("stale_metadata", "sla-evaluation", "warning", 1, since,
                             f"the newest recorded SLA evaluation is from {last} (stale after "
                             f"{int(stale_after.total_seconds() // 60)} minutes)"))
    alerts.sort(key=lambda a: (a.level != "critical", a.category, a.subject))
    level = "critical" if any(a.level == "critical" for a in alerts) else "warning" if alerts else "healthy"
    counts = {c: sum(a.count for a in alerts if a.category == c) for c in RECOMMENDATIONS}
    return {
        "schema_version": HEALTH_SCHEMA,
        "health_id": health_id_for(scope, alerts),
        "scope": scope,
        "generated_at": iso(now),
        "alert_level": level,
        "expected_interval_minutes": int(expected_interval.total_seconds() // 60),
        "lookback_minutes": int(lookback.total_seconds() // 60),
        "stale_after_minutes": int(stale_after.total_seconds() // 60),
        "missed_run_count": counts["missed_run"],
        "late_run_count": counts["late_run"],
        "failed_job_count": counts["failed_job"],
        "disabled_schedule_count": counts["disabled_schedule"],
        "not_deployed_count": counts["not_deployed"],
        "connector_delivery_failure_count": counts["connector_failure"],
        "stale_metadata_count": counts["stale_metadata"],
        "latest_evaluation_at": iso(latest_evaluation_at) if latest_evaluation_at else None,
        "deployments": [
            {"name": d.name, "found": d.found, "deployment_id": d.deployment_id, "paused": d.paused,
             "active_schedules": d.active_schedules, "recent_runs": len(d.runs),
             "run_states": dict(sorted(_count(r.state_name or r.state_type for r in d.runs).items()))}
            for d in deployments
        ],
        "alerts": [{**a.model_dump(mode="json"), "since": iso(a.since) if a.since else None} for a in alerts],
        "recommendations": sorted({a.recommendation for a in alerts}),
    }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def health_report(health: dict[str, Any], *, generated_by: str = "ringward-sla-health") -> SlaReport:
    """The health alerts as work items (one per alert; ``handoff_id`` ``health:<category>``,
    ``provider`` the subject), so the engine groups, deduplicates, repeats and resolves them: the
    same condition is the same alert in every evaluation (fingerprints of labels, never counts)."""
    now = datetime.fromisoformat(str(health["generated_at"]).replace("Z", "+00:00"))
    items = []
    for alert in health["alerts"]:
        since = datetime.fromisoformat(alert["since"].replace("Z", "+00:00")) if alert["since"] else now
        since = min(since, now)
        critical = alert["level"] == "critical"
        items.append(WorkItem(
            handoff_id=f"health:{alert['category']}",
            request_id=str(health["health_id"]),
            reconciliation_id=str(health["scope"]),
            provider=str(alert["subject"]),
            status=str(alert["category"]),
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            sla_state=SlaState.BREACHED if critical else SlaState.AT_RISK,
            age_hours=round((now - since).total_seconds() / 3600, 4),
            overdue_hours=0.0,
            warning_hours=0.0,
            critical_hours=0.0,
            created_at=since,
            latest_status_at=now,
            recommended_action=str(alert["recommendation"]),
            firing_since=since,
        ))
    items.sort(key=lambda w: (w.severity.rank, w.handoff_id, w.provider))
    breached = [w for w in items if w.severity is Severity.CRITICAL]
    warned = [w for w in items if w.severity is Severity.WARNING]
    level = Severity.CRITICAL if breached else Severity.WARNING if warned else Severity.HEALTHY
    return SlaReport(
        report_id=report_id_for(now, 0.0, 0.0, items),
        generated_at=now,
        generated_by=generated_by,
        warning_hours=0.0,
        critical_hours=0.0,
        alert_level=level,
        executive_summary=ExecutiveSummary(
            tracked_work_item_count=len(items), completed_count=0, at_risk_count=len(warned),
            breached_count=len(breached), completion_rate=0.0,
            critical_provider_count=len({w.provider for w in breached}), release_channels=()),
        work_items=tuple(items),
        escalation_payloads={"executive_summary": {
            "health_id": health["health_id"], "message": "; ".join(a["message"] for a in health["alerts"])[:2000]}},
        controls=("health-from-prefect-flow-run-states", "health-id-is-the-condition-identity"),
        evidence_refs=(f"sla-health://{health['health_id']}",),
    )
