"""Owner reviews (§9.11, ringward.core.sla.reviews) in virtual time: each review state's effect on
the ladder, every refusal (stranger, wrong owner, stale plan id, unreachable provider, bad deferral),
and the recorded review through the operations, the CLI and ``POST /sla/reviews``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringward.core.errors import InputError, StateError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.sla.acks import AcknowledgementRefused
from ringward.core.sla.engine import IncidentState
from ringward.core.sla.history import AckRefused, AckState, ReviewState
from ringward.core.sla.reviews import review, review_id_for, route_key_for
from ringward.operations.sla import oversight_ops, sla_ops
from ringward.store import Store
from ringward.store.sla.ledger import SlaLedger
from tests.sla.factory import Scheduler, handoff, status
from tests.sla.test_api import SlaApi, sla_api  # noqa: F401
from tests.sla.test_cli import cli  # noqa: F401
from tests.sla.test_time_travel import BREACH, H, M, at, start_breached


def decide(sched: Scheduler, minutes: int, state: str, by: str = "endpoint-ops", **kwargs: Any) -> dict[str, Any]:
    now = BREACH + minutes * M
    current = sched.plan(now)
    event, record = review(current, sched.policy, group="critical", state=state, by=by, at=now,
                           report_id=current.report_id, **kwargs)
    sched.add(event)
    return record


def test_accepted_between_rungs_stops_the_ladder_and_the_reminders() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 30 * M)
    record = decide(sched, 30, "accepted")
    assert (record["effect"], record["unresolved"], record["owner"]) == ("acknowledged", True, "endpoint-ops")
    sched.run(BREACH + 35 * M, BREACH + 9 * H)
    assert sched.log() == [(at(0 * H), "slack-ops", "first_notification", "-"),
                           (at(0 * H), "pager-ops", "rung_due", "owner")]
    incident = sched.plans[-1].incidents[0]
    assert (incident.state, incident.review_state, incident.acknowledged_until) == (
        IncidentState.ACKNOWLEDGED, "accepted", None)


def test_deferred_until_stops_it_then_retriggers_from_the_first_rung() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 10 * M)
    decide(sched, 10, "deferred", until=BREACH + 2 * H)
    mid = sched.plan(BREACH + H)
    assert mid.incidents[0].acknowledged_until == BREACH + 2 * H and mid.incidents[0].review_state == "deferred"
    sched.run(BREACH + 15 * M, BREACH + 3 * H + 5 * M)
    assert sched.log()[2:] == [
        (at(2 * H), "pager-ops", "rung_due", "owner"),  # the deferral ended: a new ladder run from rung 0
        (at(3 * H), "jira-gov", "rung_due", "governance"),
    ]
    assert sched.plans[-1].incidents[0].retriggered


def test_escalated_notifies_the_next_rung_now() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 20 * M)
    decide(sched, 20, "escalated")
    sched.run(BREACH + 20 * M, BREACH + 25 * M)
    assert sched.log()[2:] == [(at(20 * M), "jira-gov", "manual_escalation", "governance")]


@pytest.mark.parametrize("state", ["resolved", "false_positive"])
def test_resolved_and_false_positive_close_the_incident_and_mute_it_until_it_changes(state: str) -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH + 20 * M)
    record = decide(sched, 20, state)
    assert record["effect"] == {"resolved": "resolved", "false_positive": "dismissed"}[state]
    assert record["unresolved"] is False
    sched.run(BREACH + 25 * M, BREACH + 9 * H)
    assert sched.log()[2:] == [(at(25 * M), "slack-ops", "all_alerts_resolved", "-")]
    assert sched.plans[-1].incidents == ()


def test_ids_follow_the_reference_formulas() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH)
    record = decide(sched, 5, "accepted", provider="pager-ops", external_ref="INC-7", comment="mine")
    plan_id = sched.plans[-1].incidents[0].plan_id
    assert record["plan_id"] == plan_id and plan_id.startswith("erslaesc-")
    assert record["review_id"] == review_id_for(plan_id, record["report_id"], "pager-ops", "endpoint-ops",
                                                "accepted", "endpoint-ops", BREACH + 5 * M)
    assert record["route_key"] == route_key_for(plan_id, record["report_id"], "pager-ops", "endpoint-ops")
    assert (record["external_ref"], record["notes"], record["schema_version"]) == (
        "INC-7", "mine", "cavra.endpoint_remediation_sla.escalation_review.v1")


def test_refusals() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH)
    with pytest.raises(AcknowledgementRefused) as refused:
        decide(sched, 5, "accepted", by="mallory")
    assert isinstance(refused.value.event, AckRefused) and refused.value.event.state is AckState.ACKNOWLEDGED
    assert "review accepted: mallory is not endpoint-ops" in refused.value.event.reason
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("accepted", {"owner": "release-governance"}, "owner: route critical is owned by endpoint-ops"),
        ("accepted", {"provider": "teams-nobody"}, "provider: route critical reaches slack-ops, pager-ops, jira-gov"),
        ("deferred", {}, "until: a deferred review says until when"),
        ("deferred", {"until": BREACH - H}, "until: expected after"),
        ("deferred", {"until": BREACH + timedelta(days=31)}, "at most 30 days"),
    ]
    for state, kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            decide(sched, 5, state, **kwargs)
    with pytest.raises(InputError, match="only a deferred review has an end"):
        decide(sched, 5, "accepted", until=BREACH + H)
    with pytest.raises(InputError, match="review_state must be one of"):
        decide(sched, 5, "snoozed")
    with pytest.raises(StateError, match="is not the open incident"):
        decide(sched, 5, "accepted", plan_id="erslaesc-0000000000000000")
    decide(sched, 6, "resolved")
    with pytest.raises(StateError, match="no open incident to review"):
        decide(sched, 7, "accepted")
    assert [e.review_state for e in sched.history if hasattr(e, "review_state")] == [ReviewState.RESOLVED]


def _recorded_setup(store: Store, tmp_path: Path) -> tuple[Any, Any]:
    from tests.sla.test_time_travel import ladder_policy

    policy_path = tmp_path / "routing.yaml"
    policy_path.write_text(yaml.safe_dump(ladder_policy()))
    h = handoff(1, created_at=BREACH - 2 * H)
    inputs = tmp_path / "handoffs"
    inputs.mkdir()
    (inputs / "h.json").write_text(h.model_dump_json())
    (inputs / "s.json").write_text(status(h, "failed", BREACH).model_dump_json())
    report = sla_ops.make_report([inputs], now=BREACH + M, store=store, output=tmp_path / "report.json")
    return sla_ops.load_policy(policy_path), report


def test_a_review_is_recorded_once_and_a_refusal_is_recorded(store: Store, tmp_path: Path) -> None:
    policy, report = _recorded_setup(store, tmp_path)
    now = BREACH + 10 * M
    record, replayed = oversight_ops.review(store, policy, report, group="critical", state="deferred", by="alice",
                                            at=now, until=now + H, external_ref="PD-1")
    assert not replayed and record["deferred_until"] == "2026-03-04T09:10:00Z"
    again, replayed = oversight_ops.review(store, policy, report, group="critical", state="deferred", by="alice",
                                           at=now, until=now + H, external_ref="PD-1")
    assert replayed and again["review_id"] == record["review_id"]
    with pytest.raises(AcknowledgementRefused):
        oversight_ops.review(store, policy, report, group="critical", state="resolved", by="mallory", at=now)
    reviews = store.search_evidence(EvidenceQuery(kind=oversight_ops.KIND_REVIEW)).items
    assert [(r.actor, r.payload["review_state"]) for r in reviews] == [("alice", "deferred")]
    refused = store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_ACK_REFUSED)).items
    assert [(r.actor, r.payload["review_state"]) for r in refused] == [("mallory", "resolved")]
    kinds = [e.kind for e in SlaLedger(store).history("endpoint-remediation")]
    assert kinds == ["ack", "ack-refused"]


def test_cli_review_and_exit_codes(tmp_path: Path, cli: Any, ringward_home: Path) -> None:  # noqa: F811
    from ringward.store import open_store

    with open_store() as store:
        _recorded_setup(store, tmp_path)
    common = ["--policy", str(tmp_path / "routing.yaml"), "--report", str(tmp_path / "report.json")]
    done = cli("sla", "review", "critical", *common, "--state", "deferred", "--for", "2h", "--by", "endpoint-ops",
               "--at", "2026-03-04T08:10:00Z", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deferred_until"] == "2026-03-04T10:10:00Z"
    refused = cli("sla", "review", "critical", *common, "--state", "accepted", "--by", "eve",
                  "--at", "2026-03-04T08:11:00Z")
    assert refused.returncode == 1 and "refusal is recorded" in refused.stderr
    bad = cli("sla", "review", "critical", *common, "--state", "accepted", "--by", "endpoint-ops",
              "--owner", "someone", "--at", "2026-03-04T08:12:00Z")
    assert bad.returncode == 2 and "owner: route critical is owned by endpoint-ops" in bad.stderr
    missing = cli("sla", "review", "critical", "--policy", str(tmp_path / "routing.yaml"), "--state", "accepted",
                  "--by", "endpoint-ops")
    assert missing.returncode == 2 and "--report: required" in missing.stderr


def test_api_reviews_owner_member_admin_and_refusals(sla_api: SlaApi) -> None:  # noqa: F811
    assert sorted(r["receiver"] for r in sla_api.cycle(1).sent) == ["pager-ops", "slack-ops"]
    response = sla_api.post("alice", {"group": "critical", "state": "accepted"}, path="/sla/reviews")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reviewed_by"] == "alice" and body["effect"] == "acknowledged" and body["replayed"] is False
    assert sla_api.cycle(60).sent == []  # governance is not paged: the review stopped the ladder
    stranger = sla_api.post("bob", {"group": "critical", "state": "resolved"}, path="/sla/reviews")
    assert stranger.status_code == 403 and stranger.json()["error"] == "sla-ack-refused"
    viewer = sla_api.post("dave", {"group": "critical", "state": "resolved"}, path="/sla/reviews")
    assert viewer.status_code == 403 and viewer.json()["error"] == "forbidden"
    stale = sla_api.post("carol", {"group": "critical", "state": "resolved", "plan_id": "erslaesc-" + "0" * 16},
                         path="/sla/reviews")
    assert stale.status_code == 409 and "is not the open incident" in stale.json()["message"]
    refused = sla_api.evidence(sla_ops.KIND_ACK_REFUSED)
    assert sorted(r.actor for r in refused) == ["bob", "dave"]
    assert sla_api.post("carol", {"group": "critical", "state": "deferred"}, path="/sla/reviews").status_code == 400
