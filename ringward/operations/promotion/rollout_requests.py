"""Signed rollout promotion and rollback requests and their approvals (opened, or a live one
reused), plus loading the request and execution documents the deciding steps act on
(package-internal; see :mod:`ringward.operations.promotion.rollout_ops`)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.approvals.rules import DEFAULT_TTL, Approval, ApprovalState
from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import (
    BindingMismatchError,
    ExecutionReplayError,
    InputError,
    StateError,
)
from ringward.core.evidence.records import EvidenceSubject
from ringward.core.promotion import rollout as ro
from ringward.core.promotion.signed_payload import (
    RINGWARD_PAYLOAD_SIGNATURE,
    ROLLOUT_PROMOTION_SIGNATURE,
    sign_payload,
)
from ringward.operations.promotion.rollout_base import (
    _check_output,
    _check_promotion_key,
    _current_state,
    _evidence_ref,
    _load_root,
    _publish,
    _read,
    _record,
    _resolve,
    _stage,
    _state_after,
    ledger,
    load_promotion_key,
    refusals,
    utc_now,
)
from ringward.operations.promotion.rollout_capture import check_rollout
from ringward.store.promotion.executions_repo import RolloutStep

if TYPE_CHECKING:
    from ringward.store import Store


# --- approvals -------------------------------------------------------------------------------------------


def _live_approval(
    store: Store, *, action: str, subject_digest: str, target: str, requester: str, now: datetime
) -> Approval | None:
    """A pending, or approved and unused, approval with exactly this binding and requester."""
    from ringward.core.approvals.rules import same_actor

    offset = 0
    while True:
        items, total = store.approvals.list(now=now, target=target, limit=500, offset=offset)
        for approval in items:
            if (
                approval.action == action
                and approval.subject_digest == subject_digest
                and same_actor(approval.requester, requester)
                and approval.consumed_at is None
                and approval.effective_state(now) in (ApprovalState.PENDING, ApprovalState.APPROVED)
            ):
                return approval
        offset += len(items)
        if not items or offset >= total:
            return None


def _open_or_reuse(
    store: Store,
    *,
    action: str,
    subject_digest: str,
    target: str,
    requester: str,
    expires_in: timedelta,
    quorum: int,
    approver_group: str | None,
    note: str,
    now: datetime,
    flow_run_id: str | None,
) -> tuple[Approval, bool]:
    from ringward.operations.approvals.approval_ops import request_approval

    existing = _live_approval(store, action=action, subject_digest=subject_digest, target=target,
                              requester=requester, now=now)
    if existing is not None:
        return existing, True
    approval = request_approval(
        store, action=action, subject_digest=subject_digest, target=target, requester=requester,
        expires_in=expires_in, quorum=quorum, approver_group=approver_group, note=note[:4096], now=now,
        flow_run_id=flow_run_id,
    )
    return approval, False


def _approval_ref(approval: Approval, *, rule_id: str, reused: bool) -> dict[str, Any]:
    return {
        "approval_id": approval.approval_id,
        "action": approval.action,
        "subject_digest": approval.subject_digest,
        "target": approval.target,
        "requester": approval.requester,
        "approver_group": approval.approver_group,
        "quorum": approval.quorum,
        "state": approval.state.value,
        "requested_at": ro.iso(approval.created_at),
        "expires_at": ro.iso(approval.expires_at),
        "rule_id": rule_id,
        "reused": reused,
    }


# --- promotion request -----------------------------------------------------------------------------------


def request_promotion(
    store: Store,
    *,
    rollout_dir: Path,
    target_ring: str,
    requester: str,
    trust_root: Path,
    signing_key: Path | None = None,
    expires_in: timedelta = DEFAULT_TTL,
    quorum: int = 1,
    approver_group: str | None = ro.DEFAULT_APPROVER_GROUP,
    package_dir: Path | None = None,
    output: Path | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write a signed promotion request and open (or reuse) its approval (§4.11, RO2).

    Re-requesting the same ring for the same rollout while an approval with the same binding is
    pending, or approved and unused, returns that approval instead of opening a second one.
    """
    moment = now or utc_now()
    ro.check_id(target_ring, option="--target-ring")
    ro.check_line(requester, option="--requester")
    key = load_promotion_key(signing_key)
    root = _load_root(trust_root)
    context: dict[str, Any] = {"target_ring": target_ring, "rollout_dir": str(rollout_dir)}
    with refusals(store, "request", actor=requester, now=moment, flow_run_id=flow_run_id, context=context):
        _check_promotion_key(key, root, moment)
        checked = check_rollout(rollout_dir, root, now=moment, package_dir=package_dir)
        ev = checked.evidence
        context.update(rollout_id=ev.rollout_id, environment=ev.environment, release_version=ev.release.version)
        if ev.status not in ro.PROMOTABLE_STATUSES:
            raise StateError(
                f"{ro.ROLLOUT_EVIDENCE_FILE}: rollout promotion requires staged or succeeded rollout evidence, "
                f"found status {ev.status!r}"
            )
        _check_promotable_state(store, ev.rollout_id)
        if target_ring == ev.rollout_ring:
            raise InputError(f"--target-ring: rollout {ev.rollout_id} is already in ring {target_ring!r}")
        request_id = ro.promotion_request_id(ev.rollout_id, target_ring)
        context["request_id"] = request_id
        out = _check_output(output or Path.cwd() / f"{request_id}-{moment:%Y%m%d%H%M%S}")
        body: dict[str, Any] = {
            "schema_version": ro.PROMOTION_REQUEST_SCHEMA,
            "request_id": request_id,
            "created_at": ro.iso(moment),
            "rollout_id": ev.rollout_id,
            "environment": ev.environment,
            "current_ring": ev.rollout_ring,
            "target_ring": target_ring,
            "rollout_status": ev.status,
            "change_record": ev.change_record,
            "release": checked.raw["release"],
            "deployment_targets": checked.raw["deployment_targets"],
            "rollback_evidence_refs": ro.rollback_refs(ev.rollout_id, ev.deployment_targets),
            "verified_artifacts": checked.package.verified_artifacts,
            "requested_by": requester,
            "rollout_dir": str(checked.rollout_dir),
            "rollout_evidence_sha256": checked.evidence_sha256,
            "package_dir": str(checked.package.package_dir),
        }
        subject = ro.promotion_subject_digest(body)
        target = ro.promotion_target(ev.rollout_id, target_ring)
        approval, reused = _open_or_reuse(
            store, action=ro.ACTION_PROMOTE, subject_digest=subject, target=target, requester=requester,
            expires_in=expires_in, quorum=quorum, approver_group=approver_group,
            note=f"{request_id}: promote rollout {ev.rollout_id} {ev.rollout_ring} -> {target_ring} "
                 f"(change {ev.change_record})",
            now=moment, flow_run_id=flow_run_id,
        )
        context["approval_id"] = approval.approval_id
        body["approval"] = _approval_ref(approval, rule_id=ro.PROMOTION_RULE_ID, reused=reused)
        signed = sign_payload(body, private_key=key, signer=requester, schema_version=ROLLOUT_PROMOTION_SIGNATURE)
        ro.PromotionRequest.model_validate(signed)
        files = {ro.PROMOTION_REQUEST_FILE: dumps_document(signed),
                 ro.PROMOTION_REQUEST_MD: ro.request_markdown(signed)}
        _publish(_stage(out, files, checksums=False), out)
        try:
            request_sha = hashlib.sha256(files[ro.PROMOTION_REQUEST_FILE]).hexdigest()
            ring, status = _state_after(store, ev.rollout_id, ev.rollout_ring, ev.status)
            payload = ro.metadata_item(
                ro.KIND_REQUEST, request_id, body["created_at"], requester, approval_required_count=1,
                request_id=request_id, rollout_id=ev.rollout_id, environment=ev.environment,
                current_ring=ev.rollout_ring, target_ring=target_ring, rollout_status=ev.status,
                approval_id=approval.approval_id, approval_state=approval.state.value, approval_reused=reused,
                change_record=ev.change_record, release=body["release"], subject_digest=subject,
                request_sha256=request_sha, rollout_evidence_sha256=checked.evidence_sha256, request_path=str(out),
                signature_key_id=signed["signature"]["key_id"],
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=ev.rollout_id, step="request", ref_id=request_id, parent_ref=ev.rollout_id,
                            actor=requester, environment=ev.environment, ring=ring, status=status,
                            release_version=ev.release.version, approval_id=approval.approval_id,
                            document_sha256=request_sha, path=str(out)),
                kind=ro.KIND_REQUEST, payload=payload,
                subject=EvidenceSubject(release_version=ev.release.version, ring=target_ring,
                                        environment=ev.environment, status="requested",
                                        approval_id=approval.approval_id, approval_state=approval.state.value),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return {
        "valid": True,
        "request_id": request_id,
        "rollout_id": ev.rollout_id,
        "current_ring": ev.rollout_ring,
        "target_ring": target_ring,
        "approval_id": approval.approval_id,
        "approval_state": approval.effective_state(moment).value,
        "approval_reused": reused,
        "subject_digest": subject,
        "approval_target": target,
        "expires_at": ro.iso(approval.expires_at),
        "request_path": str(out / ro.PROMOTION_REQUEST_FILE),
        "output_dir": str(out),
        "files": sorted(files),
        "evidence": _evidence_ref(evidence),
    }


def _check_promotable_state(store: Store, rollout_id: str) -> None:
    """A rollout whose ledger says promoted or rolled back is not promoted again (capture a new one)."""
    current = _current_state(store, rollout_id)
    if current is not None and current.status in (ro.PROMOTED, ro.ROLLED_BACK):
        raise ExecutionReplayError(
            f"rollout {rollout_id}: already {current.status} (ring {current.ring}, {current.step} {current.ref_id}); "
            "capture a new rollout to promote further"
        )


def _load_request(path: Path) -> tuple[Path, bytes, dict[str, Any], ro.PromotionRequest]:
    file = _resolve(path, ro.PROMOTION_REQUEST_FILE)
    data = _read(file, what="promotion request")
    raw, request = ro.parse_document(data, ro.PromotionRequest, source=file.name)
    return file, data, raw, request


def _load_execution(path: Path) -> tuple[Path, bytes, dict[str, Any], ro.PromotionExecution]:
    file = _resolve(path, ro.PROMOTION_EXECUTION_FILE)
    data = _read(file, what="promotion execution")
    raw, execution = ro.parse_document(data, ro.PromotionExecution, source=file.name)
    return file, data, raw, execution


# --- rollback request ------------------------------------------------------------------------------------


def _recorded_execution(store: Store, execution_id: str, data: bytes, file: Path) -> RolloutStep:
    """The execution must be one this store recorded, byte for byte (execution records are unsigned)."""
    rows = ledger(store).by_ref(execution_id, step="execution")
    if not rows:
        raise StateError(f"{file}: promotion execution {execution_id} is not recorded in this store")
    recorded = rows[0]
    found = hashlib.sha256(data).hexdigest()
    if recorded.document_sha256 != found:
        raise BindingMismatchError(
            f"{file}: sha256 {found}, but execution {execution_id} was recorded with {recorded.document_sha256} "
            "(the execution record was altered)"
        )
    return recorded


def _check_rollbackable(execution: ro.PromotionExecution, file: Path) -> None:
    if execution.execution_status != ro.EXECUTED:
        raise StateError(f"{file}: rollback execution requires an executed promotion record, "
                         f"found execution_status {execution.execution_status!r}")
    if not execution.rollback_evidence_refs:
        raise StateError(f"{file}: rollback execution requires rollback evidence references")


def _not_rolled_back(store: Store, execution_id: str) -> None:
    done = ledger(store).by_unique_key(f"rollback-of:{execution_id}")
    if done is not None:
        raise ExecutionReplayError(
            f"promotion execution {execution_id}: already rolled back by {done.ref_id} at "
            f"{done.created_at.isoformat() if done.created_at else '?'}; a promotion is rolled back once"
        )


def request_rollback(
    store: Store,
    *,
    execution_path: Path,
    requester: str,
    reason: str,
    trust_root: Path,
    signing_key: Path | None = None,
    expires_in: timedelta = DEFAULT_TTL,
    quorum: int = 1,
    approver_group: str | None = ro.DEFAULT_APPROVER_GROUP,
    output: Path | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write a signed rollback request for one recorded promotion execution and open (or reuse)
    its approval, bound to the execution record's exact bytes (RO4)."""
    moment = now or utc_now()
    ro.check_line(requester, option="--requester")
    ro.check_text(reason, option="--reason")
    key = load_promotion_key(signing_key)
    root = _load_root(trust_root)
    file, data, raw, execution = _load_execution(execution_path)
    ring = execution.ring_advancement
    context: dict[str, Any] = {"execution_id": execution.execution_id, "rollout_id": execution.rollout_id,
                               "environment": execution.environment, "target_ring": ring.from_,
                               "release_version": execution.release.version}
    with refusals(store, "rollback-request", actor=requester, now=moment, flow_run_id=flow_run_id,
                  context=context):
        _check_promotion_key(key, root, moment)
        _check_rollbackable(execution, file)
        _recorded_execution(store, execution.execution_id, data, file)
        _not_rolled_back(store, execution.execution_id)
        request_id = ro.rollback_request_id(execution.execution_id)
        context["request_id"] = request_id
        out = _check_output(output or Path.cwd() / f"{request_id}-{moment:%Y%m%d%H%M%S}")
        subject = ro.bytes_digest(data)
        target = ro.rollback_target(execution.execution_id, ring.to, ring.from_)
        environment = execution.environment or execution.execution_environment
        approval, reused = _open_or_reuse(
            store, action=ro.ACTION_ROLLBACK, subject_digest=subject, target=target, requester=requester,
            expires_in=expires_in, quorum=quorum, approver_group=approver_group,
            note=f"{request_id}: roll back {execution.execution_id} ({ring.to} -> {ring.from_}): {reason}",
            now=moment, flow_run_id=flow_run_id,
        )
        context["approval_id"] = approval.approval_id
        body: dict[str, Any] = {
            "schema_version": ro.ROLLBACK_REQUEST_SCHEMA,
            "request_id": request_id,
            "created_at": ro.iso(moment),
            "promotion_execution_id": execution.execution_id,
            "promotion_execution_sha256": hashlib.sha256(data).hexdigest(),
            "rollout_id": execution.rollout_id,
            "environment": environment,
            "promoted_ring": ring.to,
            "previous_ring": ring.from_,
            "change_record": execution.change_record,
            "release": raw["release"],
            "reason": reason,
            "requested_by": requester,
            "rollback_evidence_refs": raw["rollback_evidence_refs"],
            "approval": _approval_ref(approval, rule_id=ro.ROLLBACK_RULE_ID, reused=reused),
        }
        signed = sign_payload(body, private_key=key, signer=requester, schema_version=RINGWARD_PAYLOAD_SIGNATURE)
        ro.RollbackRequest.model_validate(signed)
        files = {ro.ROLLBACK_REQUEST_FILE: dumps_document(signed),
                 ro.ROLLBACK_REQUEST_MD: ro.rollback_request_markdown(signed)}
        _publish(_stage(out, files, checksums=False), out)
        try:
            request_sha = hashlib.sha256(files[ro.ROLLBACK_REQUEST_FILE]).hexdigest()
            cur_ring, cur_status = _state_after(store, execution.rollout_id, ring.to, ro.PROMOTED)
            payload = ro.metadata_item(
                ro.KIND_ROLLBACK_REQUEST, request_id, body["created_at"], requester, approval_required_count=1,
                request_id=request_id, promotion_execution_id=execution.execution_id, rollout_id=execution.rollout_id,
                environment=environment, current_ring=ring.to, target_ring=ring.from_, approval_id=approval.approval_id,
                approval_state=approval.state.value, approval_reused=reused, subject_digest=subject,
                request_sha256=request_sha, request=signed, request_path=str(out),
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=execution.rollout_id, step="rollback-request", ref_id=request_id,
                            parent_ref=execution.execution_id, actor=requester, environment=environment,
                            ring=cur_ring, status=cur_status, release_version=execution.release.version,
                            approval_id=approval.approval_id, document_sha256=request_sha, path=str(out)),
                kind=ro.KIND_ROLLBACK_REQUEST, payload=payload,
                subject=EvidenceSubject(release_version=execution.release.version, ring=ring.from_,
                                        environment=environment, status="rollback-requested",
                                        approval_id=approval.approval_id, approval_state=approval.state.value),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return {
        "valid": True,
        "request_id": request_id,
        "promotion_execution_id": execution.execution_id,
        "rollout_id": execution.rollout_id,
        "promoted_ring": ring.to,
        "previous_ring": ring.from_,
        "approval_id": approval.approval_id,
        "approval_state": approval.effective_state(moment).value,
        "approval_reused": reused,
        "subject_digest": subject,
        "approval_target": target,
        "expires_at": ro.iso(approval.expires_at),
        "request_path": str(out / ro.ROLLBACK_REQUEST_FILE),
        "output_dir": str(out),
        "files": sorted(files),
        "evidence": _evidence_ref(evidence),
    }
