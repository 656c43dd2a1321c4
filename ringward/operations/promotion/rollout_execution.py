"""The deciding rollout steps: promotion execution (window or break glass) and rollback, each
consuming its approvals in the same transaction as its record, and the channel rollback
allowances a rollback grants (package-internal; see :mod:`ringward.operations.promotion.rollout_ops`)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.approvals.rules import Approval, check_consume
from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import (
    ApprovalBindingError,
    BindingMismatchError,
    ExecutionReplayError,
    RingwardError,
    StateError,
)
from ringward.core.evidence.records import EvidenceSubject
from ringward.core.promotion import rollout as ro
from ringward.core.promotion.signed_payload import (
    RINGWARD_PAYLOAD_SIGNATURE,
    ROLLOUT_PROMOTION_SIGNATURE,
    verify_signed_payload,
)
from ringward.core.trust.root import Role, TrustRoot
from ringward.operations.common.files import read_capped
from ringward.operations.promotion.rollout_base import (
    _check_output,
    _decide,
    _evidence_ref,
    _load_root,
    _Made,
    ledger,
    refusals,
    utc_now,
)
from ringward.operations.promotion.rollout_capture import check_rollout
from ringward.operations.promotion.rollout_requests import (
    _check_promotable_state,
    _check_rollbackable,
    _load_execution,
    _load_request,
    _not_rolled_back,
    _recorded_execution,
)
from ringward.store.promotion.executions_repo import ApprovalUse, RolloutStep

if TYPE_CHECKING:
    from ringward.store import Store


# --- promotion execution ---------------------------------------------------------------------------------


def _window_check(windows: Path | None, targets: list[str], at: datetime) -> tuple[Any, BaseException | None]:
    """Ask the promotion-window policy (``--windows`` or ``$RINGWARD_WINDOWS``; none = open):
    (the decision, the refusal when closed)."""
    from ringward.core.promotion.windows_policy import WindowClosedError
    from ringward.operations.promotion.windows import enforce_window, windows_policy_path

    try:
        return enforce_window(windows_policy_path(windows), targets, at, action="rollout promotion"), None
    except WindowClosedError as exc:
        return exc.decision, exc


def execute_promotion(
    store: Store,
    *,
    request_path: Path,
    approval_id: str,
    actor: str,
    trust_root: Path,
    windows: Path | None = None,
    break_glass_approval: str | None = None,
    output: Path | None = None,
    notes: str | None = None,
    execution_environment: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Execute an approved promotion request (§4.12 plus what the reference skips).

    Order: signature under a pinned promotion key; the approval from the store, bound to this
    request (action, subject digest, target) and usable now; no earlier execution; the rollout
    evidence and the package re-verified now and equal to what the request named; the promotion
    window (or an approved break-glass approval); then, in one transaction, the approval and the
    break-glass approval are consumed (compare-and-swap, once each) and the execution recorded with
    its evidence -- all or nothing; the output is renamed into place last.
    """
    from ringward.core.promotion.windows_policy import break_glass_binding
    from ringward.operations.promotion.windows import windows_policy_path

    moment = now or utc_now()
    ro.check_line(actor, option="--actor")
    if notes is not None:
        ro.check_text(notes, option="--notes")
    root = _load_root(trust_root)
    file, data, raw, request = _load_request(request_path)
    context: dict[str, Any] = {"request_id": request.request_id, "rollout_id": request.rollout_id,
                               "approval_id": approval_id, "environment": request.environment,
                               "target_ring": request.target_ring, "release_version": request.release.version}
    with refusals(store, "execution", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        verify_signed_payload(raw, trust_root=root, role=Role.PROMOTION, now=moment, label=str(file),
                              schema_version=ROLLOUT_PROMOTION_SIGNATURE)
        if approval_id != request.approval.approval_id:
            raise ApprovalBindingError(
                f"--approval: expected {request.approval.approval_id} (the approval the request opened), "
                f"found {approval_id}"
            )
        subject = ro.promotion_subject_digest(raw)
        target = ro.promotion_target(request.rollout_id, request.target_ring)
        execution_id = ro.promotion_execution_id(request.request_id, approval_id)
        context["execution_id"] = execution_id
        previous = ledger(store).by_unique_key(f"execution:{execution_id}")
        if previous is not None:
            raise ExecutionReplayError(
                f"approval {approval_id}: request {request.request_id} was already executed as {execution_id} "
                f"at {previous.created_at.isoformat() if previous.created_at else '?'}; approvals are single-use"
            )
        approval = store.approvals.get(approval_id)
        check_consume(approval, action=ro.ACTION_PROMOTE, subject_digest=subject, target=target, actor=actor,
                      now=moment)
        checked = check_rollout(Path(request.rollout_dir), root, now=moment, package_dir=Path(request.package_dir))
        if checked.evidence_sha256 != request.rollout_evidence_sha256:
            raise BindingMismatchError(
                f"{checked.rollout_dir / ro.ROLLOUT_EVIDENCE_FILE}: sha256 {checked.evidence_sha256}, the request "
                f"names {request.rollout_evidence_sha256} (rollout evidence changed since the request)"
            )
        ev = checked.evidence
        if ev.rollout_id != request.rollout_id or ev.rollout_ring != request.current_ring:
            raise BindingMismatchError(f"{file.name}: rollout {request.rollout_id}/{request.current_ring} does not "
                                       f"match the rollout evidence {ev.rollout_id}/{ev.rollout_ring}")
        if ev.status not in ro.PROMOTABLE_STATUSES:
            raise StateError(f"{ro.ROLLOUT_EVIDENCE_FILE}: rollout promotion requires staged or succeeded rollout "
                             f"evidence, found status {ev.status!r}")
        _check_promotable_state(store, ev.rollout_id)
        window_targets = [f"ring:{request.target_ring}", f"environment:{request.environment}"]
        decision, closed = _window_check(windows, window_targets, moment)
        window: dict[str, Any] = {"policy": str(windows_policy_path(windows) or "") or None,
                                  **decision.to_document()}
        # the approvals the decision consumes: the promotion's own, and outside its window the break glass
        uses = [ApprovalUse(approval_id, ro.ACTION_PROMOTE, subject, target)]
        if closed is not None:
            context["window"] = window
            if break_glass_approval is None:
                raise closed
            glass = break_glass_binding(decision, subject=request.request_id, overridden_action="rollout")
            check_consume(store.approvals.get(break_glass_approval), action=glass.action,
                          subject_digest=glass.subject_digest, target=glass.target, actor=actor, now=moment)
            uses.append(ApprovalUse(break_glass_approval, glass.action, glass.subject_digest, glass.target))
        break_glass = len(uses) > 1
        out = _check_output(output or Path.cwd() / execution_id)
        # --- the decision, one transaction: consume the approval and the break-glass approval (once
        # each) and record the execution; the output goes into place once committed ---

        def make(consumed_approvals: tuple[Approval, ...]) -> _Made:
            consumed = consumed_approvals[0]
            controls = list(ro.EXECUTION_CONTROLS) + (["break-glass-approval-consumed"] if break_glass else [])
            doc: dict[str, Any] = {
                "schema_version": ro.PROMOTION_EXECUTION_SCHEMA,
                "execution_id": execution_id,
                "request_id": request.request_id,
                "approval_id": approval_id,
                "rollout_id": request.rollout_id,
                "created_at": ro.iso(moment),
                "executed_by": actor,
                "execution_environment": execution_environment or request.environment,
                "execution_status": ro.EXECUTED,
                "change_record": request.change_record,
                "release": raw["release"],
                "deployment_targets": raw["deployment_targets"],
                "ring_advancement": {"from": request.current_ring, "to": request.target_ring,
                                     "previous_rollout_status": request.rollout_status,
                                     "new_rollout_status": ro.PROMOTED},
                "approval": ro.approval_summary(consumed),
                "controls": controls,
                "request_sha256": hashlib.sha256(data).hexdigest(),
                "evidence_refs": [
                    f"rollout://{request.rollout_id}",
                    f"promotion-request://{request.request_id}",
                    f"approval://{approval_id}",
                    f"change://{request.change_record}",
                ],
                "rollback_evidence_refs": raw["rollback_evidence_refs"],
                "environment": request.environment,
                "break_glass": break_glass,
                "break_glass_approval_id": break_glass_approval if break_glass else None,
                "window": window,
                "rollout_evidence_sha256": checked.evidence_sha256,
                "package_dir": str(checked.package.package_dir),
            }
            if notes:
                doc["notes"] = notes
            ro.PromotionExecution.model_validate(doc)
            files = {ro.PROMOTION_EXECUTION_FILE: dumps_document(doc),
                     ro.PROMOTION_EXECUTION_MD: ro.execution_markdown(doc)}
            record_sha = hashlib.sha256(files[ro.PROMOTION_EXECUTION_FILE]).hexdigest()
            payload = ro.metadata_item(
                ro.KIND_EXECUTION, execution_id, doc["created_at"], actor, rollout_id=request.rollout_id,
                rollout_status=ro.PROMOTED, promotion_execution_status=ro.EXECUTED,
                environment=request.environment, deployment_targets=[t["id"] for t in raw["deployment_targets"]],
                current_ring=request.current_ring, target_ring=request.target_ring, approval_id=approval_id,
                approval_state=consumed.state.value, request_id=request.request_id,
                change_record=request.change_record, release=raw["release"], evidence_refs=doc["evidence_refs"],
                rollback_evidence_refs=doc["rollback_evidence_refs"],
                audit_links={"rollout": f"rollout://{request.rollout_id}",
                             "promotion_request": f"promotion-request://{request.request_id}",
                             "approval": f"approval://{approval_id}",
                             "change": f"change://{request.change_record}"},
                execution=doc, execution_sha256=record_sha, break_glass=break_glass, output_dir=str(out),
            )
            subject_ = EvidenceSubject(release_version=request.release.version, ring=request.target_ring,
                                       environment=request.environment, status=ro.PROMOTED,
                                       approval_id=approval_id, approval_state=consumed.state.value,
                                       execution_status=ro.EXECUTED, success=True)
            return _Made(doc, files, payload, subject_, record_sha)

        made, evidence, _ = _decide(
            store,
            RolloutStep(rollout_id=request.rollout_id, step="execution", ref_id=execution_id,
                        parent_ref=request.request_id, unique_key=f"execution:{execution_id}", actor=actor,
                        environment=request.environment, ring=request.target_ring, status=ro.PROMOTED,
                        release_version=request.release.version, approval_id=approval_id, path=str(out)),
            kind=ro.KIND_EXECUTION, out=out, consume=uses, make=make, now=moment, flow_run_id=flow_run_id,
            replay_message=f"request {request.request_id} with approval {approval_id}: already executed",
        )
        doc, files, record_sha = made.doc, made.files, made.document_sha256
    return {
        "valid": True,
        "execution_id": execution_id,
        "request_id": request.request_id,
        "rollout_id": request.rollout_id,
        "approval_id": approval_id,
        "ring_advancement": doc["ring_advancement"],
        "executed_by": actor,
        "approval": doc["approval"],
        "break_glass": break_glass,
        "window": window,
        "execution_path": str(out / ro.PROMOTION_EXECUTION_FILE),
        "execution_sha256": record_sha,
        "output_dir": str(out),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }


# --- rollback --------------------------------------------------------------------------------------------


def _signed_rollback_request(
    store: Store, *, execution_id: str, approval_id: str, root: TrustRoot, now: datetime
) -> dict[str, Any]:
    """The signed rollback request that opened ``approval_id`` for this execution, re-verified."""
    rows = [r for r in ledger(store).by_approval(approval_id)
            if r.step == "rollback-request" and r.parent_ref == execution_id]
    if not rows:
        others = [r for r in ledger(store).by_approval(approval_id) if r.step == "rollback-request"]
        if others:
            raise ApprovalBindingError(
                f"approval {approval_id}: opened for the rollback of {others[0].parent_ref}, not {execution_id}"
            )
        raise StateError(f"approval {approval_id}: no signed rollback request opened it "
                         "(use `ringward rollout request-rollback`)")
    record = store.get_evidence(rows[-1].evidence_id or 0)
    request = record.payload.get("request")
    if not isinstance(request, dict):
        raise StateError(f"evidence record {record.id}: the rollback request document is missing")
    verify_signed_payload(request, trust_root=root, role=Role.PROMOTION, now=now,
                          label=f"rollback request {request.get('request_id')}",
                          schema_version=RINGWARD_PAYLOAD_SIGNATURE)
    ro.RollbackRequest.model_validate(request)
    return request


def execute_rollback(
    store: Store,
    *,
    execution_path: Path,
    approval_id: str,
    actor: str,
    trust_root: Path,
    output: Path | None = None,
    notes: str | None = None,
    execution_environment: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Roll back one recorded promotion execution (§4.13 plus decision binding, expiry,
    single-use approval and once-per-execution), then let channels at the rolled-back release go
    down to their previous version exactly once."""
    moment = now or utc_now()
    ro.check_line(actor, option="--actor")
    if notes is not None:
        ro.check_text(notes, option="--notes")
    root = _load_root(trust_root)
    file, data, raw, execution = _load_execution(execution_path)
    ring = execution.ring_advancement
    context: dict[str, Any] = {"execution_id": execution.execution_id, "rollout_id": execution.rollout_id,
                               "approval_id": approval_id, "environment": execution.environment,
                               "target_ring": ring.from_, "release_version": execution.release.version}
    with refusals(store, "rollback", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        _check_rollbackable(execution, file)
        _recorded_execution(store, execution.execution_id, data, file)
        _not_rolled_back(store, execution.execution_id)
        subject = ro.bytes_digest(data)
        target = ro.rollback_target(execution.execution_id, ring.to, ring.from_)
        approval = store.approvals.get(approval_id)
        check_consume(approval, action=ro.ACTION_ROLLBACK, subject_digest=subject, target=target, actor=actor,
                      now=moment)
        request = _signed_rollback_request(store, execution_id=execution.execution_id, approval_id=approval_id,
                                           root=root, now=moment)
        rid = ro.rollback_id(execution.execution_id, approval_id)
        context["rollback_id"] = rid
        out = _check_output(output or Path.cwd() / rid)
        environment = execution.environment or execution.execution_environment

        def make(consumed_approvals: tuple[Approval, ...]) -> _Made:
            (consumed,) = consumed_approvals
            doc: dict[str, Any] = {
                "schema_version": ro.ROLLBACK_EXECUTION_SCHEMA,
                "rollback_id": rid,
                "promotion_execution_id": execution.execution_id,
                "approval_id": approval_id,
                "rollout_id": execution.rollout_id,
                "created_at": ro.iso(moment),
                "executed_by": actor,
                "execution_environment": execution_environment or execution.execution_environment,
                "rollback_status": ro.EXECUTED,
                "rollback_reason": request["reason"],
                "change_record": execution.change_record,
                "release": raw["release"],
                "deployment_targets": raw["deployment_targets"],
                "ring_rollback": {"from": ring.to, "to": ring.from_, "previous_rollout_status": ro.PROMOTED,
                                  "new_rollout_status": ro.ROLLED_BACK},
                "approval": ro.approval_summary(consumed),
                "controls": list(ro.ROLLBACK_CONTROLS),
                "promotion_execution_sha256": hashlib.sha256(data).hexdigest(),
                "evidence_refs": [
                    f"rollout://{execution.rollout_id}",
                    f"promotion-execution://{execution.execution_id}",
                    f"approval://{approval_id}",
                    f"change://{execution.change_record}",
                ],
                "rollback_evidence_refs": raw["rollback_evidence_refs"],
                "environment": environment,
                "rollback_request_id": request["request_id"],
            }
            if notes:
                doc["notes"] = notes
            ro.RollbackExecution.model_validate(doc)
            files = {ro.ROLLBACK_EXECUTION_FILE: dumps_document(doc),
                     ro.ROLLBACK_EXECUTION_MD: ro.rollback_markdown(doc)}
            record_sha = hashlib.sha256(files[ro.ROLLBACK_EXECUTION_FILE]).hexdigest()
            payload = ro.metadata_item(
                ro.KIND_ROLLBACK, rid, doc["created_at"], actor, rollout_id=execution.rollout_id,
                rollout_status=ro.ROLLED_BACK, rollback_execution_status=ro.EXECUTED, environment=environment,
                deployment_targets=[t["id"] for t in raw["deployment_targets"]], current_ring=ring.to,
                target_ring=ring.from_, approval_id=approval_id, approval_state=consumed.state.value,
                promotion_execution_id=execution.execution_id, change_record=execution.change_record,
                release=raw["release"], evidence_refs=doc["evidence_refs"],
                rollback_evidence_refs=doc["rollback_evidence_refs"],
                audit_links={"rollout": f"rollout://{execution.rollout_id}",
                             "promotion_execution": f"promotion-execution://{execution.execution_id}",
                             "approval": f"approval://{approval_id}",
                             "change": f"change://{execution.change_record}"},
                rollback=doc, rollback_sha256=record_sha, output_dir=str(out),
            )
            subject_ = EvidenceSubject(release_version=execution.release.version, ring=ring.from_,
                                       environment=environment, status=ro.ROLLED_BACK, approval_id=approval_id,
                                       approval_state=consumed.state.value, execution_status=ro.EXECUTED,
                                       success=True)
            return _Made(doc, files, payload, subject_, record_sha)

        # --- the decision, one transaction: consume the approval (once) and record the rollback (once
        # per execution: a concurrent rollback with another approval leaves that approval unused) ---
        made, evidence, _ = _decide(
            store,
            RolloutStep(rollout_id=execution.rollout_id, step="rollback", ref_id=rid,
                        parent_ref=execution.execution_id, unique_key=f"rollback-of:{execution.execution_id}",
                        actor=actor, environment=environment, ring=ring.from_, status=ro.ROLLED_BACK,
                        release_version=execution.release.version, approval_id=approval_id, path=str(out)),
            kind=ro.KIND_ROLLBACK, out=out,
            consume=[ApprovalUse(approval_id, ro.ACTION_ROLLBACK, subject, target)], make=make, now=moment,
            flow_run_id=flow_run_id,
            replay_message=f"promotion execution {execution.execution_id}: already rolled back",
        )
        doc, files, record_sha = made.doc, made.files, made.document_sha256
    channels = allow_channel_rollbacks(store, execution=execution, rollback_id=rid, actor=actor, now=moment)
    return {
        "valid": True,
        "rollback_id": rid,
        "promotion_execution_id": execution.execution_id,
        "rollout_id": execution.rollout_id,
        "approval_id": approval_id,
        "ring_rollback": doc["ring_rollback"],
        "rollback_reason": doc["rollback_reason"],
        "executed_by": actor,
        "approval": doc["approval"],
        "channels": channels,
        "rollback_path": str(out / ro.ROLLBACK_EXECUTION_FILE),
        "rollback_sha256": record_sha,
        "output_dir": str(out),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }


def allow_channel_rollbacks(
    store: Store, *, execution: ro.PromotionExecution, rollback_id: str, actor: str, now: datetime
) -> list[dict[str, Any]]:
    """Tell the channel repository that each channel now at the rolled-back release may go down
    to its previous version once ("the only way down is the rollback flow")."""
    from ringward.store.promotion.channel_repo import ChannelRepository

    digest = _release_digest(execution)
    if digest is None:
        return []
    repo = ChannelRepository(store)
    version = execution.release.version
    allowed: list[dict[str, Any]] = []
    for channel in repo.channels_at(version, digest):
        entry: dict[str, Any] = {"channel": channel, "from_version": version, "from_digest": digest}
        try:
            repo.allow_rollback(channel, from_version=version, from_digest=digest, rollback_id=rollback_id,
                                actor=actor, now=now)
            entry["rollback_allowed"] = True
        except RingwardError as exc:  # the rollback stands; the channel says why it cannot go down
            entry.update(rollback_allowed=False, error=exc.message, code=exc.code)
        allowed.append(entry)
    return allowed


def _release_digest(execution: ro.PromotionExecution) -> str | None:
    """The digest that names the release in channel state: the package's signed ``checksums.txt``."""
    if not execution.package_dir:
        return None
    path = Path(execution.package_dir) / "checksums.txt"
    if not path.is_file():
        return None
    return "sha256:" + hashlib.sha256(read_capped(path, 4 * 1024 * 1024, source=str(path))).hexdigest()
