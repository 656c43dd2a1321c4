"""Approvals in the store: create, decide (compare-and-swap), consume (exactly once), list.

Every method that changes an approval runs one write transaction that (1) locks the approval
row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` holds the database lock),
(2) re-reads it and applies the core rules (:mod:`ringward.core.approvals.rules`), (3) updates it with
``WHERE version = :read_version AND state = :read_state`` and requires exactly one row, and
(4) appends the transition's evidence record -- all or nothing.

A decision that consumes an approval together with writes of its own (the endpoint export:
consume the channel-promotion approval, raise the channel's high-water mark and append the
export record in one transaction) calls :meth:`ApprovalRepository.consume_in` with its own
write connection instead of :meth:`ApprovalRepository.consume`, which opens a transaction.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ringward.core.approvals.rules import (
    Approval,
    ApprovalRequest,
    ApprovalState,
    ApprovalVote,
    Decision,
    check_consume,
    check_decision,
    transition_draft,
)
from ringward.core.errors import (
    ApprovalExpiredError,
    ApprovalNotFoundError,
    InputError,
    RingwardError,
    StoreConflictError,
)
from ringward.core.evidence.records import EvidenceRecord
from ringward.store.db import Transactions, retry_unique
from ringward.store.evidence.repo import append_locked, lock_head
from ringward.store.tables import approval_decision_table as dec_t
from ringward.store.tables import approval_table as ap_t

#: actor named on expiry transitions nobody asked for
EXPIRY_ACTOR = "ringward:expiry"
MAX_LIST_PAGE = 500


def new_approval_id() -> str:
    """``apr_`` + 12 hex characters, the reference's id format (cavra-spec §5.1)."""
    return "apr_" + secrets.token_hex(6)


def _row_to_approval(row: Any, votes: list[ApprovalVote]) -> Approval:
    return Approval(
        approval_id=row.approval_id,
        action=row.action,
        subject_digest=row.subject_digest,
        target=row.target,
        requester=row.requester,
        approver_group=row.approver_group,
        quorum=row.quorum,
        state=ApprovalState(row.state),
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        consumed_at=row.consumed_at,
        consumed_by=row.consumed_by,
        execution_ref=row.execution_ref,
        origin=row.origin,
        note=row.note,
        version=row.version,
        votes=tuple(votes),
    )


def _votes(conn: Connection, approval_ids: list[str]) -> dict[str, list[ApprovalVote]]:
    out: dict[str, list[ApprovalVote]] = {aid: [] for aid in approval_ids}
    if not approval_ids:
        return out
    rows = conn.execute(sa.select(dec_t).where(dec_t.c.approval_id.in_(approval_ids)).order_by(dec_t.c.id.asc())).all()
    for r in rows:
        out[r.approval_id].append(
            ApprovalVote(
                actor=r.actor,
                decision=Decision(r.decision),
                reason=r.reason,
                at=r.created_at,
                evidence_id=r.evidence_id,
            )
        )
    return out


def load(conn: Connection, approval_id: str, *, for_update: bool = False) -> Approval:
    query = sa.select(ap_t).where(ap_t.c.approval_id == approval_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise ApprovalNotFoundError(f"approval {approval_id!r} not found")
    return _row_to_approval(row, _votes(conn, [approval_id])[approval_id])


def _effective_clause(state: ApprovalState, now: datetime) -> sa.ColumnElement[bool]:
    live = sa.and_(ap_t.c.consumed_at.is_(None), ap_t.c.expires_at <= now)
    if state is ApprovalState.PENDING:
        return sa.and_(ap_t.c.state == "pending", ap_t.c.expires_at > now)
    if state is ApprovalState.APPROVED:
        return sa.and_(ap_t.c.state == "approved", sa.not_(live))
    if state is ApprovalState.EXPIRED:
        return sa.or_(ap_t.c.state == "expired", sa.and_(ap_t.c.state.in_(["pending", "approved"]), live))
    return ap_t.c.state == state.value


class ApprovalRepository:
    """Approval operations over one store (:class:`~ringward.store.db.Transactions`)."""

    def __init__(self, store: Transactions) -> None:
        self._store = store

    # --- reads ---------------------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval:
        with self._store.reading() as conn:
            return load(conn, approval_id)

    def list(
        self,
        *,
        now: datetime,
        state: ApprovalState | None = None,
        target: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[builtins.list[Approval], int]:
        """Newest first; ``state`` filters on the effective state at ``now``."""
        if not 1 <= limit <= MAX_LIST_PAGE:
            raise InputError(f"limit: expected 1..{MAX_LIST_PAGE}, found {limit}")
        if offset < 0:
            raise InputError(f"offset: expected >= 0, found {offset}")
        clauses: list[sa.ColumnElement[bool]] = []
        if state is not None:
            clauses.append(_effective_clause(state, now))
        if target is not None:
            clauses.append(ap_t.c.target == target)
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(ap_t)
                .where(*clauses)
                .order_by(ap_t.c.created_at.desc(), ap_t.c.approval_id.asc())
                .limit(limit)
                .offset(offset)
            ).all()
            total = int(conn.execute(sa.select(sa.func.count()).select_from(ap_t).where(*clauses)).scalar_one())
            votes = _votes(conn, [r.approval_id for r in rows])
        return [_row_to_approval(r, votes[r.approval_id]) for r in rows], total

    def all_with_imports(self, *, batch: int = 500) -> builtins.list[tuple[Approval, str | None]]:
        """Every approval (oldest first) with the verbatim reference item it was imported from."""
        out: builtins.list[tuple[Approval, str | None]] = []
        offset = 0
        with self._store.reading() as conn:
            while True:
                rows = conn.execute(
                    sa.select(ap_t)
                    .order_by(ap_t.c.created_at.asc(), ap_t.c.approval_id.asc())
                    .limit(batch)
                    .offset(offset)
                ).all()
                if not rows:
                    return out
                votes = _votes(conn, [r.approval_id for r in rows])
                out.extend((_row_to_approval(r, votes[r.approval_id]), r.imported) for r in rows)
                offset += batch

    # --- writes --------------------------------------------------------------------------------

    def create(
        self, request: ApprovalRequest, *, expires_at: datetime, now: datetime, flow_run_id: str | None = None
    ) -> tuple[Approval, EvidenceRecord]:
        if expires_at <= now:
            raise InputError(f"expires_at: expected a time after {now.isoformat()}, found {expires_at.isoformat()}")
        approval = Approval(
            approval_id=new_approval_id(),
            action=request.action,
            subject_digest=request.subject_digest,
            target=request.target,
            requester=request.requester,
            approver_group=request.approver_group,
            quorum=request.quorum,
            state=ApprovalState.PENDING,
            created_at=now.astimezone(UTC),
            expires_at=expires_at.astimezone(UTC),
            note=request.note,
        )
        draft = transition_draft(
            before=None,
            after=approval,
            event="requested",
            actor=request.requester,
            reason=request.note,
            now=now,
            flow_run_id=flow_run_id,
        )
        with self._store.writing() as conn:
            conn.execute(sa.insert(ap_t).values(**_row_values(approval)))
            (record,) = append_locked(conn, [draft], now)
        return approval, record

    def insert_imported(
        self, approval: Approval, *, imported_json: str, actor: str, now: datetime
    ) -> tuple[bool, EvidenceRecord | None]:
        """Store an approval read from a reference ``approvals.json`` (origin ``import``).

        Returns (inserted, evidence record); an existing id is left untouched. Insert-or-skip by
        the approval id in one transaction with the "imported" evidence record: the check runs
        under the chain's write lock, and the primary key backs it (a writer that bypassed the
        lock would lose with an IntegrityError, roll back whole, and skip on the re-run).
        """
        draft = transition_draft(before=None, after=approval, event="imported", actor=actor, reason=None, now=now)
        values = _row_values(approval)
        values["imported"] = imported_json

        def once() -> tuple[bool, EvidenceRecord | None]:
            with self._store.writing() as conn:
                head = lock_head(conn)
                exists = conn.execute(
                    sa.select(ap_t.c.approval_id).where(ap_t.c.approval_id == approval.approval_id)
                ).first()
                if exists is not None:
                    return False, None
                conn.execute(sa.insert(ap_t).values(**values))
                (record,) = append_locked(conn, [draft], now, head=head)
            return True, record

        return retry_unique(once, what=f"approval {approval.approval_id}: import")

    def decide(
        self,
        approval_id: str,
        *,
        actor: str,
        decision: Decision,
        reason: str,
        now: datetime,
        flow_run_id: str | None = None,
    ) -> tuple[Approval, EvidenceRecord]:
        """Approve, deny or revoke: one compare-and-swap transaction (AP2-AP4)."""

        def apply(conn: Connection, before: Approval) -> tuple[Approval, EvidenceRecord]:
            new_state = check_decision(before, actor=actor, decision=decision, reason=reason, now=now)
            votes = (*before.votes, ApprovalVote(actor=actor, decision=decision, reason=reason, at=now))
            changes: dict[str, Any] = {"state": new_state}
            if new_state is not ApprovalState.PENDING:
                decided_by = actor
                if new_state is ApprovalState.APPROVED:
                    decided_by = ", ".join(Approval.model_validate({**before.model_dump(), "votes": votes}).approvers())
                changes.update(decided_at=now.astimezone(UTC), decided_by=decided_by, decision_reason=reason)
            after = before.model_copy(update={**changes, "version": before.version + 1, "votes": votes})
            event = {
                Decision.APPROVE: "approved" if new_state is ApprovalState.APPROVED else "approval-vote",
                Decision.DENY: "denied",
                Decision.REVOKE: "revoked",
            }[decision]
            return self._commit_transition(conn, before, after, decision, event, actor, reason, now, flow_run_id)

        return self._transact(approval_id, apply, now=now, flow_run_id=flow_run_id)

    def consume(
        self,
        approval_id: str,
        *,
        action: str,
        subject_digest: str,
        target: str,
        actor: str,
        now: datetime,
        execution_ref: str | None = None,
        flow_run_id: str | None = None,
    ) -> tuple[Approval, EvidenceRecord]:
        """The only way an execution uses an approval (AP1, AP3, AP5, AP6), in a transaction of its own.

        An expired approval is refused and its expiry is recorded (committed) before the refusal.
        To consume inside a transaction that also writes other rows, use :meth:`consume_in`.
        """

        def apply(conn: Connection, before: Approval) -> tuple[Approval, EvidenceRecord]:
            return self._consume_loaded(
                conn, before, action=action, subject_digest=subject_digest, target=target, actor=actor,
                execution_ref=execution_ref, now=now, flow_run_id=flow_run_id,
            )

        return self._transact(approval_id, apply, now=now, flow_run_id=flow_run_id)

    def consume_in(
        self,
        conn: Connection,
        approval_id: str,
        *,
        action: str,
        subject_digest: str,
        target: str,
        actor: str,
        execution_ref: str | None,
        now: datetime,
        flow_run_id: str | None = None,
    ) -> tuple[Approval, EvidenceRecord]:
        """Consume an approval inside the caller's write transaction (AP1, AP3, AP5, AP6).

        For decisions that must consume the approval and write rows of their own all or nothing
        (e.g. :meth:`ringward.store.promotion.channel_repo.ChannelRepository.execute_promotion`).
        ``conn`` must come from the store's ``writing()`` transaction; the caller commits or rolls
        back. In that transaction this method

        1. locks the approval row (``FOR UPDATE`` on PostgreSQL; on SQLite the caller's
           ``BEGIN IMMEDIATE`` already holds the database lock) and re-reads it,
        2. applies :func:`ringward.core.approvals.rules.check_consume` (binding, single use,
           expiry, approved with quorum),
        3. updates the row with compare-and-swap (``WHERE version = :read AND state = :read``,
           exactly one row, else :class:`StoreConflictError`),
        4. records the ``consume`` decision row and appends the ``approval-consumption`` evidence
           record (this takes the evidence chain's head lock).

        Lock order: callers that lock other rows lock approval rows first (e.g. with
        :func:`load` ``for_update=True``), then their own rows, then call this method, so the
        chain head is always locked last.

        Unlike :meth:`consume`, a refusal here writes nothing: it propagates and the caller's
        transaction rolls back whole (an expired approval's expiry is not recorded by the refusal;
        :meth:`expire_due` records it later).

        Returns:
            The consumed approval and its consumption evidence record.

        Raises:
            ApprovalNotFoundError: no approval ``approval_id``.
            InputError, ApprovalBindingError, ApprovalConsumedError, ApprovalExpiredError,
            ApprovalStateError: from :func:`~ringward.core.approvals.rules.check_consume`.
            StoreConflictError: the row changed under the lock (should not happen; retry).
        """
        before = load(conn, approval_id, for_update=True)
        return self._consume_loaded(
            conn, before, action=action, subject_digest=subject_digest, target=target, actor=actor,
            execution_ref=execution_ref, now=now, flow_run_id=flow_run_id,
        )

    def expire_due(self, *, now: datetime, limit: int = 500) -> builtins.list[str]:
        """Write down the expiry of every unused approval past ``expires_at`` (one transaction each)."""
        with self._store.reading() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    sa.select(ap_t.c.approval_id)
                    .where(
                        ap_t.c.state.in_(["pending", "approved"]),
                        ap_t.c.consumed_at.is_(None),
                        ap_t.c.expires_at <= now,
                    )
                    .order_by(ap_t.c.expires_at.asc())
                    .limit(limit)
                ).all()
            ]
        expired: builtins.list[str] = []
        for approval_id in ids:
            with self._store.writing() as conn:
                current = load(conn, approval_id, for_update=True)
                if self._record_expiry(conn, current, now, None):
                    expired.append(approval_id)
        return expired

    # --- internals -----------------------------------------------------------------------------

    def _consume_loaded(
        self,
        conn: Connection,
        before: Approval,
        *,
        action: str,
        subject_digest: str,
        target: str,
        actor: str,
        execution_ref: str | None,
        now: datetime,
        flow_run_id: str | None,
    ) -> tuple[Approval, EvidenceRecord]:
        """Check and consume ``before`` (read under the row lock in ``conn``'s transaction)."""
        check_consume(before, action=action, subject_digest=subject_digest, target=target, actor=actor, now=now)
        after = before.model_copy(
            update={
                "consumed_at": now.astimezone(UTC),
                "consumed_by": actor,
                "execution_ref": execution_ref,
                "version": before.version + 1,
                "votes": (
                    *before.votes,
                    ApprovalVote(actor=actor, decision=Decision.CONSUME, reason=execution_ref, at=now),
                ),
            }
        )
        return self._commit_transition(
            conn, before, after, Decision.CONSUME, "consumed", actor, execution_ref, now, flow_run_id
        )

    def _transact(
        self,
        approval_id: str,
        apply: Callable[[Connection, Approval], tuple[Approval, EvidenceRecord]],
        *,
        now: datetime,
        flow_run_id: str | None,
    ) -> tuple[Approval, EvidenceRecord]:
        refusal: RingwardError | None = None
        result: tuple[Approval, EvidenceRecord] | None = None
        try:
            with self._store.writing() as conn:
                before = load(conn, approval_id, for_update=True)
                try:
                    result = apply(conn, before)
                except ApprovalExpiredError as exc:
                    # AP3: the refusal itself is a transition worth recording; commit it, then refuse
                    self._record_expiry(conn, before, now, flow_run_id)
                    refusal = exc
        except IntegrityError as exc:
            # the unique (approval, actor, decision) constraint: a concurrent duplicate vote
            raise StoreConflictError(f"approval {approval_id}: a concurrent decision won; re-read and retry") from exc
        if refusal is not None:
            raise refusal
        assert result is not None
        return result

    def _record_expiry(self, conn: Connection, before: Approval, now: datetime, flow_run_id: str | None) -> bool:
        if before.state not in (ApprovalState.PENDING, ApprovalState.APPROVED) or before.consumed_at is not None:
            return False
        if not before.is_expired(now):
            return False
        reason = f"expires_at {before.expires_at.isoformat()} passed"
        after = before.model_copy(
            update={
                "state": ApprovalState.EXPIRED,
                "version": before.version + 1,
                "votes": (
                    *before.votes,
                    ApprovalVote(actor=EXPIRY_ACTOR, decision=Decision.EXPIRE, reason=reason, at=now),
                ),
            }
        )
        self._commit_transition(conn, before, after, Decision.EXPIRE, "expired", EXPIRY_ACTOR, reason, now, flow_run_id)
        return True

    def _commit_transition(
        self,
        conn: Connection,
        before: Approval,
        after: Approval,
        decision: Decision,
        event: str,
        actor: str,
        reason: str | None,
        now: datetime,
        flow_run_id: str | None,
    ) -> tuple[Approval, EvidenceRecord]:
        values = _row_values(after)
        values.pop("approval_id")
        result = conn.execute(
            sa.update(ap_t)
            .where(
                ap_t.c.approval_id == before.approval_id,
                ap_t.c.version == before.version,
                ap_t.c.state == before.state.value,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise StoreConflictError(
                f"approval {before.approval_id}: changed concurrently (expected version {before.version}); "
                "re-read and retry"
            )
        draft = transition_draft(
            before=before,
            after=after,
            event=event,
            actor=actor,
            reason=reason,
            now=now,
            flow_run_id=flow_run_id,
        )
        (record,) = append_locked(conn, [draft], now)
        conn.execute(
            sa.insert(dec_t).values(
                approval_id=before.approval_id,
                actor=actor,
                decision=decision.value,
                reason=reason,
                created_at=now.astimezone(UTC),
                evidence_id=record.id,
            )
        )
        return after, record


def _row_values(approval: Approval) -> dict[str, Any]:
    return {
        "approval_id": approval.approval_id,
        "action": approval.action,
        "subject_digest": approval.subject_digest,
        "target": approval.target,
        "requester": approval.requester,
        "approver_group": approval.approver_group,
        "quorum": approval.quorum,
        "state": approval.state.value,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_at": approval.decided_at,
        "decided_by": approval.decided_by,
        "decision_reason": approval.decision_reason,
        "consumed_at": approval.consumed_at,
        "consumed_by": approval.consumed_by,
        "execution_ref": approval.execution_ref,
        "origin": approval.origin,
        "note": approval.note,
        "version": approval.version,
    }
