"""Every response clock with virtual time: at, just before and just after each target."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringward.core.incidents import record as model
from ringward.core.incidents.clocks import Clock, ClockState, breaches, clocks
from ringward.core.incidents.record import (
    DisclosureField,
    IncidentLinks,
    IncidentRecord,
    IncidentSeverity,
    IncidentType,
)
from tests.incidents.conftest import T0

SECOND = timedelta(seconds=1)


def _open(severity: IncidentSeverity = IncidentSeverity.CRITICAL, *, reporter: str | None = None,
          type: IncidentType = IncidentType.SUPPLY_CHAIN, window: int = 90) -> IncidentRecord:
    return model.open_incident(dedup_key="k", generation=1, supersedes=None, type=type, severity=severity,
                               summary="s", reporter=reporter, links=IncidentLinks(), actor="secops", now=T0,
                               disclosure_window_days=window)


def _state(incident: IncidentRecord, clock: Clock, at: timedelta) -> ClockState:
    (status,) = [c for c in clocks(incident, T0 + at) if c.clock is clock]
    return status.state


@pytest.mark.parametrize(("severity", "target"), [
    (IncidentSeverity.CRITICAL, timedelta(hours=4)), (IncidentSeverity.HIGH, timedelta(hours=24)),
    (IncidentSeverity.MEDIUM, timedelta(hours=72)), (IncidentSeverity.LOW, timedelta(days=7))])
def test_first_action_sla_by_severity(severity: IncidentSeverity, target: timedelta) -> None:
    incident = _open(severity)
    assert _state(incident, Clock.FIRST_ACTION, target * 0.75 - SECOND) is ClockState.RUNNING
    assert _state(incident, Clock.FIRST_ACTION, target * 0.75) is ClockState.AT_RISK
    assert _state(incident, Clock.FIRST_ACTION, target - SECOND) is ClockState.AT_RISK
    assert _state(incident, Clock.FIRST_ACTION, target) is ClockState.AT_RISK  # <= target: not yet breached
    assert _state(incident, Clock.FIRST_ACTION, target + SECOND) is ClockState.BREACHED
    (breach,) = [b for b in breaches(incident, T0 + target + SECOND) if b.clock is Clock.FIRST_ACTION]
    assert (breach.target_seconds, breach.observed_seconds, breach.overdue_seconds) == (
        int(target.total_seconds()), int(target.total_seconds()) + 1, 1)
    assert breach.due_at == T0 + target

    on_time = model.acknowledge(incident, actor="bob", now=T0 + target)
    assert on_time is not None and _state(on_time, Clock.FIRST_ACTION, target * 2) is ClockState.MET
    late = model.acknowledge(incident, actor="bob", now=T0 + target + SECOND)
    assert late is not None and _state(late, Clock.FIRST_ACTION, target * 2) is ClockState.BREACHED
    # a met-late clock is history, not something to notify about
    assert all(b.clock is not Clock.FIRST_ACTION for b in breaches(late, T0 + target * 2))


def test_reporter_acknowledgement_applies_only_with_a_reporter() -> None:
    assert Clock.REPORTER_ACKNOWLEDGEMENT not in {c.clock for c in clocks(_open(), T0)}
    incident = _open(IncidentSeverity.LOW, reporter="alice")
    day = timedelta(hours=24)
    assert _state(incident, Clock.REPORTER_ACKNOWLEDGEMENT, day - SECOND) is ClockState.AT_RISK
    assert _state(incident, Clock.REPORTER_ACKNOWLEDGEMENT, day) is ClockState.AT_RISK
    assert _state(incident, Clock.REPORTER_ACKNOWLEDGEMENT, day + SECOND) is ClockState.BREACHED
    told = model.update(incident, actor="bob", now=T0 + day, note=None,
                        disclosure={DisclosureField.ACKNOWLEDGEMENT: T0 + day})
    assert _state(told, Clock.REPORTER_ACKNOWLEDGEMENT, day * 3) is ClockState.MET
    # the responder's ack is not the reporter's acknowledgement
    acked = model.acknowledge(incident, actor="bob", now=T0 + SECOND)
    assert acked is not None and _state(acked, Clock.REPORTER_ACKNOWLEDGEMENT, day + SECOND) is ClockState.BREACHED


def test_response_clock_is_fourteen_days_met_by_fix_or_close() -> None:
    incident = _open(IncidentSeverity.LOW)
    days14 = timedelta(days=14)
    assert _state(incident, Clock.RESPONSE, days14 - SECOND) is ClockState.AT_RISK
    assert _state(incident, Clock.RESPONSE, days14) is ClockState.AT_RISK
    assert _state(incident, Clock.RESPONSE, days14 + SECOND) is ClockState.BREACHED
    fixed = model.update(incident, actor="b", now=T0 + days14, note=None, disclosure={DisclosureField.FIX: T0 + days14})
    assert _state(fixed, Clock.RESPONSE, days14 * 2) is ClockState.MET
    acked = model.acknowledge(incident, actor="b", now=T0 + SECOND)
    assert acked is not None
    closed = model.close(acked, actor="b", now=T0 + days14 + SECOND, resolution="done")
    assert _state(closed, Clock.RESPONSE, days14 * 2) is ClockState.BREACHED
    assert breaches(closed, T0 + days14 * 2) == []  # closed: nothing to notify


def test_disclosure_window_only_for_vulnerability_reports() -> None:
    assert Clock.DISCLOSURE not in {c.clock for c in clocks(_open(), T0)}
    incident = _open(IncidentSeverity.LOW, type=IncidentType.VULNERABILITY_REPORT, window=30)
    days = timedelta(days=30)
    assert _state(incident, Clock.DISCLOSURE, days - SECOND) is ClockState.AT_RISK
    assert _state(incident, Clock.DISCLOSURE, days) is ClockState.AT_RISK
    assert _state(incident, Clock.DISCLOSURE, days + SECOND) is ClockState.BREACHED
    assert _state(incident, Clock.DISCLOSURE, timedelta(days=22)) is ClockState.RUNNING


def test_closing_within_target_stops_unmet_clocks() -> None:
    incident = _open(IncidentSeverity.LOW, reporter="alice")
    acked = model.acknowledge(incident, actor="b", now=T0 + timedelta(hours=1))
    assert acked is not None
    closed = model.close(acked, actor="b", now=T0 + timedelta(hours=2), resolution="false positive")
    states = {c.clock: c.state for c in clocks(closed, T0 + timedelta(days=30))}
    assert states == {Clock.FIRST_ACTION: ClockState.MET, Clock.REPORTER_ACKNOWLEDGEMENT: ClockState.STOPPED,
                      Clock.RESPONSE: ClockState.MET}


def test_clocks_never_read_the_wall_clock() -> None:
    incident = _open()
    assert breaches(incident, T0) == []  # T0 is in the future of nothing: only `now` decides
    assert [b.clock for b in breaches(incident, T0 + timedelta(days=400))] == [Clock.FIRST_ACTION, Clock.RESPONSE]
    with pytest.raises(ValueError, match="at_risk_fraction"):
        clocks(incident, T0, at_risk_fraction=0)
