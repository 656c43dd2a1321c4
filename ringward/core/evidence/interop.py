"""Interop with the reference system's ``metadata.json`` and ``approvals.json`` (cavra-spec §5, §6).

Both files are ``{"items": [...]}``. Import parses untrusted JSON strictly, once, into Ringward
records; export writes items the reference's stores load unchanged (same field names, schema
strings and state names).

What import does NOT trust: an imported ``approved`` approval carries no approver decisions
recorded in Ringward, so it can never authorise an execution (rule AP6 in
:mod:`ringward.core.approvals.rules`); it stays in the store as history.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ringward.core.approvals.rules import (
    ACTION_PATTERN,
    APPROVAL_SCHEMA,
    Approval,
    ApprovalState,
    Decision,
)
from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import InputError
from ringward.core.evidence.records import (
    KIND_PATTERN,
    EvidenceDraft,
    EvidenceRecord,
    EvidenceSubject,
    format_timestamp,
)

METADATA_SCHEMA = "cavra.evidence.metadata.v1"
REFERENCE_APPROVAL_SCHEMA = "cavra.approval.v1"
#: kind given to reference session bundles, which have no ``metadata_kind``
SESSION_KIND = "session-evidence"
DEFAULT_APPROVER_GROUP = "Change Advisory Board"
#: payload key ``migrate reference`` adds to an imported metadata item (where it came from, and that
#: Ringward did not verify it); export drops it so the reference gets its item back unchanged
IMPORT_MARKER = "ringward_import"
MAX_ITEMS = 1_000_000

#: reference approval states (cavra-spec §5.2) -> Ringward's
_STATE_IN = {
    "pending": ApprovalState.PENDING,
    "approved": ApprovalState.APPROVED,
    "denied": ApprovalState.DENIED,
    "rejected": ApprovalState.DENIED,
    "expired": ApprovalState.EXPIRED,
    "break_glass": ApprovalState.APPROVED,
}
_STATE_OUT = {
    ApprovalState.PENDING: "pending",
    ApprovalState.APPROVED: "approved",
    ApprovalState.DENIED: "denied",
    ApprovalState.EXPIRED: "expired",
    # the reference has no "revoked"; a revoked approval authorises nothing, like a denial
    ApprovalState.REVOKED: "denied",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _items(data: bytes, *, source: str) -> list[Any]:
    try:
        document = loads_strict(data, source=source, max_bytes=len(data) + 1)
    except Exception as exc:
        raise InputError(str(exc)) from exc
    items = document.get("items") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise InputError(f'{source}: expected {{"items": [...]}}, found {type(document).__name__}')
    if len(items) > MAX_ITEMS:
        raise InputError(f"{source}: {len(items)} items, expected at most {MAX_ITEMS}")
    return items


def _text(item: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = item.get(name)
        if isinstance(value, str) and value and len(value) <= 256 and not _CONTROL.search(value):
            return value
    return None


# --- metadata.json ---------------------------------------------------------------------------------


def metadata_subject(item: dict[str, Any]) -> EvidenceSubject:
    """The searchable fields of a reference metadata item (string values only)."""
    target = _text(item, "deployment_target")
    targets = item.get("deployment_targets")
    if target is None and isinstance(targets, list) and targets:
        target = _text({"t": targets[0]}, "t")
    success = item.get("success")
    return EvidenceSubject(
        release_version=_text(item, "release_version", "version", "runtime_version"),
        runtime=_text(item, "runtime", "runtime_name"),
        channel=_text(item, "channel", "target_channel"),
        ring=_text(item, "target_ring", "ring"),
        deployment_target=target,
        environment=_text(item, "environment"),
        status=_text(item, "rollout_status", "status"),
        approval_id=_text(item, "approval_id"),
        approval_state=_text(item, "approval_state"),
        execution_status=_text(item, "promotion_execution_status", "rollback_execution_status", "execution_status"),
        provider=_text(item, "provider"),
        success=success if isinstance(success, bool) else None,
    )


def parse_metadata_document(data: bytes, *, source: str, actor: str) -> list[EvidenceDraft]:
    """Drafts for every item of a reference ``metadata.json`` (payload = the item verbatim).

    Raises:
        InputError: not strict JSON, not ``{"items": [...]}``, or an item without session_id.
    """
    return [
        metadata_item_draft(item, where=f"{source}: items[{index}]", actor=actor)
        for index, item in enumerate(_items(data, source=source))
    ]


def metadata_item_draft(item: Any, *, where: str, actor: str) -> EvidenceDraft:
    """The draft for one reference metadata item (payload = the item verbatim).

    Raises:
        InputError: not an object, no session_id, or a kind Ringward cannot name.
    """
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object, found {type(item).__name__}")
    session_id = item.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise InputError(f"{where}: metadata must include session_id")
    kind = item.get("metadata_kind", SESSION_KIND)
    if not isinstance(kind, str) or not re.match(KIND_PATTERN, kind) or len(kind) > 128:
        raise InputError(f"{where}.metadata_kind: expected a kind name, found {kind!r}")
    try:
        return EvidenceDraft(kind=kind, actor=actor, subject=metadata_subject(item), payload=item)
    except ValidationError as exc:
        raise InputError(f"{where}: {exc.errors()[0]['msg']}") from exc


def metadata_import_key(draft: EvidenceDraft) -> str:
    """The idempotency key of an imported metadata item: ``metadata:<kind>:<payload sha256>``.

    The store keeps it unique, so an item (same kind, same canonical payload) is imported once
    however many imports of it run, at once or one after another.
    """
    return f"metadata:{draft.kind}:{draft.payload_sha256()}"


def record_to_metadata(record: EvidenceRecord) -> dict[str, Any]:
    """A reference metadata item for one record.

    A record imported from a reference file (its payload has a ``session_id``) is exported as
    it was imported; Ringward's own records get ``session_id = ringward-<id>``.
    """
    payload = record.payload
    if isinstance(payload.get("session_id"), str) and payload["session_id"]:
        item = {key: value for key, value in payload.items() if key != IMPORT_MARKER}
    else:
        subject = record.subject
        item = {
            "session_id": f"ringward-{record.id}",
            "metadata_kind": record.kind,
            "created_at": format_timestamp(record.created_at),
            "signer": record.actor,
            "rollout_status": subject.status,
            "environment": subject.environment,
            "deployment_target": subject.deployment_target,
            "deployment_targets": [subject.deployment_target] if subject.deployment_target else [],
            "target_ring": subject.ring,
            "channel": subject.channel,
            "version": subject.release_version,
            "approval_id": subject.approval_id,
            "approval_state": subject.approval_state,
            "promotion_execution_status": subject.execution_status,
            "provider": subject.provider,
            "success": subject.success,
            "bundle_dir": record.bundle_dir,
            "files": [a.name for a in record.artifacts],
            "ringward": {
                "evidence_id": record.id,
                "record_hash": record.record_hash,
                "previous_hash": record.previous_hash,
                "payload_sha256": record.payload_sha256,
                "actor": record.actor,
                "flow_run_id": record.flow_run_id,
                "payload": payload,
            },
        }
        item = {key: value for key, value in item.items() if value is not None}
    # the reference store's envelope and NOT NULL counters (caller keys win, as in the reference)
    item.setdefault("schema_version", METADATA_SCHEMA)
    item.setdefault("product", "CAVRA")
    for counter in ("decision_count", "blocked_count", "approval_required_count"):
        item.setdefault(counter, 0)
    return item


# --- approvals.json --------------------------------------------------------------------------------


def _time(value: Any, *, where: str) -> datetime:
    if not isinstance(value, str):
        raise InputError(f"{where}: expected an ISO 8601 time, found {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"{where}: expected an ISO 8601 time, found {value!r}") from exc
    if parsed.tzinfo is None:
        raise InputError(f"{where}: expected a UTC offset in {value!r}")
    return parsed.astimezone(UTC)


def parse_approvals_document(data: bytes, *, source: str) -> list[tuple[Approval, dict[str, Any]]]:
    """(approval, original item) for every item of a reference ``approvals.json``.

    Raises:
        InputError: malformed JSON or an item the reference store itself would refuse.
    """
    out: list[tuple[Approval, dict[str, Any]]] = []
    for index, item in enumerate(_items(data, source=source)):
        approval = approval_from_reference_item(item, where=f"{source}: items[{index}]")
        out.append((approval, item))
    return out


def approval_from_reference_item(item: Any, *, where: str) -> Approval:
    """The Ringward approval (origin ``import``) for one ``cavra.approval.v1`` item.

    Raises:
        InputError: an item the reference store itself would refuse, or times without an offset.
    """
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object, found {type(item).__name__}")
    approval_id = item.get("approval_id")
    if not isinstance(approval_id, str) or not _ID.match(approval_id):
        raise InputError(
            f"{where}: approval must include approval_id (letters, digits, _.:-), found {approval_id!r}"
        )
    state_text = item.get("state")
    if state_text not in _STATE_IN:
        raise InputError(f"{where}: unsupported approval state: {state_text}")
    raw_decision = item.get("decision")
    decision: dict[str, Any] = raw_decision if isinstance(raw_decision, dict) else {}
    raw_metadata = decision.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    action = decision.get("action_type")
    if not isinstance(action, str) or not re.match(ACTION_PATTERN, action) or len(action) > 128:
        action = "reference-decision"
    # the reference binds the whole decision dict; pin exactly that as the subject digest
    bound = decision if decision else item
    subject_digest = "sha256:" + hashlib.sha256(dumps_canonical(bound)).hexdigest()
    target = _text(metadata, "target_ring", "target", "target_channel") or _text(item, "session_id") or "unknown"
    requester = _text(item, "requested_by") or "unknown"
    created_at = _time(item.get("requested_at"), where=f"{where}.requested_at")
    expires_at = _time(item.get("expires_at"), where=f"{where}.expires_at")
    decided_at = item.get("decided_at")
    try:
        return Approval(
            approval_id=approval_id,
            action=action,
            subject_digest=subject_digest,
            target=target,
            requester=requester,
            approver_group=_text(item, "approver_group"),
            quorum=1,
            state=_STATE_IN[state_text],
            created_at=created_at,
            expires_at=expires_at,
            decided_at=None if decided_at is None else _time(decided_at, where=f"{where}.decided_at"),
            decided_by=_text(item, "decided_by"),
            decision_reason=item.get("decision_reason") if isinstance(item.get("decision_reason"), str) else None,
            origin="import",
            note=f"imported from {REFERENCE_APPROVAL_SCHEMA}"
            + (" (break_glass)" if state_text == "break_glass" else ""),
        )
    except ValidationError as exc:
        raise InputError(f"{where}: {exc.errors()[0]['msg']}") from exc


def approval_to_reference(
    approval: Approval, *, now: datetime, imported: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``cavra.approval.v1`` item for one approval (an imported one keeps its other fields)."""
    state = approval.effective_state(now)
    decision_id = f"{approval.approval_id}:decision"
    history: list[dict[str, Any]] = [
        {
            "event": "requested",
            "actor": approval.requester,
            "timestamp": approval.created_at.isoformat(),
            "reason": approval.note,
        }
    ]
    event_names = {
        Decision.APPROVE: "approved",
        Decision.DENY: "denied",
        Decision.REVOKE: "revoked",
        Decision.EXPIRE: "expired",
        Decision.CONSUME: "consumed",
    }
    history += [
        {
            "event": event_names[v.decision],
            "actor": v.actor,
            "timestamp": v.at.isoformat(),
            "reason": v.reason,
        }
        for v in approval.votes
    ]
    item: dict[str, Any] = dict(imported or {})
    if not imported:
        item.update(
            {
                "decision_id": decision_id,
                "session_id": approval.target,
                "correlation_id": approval.approval_id,
                "decision": {
                    "decision_id": decision_id,
                    "session_id": approval.target,
                    "action_type": approval.action,
                    "approver_group": approval.approver_group or DEFAULT_APPROVER_GROUP,
                    "metadata": {"target": approval.target, "subject_digest": approval.subject_digest},
                },
                "evidence_refs": [f"approval://{approval.approval_id}"],
            }
        )
        item["history"] = history
    elif approval.votes:
        item["history"] = list(item.get("history") or []) + history[1:]
    item.update(
        {
            "approval_id": approval.approval_id,
            "state": _STATE_OUT[state],
            "approver_group": approval.approver_group or item.get("approver_group") or DEFAULT_APPROVER_GROUP,
            "requested_by": approval.requester,
            "requested_at": approval.created_at.isoformat(),
            "expires_at": approval.expires_at.isoformat(),
        }
    )
    if approval.decided_at is not None:
        item.update(
            {
                "decided_by": approval.decided_by,
                "decided_at": approval.decided_at.isoformat(),
                "decision_reason": approval.decision_reason,
            }
        )
    item["ringward"] = {
        "schema_version": APPROVAL_SCHEMA,
        "state": approval.state.value,
        "effective_state": state.value,
        "action": approval.action,
        "subject_digest": approval.subject_digest,
        "target": approval.target,
        "quorum": approval.quorum,
        "approvers": approval.approvers(),
        "consumed_at": None if approval.consumed_at is None else approval.consumed_at.isoformat(),
        "consumed_by": approval.consumed_by,
        "execution_ref": approval.execution_ref,
        "origin": approval.origin,
    }
    return item
