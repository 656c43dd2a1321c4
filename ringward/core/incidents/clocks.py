"""The incident's response clocks, evaluated at a given ``now`` (never the wall clock).

- ``first-action`` (every incident): met by ``incident ack``; target from the severity table,
  Critical 4 h, High 24 h, Medium 72 h, Low 7 d.
- ``reporter-acknowledgement`` (incidents with a ``reporter``): met by the disclosure timeline's
  ``acknowledgement`` date (telling the reporter, not the responder's ack); target 24 h.
- ``response`` (every incident): met by the disclosure ``fix`` date, or by the close; 14 days.
- ``disclosure`` (``vulnerability-report`` only): met by the disclosure ``disclosure`` date, or by
  the close; target ``disclosure_window_days`` (the playbook's default 90 d).

A target is met *at* its due time (``<= 4 h``): a clock is **breached** only strictly after
``opened_at + target``; it is **at risk** from ``opened_at + at_risk_fraction * target`` up to and
including the due time. Closing stops every clock: a clock unmet at the close is reported by
:func:`clocks` as ``stopped`` (or ``breached`` if the close came after its due time) but never by
:func:`breaches`, which is about what still needs someone's attention.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from ringward.core.incidents.record import (
    REPORTER_ACK_TARGET,
    RESPONSE_TARGET,
    IncidentRecord,
    IncidentSeverity,
    IncidentState,
    IncidentType,
)

DEFAULT_AT_RISK_FRACTION: Final = 0.75


class Clock(StrEnum):
    FIRST_ACTION = "first-action"
    REPORTER_ACKNOWLEDGEMENT = "reporter-acknowledgement"
    RESPONSE = "response"
    DISCLOSURE = "disclosure"


class ClockState(StrEnum):
    RUNNING = "running"  # not met, not yet at risk
    AT_RISK = "at-risk"  # not met, past the at-risk point, not past due
    BREACHED = "breached"  # not met (or met late), past due
    MET = "met"  # met on or before due
    STOPPED = "stopped"  # the incident closed before the clock was met, within its target


class ClockStatus(BaseModel):
    """One clock of one incident at ``now``: target vs observed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str
    clock: Clock
    state: ClockState
    severity: IncidentSeverity
    target_seconds: int
    due_at: datetime
    #: when the clock was met (or stopped by the close); None while running
    met_at: datetime | None
    #: seconds from opening to met_at, or to ``now`` while unmet
    observed_seconds: int
    #: seconds past due (0 when not past due)
    overdue_seconds: int

    @property
    def key(self) -> str:
        """The idempotency key of a notification about this clock."""
        return f"{self.incident_id}|{self.clock.value}"


class SlaBreach(ClockStatus):
    """A clock that needs attention now: ``breached`` or ``at-risk`` on an incident not closed."""


def _targets(incident: IncidentRecord) -> list[tuple[Clock, timedelta, datetime | None]]:
    met_by_close = incident.closed_at
    timeline = incident.disclosure_timeline
    out: list[tuple[Clock, timedelta, datetime | None]] = [
        (Clock.FIRST_ACTION, incident.first_action_target, incident.acknowledged_at)]
    if incident.reporter is not None:
        out.append((Clock.REPORTER_ACKNOWLEDGEMENT, REPORTER_ACK_TARGET, timeline.acknowledgement))
    out.append((Clock.RESPONSE, RESPONSE_TARGET, timeline.fix or met_by_close))
    if incident.type is IncidentType.VULNERABILITY_REPORT:
        out.append((Clock.DISCLOSURE, timedelta(days=incident.disclosure_window_days),
                    timeline.disclosure or met_by_close))
    return out


def clocks(incident: IncidentRecord, now: datetime,
           at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION) -> list[ClockStatus]:
    """Every applicable clock's state at ``now`` (see the module table)."""
    if not 0 < at_risk_fraction <= 1:
        raise ValueError(f"at_risk_fraction: expected 0 < f <= 1, found {at_risk_fraction}")
    out: list[ClockStatus] = []
    for clock, target, met_at in _targets(incident):
        due = incident.opened_at + target
        stopped_at = met_at if met_at is not None else incident.closed_at
        end = stopped_at if stopped_at is not None else now
        observed = end - incident.opened_at
        overdue = max(timedelta(0), end - due)
        if stopped_at is not None:
            state = (ClockState.BREACHED if stopped_at > due
                     else ClockState.MET if met_at is not None else ClockState.STOPPED)
        elif now > due:
            state = ClockState.BREACHED
        elif now >= incident.opened_at + target * at_risk_fraction:
            state = ClockState.AT_RISK
        else:
            state = ClockState.RUNNING
        out.append(ClockStatus(
            incident_id=incident.incident_id, clock=clock, state=state, severity=incident.severity,
            target_seconds=int(target.total_seconds()), due_at=due, met_at=stopped_at,
            observed_seconds=int(observed.total_seconds()), overdue_seconds=int(overdue.total_seconds())))
    return out


def breaches(incident: IncidentRecord, now: datetime,
             at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION) -> list[SlaBreach]:
    """The clocks of a not-closed incident that are unmet and breached or at risk at ``now``."""
    if incident.state is IncidentState.CLOSED:
        return []
    return [SlaBreach(**status.model_dump()) for status in clocks(incident, now, at_risk_fraction)
            if status.met_at is None and status.state in (ClockState.BREACHED, ClockState.AT_RISK)]
