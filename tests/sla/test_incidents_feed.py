"""Open incidents' response clocks fed to the SLA engine (rules I1-I4 of ringward.core.sla.incidents),
driven through virtual time: routing by incident type and severity, the ladder, an acknowledged
incident stopping it, a target passing after the acknowledgement re-triggering it, a close resolving
the group once; and one scheduled cycle over a real store delivering to loopback receivers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.evidence.query import EvidenceQuery
from ringward.core.incidents import record as incidents
from ringward.core.incidents.record import IncidentLinks, IncidentRecord, IncidentSeverity, IncidentType
from ringward.core.sla.engine import IncidentState
from ringward.core.sla.incidents import as_of, incident_items, incident_report
from ringward.core.sla.policy import SlaPolicy
from ringward.core.sla.report import Severity, SlaReport, SlaState
from ringward.operations.delivery.delivery_ops import DeliveryHooks, load_connector_config
from ringward.operations.incidents import incident_ops
from ringward.operations.sla import sla_ops
from ringward.store import Store
from ringward.store.sla.ledger import SlaLedger
from tests.connectors.conftest import FakeClock, write_config
from tests.connectors.fault_server import FaultServer
from tests.sla.factory import Scheduler, policy_of
from tests.sla.test_cli import cli  # noqa: F401

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def incident_policy(**feed: Any) -> dict[str, Any]:
    """KEV critical/high incidents go to pager-sec (owner sec-oncall, ladder owner @0 -> governance @30m);
    everything else to the incidents' fallback route (slack-sec)."""
    section: dict[str, Any] = {
        "default_providers": ["slack-sec"],
        "owner": "sec-oncall",
        "rules": [
            {
                "rule_id": "kev",
                "incident_types": ["kev-match"],
                "incident_severities": ["critical", "high"],
                "providers": ["pager-sec"],
                "owner": "sec-oncall",
                "escalation_policy": "sec",
            }
        ],
    }
    section.update(feed)
    return {
        "group_wait": "0s",
        "default_providers": ["slack-ops"],
        "owners": {
            "sec-oncall": {"members": ["alice"], "receivers": ["phone-sec"]},
            "release-governance": {"receivers": ["jira-gov"]},
        },
        "escalation_policies": {
            "sec": {
                "rungs": [
                    {"level": "owner", "after": "0m", "targets": [{"owner": "sec-oncall"}]},
                    {"level": "governance", "after": "30m", "targets": [{"owner": "release-governance"}]},
                ],
                "repeat_after": "60m",
            }
        },
        "incidents": section,
    }


def kev(severity: IncidentSeverity = IncidentSeverity.CRITICAL, *, opened: datetime = T0, n: int = 1,
        type: IncidentType = IncidentType.KEV_MATCH, reporter: str | None = None) -> IncidentRecord:
    return incidents.open_incident(
        dedup_key=f"kev-match:CVE-2026-{1000 + n}:x", generation=1, supersedes=None, type=type, severity=severity,
        summary=f"incident {n}", reporter=reporter, links=IncidentLinks(channels=("stable",)), actor="scanner",
        now=opened,
    )


@dataclass
class IncidentScheduler(Scheduler):
    """The factory's scheduler over incidents instead of handoffs (the incidents' own policy)."""

    records: list[IncidentRecord] = field(default_factory=list)
    fraction: float = 0.75

    def report(self, now: datetime) -> SlaReport:
        return incident_report(self.records, now=now, at_risk_fraction=self.fraction)


def scheduler(records: list[IncidentRecord], **feed: Any) -> IncidentScheduler:
    root = policy_of(incident_policy(**feed))
    scoped = root.incident_policy
    assert scoped is not None and scoped.scope == "incidents"
    return IncidentScheduler(scoped, [], records=records)


def at(delta: timedelta) -> str:
    return (T0 + delta).strftime("%m-%d %H:%M")


def test_i1_i2_items_per_clock_with_type_severity_and_firing_since() -> None:
    record = kev(reporter="researcher@example.com")
    items = {w.provider: w for w in incident_items(record, T0 + 3 * H)}
    # critical first-action 4 h: at risk from 3 h; reporter 24 h and response 14 d still running
    assert set(items) == {"first-action", "reporter-acknowledgement", "response"}
    first = items["first-action"]
    assert (first.severity, first.sla_state, first.firing_since) == (Severity.WARNING, SlaState.AT_RISK, T0 + 3 * H)
    assert (first.incident_type, first.incident_severity, first.status, first.channel) == (
        "kev-match", "critical", "open", "stable")
    assert items["response"].severity is Severity.HEALTHY
    breached = {w.provider: w for w in incident_items(record, T0 + 5 * H)}["first-action"]
    assert (breached.severity, breached.firing_since, breached.overdue_hours) == (Severity.CRITICAL, T0 + 4 * H, 1.0)
    # a handoff report's document never carries the incident fields
    assert "incident_type" in first.model_dump(mode="json")


def test_i4_time_travel_an_acknowledgement_or_close_after_now_has_not_happened() -> None:
    opened = kev()
    acked = incidents.acknowledge(opened, actor="alice", now=T0 + 5 * H)
    assert acked is not None
    closed = incidents.close(acked, actor="alice", now=T0 + 6 * H, resolution="patched")
    assert as_of(closed, T0 - H) is None
    past = as_of(closed, T0 + 4 * H + 30 * M)
    assert past is not None and past.state.value == "open" and past.acknowledged_at is None
    assert {w.provider: w.severity for w in incident_items(closed, T0 + 4 * H + 30 * M)}["first-action"] is (
        Severity.CRITICAL)
    assert [w.status for w in incident_items(closed, T0 + 5 * H + 30 * M)] == ["met", "acknowledged"]
    assert incident_items(closed, T0 + 7 * H) == []


def test_routing_by_type_and_severity_then_the_ladder_and_the_acknowledgement_stops_it() -> None:
    critical = kev(n=1)
    low = kev(IncidentSeverity.LOW, n=2, type=IncidentType.VULNERABILITY_REPORT)  # first action 7 d
    sched = scheduler([critical, low])
    sched.run(T0, T0 + 3 * H + 40 * M)
    assert sched.log() == [
        (at(3 * H), "pager-sec", "first_notification", "-"),
        (at(3 * H), "phone-sec", "rung_due", "owner"),
        (at(3 * H + 30 * M), "jira-gov", "rung_due", "governance"),
    ]
    # the low vulnerability report is nowhere near its 7-day target; the KEV one breaches at 4 h
    sched.run(T0 + 3 * H + 45 * M, T0 + 4 * H + 5 * M)
    assert sched.log()[3:] == [(at(4 * H + 5 * M), "pager-sec", "new_alerts_in_group", "-")]
    incident = sched.plans[-1].incidents[0]
    assert (incident.group_key, incident.owner, incident.state) == ("incidents/kev", "sec-oncall",
                                                                     IncidentState.TRIGGERED)
    # the responder acknowledges the incident (ringward incident ack): the first-action clock is met,
    # the group clears -- one "resolved", and no rung of the second loop
    acked = incidents.acknowledge(critical, actor="alice", now=T0 + 4 * H + 10 * M)
    assert acked is not None
    sched.records = [acked, low]
    sched.run(T0 + 4 * H + 10 * M, T0 + 8 * H)
    assert sched.log()[4:] == [(at(4 * H + 10 * M), "pager-sec", "all_alerts_resolved", "-")]
    assert sched.plans[-1].incidents == ()


def test_i3_a_target_passing_after_the_acknowledgement_triggers_the_ladder_again() -> None:
    opened = kev(IncidentSeverity.HIGH)  # first action 24 h (met by the ack), response 14 d
    acked = incidents.acknowledge(opened, actor="alice", now=T0 + 2 * H)
    assert acked is not None
    sched = scheduler([acked])
    # at risk from 10.5 d: held (healthy), because the incident is acknowledged
    held = {w.provider: w for w in sched.report(T0 + 11 * 24 * H).work_items}["response"]
    assert (held.severity, held.sla_state) == (Severity.HEALTHY, SlaState.AT_RISK)
    assert "Acknowledged; escalates again" in held.recommended_action
    sched.run(T0 + 10 * 24 * H, T0 + 14 * 24 * H - 5 * M, step=timedelta(hours=6))
    assert sched.log() == []
    sched.run(T0 + 14 * 24 * H + 5 * M, T0 + 14 * 24 * H + 40 * M)
    assert sched.log() == [
        (at(14 * 24 * H + 5 * M), "pager-sec", "first_notification", "-"),
        (at(14 * 24 * H + 5 * M), "phone-sec", "rung_due", "owner"),
        (at(14 * 24 * H + 30 * M), "jira-gov", "rung_due", "governance"),  # trigger (due) + 30m
    ]
    # closing the incident resolves the group once and stops the ladder for good
    closed = incidents.close(acked, actor="alice", now=T0 + 14 * 24 * H + 45 * M, resolution="fixed")
    sched.records = [closed]
    sched.run(T0 + 14 * 24 * H + 45 * M, T0 + 15 * 24 * H, step=timedelta(hours=1))
    assert sched.log()[3:] == [(at(14 * 24 * H + 45 * M), "pager-sec", "all_alerts_resolved", "-")]


def test_an_unrouted_incident_goes_to_the_incidents_fallback_route() -> None:
    leaked = kev(IncidentSeverity.MEDIUM, n=3, type=IncidentType.LEAKED_CREDENTIAL)  # first action 72 h
    sched = scheduler([leaked])
    sched.run(T0 + 54 * H, T0 + 54 * H)
    assert sched.log() == [(at(54 * H), "slack-sec", "first_notification", "-")]
    assert sched.plans[-1].incidents[0].group_key == "incidents/default"


def test_policy_validation_of_the_incident_section() -> None:
    from ringward.core.errors import ConfigError

    bad = incident_policy()
    bad["rules"] = [{"rule_id": "x", "incident_types": ["kev-match"]}]
    with pytest.raises(ConfigError, match=r"incident_types/incident_severities belong to incidents\.rules"):
        policy_of(bad)
    unknown = incident_policy(rules=[{"rule_id": "x", "incident_types": ["malware"]}])
    with pytest.raises(ConfigError, match="expected incident types among"):
        policy_of(unknown)
    clash = incident_policy(scope="endpoint-remediation")
    with pytest.raises(ConfigError, match="must differ"):
        policy_of(clash)
    missing = incident_policy(escalation_policy="nope")
    with pytest.raises(ConfigError, match="escalation_policy 'nope' is not defined"):
        policy_of(missing)
    policy: SlaPolicy = policy_of(incident_policy())
    assert policy.scopes == ("endpoint-remediation", "incidents")
    assert policy.for_scope("incidents") is policy.incident_policy and policy.for_scope("nope") is None
    # the remediation scope's routes never see the incident rules
    assert policy.incident_policy is not None
    assert sorted(policy.routes) == ["default"] and sorted(policy.incident_policy.routes) == ["default", "kev"]


def test_a_scheduled_incident_cycle_delivers_once_per_window_and_an_ack_stops_it(
    store: Store, tmp_path: Path, fault_server: FaultServer
) -> None:
    routes = {n: fault_server.route() for n in ("slack-ops", "slack-sec", "pager-sec", "phone-sec", "jira-gov")}
    config = load_connector_config(
        write_config(tmp_path / "c.yaml", *({"name": n, "provider": "linux", "url": r.url} for n, r in routes.items()))
    )
    policy = policy_of(incident_policy())
    incident_ops.open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                               summary="KEV match", reporter=None, links=IncidentLinks(), actor="scanner", now=T0)
    fake = FakeClock()
    hooks = DeliveryHooks(clock=fake, sleep=fake.sleep, rng=random.Random(1), flush_interval=0.01)

    def cycle(delta: timedelta) -> sla_ops.CycleResult:
        return sla_ops.run_incident_cycle(store, policy, config, now=T0 + delta, hooks=hooks)[1]

    first = cycle(4 * H + M)
    assert sorted(r["receiver"] for r in first.sent) == ["pager-sec", "phone-sec"]
    assert cycle(4 * H + 3 * M).skipped_window  # the same 5-minute window: its run key is taken
    (incident,) = incident_ops.list_incidents(store)
    incident_ops.acknowledge(store, incident.incident_id, actor="alice", now=T0 + 4 * H + 10 * M)
    resolved = cycle(4 * H + 11 * M)
    assert [(r["receiver"], r["reason"]) for r in resolved.sent] == [("pager-sec", "all_alerts_resolved")]
    assert cycle(5 * H).sent == []  # the governance rung (due at +30m of the trigger) never goes out
    assert [len(routes[n].requests) for n in ("pager-sec", "phone-sec", "jira-gov")] == [2, 1, 0]
    history = SlaLedger(store).history("incidents")
    assert {getattr(e, "group_key", None) for e in history} == {"incidents/kev"}
    reports = store.search_evidence(EvidenceQuery(kind="incident-sla-report")).items
    assert len(reports) == 4 and reports[-1].payload["breached_count"] == 1
    assert b"incident response SLA escalation (owner)" in routes["phone-sec"].requests[0].body


def test_cli_incidents_preview_and_an_sla_acknowledgement_of_an_incident_group(
    tmp_path: Path, cli: Any, ringward_home: Path  # noqa: F811
) -> None:
    import json

    import yaml

    from ringward.store import open_store

    policy = tmp_path / "routing.yaml"
    policy.write_text(yaml.safe_dump(incident_policy()))
    with open_store() as store:
        incident_ops.open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.HIGH,
                                   summary="KEV match", actor="scanner", now=T0)
    at_text = (T0 + 24 * H + 5 * M).isoformat()  # the high first-action target (24 h) passed 5 minutes ago
    preview = cli("sla", "incidents", "--policy", str(policy), "--at", at_text, "--json")
    assert preview.returncode == 0, preview.stderr
    body = json.loads(preview.stdout)
    assert [n["receiver"] for n in body["plan"]["notifications"]] == ["pager-sec", "phone-sec"]
    assert body["report"]["work_items"][0]["incident_type"] == "kev-match"
    acked = cli("sla", "ack", "incidents/kev", "--policy", str(policy), "--by", "alice", "--at", at_text, "--json")
    assert acked.returncode == 0, acked.stderr
    assert json.loads(acked.stdout)["group_key"] == "incidents/kev"
    after = json.loads(cli("sla", "incidents", "--policy", str(policy), "--at", at_text, "--json").stdout)
    assert [n["receiver"] for n in after["plan"]["notifications"]] == ["pager-sec"]  # the group, not the ladder
    assert after["plan"]["incidents"][0]["state"] == "acknowledged"
    report = tmp_path / "r.json"
    report.write_text("{}")
    refused = cli("sla", "ack", "incidents/kev", "--policy", str(policy), "--by", "alice", "--report", str(report))
    assert refused.returncode == 2 and "--report: not used for scope incidents" in refused.stderr
    stranger = cli("sla", "ack", "incidents/kev", "--policy", str(policy), "--by", "mallory", "--at", at_text)
    assert stranger.returncode == 1 and "refusal is recorded" in stranger.stderr
    no_feed = tmp_path / "plain.yaml"
    no_feed.write_text("default_providers: [slack-ops]\n")
    missing = cli("sla", "incidents", "--policy", str(no_feed))
    assert missing.returncode == 2 and "no incidents section" in missing.stderr
