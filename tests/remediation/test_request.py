"""`remediation request`: §9.1 fields and formulas, the remediation-role signature, the approval binding,
refusals, and the dedup rule (a run attaches to the open request for the same release, targets and
drift classes instead of opening another approval)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ringward.core.approvals.rules import ApprovalState, Decision
from ringward.core.errors import ExecutionReplayError, InputError, UntrustedKeyError
from ringward.core.promotion.signed_payload import verify_signed_payload
from ringward.core.remediation import request as rq
from ringward.core.trust.root import Role
from ringward.operations.approvals.approval_ops import decide_approval
from ringward.operations.promotion.channel_ops import load_trust_root_file
from ringward.store.remediation.state import OPEN, REQUESTS, RemediationStateRepository
from tests.inventory.conftest import records
from tests.remediation.conftest import RemediationWorld, at, drifted_fleet


def _approvals(rw: RemediationWorld) -> list[str]:
    items, _ = rw.store.approvals.list(now=at(3))
    return [a.approval_id for a in items]


def test_request_fields_formulas_and_signature(rw: RemediationWorld) -> None:
    report_path = rw.reconciliation()
    report = rw.load(report_path)
    result = rw.request(report_path)
    assert result["attached"] is False and result["action_count"] == 5
    doc = rw.load(result["request"])
    assert doc["schema_version"] == "cavra.endpoint-drift-remediation-request.v1"
    # the reference's formulas
    for index, (item, action) in enumerate(zip(report["drift_items"], doc["actions"], strict=True), start=1):
        text = (f"{report['reconciliation_id']}:{index}:{item['type']}:{item.get('deployment_target') or ''}:"
                f"{item.get('endpoint_id') or ''}")
        assert action["action_id"] == "era_" + hashlib.sha256(text.encode()).hexdigest()[:12]
        assert action["requires_approval"] is True and action["execution_mode"] == "manual_or_private_connector"
    body = {"reconciliation_id": report["reconciliation_id"], "strategy": "mixed", "actions": doc["actions"]}
    assert doc["request_id"] == "err_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    assert doc["reconciliation_sha256"] == hashlib.sha256(
        json.dumps(report, sort_keys=True, default=str).encode()).hexdigest()
    kinds = {a["drift_type"]: a["action_type"] for a in doc["actions"]}
    assert kinds["missing_observation"] == "republish_endpoint_export"
    assert kinds["unknown_deployment_target"] == "review_unknown_endpoint_target"
    assert kinds["stale_observation"] == "refresh_endpoint_inventory"
    assert {kinds[k] for k in kinds if "drift" in k} == {"republish_or_rollback_runtime"}
    assert doc["decision"]["decision_id"] == f"{doc['request_id']}:decision"
    assert doc["decision"]["session_id"] == report["reconciliation_id"]
    assert doc["approval"] == {"approval_id": result["approval_id"], "state": "pending",
                               "approver_group": "Endpoint Change Advisory Board",
                               "decision_id": f"{doc['request_id']}:decision"}
    # signed by the pinned remediation-role key
    check = verify_signed_payload(doc, trust_root=load_trust_root_file(rw.keys.trust_root), role=Role.REMEDIATION,
                                  now=at(3), label="x", schema_version=rq.REQUEST_SIGNATURE)
    assert check.payload_sha256 == result["request_sha256"]
    # the approval binds the subject digest, the action and release:request
    approval = rw.store.approvals.get(result["approval_id"])
    assert (approval.action, approval.subject_digest, approval.target, approval.requester) == (
        "endpoint_drift_remediation", rq.subject_digest(doc), f"1.2.3:{doc['request_id']}", "alice")
    assert approval.state is ApprovalState.PENDING
    (record,) = [r for r in records(rw.store, rq.KIND_REQUEST) if r.subject.status == "requested"]
    assert record.payload["request_id"] == doc["request_id"] and record.subject.approval_id == approval.approval_id


def test_strategies_choose_the_drift_action(rw: RemediationWorld) -> None:
    report = rw.reconciliation()
    rollback = rw.load(rw.request(report, strategy="rollback")["request"])
    assert {a["action_type"] for a in rollback["actions"] if "drift" in a["drift_type"]} == {"rollback_runtime"}


def test_non_remediation_role_key_is_refused_and_recorded(rw: RemediationWorld) -> None:
    report = rw.reconciliation()
    for key in (rw.keys.promotion_pem, rw.keys.release_pem, rw.keys.unpinned_pem):
        with pytest.raises(UntrustedKeyError):
            rw.request(report, key=key)
    assert _approvals(rw) == []
    refused = [r for r in records(rw.store, rq.KIND_REQUEST) if r.subject.status == "refused"]
    assert len(refused) == 3 and refused[0].payload["error"]["code"] == "untrusted-key"


def test_bad_input_exits_2(rw: RemediationWorld, tmp_path: Path) -> None:
    report = rw.reconciliation()
    with pytest.raises(InputError, match="strategy must be one of"):
        rw.request(report, strategy="nuke")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**rw.load(report), "schema_version": "cavra.endpoint-reconciliation.v0"}))
    with pytest.raises(InputError, match="schema_version expected"):
        rw.request(bad)
    bad.write_text(json.dumps({**rw.load(report), "reconciliation_id": "nope"}))
    with pytest.raises(InputError, match="reconciliation_id"):
        rw.request(bad)
    bad.write_text("[1]")
    with pytest.raises(InputError, match="must be a JSON object"):
        rw.request(bad)
    assert _approvals(rw) == []


def test_aligned_report_gives_an_empty_request_with_a_warning(rw: RemediationWorld) -> None:
    result = rw.request(rw.reconciliation(rw.inv.aligned_endpoints()))
    assert result["action_count"] == 0 and "no drift items" in result["warnings"][0]


# --- dedup -------------------------------------------------------------------------------------------


def test_same_drift_attaches_to_the_open_request(rw: RemediationWorld) -> None:
    first = rw.request(rw.reconciliation())
    # a later run: another reconciliation (new id), same release, targets and drift classes
    later_report = rw.reconciliation(drifted_fleet(rw.inv, behind="v1.2.1"), hours=2.5)
    assert rw.load(later_report)["reconciliation_id"] != rw.load(first["request"])["reconciliation_id"]
    again = rw.request(later_report, now=at(3.2), strategy="rollback")
    assert again["attached"] is True and again["request_id"] == first["request_id"]
    assert again["approval_id"] == first["approval_id"]
    assert _approvals(rw) == [first["approval_id"]]  # no second approval
    attached = [r for r in records(rw.store, rq.KIND_REQUEST) if r.subject.status == "attached"]
    assert len(attached) == 1 and attached[0].payload["attached_to"] == first["request_id"]
    entry = RemediationStateRepository(rw.store).get(REQUESTS, first["request_id"])
    assert entry is not None and len(entry.value["attached_runs"]) == 1


def test_new_drift_class_opens_a_new_request(rw: RemediationWorld) -> None:
    first = rw.request(rw.reconciliation())
    fleet = drifted_fleet(rw.inv)
    fleet[2]["installed_version"] = "1.2.4"  # the stale endpoint now also drifts (ahead)
    second = rw.request(rw.reconciliation(fleet, hours=2.5), now=at(3.2))
    assert second["attached"] is False and second["approval_id"] != first["approval_id"]


@pytest.mark.parametrize("close", ["execute", "deny", "expire"])
def test_closed_request_does_not_absorb_new_runs(rw: RemediationWorld, close: str) -> None:
    first = rw.request(rw.reconciliation())
    later = at(3.6)
    if close == "execute":
        rw.approve(first["approval_id"])
        rw.execute(first["request"], first["approval_id"])
        later = at(4.5)
    elif close == "deny":
        decide_approval(rw.store, first["approval_id"], decision=Decision.DENY, actor="bob", reason="no",
                        now=at(3.5))
    else:
        later = at(3 + 25)
    second = rw.request(rw.reconciliation(drifted_fleet(rw.inv, behind="v1.2.1"), hours=2.5), now=later)
    assert second["attached"] is False and second["approval_id"] != first["approval_id"]
    # the index now points at the new request
    repo = RemediationStateRepository(rw.store)
    assert {e.value["request_id"] for e in repo.list(OPEN)} == {second["request_id"]}


def test_the_same_report_after_execution_is_refused(rw: RemediationWorld) -> None:
    report = rw.reconciliation()
    first = rw.request(report)
    rw.approve(first["approval_id"])
    rw.execute(first["request"], first["approval_id"])
    with pytest.raises(ExecutionReplayError, match="already executed"):
        rw.request(report, now=at(5))


def test_same_report_after_denial_reopens_with_a_new_approval(rw: RemediationWorld) -> None:
    report = rw.reconciliation()
    first = rw.request(report)
    decide_approval(rw.store, first["approval_id"], decision=Decision.DENY, actor="bob", reason="no", now=at(3.5))
    second = rw.request(report, now=at(3.6))
    assert second["request_id"] == first["request_id"] and second["approval_id"] != first["approval_id"]
    rw.approve(second["approval_id"], now=at(3.7))
    assert rw.execute(second["request"], second["approval_id"])["execution_status"] == "recorded"
