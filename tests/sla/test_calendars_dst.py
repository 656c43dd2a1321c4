"""Owner calendars and maintenance windows in IANA zones across DST changes (E5, G6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ringward.core.errors import ConfigError
from ringward.core.sla.engine import SuppressionCode
from tests.sla.factory import Scheduler, handoff, policy_of, status

Z = UTC
M = timedelta(minutes=1)


def calendar_policy(owner: dict[str, Any], *, ack_minutes: int, governance_after: str = "5d") -> dict[str, Any]:
    return {
        "group_wait": "0s",
        "repeat_interval": "24h",
        "owners": {
            "endpoint-ops": {"receivers": ["pager-ops"], "slo": {"acknowledgement_minutes": ack_minutes}, **owner},
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
        "escalation_policies": {
            "std": {
                "rungs": [
                    {"level": "owner", "after": "0m", "targets": [{"owner": "endpoint-ops"}]},
                    {"level": "governance", "after": governance_after, "targets": [{"owner": "release-governance"}]},
                ]
            }
        },
    }


BERLIN_HOURS = {
    "timezone": "Europe/Berlin",
    "business_hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}],
}


def breached_at(when: datetime, doc: dict[str, Any]) -> Scheduler:
    h = handoff(1, created_at=when - timedelta(hours=1))
    sched = Scheduler(policy_of(doc), [h])
    sched.statuses.append(status(h, "failed", when))
    return sched


def owner_sends(sched: Scheduler) -> list[datetime]:
    return [s.at for s in sched.sent if s.receiver == "pager-ops"]


@pytest.mark.parametrize(
    ("friday_evening", "monday_nine_local_in_utc"),
    [
        # Berlin on CET both days: Monday 09:00 CET = 08:00Z
        (datetime(2026, 3, 20, 18, 0, tzinfo=Z), datetime(2026, 3, 23, 8, 0, tzinfo=Z)),
        # clocks go forward on Sunday 29 March: Monday 09:00 CEST = 07:00Z
        (datetime(2026, 3, 27, 18, 0, tzinfo=Z), datetime(2026, 3, 30, 7, 0, tzinfo=Z)),
        # clocks go back on Sunday 25 October: Monday 09:00 CET = 08:00Z (Friday was CEST)
        (datetime(2026, 10, 23, 18, 0, tzinfo=Z), datetime(2026, 10, 26, 8, 0, tzinfo=Z)),
    ],
)
def test_owner_rung_is_deferred_to_the_next_berlin_business_morning(
    friday_evening: datetime, monday_nine_local_in_utc: datetime
) -> None:
    sched = breached_at(friday_evening, calendar_policy(BERLIN_HOURS, ack_minutes=4 * 24 * 60))
    sched.run(friday_evening, friday_evening + timedelta(days=3), step=timedelta(minutes=15))
    assert owner_sends(sched) == [monday_nine_local_in_utc]
    # the channel notification is not calendar-gated (it is a channel, not a person)
    assert next(s.at for s in sched.sent if s.receiver == "slack-ops") == friday_evening
    deferred = [s for s in sched.plans[0].suppressions if s.code is SuppressionCode.DEFERRED]
    assert deferred and deferred[0].until == monday_nine_local_in_utc
    assert "outside business hours (Europe/Berlin)" in deferred[0].detail
    assert [s.at for s in sched.sent if s.receiver == "jira-gov"] == []


def test_owner_is_escalated_past_when_waiting_would_breach_the_ack_slo() -> None:
    friday = datetime(2026, 3, 27, 18, 0, tzinfo=Z)
    sched = breached_at(friday, calendar_policy(BERLIN_HOURS, ack_minutes=60, governance_after="2h"))
    sched.run(friday, friday + timedelta(hours=6))
    assert [(s.at, s.receiver, s.reason) for s in sched.sent if s.kind == "escalation"] == [
        (friday, "jira-gov", "escalated_past_unavailable"),
    ]
    past = [s for s in sched.plans[0].suppressions if s.code is SuppressionCode.ESCALATED_PAST]
    assert past and "acknowledgement SLO due 2026-03-27T19:00:00Z" in past[0].detail


def test_out_of_office_defers_and_business_hours_resume_after_it() -> None:
    tuesday = datetime(2026, 3, 31, 10, 0, tzinfo=Z)  # 12:00 CEST, inside hours
    owner = {
        **BERLIN_HOURS,
        "out_of_office": [
            {"name": "easter", "start_at": "2026-03-30T00:00:00+02:00", "end_at": "2026-04-01T00:00:00+02:00"}
        ],
    }
    sched = breached_at(tuesday, calendar_policy(owner, ack_minutes=3 * 24 * 60))
    sched.run(tuesday, tuesday + timedelta(days=1), step=timedelta(minutes=30))
    # back on Wednesday 1 April at 09:00 CEST
    assert owner_sends(sched) == [datetime(2026, 4, 1, 7, 0, tzinfo=Z)]
    assert "out of office (easter)" in sched.plans[0].suppressions[0].detail


@pytest.mark.parametrize(
    ("instant", "available"),
    [
        (datetime(2026, 3, 6, 13, 30, tzinfo=Z), False),  # 08:30 EST, Friday before the change
        (datetime(2026, 3, 6, 14, 0, tzinfo=Z), True),  # 09:00 EST
        (datetime(2026, 3, 9, 13, 30, tzinfo=Z), True),  # 09:30 EDT, Monday after the change
        (datetime(2026, 3, 9, 12, 59, tzinfo=Z), False),  # 08:59 EDT
        (datetime(2026, 3, 9, 21, 0, tzinfo=Z), False),  # 17:00 EDT: end is exclusive
    ],
)
def test_new_york_business_hours_follow_the_wall_clock(instant: datetime, available: bool) -> None:
    owner = {
        "timezone": "America/New_York",
        "business_hours": [{"days": ["mon", "fri"], "start": "09:00", "end": "17:00"}],
    }
    policy = policy_of(calendar_policy(owner, ack_minutes=60))
    why, _ = policy.calendars["endpoint-ops"].availability(instant)
    assert (why is None) is available


@pytest.mark.parametrize(
    ("instant", "muted"),
    [
        (datetime(2026, 3, 6, 6, 30, tzinfo=Z), True),  # 01:30 EST
        (datetime(2026, 3, 6, 7, 30, tzinfo=Z), True),  # 02:30 EST
        (datetime(2026, 3, 9, 7, 30, tzinfo=Z), False),  # 03:30 EDT: the window ended at 07:00Z
        (datetime(2026, 3, 9, 5, 30, tzinfo=Z), True),  # 01:30 EDT
        (datetime(2026, 3, 9, 4, 30, tzinfo=Z), False),  # 00:30 EDT
    ],
)
def test_recurring_maintenance_window_in_new_york_mutes_by_local_time(instant: datetime, muted: bool) -> None:
    doc = calendar_policy({}, ack_minutes=60)
    doc["maintenance_windows"] = [
        {
            "name": "nightly-patching",
            "rrule": "FREQ=DAILY",
            "start": "2026-01-01T01:00",
            "duration": "2h",
            "timezone": "America/New_York",
            "matchers": [{"name": "channel", "value": "stable"}],
            "reason": "nightly patching",
        }
    ]
    sched = breached_at(instant, doc)
    result = sched.tick(instant)
    assert (result.notifications == ()) is muted
    if muted:
        codes = {s.code for s in result.suppressions}
        assert codes == {SuppressionCode.MAINTENANCE}
        assert any("nightly-patching" in s.detail for s in result.suppressions)


def test_maintenance_matchers_are_scoped() -> None:
    doc = calendar_policy({}, ack_minutes=60)
    doc["maintenance_windows"] = [
        {
            "name": "beta-only",
            "start_at": "2026-03-01T00:00:00Z",
            "end_at": "2026-04-01T00:00:00Z",
            "matchers": [{"name": "channel", "value": "beta"}],
        }
    ]
    instant = datetime(2026, 3, 10, 12, 0, tzinfo=Z)
    assert breached_at(instant, doc).tick(instant).notifications  # stable is not muted


def test_bad_calendar_fields_are_refused_with_the_field_path() -> None:
    with pytest.raises(ConfigError, match=r"owners.endpoint-ops.business_hours.0.start: expected HH:MM"):
        policy_of(calendar_policy({"business_hours": [{"start": "9am"}]}, ack_minutes=60))
    with pytest.raises(ConfigError, match=r"owners.endpoint-ops.timezone: .*Mars/Olympus"):
        policy_of(calendar_policy({"timezone": "Mars/Olympus"}, ack_minutes=60))
