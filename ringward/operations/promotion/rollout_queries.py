"""The auditor's views of rollouts: drill-down (show), listing by current state and search of
steps (package-internal; see :mod:`ringward.operations.promotion.rollout_ops`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ringward.core.errors import (
    NotFoundError,
)
from ringward.core.evidence.records import EvidenceRecord
from ringward.core.promotion import rollout as ro
from ringward.operations.promotion.rollout_base import _evidence_ref, ledger, utc_now
from ringward.store.promotion.executions_repo import RolloutStep, StepFilter

if TYPE_CHECKING:
    from ringward.store import Store


# --- the auditor's views ---------------------------------------------------------------------------------


def _step_view(store: Store, step: RolloutStep, cache: dict[int, EvidenceRecord]) -> dict[str, Any]:
    doc = step.to_document()
    if step.evidence_id is not None:
        record = cache.get(step.evidence_id) or store.get_evidence(step.evidence_id)
        cache[step.evidence_id] = record
        doc["evidence"] = _evidence_ref(record)
    return doc


def _approval_view(store: Store, approval_id: str, now: datetime) -> dict[str, Any]:
    try:
        approval = store.approvals.get(approval_id)
    except NotFoundError:
        return {"approval_id": approval_id, "missing": True}
    doc = approval.to_document(now)
    doc["votes"] = [
        {"actor": v.actor, "decision": v.decision.value, "reason": v.reason, "at": v.at.astimezone(UTC).isoformat(),
         "evidence_id": v.evidence_id}
        for v in approval.votes
    ]
    return doc


def _deliveries(store: Store, step: RolloutStep) -> list[dict[str, Any]]:
    """The delivery log's entries for this step's audit event (its id is the execution or rollback
    id), and the delivery evidence records (found by the event's ring, environment and release)."""
    from ringward.core.delivery.results import DELIVERY_EVIDENCE_KIND
    from ringward.core.evidence.query import EvidenceQuery
    from ringward.operations.delivery.delivery_ops import delivery_history

    event_id = step.ref_id
    history = delivery_history(store, event_id=event_id, limit=500)["items"]
    records = []
    before: int | None = None
    for _ in range(20):  # delivery evidence of this event: newest first, bounded
        page = store.search_evidence(EvidenceQuery(
            kind=DELIVERY_EVIDENCE_KIND, ring=step.ring, environment=step.environment,
            release_version=step.release_version, before_id=before, limit=500, with_total=False))
        records += [r for r in page.items if r.payload.get("event_id") == event_id]
        if page.next_before_id is None:
            break
        before = page.next_before_id
    return [
        {
            "destination": item.get("destination"),
            "provider": item.get("provider"),
            "state": item.get("state"),
            "attempt_count": item.get("attempt_count"),
            "status_code": item.get("status_code"),
            "succeeded_at": item.get("succeeded_at"),
            "error": item.get("error"),
        }
        for item in history
    ] + [{"evidence": _evidence_ref(r), "delivery_success": r.payload.get("delivery_success")} for r in records]


def _resolve_rollout_id(store: Store, ident: str) -> str:
    book = ledger(store)
    if ident.startswith("apr_"):
        rows = book.by_approval(ident)
    elif ident[:4] in ("rpr_", "rpe_", "rrq_", "rre_"):
        rows = book.by_ref(ident)
    else:
        rows = book.for_rollout(ident)
    if not rows:
        raise NotFoundError(f"rollout {ident!r}: no rollout, request, execution, rollback or approval with that id "
                            "is recorded")
    return rows[0].rollout_id


def show_rollout(store: Store, ident: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The drill-down: rollout -> requests -> approvals (votes: who, when, why) -> executions ->
    rollback requests -> rollbacks -> audits and deliveries, each with its evidence record."""
    moment = now or utc_now()
    rollout_id = _resolve_rollout_id(store, ident)
    steps = ledger(store).for_rollout(rollout_id)
    cache: dict[int, EvidenceRecord] = {}
    views = {s.id: _step_view(store, s, cache) for s in steps}
    approvals: dict[str, dict[str, Any]] = {}

    def approval(aid: str | None) -> dict[str, Any] | None:
        if aid is None:
            return None
        if aid not in approvals:
            approvals[aid] = _approval_view(store, aid, moment)
        return approvals[aid]

    def audits_of(ref: str) -> list[dict[str, Any]]:
        return [views[s.id] for s in steps if s.step == "audit" and s.ref_id == ref]

    promotions = []
    for req in (s for s in steps if s.step == "request"):
        executions = []
        for ex in (s for s in steps if s.step == "execution" and s.parent_ref == req.ref_id):
            rollback_requests = [
                {**views[rr.id], "approval": approval(rr.approval_id)}
                for rr in steps if rr.step == "rollback-request" and rr.parent_ref == ex.ref_id
            ]
            rollbacks = [
                {**views[rb.id], "approval": approval(rb.approval_id), "audits": audits_of(rb.ref_id),
                 "deliveries": _deliveries(store, rb)}
                for rb in steps if rb.step == "rollback" and rb.parent_ref == ex.ref_id
            ]
            executions.append({**views[ex.id], "approval": approval(ex.approval_id), "audits": audits_of(ex.ref_id),
                               "deliveries": _deliveries(store, ex), "rollback_requests": rollback_requests,
                               "rollbacks": rollbacks})
        promotions.append({"request": views[req.id], "approval": approval(req.approval_id), "executions": executions})
    latest = steps[-1]
    return {
        "schema_version": "ringward.rollout-drilldown.v1",
        "rollout_id": rollout_id,
        "environment": latest.environment,
        "release_version": latest.release_version,
        "current_ring": latest.ring,
        "current_status": latest.status,
        "rollout": [views[s.id] for s in steps if s.step in ("capture", "verify")],
        "promotions": promotions,
        "refusals": _refusals_of(store, rollout_id),
        "timeline": [views[s.id] for s in steps],
    }


def _refusals_of(store: Store, rollout_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    from ringward.core.evidence.query import EvidenceQuery

    page = store.search_evidence(EvidenceQuery(kind=ro.KIND_REFUSAL, limit=500, with_total=False))
    out = []
    for record in page.items:
        if record.payload.get("rollout_id") == rollout_id:
            out.append({"step": record.payload.get("step"), "code": record.payload.get("code"),
                        "message": record.payload.get("message"), "actor": record.actor,
                        "at": record.payload.get("at"), "evidence": _evidence_ref(record)})
            if len(out) >= limit:
                break
    return out


def list_rollouts(store: Store, filters: StepFilter, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Rollouts by their state after their latest step, newest first (filters apply to that state)."""
    rows, total = ledger(store).latest_per_rollout(filters, limit=limit, offset=offset)
    return {"items": [r.to_document() for r in rows], "total": total, "limit": limit, "offset": offset}


def search_rollouts(store: Store, filters: StepFilter, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Every rollout step (capture, verify, request, execution, rollback-request, rollback, audit)."""
    rows, total = ledger(store).search(filters, limit=limit, offset=offset)
    return {"items": [r.to_document() for r in rows], "total": total, "limit": limit, "offset": offset}
