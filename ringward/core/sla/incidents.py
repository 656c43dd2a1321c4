"""Open incidents' response clocks as SLA work items, so the escalation engine notifies, reminds
and escalates them like remediation handoffs (policy section ``incidents``, scope ``incidents``).

Rules (numbered so tests can cite them):

- I1 one work item per (incident, clock) of every incident not closed at ``now``: ``handoff_id``
  is the incident id, ``provider`` the clock (``first-action``, ``reporter-acknowledgement``,
  ``response``, ``disclosure``), ``status`` the incident's state at ``now`` (``open`` |
  ``acknowledged``), ``incident_type`` / ``incident_severity`` its type and severity (what
  ``incidents.rules`` route on), ``channel`` its first held channel. The clocks are
  :func:`ringward.core.incidents.clocks.clocks` (targets from the playbook's severity table).
- I2 a clock past due and unmet -> critical / breached (firing since the due time); at risk
  (from ``at_risk_fraction`` of the target) -> warning / at_risk (firing since that instant);
  otherwise healthy. A met clock is healthy (completed).
- I3 an acknowledged incident stops its ladder: its clocks that are only at risk are held
  (healthy, ``sla_state`` at_risk, action "acknowledged; escalates again if the target passes");
  a clock of an acknowledged incident that passes its target fires again (PagerDuty's
  acknowledgement timeout). A closed incident contributes nothing: its alerts clear, the
  group's "resolved" notification is sent once and its ladder stops.
- I4 evaluation is as of ``now`` (time travel): an incident opened after ``now`` does not exist
  yet; an acknowledgement, close or disclosure date after ``now`` has not happened yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ringward.core.errors import InputError
from ringward.core.incidents.clocks import ClockState, clocks
from ringward.core.incidents.record import DisclosureTimeline, IncidentRecord, IncidentState
from ringward.core.sla.report import ExecutiveSummary, Severity, SlaReport, SlaState, WorkItem, report_id_for

INCIDENT_REPORT_KIND = "incident-sla-report"
INCIDENT_REPORT_CONTROLS = (
    "sla-derived-from-incident-response-clocks",
    "severity-ordered-by-rank",
    "acknowledged-incident-stops-its-ladder",
    "public-report-contains-no-connector-credentials",
)
ACTIONS = {
    "breached": "Escalate: the incident's {clock} target has passed without the action it measures.",
    "at_risk": "Notify the incident owner before the {clock} target passes.",
    "held": "Acknowledged; escalates again if the {clock} target passes.",
    "met": "Retain the incident record; the {clock} target is met.",
    "running": "Continue monitoring the {clock} clock.",
}


def as_of(incident: IncidentRecord, now: datetime) -> IncidentRecord | None:
    """The incident as it stood at ``now`` (I4); None when it was not opened yet."""
    if incident.opened_at > now:
        return None
    changes: dict[str, Any] = {}
    if incident.closed_at is not None and incident.closed_at > now:
        changes.update(state=IncidentState.ACKNOWLEDGED, closed_at=None, closed_by=None, resolution=None)
    if incident.acknowledged_at is not None and incident.acknowledged_at > now:
        changes.update(state=IncidentState.OPEN, acknowledged_at=None, acknowledged_by=None)
    timeline = incident.disclosure_timeline
    dates = {name: getattr(timeline, name) for name in DisclosureTimeline.model_fields}
    future = {name: None for name, value in dates.items() if value is not None and value > now}
    if future:
        changes["disclosure_timeline"] = timeline.model_copy(update=future)
    return incident.model_copy(update=changes) if changes else incident


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 4)


def incident_items(incident: IncidentRecord, now: datetime, at_risk_fraction: float = 0.75) -> list[WorkItem]:
    """The work items of one incident at ``now`` (I1-I4); [] when closed or not yet opened."""
    current = as_of(incident, now)
    if current is None or current.state is IncidentState.CLOSED:
        return []
    acknowledged = current.state is IncidentState.ACKNOWLEDGED
    items: list[WorkItem] = []
    for status in clocks(current, now, at_risk_fraction):
        target = timedelta(seconds=status.target_seconds)
        at_risk_at = current.opened_at + target * at_risk_fraction
        unmet = status.met_at is None
        if unmet and status.state is ClockState.BREACHED:
            severity, sla_state, since, action = Severity.CRITICAL, SlaState.BREACHED, status.due_at, "breached"
            overdue = status.overdue_seconds
        elif unmet and status.state is ClockState.AT_RISK and not acknowledged:
            severity, sla_state, since, action = Severity.WARNING, SlaState.AT_RISK, at_risk_at, "at_risk"
            overdue = int((now - at_risk_at).total_seconds())
        elif unmet and status.state is ClockState.AT_RISK:
            severity, sla_state, since, action = Severity.HEALTHY, SlaState.AT_RISK, None, "held"
            overdue = 0
        else:
            severity, sla_state, since, overdue = Severity.HEALTHY, SlaState.MET, None, 0
            action = "met" if status.met_at is not None else "running"
        items.append(
            WorkItem(
                handoff_id=current.incident_id,
                request_id=current.dedup_key[:256],
                reconciliation_id=current.supersedes or "",
                provider=status.clock.value,
                status="met" if status.met_at is not None else current.state.value,
                severity=severity,
                sla_state=sla_state,
                age_hours=_hours(status.observed_seconds),
                overdue_hours=_hours(max(0, overdue)),
                warning_hours=_hours(target.total_seconds() * at_risk_fraction),
                critical_hours=_hours(target.total_seconds()),
                created_at=current.opened_at,
                latest_status_at=current.acknowledged_at,
                external_ref=current.reporter,
                recommended_action=ACTIONS[action].format(clock=status.clock.value),
                channel=current.links.channels[0] if current.links.channels else None,
                firing_since=since,
                incident_type=current.type.value,
                incident_severity=current.severity.value,
            )
        )
    return items


def incident_report(
    incidents: Sequence[IncidentRecord],
    *,
    now: datetime,
    at_risk_fraction: float = 0.75,
    generated_by: str = "ringward-incidents",
) -> SlaReport:
    """Every not-closed incident's clocks as one report the engine plans over (I1-I4).

    Raises:
        InputError: naive ``now`` or a fraction outside (0, 1].
    """
    if now.tzinfo is None:
        raise InputError("now: expected a time with a UTC offset")
    if not 0 < at_risk_fraction <= 1:
        raise InputError(f"at_risk_fraction: expected 0 < f <= 1, found {at_risk_fraction}")
    now = now.astimezone(UTC)
    items = [item for incident in incidents for item in incident_items(incident, now, at_risk_fraction)]
    items.sort(key=lambda w: (w.severity.rank, -w.age_hours, w.handoff_id, w.provider))
    breached = [w for w in items if w.sla_state is SlaState.BREACHED]
    at_risk = [w for w in items if w.severity is Severity.WARNING]
    completed = [w for w in items if w.status == "met"]
    level = Severity.CRITICAL if breached else Severity.WARNING if at_risk else Severity.HEALTHY
    summary = ExecutiveSummary(
        tracked_work_item_count=len(items),
        completed_count=len(completed),
        at_risk_count=len(at_risk),
        breached_count=len(breached),
        completion_rate=round(len(completed) / len(items), 4) if items else 0.0,
        critical_provider_count=len({w.provider for w in breached}),
        release_channels=tuple(sorted({w.channel for w in items if w.channel})),
    )
    # thresholds are per clock (the severity table, on each item); the report-level ones are 0
    report_id = report_id_for(now, 0.0, 0.0, items)
    message = (
        f"{len(breached)} breached and {len(at_risk)} at-risk incident response clocks across "
        f"{len({w.handoff_id for w in items})} open incidents."
    )
    return SlaReport(
        report_id=report_id,
        generated_at=now,
        generated_by=generated_by,
        warning_hours=0.0,
        critical_hours=0.0,
        alert_level=level,
        executive_summary=summary,
        work_items=tuple(items),
        escalation_payloads={"executive_summary": {"report_id": report_id, "critical_count": len(breached),
                                                   "warning_count": len(at_risk), "message": message}},
        controls=INCIDENT_REPORT_CONTROLS,
        evidence_refs=tuple(sorted({f"incident://{w.handoff_id}" for w in items})),
        warnings=() if items else ("no open incident",),
    )
