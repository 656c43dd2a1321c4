"""Scenarios driven through virtual time: the exact sequence of sends, suppressions, escalations
and acknowledgements (rules G1-G8 and E1-E7 of ringward.core.sla.engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ringward.core.errors import InputError, StateError
from ringward.core.sla.acks import AcknowledgementRefused, acknowledge, add_silence, expire_silence
from ringward.core.sla.engine import IncidentState, Outcome, SuppressionCode, apply, plan
from ringward.core.sla.history import AckState
from ringward.core.sla.policy import Matcher
from tests.sla.factory import T0, Scheduler, handoff, policy_of, status

BREACH = T0 + timedelta(hours=48)  # 2026-03-04 08:00Z: the handoff made at T0 breaches
H = timedelta(hours=1)
M = timedelta(minutes=1)


def ladder_policy(**extra: Any) -> dict[str, Any]:
    """Critical items go to slack-ops (owner endpoint-ops); ladder owner @0 -> governance @60m."""
    escalation: dict[str, Any] = {
        "rungs": [
            {"level": "owner", "after": "0m", "targets": [{"owner": "endpoint-ops"}]},
            {"level": "governance", "after": "60m", "targets": [{"owner": "release-governance"}]},
        ],
        "repeat": 0,
        "repeat_after": "60m",
    }
    escalation.update(extra.pop("escalation", {}))
    document: dict[str, Any] = {
        "group_wait": "0s",
        "owners": {
            "endpoint-ops": {"members": ["alice"], "receivers": ["pager-ops"]},
            "release-governance": {"receivers": ["jira-gov"]},
        },
        "admins": ["root"],
        "rules": [
            {
                "rule_id": "critical",
                "alert_levels": ["critical"],
                "providers": ["slack-ops"],
                "owner": "endpoint-ops",
                "escalation_policy": "std",
            }
        ],
        "escalation_policies": {"std": escalation},
    }
    document.update(extra)
    return document


def critical_only(sched: Scheduler) -> list[tuple[str, str, str, str]]:
    return [row for row in sched.log() if row[1] != "slack-default"]


def start_breached(**extra: Any) -> Scheduler:
    # a handoff that is failed at BREACH: critical straight away, never at-risk first
    h = handoff(1, created_at=BREACH - timedelta(hours=2))
    sched = Scheduler(policy_of(ladder_policy(**extra)), [h])
    sched.statuses.append(status(h, "failed", BREACH))
    return sched


def at(delta: timedelta) -> str:
    return (BREACH + delta).strftime("%m-%d %H:%M")


def test_ladder_runs_owner_then_governance_and_repeats_the_group_every_repeat_interval() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 9 * H)
    assert sched.log() == [
        (at(0 * H), "slack-ops", "first_notification", "-"),
        (at(0 * H), "pager-ops", "rung_due", "owner"),
        (at(1 * H), "jira-gov", "rung_due", "governance"),
        (at(4 * H), "slack-ops", "repeat_interval_elapsed", "-"),
        (at(8 * H), "slack-ops", "repeat_interval_elapsed", "-"),
    ]
    last = sched.plans[-1].incidents[0]
    assert last.state is IncidentState.TRIGGERED
    assert last.acknowledgement_slo_state.value == "breached"


def test_an_acknowledgement_between_two_rungs_stops_the_ladder_and_the_reminders() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 30 * M)
    ack = acknowledge(
        sched.plan(BREACH + 31 * M),
        sched.policy,
        group="critical",
        state="acknowledged",
        by="alice",
        at=BREACH + 31 * M,
    )
    sched.add(ack)
    sched.run(BREACH + 35 * M, BREACH + 9 * H)
    assert sched.log() == [
        (at(0 * H), "slack-ops", "first_notification", "-"),
        (at(0 * H), "pager-ops", "rung_due", "owner"),
    ]
    final = sched.plans[-1]
    assert final.incidents[0].state is IncidentState.ACKNOWLEDGED
    assert final.incidents[0].acknowledged_by == "alice"
    assert final.incidents[0].acknowledgement_slo_state.value == "met"
    codes = {(s.subject, s.code) for p in sched.plans[7:] for s in p.suppressions}
    assert ("rung governance", SuppressionCode.ACKNOWLEDGED) in codes
    assert ("group", SuppressionCode.ACKNOWLEDGED) in codes  # the 4h reminder was held back, on record


def test_ack_timeout_re_triggers_the_ladder_from_the_first_rung() -> None:
    sched = start_breached(escalation={"ack_timeout": "2h"})
    sched.run(BREACH, BREACH + 10 * M)
    sched.add(
        acknowledge(
            sched.plan(BREACH + 11 * M),
            sched.policy,
            group="critical",
            state="acknowledged",
            by="endpoint-ops",
            at=BREACH + 11 * M,
        )
    )
    sched.run(BREACH + 15 * M, BREACH + 5 * H)
    # 11 min + 2 h = 02:11 after breach -> next tick 02:15: owner again, governance an hour later
    assert sched.log()[2:] == [
        (at(2 * H + 15 * M), "pager-ops", "rung_due", "owner"),
        (at(3 * H + 15 * M), "jira-gov", "rung_due", "governance"),
        (at(4 * H), "slack-ops", "repeat_interval_elapsed", "-"),  # 4h after the last send (held while acked)
    ]
    assert sched.plans[-1].incidents[0].retriggered


def test_a_failed_send_is_retried_with_backoff_and_only_success_suppresses() -> None:
    sched = start_breached(retry={"max_attempts": 5, "delay": "10m", "multiplier": 2})
    # slack-ops answers 503 for the first 25 minutes
    sched.failing["slack-ops"] = lambda now: now < BREACH + 25 * M
    sched.run(BREACH, BREACH + 2 * H)
    assert [f.short() for f in sched.failed] == [
        (at(0 * M), "slack-ops", "first_notification", "-"),
        (at(10 * M), "slack-ops", "first_notification", "-"),  # +10m
        # +20m after the second failure: 30m (backoff 10m x 2^(n-1))
    ]
    assert [r for r in sched.log() if r[1] == "slack-ops"] == [(at(30 * M), "slack-ops", "first_notification", "-")]
    # the successful send is what the repeat interval counts from
    sched.run(BREACH + 2 * H + 5 * M, BREACH + 4 * H + 35 * M)
    assert [r for r in sched.log() if r[1] == "slack-ops"][-1] == (
        at(4 * H + 30 * M),
        "slack-ops",
        "repeat_interval_elapsed",
        "-",
    )


def test_retry_cap_is_honoured_then_attempts_resume_when_failures_age_out() -> None:
    sched = start_breached(retry={"max_attempts": 2, "delay": "5m", "multiplier": 1}, repeat_interval="1h")
    sched.failing["slack-ops"] = lambda now: now < BREACH + 2 * H
    sched.run(BREACH, BREACH + 3 * H)
    failed = [f.at - BREACH for f in sched.failed if f.receiver == "slack-ops"]
    # two attempts, then held until the first failure is repeat_interval old, two more, held again
    assert failed == [0 * M, 5 * M, 60 * M, 65 * M]
    ok = [r.at - BREACH for r in sched.sent if r.receiver == "slack-ops"]
    assert ok[0] == 2 * H
    held = [s for p in sched.plans for s in p.suppressions if s.code is SuppressionCode.MAX_RETRIES]
    assert held and held[0].until == BREACH + 60 * M


def test_a_silence_expiring_mid_ladder_releases_the_due_rung_and_the_group_at_once() -> None:
    sched = start_breached()
    silence = add_silence(
        [Matcher(name="owner", value="endpoint-ops")],
        starts_at=BREACH - H,
        ends_at=BREACH + 40 * M,
        created_by="alice",
        comment="known outage",
        at=BREACH - H,
    )
    sched.add(silence)
    sched.run(BREACH, BREACH + 2 * H)
    assert sched.log() == [
        (at(40 * M), "slack-ops", "first_notification", "-"),
        (at(40 * M), "pager-ops", "rung_due", "owner"),
        (at(60 * M), "jira-gov", "rung_due", "governance"),
    ]
    muted = [s for p in sched.plans[:8] for s in p.suppressions]
    assert muted and all(s.code is SuppressionCode.SILENCED for s in muted)
    assert silence.silence_id in muted[0].detail


def test_expiring_a_silence_early_sends_on_the_next_tick() -> None:
    sched = start_breached()
    silence = add_silence(
        [Matcher(name="channel", value="stable")],
        starts_at=BREACH - H,
        ends_at=BREACH + 24 * H,
        created_by="alice",
        comment="freeze",
        at=BREACH - H,
    )
    sched.add(silence)
    sched.run(BREACH, BREACH + 20 * M)
    assert sched.sent == []
    sched.add(expire_silence(sched.history, silence.silence_id, by="alice", at=BREACH + 22 * M))
    sched.run(BREACH + 25 * M, BREACH + 25 * M)
    assert {r[1] for r in sched.log()} == {"slack-ops", "pager-ops"}
    with pytest.raises(StateError, match="already expired"):
        expire_silence(sched.history, silence.silence_id, by="alice", at=BREACH + 30 * M)


def test_repeat_loops_run_the_whole_ladder_n_more_times_then_stop() -> None:
    sched = start_breached(escalation={"repeat": 2, "repeat_after": "30m"}, repeat_interval="24h")
    sched.run(BREACH, BREACH + 8 * H)
    rungs = [(r[0], r[3]) for r in sched.log() if r[2] == "rung_due"]
    assert rungs == [
        (at(0 * M), "owner"),
        (at(60 * M), "governance"),
        (at(90 * M), "owner"),
        (at(150 * M), "governance"),
        (at(180 * M), "owner"),
        (at(240 * M), "governance"),
    ]
    assert sched.plans[-1].incidents[0].next_rung_at is None


def test_manual_escalation_sends_the_next_rung_now() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 10 * M)
    sched.add(
        acknowledge(
            sched.plan(BREACH + 12 * M),
            sched.policy,
            group="critical",
            state="escalated",
            by="alice",
            at=BREACH + 12 * M,
        )
    )
    sched.run(BREACH + 15 * M, BREACH + 2 * H)
    assert (at(15 * M), "jira-gov", "manual_escalation", "governance") in sched.log()
    assert [r for r in sched.log() if r[1] == "jira-gov"] == [
        (at(15 * M), "jira-gov", "manual_escalation", "governance")
    ]


def test_resolved_is_sent_once_when_the_group_clears() -> None:
    h = handoff(1, created_at=BREACH - timedelta(hours=2))
    sched = Scheduler(policy_of(ladder_policy()), [h])
    failed = status(h, "failed", BREACH)
    sched.statuses.append(failed)
    sched.run(BREACH, BREACH + 30 * M)
    # a provider retry completes it: failed is final, so the fix is a new status on a new handoff;
    # here the report stops tracking the failed one (the item is cancelled by the operator)
    sched.handoffs = []
    sched.run(BREACH + 35 * M, BREACH + 6 * H)
    resolved = [r for r in sched.log() if r[2] == "all_alerts_resolved"]
    assert resolved == [(at(35 * M), "slack-ops", "all_alerts_resolved", "-")]
    assert sched.plans[-1].incidents == ()


def test_dismissed_closes_and_mutes_until_the_alert_changes() -> None:
    h = handoff(1, created_at=T0)
    sched = Scheduler(policy_of(ladder_policy()), [h])
    sched.statuses.append(status(h, "in_progress", BREACH - H))
    sched.run(BREACH, BREACH + 10 * M)  # critical by age
    sched.add(
        acknowledge(
            sched.plan(BREACH + 11 * M),
            sched.policy,
            group="critical",
            state="dismissed",
            by="root",
            at=BREACH + 11 * M,
        )
    )
    sched.run(BREACH + 15 * M, BREACH + 2 * H)
    after = [r for r in sched.log() if r[0] > at(11 * M)]
    assert after == [(at(15 * M), "slack-ops", "all_alerts_resolved", "-")]
    # the item changes (blocked): a new alert, a new incident, the ladder starts again
    sched.statuses.append(status(h, "blocked", BREACH + 2 * H + 2 * M, previous=sched.statuses))
    sched.run(BREACH + 2 * H + 5 * M, BREACH + 2 * H + 5 * M)
    assert sched.log()[-2:] == [
        (at(2 * H + 5 * M), "slack-ops", "first_notification", "-"),
        (at(2 * H + 5 * M), "pager-ops", "rung_due", "owner"),
    ]


def test_only_the_owner_a_member_or_an_admin_may_acknowledge() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH)
    current = sched.plan(BREACH + M)
    with pytest.raises(AcknowledgementRefused, match="mallory is not endpoint-ops") as refused:
        acknowledge(current, sched.policy, group="critical", state="acknowledged", by="mallory", at=BREACH + M)
    assert refused.value.event.kind == "ack-refused"
    for actor in ("endpoint-ops", "alice", "root"):
        ack = acknowledge(current, sched.policy, group="critical", state="acknowledged", by=actor, at=BREACH + M)
        assert ack.state is AckState.ACKNOWLEDGED


def test_acknowledging_a_group_without_an_open_incident_is_refused() -> None:
    sched = start_breached()
    with pytest.raises(StateError, match="no open incident"):
        acknowledge(
            sched.plan(BREACH - H), sched.policy, group="critical", state="acknowledged", by="alice", at=BREACH - H
        )


def test_two_schedulers_in_the_same_window_plan_the_same_keys() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 55 * M)
    first = sched.plan(BREACH + H)
    second = sched.plan(BREACH + H)
    assert [n.key for n in first.notifications] == [n.key for n in second.notifications]
    assert first.notifications  # the governance rung
    # once one of them recorded the send, the other one's plan (same window) is empty
    sched.tick(BREACH + H)
    assert sched.plan(BREACH + H + M).notifications == ()


def test_time_is_a_parameter_the_past_does_not_see_the_future() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 2 * H)
    earlier = sched.plan(BREACH - H)
    assert earlier.notifications == () and earlier.incidents == ()
    with pytest.raises(InputError, match="UTC offset"):
        plan(sched.history, sched.policy, sched.report(BREACH), datetime(2026, 3, 4, 8, 0))


def test_at_risk_moves_to_breached_as_new_alert_and_default_group_resolves() -> None:
    h = handoff(1, created_at=T0)
    doc = ladder_policy(default_providers=["slack-default"])
    sched = Scheduler(policy_of(doc), [h])
    sched.run(T0 + timedelta(hours=24), T0 + timedelta(hours=50), step=timedelta(hours=1, minutes=1))
    rows = sched.log()
    assert rows[0] == ((T0 + timedelta(hours=24)).strftime("%m-%d %H:%M"), "slack-default", "first_notification", "-")
    assert ("slack-default", "all_alerts_resolved") in {(r[1], r[2]) for r in rows}
    assert ("slack-ops", "first_notification") in {(r[1], r[2]) for r in rows}


def test_healthy_report_is_not_notified_unless_a_route_asks() -> None:
    h = handoff(1, created_at=T0)
    quiet = Scheduler(policy_of({"default_providers": ["slack"]}), [h])
    quiet.run(T0, T0 + timedelta(hours=3))
    assert quiet.sent == []
    doc = {
        "default_providers": ["slack"],
        "repeat_interval": "24h",
        "rules": [{"rule_id": "daily", "notify_healthy": True, "alert_levels": ["healthy"], "providers": ["digest"]}],
    }
    loud = Scheduler(policy_of(doc), [h])
    loud.run(T0, T0 + timedelta(hours=3))
    assert [(r[1], r[2]) for r in loud.log()] == [("digest", "healthy_report")]


def test_recurrence_cap_stops_reminders_and_is_recorded() -> None:
    sched = start_breached(repeat_interval="1h", recurrence={"max_recurrences": 2})
    sched.run(BREACH, BREACH + 6 * H)
    reminders = [r for r in sched.log() if r[2] == "repeat_interval_elapsed"]
    assert [r[0] for r in reminders] == [at(1 * H), at(2 * H)]
    capped = [s for p in sched.plans for s in p.suppressions if s.code is SuppressionCode.MAX_RECURRENCES]
    assert capped and capped[0].detail == "maximum recurrence count 2 reached"


def test_nothing_plans_for_a_route_without_receivers_but_it_is_recorded() -> None:
    h = handoff(1, created_at=BREACH - timedelta(hours=2))
    sched = Scheduler(policy_of({}), [h])
    sched.statuses.append(status(h, "blocked", BREACH))
    result = sched.tick(BREACH)
    assert result.notifications == ()
    assert [s.code for s in result.suppressions] == [SuppressionCode.NO_RECEIVERS]


def test_group_wait_delays_the_first_notification() -> None:
    sched = start_breached(group_wait="12m")
    sched.run(BREACH, BREACH + 20 * M)
    assert [r for r in sched.log() if r[1] == "slack-ops"] == [(at(15 * M), "slack-ops", "first_notification", "-")]
    waits = sched.plans[0].waiting
    assert waits[0].next_at == BREACH + 12 * M


def test_utc_times_in_the_log() -> None:
    assert BREACH.tzinfo is UTC


def test_an_alert_clearing_while_others_fire_does_not_restart_the_ladder() -> None:
    first = handoff(1, created_at=BREACH - 2 * H)
    second = handoff(2, created_at=BREACH - 2 * H)
    sched = Scheduler(policy_of(ladder_policy()), [first, second])
    sched.statuses.append(status(first, "failed", BREACH))
    sched.statuses.append(status(second, "blocked", BREACH + 20 * M))
    sched.run(BREACH, BREACH + 30 * M)
    # the earliest alert goes away (the failed handoff is withdrawn); the other still fires
    sched.handoffs = [second]
    sched.run(BREACH + 35 * M, BREACH + 3 * H)
    rungs = [(r[0], r[1], r[3]) for r in sched.log() if r[2] == "rung_due"]
    assert rungs == [(at(0 * M), "pager-ops", "owner"), (at(60 * M), "jira-gov", "governance")]
    assert sched.plans[-1].incidents[0].triggered_at == BREACH


def test_acknowledging_a_route_without_acknowledgement_is_refused() -> None:
    doc = ladder_policy()
    doc["rules"][0]["acknowledgement_required"] = False
    sched = start_breached(rules=doc["rules"])
    sched.run(BREACH, BREACH + 2 * H)
    assert [r[2] for r in sched.log()] == ["first_notification"]  # no incident, no ladder
    with pytest.raises(StateError, match="does not require acknowledgement"):
        acknowledge(
            sched.plan(BREACH + 2 * H),
            sched.policy,
            group="critical",
            state="acknowledged",
            by="alice",
            at=BREACH + 2 * H,
        )


def test_apply_only_appends_forward_in_time() -> None:
    sched = start_breached()
    first = sched.plan(BREACH)
    outcome = Outcome(notification=first.notifications[0], ok=False, at=BREACH, error="HTTP 503")
    history = apply((), [outcome])
    assert history[0].kind == "send-failed" and history[0].key == first.notifications[0].key
    assert history[0].triggered_at == BREACH
    with pytest.raises(InputError, match="earlier than the history's last event"):
        apply(history, [outcome.model_copy(update={"at": BREACH - M})])


def test_a_silence_on_one_receiver_mutes_only_that_receiver() -> None:
    sched = start_breached()
    sched.add(
        add_silence(
            [Matcher(name="receiver", value="pager-ops")],
            starts_at=BREACH - H,
            ends_at=BREACH + 3 * H,
            created_by="alice",
            comment="pager maintenance",
            at=BREACH - H,
        )
    )
    sched.run(BREACH, BREACH + 90 * M)
    assert sched.log() == [
        (at(0 * M), "slack-ops", "first_notification", "-"),
        (at(60 * M), "jira-gov", "rung_due", "governance"),
    ]
    muted = {(s.receiver, s.code) for s in sched.plans[0].suppressions}
    assert muted == {("pager-ops", SuppressionCode.SILENCED)}


def test_new_alerts_joining_an_acknowledged_group_are_announced_without_restarting_the_ladder() -> None:
    first = handoff(1, created_at=BREACH - 2 * H)
    second = handoff(2, created_at=BREACH - 2 * H)
    sched = Scheduler(policy_of(ladder_policy()), [first, second])
    sched.statuses.append(status(first, "failed", BREACH))
    sched.run(BREACH, BREACH + 10 * M)
    sched.add(
        acknowledge(
            sched.plan(BREACH + 12 * M),
            sched.policy,
            group="critical",
            state="acknowledged",
            by="alice",
            at=BREACH + 12 * M,
        )
    )
    sched.statuses.append(status(second, "blocked", BREACH + 30 * M))
    sched.run(BREACH + 15 * M, BREACH + 3 * H)
    after_ack = [r for r in sched.log() if r[0] > at(12 * M)]
    assert after_ack == [(at(30 * M), "slack-ops", "new_alerts_in_group", "-")]
    assert sched.plans[-1].incidents[0].state is IncidentState.ACKNOWLEDGED


def test_a_healthy_heartbeat_route_sends_no_resolved_when_the_report_turns_bad() -> None:
    h = handoff(1, created_at=T0)
    doc = {
        "default_providers": ["slack"],
        "group_wait": "0s",
        "repeat_interval": "24h",
        "rules": [{"rule_id": "daily", "notify_healthy": True, "alert_levels": ["healthy"], "providers": ["digest"]}],
    }
    sched = Scheduler(policy_of(doc), [h])
    sched.run(T0 + 23 * H, T0 + 26 * H, step=H)
    assert [(r[1], r[2]) for r in sched.log()] == [("digest", "healthy_report"), ("slack", "first_notification")]
