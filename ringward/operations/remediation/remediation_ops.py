"""Remediation operations: request (§9.1), execute (§9.2), hand off (§9.3), record status (§9.4).

What ``ringward remediation ...`` runs in-process. Every decision is one transaction with its evidence
record (:mod:`ringward.store.remediation.state`); every refusal other than bad input (exit 2) is
recorded as its own ``refused`` evidence record before it is raised (exit 1).

- **request**: parses the reconciliation report, proves the signing key is a pinned remediation-role
  key (before opening anything), then -- under the evidence chain's lock -- either attaches the run to
  the open request covering every (release, deployment target, drift class) of this drift, or opens
  an approval bound to the request's subject digest and records the signed request.
- **execute**: the request file must verify under a pinned remediation-role key and be byte-for-byte
  the recorded request; the approval must be the request's own, approved by someone other than the
  requester, unexpired and unused; it is consumed in the same transaction that marks the request
  executed. Then the republish/rollback actions run through the promotion domain's endpoint
  publication and rollback operations, each under its own approval (reported as awaiting it when
  missing; :mod:`ringward.operations.remediation.promotion_actions`); the rest become handoff work items.
- **handoff**: only for an executed request; the §9.3 payloads go out through the connector platform
  as one event whose id is the handoff id (the delivery log makes a re-run send nothing twice).
- **status**: §9.4 records with the transition table, compare-and-set per (handoff, provider).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ringward.core.approvals.rules import MAX_TTL, Approval, ApprovalState, Decision, same_actor
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalStateError,
    BindingMismatchError,
    ExecutionReplayError,
    InputError,
    MalformedDocumentError,
    NotFoundError,
    RingwardError,
    SeparationOfDutiesError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.promotion.channels import check_actor
from ringward.core.promotion.signed_payload import sign_payload, verify_signed_payload
from ringward.core.remediation import request as rq
from ringward.core.remediation.handoff import (
    HANDOFF_SCHEMA,
    RemediationHandoff,
    RemediationHandoffStatus,
    record_status,
)
from ringward.core.remediation.handoff_build import (
    EVENT_WORK_ITEMS,
    HANDOFF_FILE,
    KIND_HANDOFF,
    KIND_STATUS,
    build_handoff,
    parse_providers,
    work_items,
)
from ringward.core.trust.root import Role
from ringward.operations.common.files import read_capped
from ringward.operations.remediation.promotion_actions import PromotionInputs, run_promotion_actions
from ringward.store import Store
from ringward.store.remediation.state import (
    EXECUTIONS,
    HANDOFFS,
    REQUESTS,
    STATUSES,
    RemediationStateRepository,
)

RESULT_SCHEMA = "ringward.remediation-result.v1"
DEFAULT_REQUEST_DIR = "endpoint-remediation"
DEFAULT_EXECUTION_DIR = "endpoint-remediation-execution"
DEFAULT_HANDOFF_DIR = "endpoint-remediation-handoff"
DEFAULT_STATUS_DIR = "endpoint-remediation-handoff-status"
STATUS_FILE = "endpoint-remediation-handoff-status.json"
_HANDOFF_ID = re.compile(r"^erh_[0-9a-f]{12}$")
#: delivery outcomes after which a work item counts as delivered to the provider
_DELIVERED = frozenset({"delivered", "exists", "already-delivered"})


def state(store: Store) -> RemediationStateRepository:
    return RemediationStateRepository(store)


def _evidence_ref(record: Any) -> dict[str, Any]:
    return {"evidence_id": str(record.id), "record_hash": record.record_hash}


def _refuse(store: Store, kind: str, exc: RingwardError, *, actor: str, now: datetime, subject: EvidenceSubject,
            payload: dict[str, Any], flow_run_id: str | None) -> None:
    from ringward.operations.promotion.channel_ops import record_refusal

    record_refusal(store, kind, exc, actor=actor, now=now, subject=subject, payload=payload, flow_run_id=flow_run_id)


def _read_json(path: Path, *, option: str) -> Any:
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory, expected a JSON file")
    return loads_strict(read_capped(path, rq.MAX_DOCUMENT_BYTES, source=f"{option} {path}"),
                        source=f"{option} {path}", max_bytes=rq.MAX_DOCUMENT_BYTES)


def _write_dir(target: Path, files: Mapping[str, bytes], identical: str) -> str:
    from ringward.operations.inventory.common import write_output_dir

    return write_output_dir(target, files, identical=identical)


# --- request -----------------------------------------------------------------------------------------


def request_remediation(
    store: Store,
    *,
    reconciliation: Path,
    strategy: str,
    requester: str,
    signing_key: Path,
    trust_root: Path,
    now: datetime,
    expires_in: timedelta = timedelta(hours=24),
    quorum: int = 1,
    approver_group: str | None = None,
    output: Path | None = None,
    output_root: Path | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Open (or attach to) the approval-bound, signed remediation request for a reconciliation report.

    ``output``: the request's directory; else ``<output_root or ./endpoint-remediation>/<request_id>-<approval_id>``.

    Raises:
        InputError: bad options, key, trust root or report (exit 2).
        SignatureError: the key is not a pinned, active remediation-role key (recorded, exit 1).
        ExecutionReplayError: this exact request was already executed (recorded, exit 1).
    """
    from ringward.operations.approvals.approval_ops import parse_request as parse_approval_request
    from ringward.operations.promotion.channel_ops import load_trust_root_file
    from ringward.operations.trust.keys import load_signing_key
    from ringward.store.approvals.repo import new_approval_id

    check_actor(requester, option="--requester")
    chosen = rq.parse_strategy(strategy)
    if not timedelta(0) < expires_in <= MAX_TTL:
        raise InputError(f"--expires-in: expected between 1s and {MAX_TTL}, found {expires_in}")
    if signing_key.is_dir():
        raise InputError(f"--signing-key {signing_key}: is a directory, expected a PEM file")
    key = load_signing_key(signing_key)
    if key is None:  # pragma: no cover - a path is always given
        raise InputError("--signing-key: required")
    root = load_trust_root_file(trust_root)
    raw = _read_json(reconciliation, option="RECONCILIATION")
    try:
        report = rq.parse_reconciliation(raw, source=str(reconciliation))
    except MalformedDocumentError as exc:  # a file the caller handed in: bad input
        raise InputError(exc.message) from exc
    subject = EvidenceSubject(release_version=report.release.version, channel=report.channel)
    context = {"reconciliation_id": report.reconciliation_id, "strategy": chosen.value, "requested_by": requester}
    expires_at = now + expires_in
    unsigned = rq.build_request(report, raw, strategy=chosen, requested_by=requester, created_at=now,
                                expires_at=expires_at)
    request_id = str(unsigned["request_id"])
    repo = state(store)
    try:
        # the key must be a pinned, active remediation-role key: prove it before opening anything
        probe = sign_payload({"probe": request_id}, private_key=key, signer=requester,
                             schema_version=rq.REQUEST_SIGNATURE)
        verify_signed_payload(probe, trust_root=root, role=Role.REMEDIATION, now=now, label=rq.LABEL,
                              schema_version=rq.REQUEST_SIGNATURE)
        earlier = repo.get(REQUESTS, request_id)
        if earlier is not None and earlier.value.get("status") == "executed":
            raise ExecutionReplayError(
                f"remediation request {request_id}: already executed ({earlier.value.get('execution_id')}); "
                "reconcile again for a new request")
    except RingwardError as exc:
        _refuse(store, rq.KIND_REQUEST, exc, actor=requester, now=now, subject=subject, payload=context,
                flow_run_id=flow_run_id)
        raise
    digest = rq.subject_digest(unsigned)
    target = rq.approval_target(report.release.version, request_id)
    group = approver_group or rq.DEFAULT_APPROVER_GROUP
    checked = parse_approval_request(action=rq.ACTION, subject_digest=digest, target=target, requester=requester,
                                     quorum=quorum, approver_group=group,
                                     note=f"endpoint drift remediation {request_id} ({chosen.value}, "
                                          f"{unsigned['action_count']} actions) for {report.reconciliation_id}")
    approval = Approval(
        approval_id=new_approval_id(), action=checked.action, subject_digest=checked.subject_digest,
        target=checked.target, requester=checked.requester, approver_group=checked.approver_group,
        quorum=checked.quorum, state=ApprovalState.PENDING, created_at=now.astimezone(UTC),
        expires_at=expires_at.astimezone(UTC), note=checked.note,
    )
    document = rq.with_approval(unsigned, approval_id=approval.approval_id, state=approval.state.value,
                                approver_group=group)
    signed = sign_payload(document, private_key=key, signer=requester, schema_version=rq.REQUEST_SIGNATURE)
    check = verify_signed_payload(signed, trust_root=root, role=Role.REMEDIATION, now=now, label=rq.LABEL,
                                  schema_version=rq.REQUEST_SIGNATURE)
    target_dir = output if output is not None else (output_root or Path.cwd() / DEFAULT_REQUEST_DIR) / (
        f"{request_id}-{approval.approval_id}")
    key_ids = [rq.dedup_key_id(k) for k in unsigned["dedup_keys"]]
    request_state = {
        "request": signed, "request_sha256": check.payload_sha256, "subject_digest": digest,
        "approval_id": approval.approval_id, "approval_target": target, "status": "open",
        "dedup_keys": key_ids, "signer_key_id": check.key_id, "output_dir": str(target_dir),
    }
    summary = report.summary
    metadata = {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": rq.KIND_REQUEST,
        "session_id": request_id,
        "signer": requester,
        "decision_count": 1,
        "approval_required_count": 1,
        "request_id": request_id,
        "reconciliation_id": report.reconciliation_id,
        "drift_status": report.drift_status,
        "alert_level": report.alert_level,
        "strategy": chosen.value,
        "action_count": unsigned["action_count"],
        "approval_id": approval.approval_id,
        "approval_state": approval.state.value,
        "subject_digest": digest,
        "request_sha256": check.payload_sha256,
        "signer_key_id": check.key_id,
        "release": unsigned["release"],
        "channel": report.channel,
        "drifted_endpoint_count": summary.get("drifted_endpoint_count", 0),
        "missing_target_count": summary.get("missing_target_count", 0),
        "stale_endpoint_count": summary.get("stale_endpoint_count", 0),
        "dedup_keys": unsigned["dedup_keys"],
        "actions": unsigned["actions"][:200],
        "evidence_refs": [*signed["evidence_refs"], f"approval://{approval.approval_id}"],
    }
    request_draft = EvidenceDraft(
        kind=rq.KIND_REQUEST, actor=requester, flow_run_id=flow_run_id, payload=metadata,
        subject=subject.model_copy(update={"status": "requested", "approval_id": approval.approval_id,
                                           "approval_state": approval.state.value, "success": True}),
    )

    def attach_draft(existing: str) -> EvidenceDraft:
        return EvidenceDraft(
            kind=rq.KIND_REQUEST, actor=requester, flow_run_id=flow_run_id,
            subject=subject.model_copy(update={"status": "attached", "success": True}),
            payload={"schema_version": "ringward.remediation-attach.v1", "attached_to": existing,
                     "candidate_request_id": request_id, "reconciliation_id": report.reconciliation_id,
                     "strategy": chosen.value, "dedup_keys": unsigned["dedup_keys"],
                     "reason": "an open request already covers this release, every target and drift class"},
        )

    outcome = repo.open_or_attach(
        dedup_keys=key_ids, approval=approval, request_id=request_id, request_state=request_state,
        request_draft=request_draft, attach_draft=attach_draft, actor=requester, now=now, flow_run_id=flow_run_id,
    )
    warnings = [] if unsigned["actions"] else [
        "reconciliation report has no drift items; remediation request will contain no actions"]
    if outcome.attached:
        entry = repo.get(REQUESTS, outcome.request_id)
        assert entry is not None
        existing = entry.value
        return {
            "schema_version": RESULT_SCHEMA, "valid": True, "attached": True, "request_id": outcome.request_id,
            "candidate_request_id": request_id, "approval_id": existing["approval_id"],
            "reconciliation_id": existing["request"]["reconciliation_id"],
            "action_count": existing["request"]["action_count"], "output_dir": existing.get("output_dir"),
            "warnings": warnings, "evidence": _evidence_ref(outcome.records[-1]),
        }
    files = {rq.REQUEST_FILE: dumps_document(signed), rq.REQUEST_MD: rq.render_request_markdown(signed)}
    _write_dir(target_dir, files, rq.REQUEST_FILE)
    return {
        "schema_version": RESULT_SCHEMA, "valid": True, "attached": False, "request_id": request_id,
        "reconciliation_id": report.reconciliation_id, "strategy": chosen.value,
        "action_count": unsigned["action_count"], "approval_id": approval.approval_id,
        "approval_state": approval.state.value, "approval_target": target, "subject_digest": digest,
        "expires_at": approval.expires_at.isoformat(), "signer_key_id": check.key_id,
        "request_sha256": check.payload_sha256, "output_dir": str(target_dir),
        "request": str(target_dir / rq.REQUEST_FILE), "warnings": warnings,
        "evidence": _evidence_ref(outcome.records[-1]),
    }


# --- execute -----------------------------------------------------------------------------------------


def _check_separation(requester: str) -> Any:
    def check(approval: Approval) -> None:
        approvers = [v.actor for v in approval.votes if v.decision is Decision.APPROVE]
        if not same_actor(approval.requester, requester):
            raise ApprovalBindingError(f"approval {approval.approval_id}: requester expected {requester!r}, "
                                       f"found {approval.requester!r}")
        if any(same_actor(actor, requester) for actor in approvers):
            raise SeparationOfDutiesError(f"approval {approval.approval_id}: approved by the requester "
                                          f"{requester!r}; the approver must be someone else")
    return check


def execute_remediation(
    store: Store,
    *,
    request: Path,
    approval_id: str,
    actor: str,
    trust_root: Path,
    now: datetime,
    output: Path | None = None,
    execution_environment: str | None = None,
    notes: str | None = None,
    promotion: PromotionInputs | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Execute an approved request once (see the module docstring), then run its republish / rollback
    actions through the promotion domain, each under its own approval (``promotion`` names them;
    what is missing is reported as awaiting its approval: :mod:`.promotion_actions`).

    Raises:
        InputError: bad options or an unreadable file (exit 2).
        SignatureError, MalformedDocumentError, BindingMismatchError, ApprovalBindingError,
        ApprovalStateError (expired, consumed, not approved, requester approving), ExecutionReplayError,
        NotFoundError: recorded, exit 1.
    """
    from ringward.operations.promotion.channel_ops import load_trust_root_file

    check_actor(actor)
    if not approval_id or len(approval_id) > 128:
        raise InputError(f"--approval: expected an approval id, found {approval_id[:80]!r}")
    if promotion is not None:
        promotion.check()
    root = load_trust_root_file(trust_root)
    document = _read_json(request, option="REQUEST")
    repo = state(store)
    subject = EvidenceSubject(approval_id=approval_id)
    context: dict[str, Any] = {"request_file": str(request), "approval_id": approval_id, "actor": actor}
    try:
        parsed = rq.parse_request(document, source=str(request))
        subject = subject.model_copy(update={"release_version": parsed.release.version, "channel": parsed.channel})
        context["request_id"] = parsed.request_id
        check = verify_signed_payload(document, trust_root=root, role=Role.REMEDIATION, now=now, label=rq.LABEL,
                                      schema_version=rq.REQUEST_SIGNATURE)
        entry = repo.get(REQUESTS, parsed.request_id)
        if entry is None:
            raise NotFoundError(f"remediation request {parsed.request_id}: not recorded in this store "
                                "(only requests opened by `ringward remediation request` can be executed)")
        recorded = entry.value
        if recorded["request_sha256"] != check.payload_sha256:
            raise BindingMismatchError(
                f"remediation request {parsed.request_id}: payload digest expected {recorded['request_sha256']} "
                f"(recorded), found {check.payload_sha256}")
        if approval_id != recorded["approval_id"] or parsed.approval.approval_id != recorded["approval_id"]:
            raise ApprovalBindingError(
                f"approval {approval_id}: the request {parsed.request_id} is bound to approval "
                f"{recorded['approval_id']}, found {approval_id}")
        if recorded.get("status") == "executed":
            raise ExecutionReplayError(
                f"remediation request {parsed.request_id}: already executed as {recorded.get('execution_id')} "
                f"at {recorded.get('executed_at')}; an execution happens once")
        digest = rq.subject_digest(document)
        if digest != recorded["subject_digest"]:  # pragma: no cover - implied by the payload digest
            raise BindingMismatchError(f"remediation request {parsed.request_id}: subject digest changed")
        execution_id = rq.execution_id_for(parsed.request_id, approval_id)
        approval = store.approvals.get(approval_id)
        execution = rq.build_execution(
            parsed, request_sha256=check.payload_sha256, executed_by=actor, created_at=now,
            execution_environment=execution_environment, notes=notes,
            approval={"approval_id": approval_id, "state": "approved", "approver_group": approval.approver_group,
                      "decided_by": approval.decided_by,
                      "decided_at": None if approval.decided_at is None else approval.decided_at.isoformat(),
                      "decision_reason": approval.decision_reason},
        )
        results = execution["action_results"]
        promotion_work = [r for r in results if r["work_item"] == "promotion_flow"]
        draft = EvidenceDraft(
            kind=rq.KIND_EXECUTION, actor=actor, flow_run_id=flow_run_id,
            subject=subject.model_copy(update={"status": "recorded", "execution_status": "recorded",
                                               "approval_state": "consumed", "success": True}),
            payload={
                "schema_version": "cavra.evidence.metadata.v1", "metadata_kind": rq.KIND_EXECUTION,
                "session_id": execution_id, "signer": actor, "execution_id": execution_id,
                "request_id": parsed.request_id, "reconciliation_id": parsed.reconciliation_id,
                "execution_status": "recorded", "strategy": parsed.strategy.value,
                "action_count": len(results), "promotion_flow_action_count": len(promotion_work),
                "handoff_action_count": len(results) - len(promotion_work), "approval_id": approval_id,
                "approval_state": "consumed", "release": execution["release"], "channel": parsed.channel,
                "request_sha256": check.payload_sha256, "action_results": results[:200],
                "evidence_refs": execution["evidence_refs"],
            },
        )
        _approval, records = repo.execute(
            request_id=parsed.request_id, expected_version=entry.version, approval_id=approval_id,
            check_approval=_check_separation(parsed.requested_by),
            consume={"action": rq.ACTION, "subject_digest": recorded["subject_digest"],
                     "target": recorded["approval_target"], "actor": actor},
            execution_id=execution_id, execution=execution, execution_draft=draft,
            dedup_keys=recorded.get("dedup_keys", []), actor=actor, now=now, flow_run_id=flow_run_id,
        )
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            _refuse(store, rq.KIND_EXECUTION, exc, actor=actor, now=now, subject=subject, payload=context,
                    flow_run_id=flow_run_id)
        raise
    target_dir = output if output is not None else Path.cwd() / DEFAULT_EXECUTION_DIR / execution_id
    files = {rq.EXECUTION_FILE: dumps_document(execution), rq.EXECUTION_MD: rq.render_execution_markdown(execution)}
    _write_dir(target_dir, files, rq.EXECUTION_FILE)
    # the remediation's own approval is used; the promotion operations check (and consume) theirs
    actions = run_promotion_actions(store, execution_id=execution_id, actor=actor, trust_root=trust_root, now=now,
                                    inputs=promotion, flow_run_id=flow_run_id)
    return {
        "schema_version": RESULT_SCHEMA, "valid": True, "execution_id": execution_id,
        "request_id": parsed.request_id, "approval_id": approval_id, "execution_status": "recorded",
        "action_count": len(results), "promotion_flow_actions": [r["action_id"] for r in promotion_work],
        "promotion_actions": actions["actions"], "promotion_complete": actions["complete"],
        "handoff_action_count": len(results) - len(promotion_work), "output_dir": str(target_dir),
        "execution": str(target_dir / rq.EXECUTION_FILE), "evidence": _evidence_ref(records[-1]),
    }


# --- handoff -----------------------------------------------------------------------------------------


def _request_id_of(document: Any, source: str) -> str:
    if not isinstance(document, dict):
        raise InputError(f"{source}: expected a remediation request or execution JSON object")
    schema = document.get("schema_version")
    if schema not in (rq.REQUEST_SCHEMA, rq.EXECUTION_SCHEMA):
        raise InputError(f"{source}: schema_version expected {rq.REQUEST_SCHEMA!r} or {rq.EXECUTION_SCHEMA!r}, "
                         f"found {schema!r}")
    request_id = document.get("request_id")
    if not isinstance(request_id, str) or not re.fullmatch(r"err_[0-9a-f]{12}", request_id):
        raise InputError(f"{source}: request_id expected err_<12 hex>, found {request_id!r}")
    return request_id


def handoff_remediation(
    store: Store,
    *,
    source: Path,
    providers: str,
    config: Path,
    actor: str,
    now: datetime,
    output: Path | None = None,
    hooks: Any = None,
    lookups: Mapping[str, Any] | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Hand an executed request's work to the providers through the connector platform.

    Raises:
        InputError / ConnectorConfigError: bad options, file or connector config (exit 2).
        ApprovalStateError: the request has not been executed under its approval (recorded, exit 1).
        NotFoundError: the request is not recorded (recorded, exit 1).
    """
    from ringward.core.delivery.event import ConnectorEvent, Severity
    from ringward.operations.delivery.delivery_ops import deliver_events, load_connector_config, select_destinations

    check_actor(actor)
    chosen = parse_providers(providers)
    connector_config = load_connector_config(config)
    selector = ",".join(p.value for p in chosen)
    select_destinations(connector_config, selector)  # every provider must have an enabled destination
    request_id = _request_id_of(_read_json(source, option="REQUEST_OR_EXECUTION"), str(source))
    repo = state(store)
    subject = EvidenceSubject()
    context = {"request_id": request_id, "providers": [p.value for p in chosen], "source": str(source)}
    try:
        entry = repo.get(REQUESTS, request_id)
        if entry is None:
            raise NotFoundError(f"remediation request {request_id}: not recorded in this store")
        recorded = entry.value
        request = recorded["request"]
        subject = EvidenceSubject(release_version=request["release"]["version"], channel=request.get("channel"),
                                  approval_id=recorded["approval_id"])
        if recorded.get("status") != "executed":
            raise ApprovalStateError(
                f"remediation request {request_id}: handoff refused before approval and execution (status "
                f"{recorded.get('status')}); approve approval {recorded['approval_id']} and run "
                "`ringward remediation execute` first")
        execution_entry = repo.get(EXECUTIONS, str(recorded["execution_id"]))
        if execution_entry is None:  # pragma: no cover - written in the same transaction as the status
            raise NotFoundError(f"remediation execution {recorded['execution_id']}: not recorded")
    except RingwardError as exc:
        _refuse(store, KIND_HANDOFF, exc, actor=actor, now=now, subject=subject, payload=context,
                flow_run_id=flow_run_id)
        raise
    execution = execution_entry.value
    handoff = build_handoff(request, execution, providers=chosen, requested_by=actor, created_at=now)
    stored = repo.get(HANDOFFS, handoff.handoff_id)
    if stored is not None:  # the same handoff again: keep the first record, deliver what is missing
        handoff = RemediationHandoff.model_validate(stored.value["handoff"])
    handoff_doc = handoff.model_dump(mode="json")
    handoff_actions = [r for r in execution["action_results"] if r["work_item"] == "handoff"]
    release = request["release"]
    event = ConnectorEvent(
        event_id=handoff.handoff_id,
        event_type="ringward.remediation.handoff",
        created_at=handoff.created_at,
        severity=Severity.CRITICAL if handoff.alert_level == "critical" else Severity.WARNING,
        title=f"Endpoint remediation {request_id}: {handoff.action_count} actions for {release['version']}",
        summary=(f"Approved endpoint drift remediation {request_id} ({handoff.strategy}) executed as "
                 f"{execution['execution_id']} under approval {handoff.approval_id}. "
                 f"{len(handoff_actions)} handoff work items; republish/rollback actions run through the "
                 "promotion flows under their own approvals. Re-check the approval before mutating endpoints."),
        source="ringward_remediation_handoff",
        release_version=str(release["version"]),
        channel=handoff.channel,
        session_id=request_id,
        actor=actor,
        attributes={
            "schema_version": HANDOFF_SCHEMA, "handoff_id": handoff.handoff_id, "request_id": request_id,
            "execution_id": execution["execution_id"], "approval_id": handoff.approval_id,
            "strategy": handoff.strategy, "action_count": handoff.action_count,
            "work_items": work_items(request["actions"], str(handoff.approval_id))[:EVENT_WORK_ITEMS],
            "execution_guard": {"requires_approved_approval": True, "approval_id": handoff.approval_id,
                                "private_connector_must_recheck_approval": True},
        },
    )
    (run,) = deliver_events([event], connector_config, store=store, providers=selector, actor=actor,
                            flow_run_id=flow_run_id, source="ringward_remediation_handoff", hooks=hooks,
                            lookups=lookups)
    deliveries: dict[str, list[dict[str, Any]]] = {}
    for result in run.results:
        deliveries.setdefault(result.provider, []).append(
            {"destination": result.destination, "status": result.status.value, "external_ref": result.external_ref})
    changes: list[tuple[str, str, Any | None, int]] = []
    drafts: list[EvidenceDraft] = []
    statuses: dict[str, str] = {}
    for provider in chosen:
        results = deliveries.get(provider.value, [])
        delivered = bool(results) and all(r["status"] in _DELIVERED for r in results)
        key = f"{handoff.handoff_id}/{provider.value}"
        current = repo.get(STATUSES, key)
        if current is not None:
            statuses[provider.value] = str(current.value["status"]["status"])
            continue
        refs = [r["external_ref"] for r in results if r["external_ref"]]
        record = record_status(handoff, [], provider=provider.value, status="delivered" if delivered else "queued",
                               recorded_at=now, recorded_by=actor, external_ref=refs[0] if refs else None,
                               notes="recorded by the handoff delivery", handoff_sha256=_sha256(handoff_doc))
        statuses[provider.value] = record.status.value
        changes.append((STATUSES, key, {"status": record.model_dump(mode="json"), "history": [record.status_id]}, 0))
        drafts.append(_status_draft(record, actor=actor, flow_run_id=flow_run_id, subject=subject))
    value = {"handoff": handoff_doc, "execution_id": execution["execution_id"],
             "deliveries": deliveries, "delivery_evidence_id": run.evidence_id}
    changes.insert(0, (HANDOFFS, handoff.handoff_id, value, 0 if stored is None else stored.version))
    failed = [p for p, rs in deliveries.items() if not all(r["status"] in _DELIVERED for r in rs)]
    drafts.insert(0, EvidenceDraft(
        kind=KIND_HANDOFF, actor=actor, flow_run_id=flow_run_id,
        subject=subject.model_copy(update={"status": "handed-off" if not failed else "delivery-incomplete",
                                           "approval_state": handoff.approval_state, "success": not failed}),
        payload={
            "schema_version": "cavra.evidence.metadata.v1", "metadata_kind": KIND_HANDOFF,
            "session_id": handoff.handoff_id, "signer": actor, "approval_required_count": 0,
            "handoff_id": handoff.handoff_id, "request_id": request_id, "execution_id": execution["execution_id"],
            "reconciliation_id": handoff.reconciliation_id, "approval_id": handoff.approval_id,
            "approval_state": handoff.approval_state, "providers": [p.value for p in handoff.providers],
            "provider_count": handoff.provider_count, "action_count": handoff.action_count,
            "strategy": handoff.strategy, "alert_level": handoff.alert_level, "release": handoff.release,
            "channel": handoff.channel, "delivery_mode": handoff.delivery_mode, "repeat": stored is not None,
            "deliveries": deliveries, "delivery_evidence_id": run.evidence_id,
            "handoff": {k: v for k, v in handoff_doc.items() if k != "remediation_request"},
            "evidence_refs": list(handoff.evidence_refs),
        },
    ))
    records = repo.decide(changes, drafts, actor=actor, now=now)
    target_dir = output if output is not None else Path.cwd() / DEFAULT_HANDOFF_DIR / handoff.handoff_id
    files = {HANDOFF_FILE: dumps_document(handoff_doc)}
    for name, payload in handoff.payloads.items():
        files[f"{name.replace('_', '-')}-handoff.json"] = dumps_document(payload)
    written = _write_dir(target_dir, files, HANDOFF_FILE)
    return {
        "schema_version": RESULT_SCHEMA, "valid": not failed, "handoff_id": handoff.handoff_id,
        "request_id": request_id, "execution_id": execution["execution_id"], "repeat": stored is not None,
        "providers": [p.value for p in chosen], "deliveries": deliveries, "statuses": statuses,
        "failed_providers": failed, "output_dir": str(target_dir), "files": written,
        "evidence": _evidence_ref(records[0]), "delivery_evidence_id": run.evidence_id,
    }


def _sha256(document: Mapping[str, Any]) -> str:
    return rq.canonical_sha256(dict(document))


def _status_draft(record: RemediationHandoffStatus, *, actor: str, flow_run_id: str | None,
                  subject: EvidenceSubject) -> EvidenceDraft:
    return EvidenceDraft(
        kind=KIND_STATUS, actor=actor, flow_run_id=flow_run_id,
        subject=subject.model_copy(update={"provider": record.provider.value, "status": record.status.value,
                                           "approval_id": record.approval_id, "success": True}),
        payload={
            "schema_version": "cavra.evidence.metadata.v1", "metadata_kind": KIND_STATUS,
            "session_id": record.status_id, "signer": actor, "status_id": record.status_id,
            "handoff_id": record.handoff_id, "request_id": record.request_id,
            "reconciliation_id": record.reconciliation_id, "provider": record.provider.value,
            "handoff_status": record.status.value, "external_ref": record.external_ref,
            "blocked_count": 1 if record.status.value in ("blocked", "failed") else 0,
            "status_record": record.model_dump(mode="json"), "evidence_refs": list(record.evidence_refs),
        },
    )


# --- status ------------------------------------------------------------------------------------------


def _handoff_id_of(handoff: str) -> str:
    if _HANDOFF_ID.fullmatch(handoff):
        return handoff
    path = Path(handoff)
    if not path.exists():
        raise InputError(f"HANDOFF {handoff}: expected a handoff id (erh_<12 hex>) or a handoff JSON file")
    document = _read_json(path, option="HANDOFF")
    if isinstance(document, dict) and isinstance(document.get("handoff"), dict):
        document = document["handoff"]
    value = document.get("handoff_id") if isinstance(document, dict) else None
    if not isinstance(value, str) or not _HANDOFF_ID.fullmatch(value):
        raise InputError(f"HANDOFF {handoff}: handoff_id expected erh_<12 hex>, found {value!r}")
    return value


def record_handoff_status(
    store: Store,
    *,
    handoff: str,
    provider: str,
    status: str,
    actor: str,
    now: datetime,
    note: str | None = None,
    external_ref: str | None = None,
    external_url: str | None = None,
    output: Path | None = None,
    output_root: Path | None = None,
    callback_payload: dict[str, Any] | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Record one §9.4 status of one provider's work item, checked against the transition table.

    ``callback_payload``: what the provider reported (already redacted by the caller).
    ``output``: the status record's directory; else
    ``<output_root or ./endpoint-remediation-handoff-status>/<status_id>``.

    Raises:
        InputError: unknown provider or status, provider not in the handoff (exit 2).
        NotFoundError: no such handoff (recorded, exit 1).
        StateError: the transition is not allowed (recorded, exit 1).
        StoreConflictError: another status was recorded concurrently (re-run).
    """
    check_actor(actor)
    if note is not None and len(note) > 4096:
        raise InputError(f"--note: expected at most 4096 characters, found {len(note)}")
    handoff_id = _handoff_id_of(handoff)
    repo = state(store)
    subject = EvidenceSubject(provider=provider[:256] or None)
    context = {"handoff_id": handoff_id, "provider": provider, "status": status}
    try:
        entry = repo.get(HANDOFFS, handoff_id)
        if entry is None:
            raise NotFoundError(f"handoff {handoff_id}: not recorded in this store "
                                "(hand off an executed request with `ringward remediation handoff`)")
        recorded = RemediationHandoff.model_validate(entry.value["handoff"])
        subject = subject.model_copy(update={"release_version": recorded.release, "channel": recorded.channel,
                                             "approval_id": recorded.approval_id})
        key_provider = provider.strip().lower().replace("-", "_")
        key = f"{handoff_id}/{key_provider}"
        current = repo.get(STATUSES, key)
        previous = [] if current is None else [RemediationHandoffStatus.model_validate(current.value["status"])]
        record = record_status(recorded, previous, provider=provider, status=status, recorded_at=now,
                               recorded_by=actor, external_ref=external_ref, external_url=external_url, notes=note,
                               callback_payload=callback_payload, handoff_sha256=_sha256(entry.value["handoff"]))
        history = [] if current is None else list(current.value.get("history", []))
        records = repo.decide(
            [(STATUSES, key, {"status": record.model_dump(mode="json"), "history": [*history, record.status_id]},
              0 if current is None else current.version)],
            [_status_draft(record, actor=actor, flow_run_id=flow_run_id, subject=subject)],
            actor=actor, now=now,
        )
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            _refuse(store, KIND_STATUS, exc, actor=actor, now=now, subject=subject, payload=context,
                    flow_run_id=flow_run_id)
        raise
    target_dir = output if output is not None else (output_root or Path.cwd() / DEFAULT_STATUS_DIR) / record.status_id
    status_doc = dumps_document(record.model_dump(mode="json"))
    _write_dir(target_dir, {STATUS_FILE: status_doc}, STATUS_FILE)
    return {
        "schema_version": RESULT_SCHEMA, "valid": True, "status_id": record.status_id, "handoff_id": handoff_id,
        "status_file": str(target_dir / STATUS_FILE),
        "provider": record.provider.value, "status": record.status.value,
        "previous_status": previous[0].status.value if previous else None,
        "final": record.status.value in ("completed", "failed", "cancelled"),
        "evidence": _evidence_ref(records[0]),
    }
