"""Property: for any interleaving of status changes, acknowledgements, owner reviews (a deferral
included), silences and failed sends,
nothing is sent twice inside a group interval, no ladder rung is delivered twice, and no active
unacknowledged item goes silent (each is, at every tick, being sent, scheduled within a bound, or
recorded as silenced)."""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringward.core.errors import StateError
from ringward.core.remediation.handoff import ALLOWED_TRANSITIONS, HandoffStatus
from ringward.core.sla.acks import acknowledge, add_silence, expire_silence
from ringward.core.sla.engine import IncidentState, SuppressionCode
from ringward.core.sla.history import NotificationKind, SentOk, SilenceAdded
from ringward.core.sla.policy import Matcher
from ringward.core.sla.reviews import review
from tests.sla.factory import T0, Scheduler, handoff, policy_of, status

START = T0 + timedelta(hours=20)
TICK = timedelta(minutes=5)
TICKS = 72
RECEIVERS = ("slack-ops", "pager-ops", "jira-gov", "slack-default")

POLICY = {
    "group_wait": "5m",
    "group_interval": "10m",
    "repeat_interval": "1h",
    "default_providers": ["slack-default"],
    "owners": {
        "endpoint-ops": {"receivers": ["pager-ops"]},
        "release-governance": {"receivers": ["jira-gov"]},
    },
    "rules": [
        {
            "rule_id": "critical",
            "alert_levels": ["critical"],
            "providers": ["slack-ops"],
            "owner": "endpoint-ops",
            "escalation_policy": "std",
        }
    ],
    "default_escalation_policy": "std",
    "escalation_policies": {
        "std": {
            "rungs": [
                {"level": "owner", "after": "0m", "targets": [{"owner": "endpoint-ops"}]},
                {"level": "governance", "after": "30m", "targets": [{"owner": "release-governance"}]},
            ],
            "repeat": 1,
            "repeat_after": "20m",
            "ack_timeout": "1h",
        }
    },
    "retry": {"max_attempts": 3, "delay": "5m", "multiplier": 2},
}
#: the longest a due-but-waiting send may be scheduled ahead (repeat interval + the largest backoff)
BOUND = timedelta(hours=1) + timedelta(minutes=5) * 2**3


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    count = draw(st.integers(1, 3))
    created = [draw(st.integers(0, 40)) for _ in range(count)]
    walks = []
    for _ in range(count):
        steps: list[tuple[int, str]] = []
        current: HandoffStatus | None = None
        tick = 0
        for _ in range(draw(st.integers(0, 3))):
            options = sorted(ALLOWED_TRANSITIONS[current]) if current else sorted(HandoffStatus)
            if not options:
                break
            current = draw(st.sampled_from(options))
            tick = draw(st.integers(tick, TICKS))
            steps.append((tick, current.value))
        walks.append(steps)
    actions = draw(
        st.lists(
            st.tuples(
                st.integers(0, TICKS),
                st.sampled_from(["acknowledged", "escalated", "resolved", "dismissed", "silence", "expire",
                                 "review:accepted", "review:deferred", "review:escalated", "review:resolved",
                                 "review:false_positive"]),
                st.sampled_from(["critical", "default"]),
            ),
            max_size=8,
        )
    )
    failures = {r: draw(st.frozensets(st.integers(0, TICKS), max_size=30)) for r in RECEIVERS}
    return {"created": created, "walks": walks, "actions": actions, "failures": failures}


def _at(i: int) -> datetime:
    return START + i * TICK


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_duplicate_inside_group_interval_and_nothing_active_goes_silent(scenario: dict[str, object]) -> None:
    created: list[int] = scenario["created"]  # type: ignore[assignment]
    hs = [handoff(i, created_at=START - timedelta(hours=h)) for i, h in enumerate(created)]
    sched = Scheduler(policy_of(POLICY), hs)
    for h, walk in zip(hs, scenario["walks"], strict=True):  # type: ignore[call-overload]
        for tick, value in walk:
            sched.statuses.append(status(h, value, _at(tick) + timedelta(seconds=1), previous=sched.statuses))
    failures: dict[str, frozenset[int]] = scenario["failures"]  # type: ignore[assignment]
    for receiver, ticks in failures.items():
        def fails(now: datetime, ticks: frozenset[int] = ticks) -> bool:
            return (now - START) // TICK in ticks

        sched.failing[receiver] = fails
    by_tick: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for tick, action, route in scenario["actions"]:  # type: ignore[attr-defined]
        by_tick[tick].append((action, route))
    silences: list[SilenceAdded] = []
    policy = sched.policy
    for i in range(TICKS + 1):
        now = _at(i)
        for action, route in by_tick.get(i, []):
            moment = now - timedelta(seconds=30)
            if action == "silence":
                silence = add_silence(
                    [Matcher(name="route", value=route)],
                    starts_at=moment,
                    ends_at=moment + timedelta(minutes=40),
                    created_by="ops",
                    comment="p",
                    at=moment,
                )
                if all(s.silence_id != silence.silence_id for s in silences):
                    silences.append(silence)
                    sched.add(silence)
            elif action == "expire":
                if silences:
                    with contextlib.suppress(StateError):
                        sched.add(expire_silence(sched.history, silences[-1].silence_id, by="ops", at=moment))
            elif action.startswith("review:"):
                state = action.split(":", 1)[1]
                until = moment + timedelta(minutes=30) if state == "deferred" else None
                current = sched.plan(moment)
                with contextlib.suppress(StateError):
                    decision, _ = review(current, policy, group=route, state=state, by=policy.routes[route].owner,
                                         at=moment, report_id=current.report_id, until=until)
                    sched.add(decision)
            else:
                owner = policy.routes[route].owner
                with contextlib.suppress(StateError):
                    sched.add(acknowledge(sched.plan(moment), policy, group=route, state=action, by=owner, at=moment))
        result = sched.tick(now)
        # nothing active and unacknowledged goes silent
        for incident in result.incidents:
            if incident.state is not IncidentState.TRIGGERED:
                continue
            route = policy.routes[incident.route_id]
            for receiver in route.receivers:
                sending = any(
                    n.group_key == incident.group_key
                    and n.receiver == receiver
                    and n.notification is NotificationKind.GROUP
                    for n in result.notifications
                )
                scheduled = any(
                    w.group_key == incident.group_key
                    and w.receiver == receiver
                    and w.notification is NotificationKind.GROUP
                    and w.next_at - now <= BOUND
                    for w in result.waiting
                )
                silenced = {
                    s.subject
                    for s in result.suppressions
                    if s.group_key == incident.group_key
                    and s.receiver == receiver
                    and s.code is SuppressionCode.SILENCED
                }
                assert sending or scheduled or set(incident.alerts) <= silenced, (now, incident, receiver)
    # nothing sent twice inside a group interval; each rung once per ladder run and receiver
    group_sends: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    rungs: set[tuple[str, str | None, int | None, str]] = set()
    for event in sched.history:
        if not isinstance(event, SentOk):
            continue
        if event.notification is NotificationKind.GROUP:
            group_sends[(event.group_key, event.receiver)].append(event.at)
        else:
            key = (event.group_key, event.epoch, event.position, event.receiver)
            assert key not in rungs, key
            rungs.add(key)
    for (group, _), times in group_sends.items():
        interval = policy.routes[group.split("/", 1)[1]].group_interval
        for earlier, later in itertools.pairwise(times):
            assert later - earlier >= interval, (group, earlier, later)
