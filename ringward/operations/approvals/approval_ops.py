"""Approval operations: request, decide, consume, list, expire, import/export.

The rules live in :mod:`ringward.core.approvals.rules`; the store applies them inside one
compare-and-swap transaction per decision (:mod:`ringward.store.approvals.repo`). Executors in
later features call :func:`consume_approval` -- the only way an execution uses an approval.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ringward.core.approvals.rules import (
    DEFAULT_TTL,
    MAX_TTL,
    Approval,
    ApprovalRequest,
    ApprovalState,
    Decision,
)
from ringward.core.common.jsonio import dumps_canonical, dumps_document
from ringward.core.errors import InputError
from ringward.core.evidence.interop import approval_to_reference, parse_approvals_document
from ringward.operations.common.files import atomic_write, read_capped
from ringward.store import Store

MAX_IMPORT_BYTES = 256 * 1024 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_request(**fields: Any) -> ApprovalRequest:
    """Validate a request once, at the boundary; the first problem names its field.

    Raises:
        InputError: e.g. ``subject_digest: expected sha256:<64 lowercase hex>, found 'abc'``.
    """
    try:
        return ApprovalRequest(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "request"
        found = first.get("input")
        hint = {
            "subject_digest": "expected sha256:<64 lowercase hex>",
            "action": "expected letters, digits and ._:- (starting alphanumeric)",
        }.get(field, first["msg"])
        raise InputError(f"{field}: {hint}, found {found!r}") from exc


def request_approval(
    store: Store,
    *,
    action: str,
    subject_digest: str,
    target: str,
    requester: str,
    expires_in: timedelta = DEFAULT_TTL,
    quorum: int = 1,
    approver_group: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> Approval:
    """Open a pending approval bound to (action, subject digest, target)."""
    if not timedelta(0) < expires_in <= MAX_TTL:
        raise InputError(f"expires_in: expected between 1s and {MAX_TTL}, found {expires_in}")
    request = parse_request(
        action=action,
        subject_digest=subject_digest,
        target=target,
        requester=requester,
        quorum=quorum,
        approver_group=approver_group,
        note=note,
    )
    moment = now or _utcnow()
    approval, _ = store.approvals.create(request, expires_at=moment + expires_in, now=moment, flow_run_id=flow_run_id)
    return approval


def decide_approval(
    store: Store,
    approval_id: str,
    *,
    decision: Decision,
    actor: str,
    reason: str,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> Approval:
    """Approve, deny or revoke (one compare-and-swap transaction, one evidence record)."""
    approval, _ = store.approvals.decide(
        approval_id,
        actor=actor,
        decision=decision,
        reason=reason,
        now=now or _utcnow(),
        flow_run_id=flow_run_id,
    )
    return approval


def consume_approval(
    store: Store,
    approval_id: str,
    *,
    action: str,
    subject_digest: str,
    target: str,
    actor: str,
    execution_ref: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> Approval:
    """Use an approval for one execution: checks binding, state and expiry and marks it consumed
    in the same transaction, so a second execution fails (``ApprovalConsumedError``).

    Raises:
        ApprovalNotFoundError, ApprovalBindingError, ApprovalConsumedError, ApprovalExpiredError,
        ApprovalStateError: see :func:`ringward.core.approvals.check_consume`.
    """
    approval, _ = store.approvals.consume(
        approval_id,
        action=action,
        subject_digest=subject_digest,
        target=target,
        actor=actor,
        execution_ref=execution_ref,
        now=now or _utcnow(),
        flow_run_id=flow_run_id,
    )
    return approval


def show_approval(store: Store, approval_id: str) -> Approval:
    return store.approvals.get(approval_id)


def list_approvals(
    store: Store,
    *,
    state: ApprovalState | None = None,
    target: str | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[Approval], int]:
    return store.approvals.list(now=now or _utcnow(), state=state, target=target, limit=limit, offset=offset)


def expire_due_approvals(store: Store, *, now: datetime | None = None) -> list[str]:
    return store.approvals.expire_due(now=now or _utcnow())


def export_approvals_json(store: Store, output: Path, *, now: datetime | None = None, overwrite: bool = False) -> int:
    """Write a reference ``approvals.json`` (``{"items": [...]}`` newest first, like its list)."""
    moment = now or _utcnow()
    items = [
        approval_to_reference(approval, now=moment, imported=None if raw is None else json.loads(raw))
        for approval, raw in store.approvals.all_with_imports()
    ]
    items.sort(key=lambda item: (item["requested_at"], item["approval_id"]), reverse=True)
    atomic_write(output, dumps_document({"items": items}), overwrite=overwrite)
    return len(items)


def import_approvals_json(store: Store, source: Path, *, actor: str, now: datetime | None = None) -> dict[str, Any]:
    """Load a reference ``approvals.json``; existing ids are skipped. Imported approvals are
    history: none can authorise an execution unless decided again in Ringward (AP6)."""
    moment = now or _utcnow()
    data = read_capped(source, MAX_IMPORT_BYTES, source=str(source))
    imported: list[str] = []
    skipped: list[str] = []
    for approval, item in parse_approvals_document(data, source=str(source)):
        inserted, _ = store.approvals.insert_imported(
            approval, imported_json=dumps_canonical(item).decode("utf-8"), actor=actor, now=moment
        )
        (imported if inserted else skipped).append(approval.approval_id)
    return {"imported": len(imported), "skipped": len(skipped), "approval_ids": imported}
