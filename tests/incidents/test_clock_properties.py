"""Properties of the clocks over arbitrary severities, offsets and acknowledgement times."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from ringward.core.incidents import record as model
from ringward.core.incidents.clocks import Clock, ClockState, breaches, clocks
from ringward.core.incidents.record import FIRST_ACTION_SLA, IncidentLinks, IncidentSeverity, IncidentType
from tests.incidents.conftest import T0

SECONDS = st.integers(min_value=0, max_value=60 * 24 * 3600)


@given(severity=st.sampled_from(list(IncidentSeverity)), elapsed=SECONDS, ack=st.one_of(st.none(), SECONDS))
def test_first_action_state_follows_the_definition(severity: IncidentSeverity, elapsed: int, ack: int | None) -> None:
    incident = model.open_incident(dedup_key="p", generation=1, supersedes=None, type=IncidentType.SUPPLY_CHAIN,
                                   severity=severity, summary="s", reporter=None, links=IncidentLinks(),
                                   actor="a", now=T0)
    now = T0 + timedelta(seconds=elapsed)
    if ack is not None and ack <= elapsed:
        acked = model.acknowledge(incident, actor="b", now=T0 + timedelta(seconds=ack))
        assert acked is not None
        incident = acked
    target = FIRST_ACTION_SLA[severity]
    (status,) = [c for c in clocks(incident, now) if c.clock is Clock.FIRST_ACTION]
    done = incident.acknowledged_at
    end = done if done is not None else now
    assert status.observed_seconds == int((end - T0).total_seconds())
    assert status.overdue_seconds == max(0, int((end - T0 - target).total_seconds()))
    if done is None:
        expected = (ClockState.BREACHED if now > T0 + target
                    else ClockState.AT_RISK if now >= T0 + target * 0.75 else ClockState.RUNNING)
    else:
        expected = ClockState.BREACHED if done > T0 + target else ClockState.MET
    assert status.state is expected
    reported = {b.clock for b in breaches(incident, now)}
    assert (Clock.FIRST_ACTION in reported) == (done is None and expected in (ClockState.BREACHED,
                                                                               ClockState.AT_RISK))
