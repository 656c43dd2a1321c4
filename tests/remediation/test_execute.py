"""`remediation execute`: §9.2 bindings, expiry, separation of duties, single use, signature checks;
every refusal is recorded and leaves the request open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringward.core.approvals.rules import Decision
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalExpiredError,
    ApprovalStateError,
    BindingMismatchError,
    ExecutionReplayError,
    MalformedDocumentError,
    NotFoundError,
    SeparationOfDutiesError,
    SignatureError,
    UntrustedKeyError,
)
from ringward.core.promotion.signed_payload import sign_payload
from ringward.core.remediation import request as rq
from ringward.core.trust.keys import load_private_key_pem
from ringward.operations.approvals.approval_ops import decide_approval
from ringward.store.remediation.state import EXECUTIONS, OPEN, REQUESTS, RemediationStateRepository
from tests.inventory.conftest import records
from tests.remediation.conftest import RemediationWorld, at, drifted_fleet


def _refusals(rw: RemediationWorld) -> list[str]:
    return [r.payload["error"]["code"] for r in records(rw.store, rq.KIND_EXECUTION) if r.subject.status == "refused"]


def _status(rw: RemediationWorld, request_id: str) -> str:
    entry = RemediationStateRepository(rw.store).get(REQUESTS, request_id)
    assert entry is not None
    return str(entry.value["status"])


def test_execution_record_and_work_items(rw: RemediationWorld) -> None:
    requested, executed = rw.executed()
    doc = rw.load(executed["execution"])
    assert doc["schema_version"] == "cavra.endpoint-drift-remediation-execution.v1"
    assert doc["execution_id"] == rq.execution_id_for(requested["request_id"], requested["approval_id"])
    assert doc["execution_status"] == "recorded" and doc["approval"]["decided_by"] == "bob"
    by_type = {r["action_type"]: r for r in doc["action_results"]}
    assert by_type["republish_or_rollback_runtime"]["work_item"] == "promotion_flow"
    assert by_type["republish_or_rollback_runtime"]["requires_own_approval"] is True
    assert by_type["republish_endpoint_export"]["work_item"] == "promotion_flow"
    assert by_type["refresh_endpoint_inventory"]["work_item"] == "handoff"
    assert by_type["review_unknown_endpoint_target"]["status"] == "queued_for_private_connector_or_manual_execution"
    assert executed["handoff_action_count"] == 2 and len(executed["promotion_flow_actions"]) == 3
    approval = rw.store.approvals.get(requested["approval_id"])
    assert approval.consumed_by == "carol" and approval.execution_ref == executed["execution_id"]
    repo = RemediationStateRepository(rw.store)
    assert _status(rw, requested["request_id"]) == "executed"
    assert repo.get(EXECUTIONS, executed["execution_id"]) is not None
    assert repo.list(OPEN) == []  # its dedup keys are closed
    (record,) = [r for r in records(rw.store, rq.KIND_EXECUTION) if r.subject.status == "recorded"]
    assert record.payload["execution_id"] == executed["execution_id"]


def test_without_approval_is_refused(rw: RemediationWorld) -> None:
    requested = rw.request(rw.reconciliation())
    with pytest.raises(ApprovalStateError, match="state pending, expected approved"):
        rw.execute(requested["request"], requested["approval_id"])
    decide_approval(rw.store, requested["approval_id"], decision=Decision.DENY, actor="bob", reason="no",
                    now=at(3.5))
    with pytest.raises(ApprovalStateError, match="state denied"):
        rw.execute(requested["request"], requested["approval_id"])
    assert _refusals(rw) == ["approval-state", "approval-state"]
    assert _status(rw, requested["request_id"]) == "open"


def test_approval_of_another_request_is_refused(rw: RemediationWorld) -> None:
    first = rw.request(rw.reconciliation())
    fleet = drifted_fleet(rw.inv)
    fleet[2]["installed_version"] = "1.2.4"
    other = rw.request(rw.reconciliation(fleet, hours=2.5), now=at(3.1))
    rw.approve(other["approval_id"])
    with pytest.raises(ApprovalBindingError, match=f"bound to approval {first['approval_id']}"):
        rw.execute(first["request"], other["approval_id"])
    assert _refusals(rw) == ["approval-binding-mismatch"]
    # the other approval was not used up by the refused attempt
    assert rw.execute(other["request"], other["approval_id"])["execution_status"] == "recorded"


def test_expired_approval_is_refused(rw: RemediationWorld) -> None:
    requested = rw.request(rw.reconciliation())
    rw.approve(requested["approval_id"])
    with pytest.raises(ApprovalExpiredError):
        rw.execute(requested["request"], requested["approval_id"], now=at(3 + 24))
    assert _refusals(rw) == ["approval-expired"]


def test_requester_cannot_approve_their_own_request(rw: RemediationWorld) -> None:
    requested = rw.request(rw.reconciliation())
    with pytest.raises(SeparationOfDutiesError):
        rw.approve(requested["approval_id"], actor="alice")
    with pytest.raises(SeparationOfDutiesError):
        rw.approve(requested["approval_id"], actor=" ALICE ")
    with pytest.raises(ApprovalStateError, match="expected approved"):
        rw.execute(requested["request"], requested["approval_id"], actor="alice")


def test_replayed_execution_is_refused_and_recorded(rw: RemediationWorld) -> None:
    requested, _executed = rw.executed()
    with pytest.raises(ExecutionReplayError, match="already executed"):
        rw.execute(requested["request"], requested["approval_id"], now=at(5))
    assert _refusals(rw) == ["already-executed"]
    executions = [r for r in records(rw.store, rq.KIND_EXECUTION) if r.subject.status == "recorded"]
    assert len(executions) == 1


def _resign(rw: RemediationWorld, doc: dict[str, object], pem: Path, path: Path) -> Path:
    key = load_private_key_pem(pem.read_bytes(), source=str(pem))
    path.write_text(json.dumps(sign_payload(doc, private_key=key, signer="mallory",
                                            schema_version=rq.REQUEST_SIGNATURE)))
    return path


def test_tampered_and_resigned_requests_are_refused(rw: RemediationWorld, tmp_path: Path) -> None:
    requested = rw.request(rw.reconciliation())
    rw.approve(requested["approval_id"])
    doc = rw.load(requested["request"])
    tampered = {**doc, "strategy": "rollback"}
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(tampered))
    with pytest.raises(MalformedDocumentError, match="request_id expected"):  # the id formula catches it first
        rw.execute(path, requested["approval_id"])
    path.write_text(json.dumps({**doc, "channel": "other"}))
    with pytest.raises(SignatureError, match="payload digest"):
        rw.execute(path, requested["approval_id"])
    # re-signed by keys that are not pinned remediation keys
    body = {k: v for k, v in doc.items() if k != "signature"}
    for pem in (rw.keys.unpinned_pem, rw.keys.promotion_pem):
        with pytest.raises(UntrustedKeyError):
            rw.execute(_resign(rw, {**body, "channel": "other"}, pem, tmp_path / "resigned.json"),
                       requested["approval_id"])
    # re-signed by the pinned remediation key, but not the recorded request
    with pytest.raises(BindingMismatchError, match="payload digest expected"):
        rw.execute(_resign(rw, {**body, "channel": "other"}, rw.keys.remediation_pem, tmp_path / "r2.json"),
                   requested["approval_id"])
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(body))
    with pytest.raises(SignatureError, match="signature missing"):
        rw.execute(unsigned, requested["approval_id"])
    assert len(_refusals(rw)) == 6
    # the genuine request still executes: no refusal used the approval
    assert rw.execute(requested["request"], requested["approval_id"])["execution_status"] == "recorded"


def test_unrecorded_request_is_refused(rw: RemediationWorld, tmp_path: Path) -> None:
    requested = rw.request(rw.reconciliation())
    doc = rw.load(requested["request"])
    body = {k: v for k, v in doc.items() if k != "signature"}
    actions = [dict(a, message="changed") for a in body["actions"]]
    body = {**body, "actions": actions,
            "request_id": rq.request_id_for(doc["reconciliation_id"], doc["strategy"], actions)}
    body["decision"] = {**body["decision"], "decision_id": f"{body['request_id']}:decision",
                        "metadata": {**body["decision"]["metadata"], "request_id": body["request_id"]}}
    body["approval"] = {**body["approval"], "decision_id": f"{body['request_id']}:decision"}
    with pytest.raises(NotFoundError, match="not recorded"):
        rw.execute(_resign(rw, body, rw.keys.remediation_pem, tmp_path / "forged.json"), requested["approval_id"])
