"""The rollout ledger: one row per rollout step (capture, verify, promotion request, execution,
rollback request, rollback, audit), each written in the same transaction as its evidence record.

The rows index the evidence chain by the rollout's own ids (``rollout_id``, ``rpr_``, ``rpe_``,
``rrq_``, ``rre_``) so ``ringward rollout show`` can walk rollout -> request -> approval ->
execution -> rollback -> deliveries without scanning payloads, and ``rollout list`` can filter
rollouts by their state after their latest step.

``unique_key`` is how the store itself guarantees single executions: a promotion execution row
carries ``execution:<rpe_ id>`` (one per request and approval) and a rollback row carries
``rollback-of:<rpe_ id>`` -- a second rollback of the same execution loses on the unique key even
with another approval and even when two run at once (:class:`ExecutionReplayError`).

A deciding step (:meth:`RolloutLedger.decide`) consumes its approvals -- a promotion's own approval
and, outside its window, its break-glass approval -- in the same transaction as its evidence
record and ledger row: all of them or none.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ringward.core.approvals.rules import Approval
from ringward.core.errors import ExecutionReplayError, InputError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.approvals import repo as approval_repo
from ringward.store.approvals.repo import ApprovalRepository
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.promotion.channel_repo import ApprovalUse
from ringward.store.tables import METADATA, UTCDateTime

MAX_PAGE = 500

rollout_step_table = sa.Table(
    "rollout_step",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("rollout_id", sa.String(128), nullable=False),
    sa.Column("step", sa.String(32), nullable=False),
    sa.Column("ref_id", sa.String(128), nullable=False),
    sa.Column("parent_ref", sa.String(128), nullable=True),
    sa.Column("unique_key", sa.String(256), nullable=True),
    sa.Column("environment", sa.String(128), nullable=True),
    sa.Column("ring", sa.String(128), nullable=True),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("release_version", sa.String(256), nullable=True),
    sa.Column("approval_id", sa.String(64), nullable=True),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("evidence_id", sa.Integer(), nullable=False),
    sa.Column("document_sha256", sa.String(64), nullable=True),
    sa.Column("path", sa.Text(), nullable=True),
    sa.UniqueConstraint("unique_key", name="uq_rollout_step_unique_key"),
    sa.Index("ix_rollout_step_rollout", "rollout_id", "id"),
    sa.Index("ix_rollout_step_ref", "ref_id"),
    sa.Index("ix_rollout_step_step_created", "step", "created_at"),
)
_t = rollout_step_table

STEPS = ("capture", "verify", "request", "execution", "rollback-request", "rollback", "audit")

__all__ = ["MAX_PAGE", "STEPS", "ApprovalUse", "RolloutLedger", "RolloutStep", "StepFilter", "rollout_step_table"]


@dataclass(frozen=True)
class RolloutStep:
    """One ledger row. ``ring``/``status`` are the rollout's ring and status after the step."""

    rollout_id: str
    step: str
    ref_id: str
    actor: str
    parent_ref: str | None = None
    unique_key: str | None = None
    environment: str | None = None
    ring: str | None = None
    status: str | None = None
    release_version: str | None = None
    approval_id: str | None = None
    document_sha256: str | None = None
    path: str | None = None
    id: int | None = None
    created_at: datetime | None = None
    evidence_id: int | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rollout_id": self.rollout_id,
            "step": self.step,
            "ref_id": self.ref_id,
            "parent_ref": self.parent_ref,
            "environment": self.environment,
            "ring": self.ring,
            "status": self.status,
            "release_version": self.release_version,
            "approval_id": self.approval_id,
            "actor": self.actor,
            "created_at": None if self.created_at is None else self.created_at.astimezone(UTC).isoformat(),
            "evidence_id": self.evidence_id,
            "document_sha256": self.document_sha256,
            "path": self.path,
        }


def _row(row: Any) -> RolloutStep:
    return RolloutStep(
        id=row.id,
        rollout_id=row.rollout_id,
        step=row.step,
        ref_id=row.ref_id,
        parent_ref=row.parent_ref,
        unique_key=row.unique_key,
        environment=row.environment,
        ring=row.ring,
        status=row.status,
        release_version=row.release_version,
        approval_id=row.approval_id,
        actor=row.actor,
        created_at=row.created_at,
        evidence_id=row.evidence_id,
        document_sha256=row.document_sha256,
        path=row.path,
    )


@dataclass(frozen=True)
class StepFilter:
    """Filters of ``rollout list`` / ``rollout search`` (unset = any)."""

    environment: str | None = None
    ring: str | None = None
    status: str | None = None
    release_version: str | None = None
    step: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        for name in ("environment", "ring", "status", "release_version", "step"):
            value = getattr(self, name)
            if value is not None:
                out.append(table.c[name] == value)
        if self.since is not None:
            out.append(table.c.created_at >= self.since)
        if self.until is not None:
            out.append(table.c.created_at < self.until)
        return out


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"--limit: expected 1..{MAX_PAGE}, found {limit}")
    if offset < 0:
        raise InputError(f"--offset: expected >= 0, found {offset}")


class RolloutLedger:
    """Rollout steps over one store (:class:`~ringward.store.db.Transactions`)."""

    def __init__(self, store: Transactions) -> None:
        self._store = store

    def record(
        self, step: RolloutStep, draft: EvidenceDraft, *, now: datetime, replay_message: str | None = None
    ) -> tuple[RolloutStep, EvidenceRecord]:
        """Append the step's evidence record and its ledger row in one transaction.

        Raises:
            ExecutionReplayError: ``step.unique_key`` is already taken (``replay_message`` says what
                was already done); nothing is written.
        """
        stored, evidence, _ = self.decide(step, lambda _consumed: (step, draft), now=now,
                                          replay_message=replay_message)
        return stored, evidence

    def decide(
        self,
        step: RolloutStep,
        build: Callable[[tuple[Approval, ...]], tuple[RolloutStep, EvidenceDraft]],
        *,
        now: datetime,
        consume: Sequence[ApprovalUse] = (),
        flow_run_id: str | None = None,
        replay_message: str | None = None,
    ) -> tuple[RolloutStep, EvidenceRecord, tuple[Approval, ...]]:
        """One decision, all or nothing: consume the ``consume`` approvals (in the order given; each
        with the binding it must carry, ``execution_ref`` = ``step.ref_id``, its consumption record
        appended), then append the step's evidence record and its ledger row.

        ``build(consumed)`` runs inside the transaction once the approvals are consumed and returns
        the ledger row and evidence draft to write (they may quote the consumed approvals); it must
        keep ``step``'s ``step`` and ``unique_key``. Whatever it creates outside the database is the
        caller's to remove when this raises.

        Lock order: the approval rows (sorted ids, so two decisions sharing approvals cannot
        deadlock), then the unique-key check, then the evidence chain's head (consumption records,
        then the step's record) -- as :meth:`ChannelRepository.execute_promotion` does.

        Returns:
            The stored row, its evidence record and the consumed approvals (in ``consume`` order).

        Raises:
            ExecutionReplayError: ``step.unique_key`` is already taken (``replay_message`` says what
                was already done).
            ApprovalNotFoundError, ApprovalBindingError, ApprovalConsumedError, ApprovalExpiredError,
            ApprovalStateError, StoreConflictError: from :meth:`ApprovalRepository.consume_in`.
            In every case nothing is written: no approval consumed, no record, no row.
        """
        if step.step not in STEPS:
            raise InputError(f"step: expected one of {', '.join(STEPS)}, found {step.step!r}")
        moment = now.astimezone(UTC)
        approvals = ApprovalRepository(self._store)
        try:
            with self._store.writing() as conn:
                for approval_id in sorted({use.approval_id for use in consume}):
                    approval_repo.load(conn, approval_id, for_update=True)
                if step.unique_key is not None:
                    taken = conn.execute(
                        sa.select(_t.c.ref_id, _t.c.created_at).where(_t.c.unique_key == step.unique_key)
                    ).first()
                    if taken is not None:
                        raise ExecutionReplayError(self._replay(step, replay_message, taken.ref_id, taken.created_at))
                consumed = tuple(
                    approvals.consume_in(
                        conn, use.approval_id, action=use.action, subject_digest=use.subject_digest,
                        target=use.target, actor=step.actor, execution_ref=step.ref_id, now=now,
                        flow_run_id=flow_run_id,
                    )[0]
                    for use in consume
                )
                row, draft = build(consumed)
                if (row.step, row.unique_key) != (step.step, step.unique_key):
                    raise ValueError(f"step {step.ref_id}: the decision changed its step or unique key")
                (evidence,) = append_locked(conn, [draft], moment)
                values = {
                    "rollout_id": row.rollout_id,
                    "step": row.step,
                    "ref_id": row.ref_id,
                    "parent_ref": row.parent_ref,
                    "unique_key": row.unique_key,
                    "environment": row.environment,
                    "ring": row.ring,
                    "status": row.status,
                    "release_version": row.release_version,
                    "approval_id": row.approval_id,
                    "actor": row.actor,
                    "created_at": evidence.created_at,
                    "evidence_id": evidence.id,
                    "document_sha256": row.document_sha256,
                    "path": row.path,
                }
                new_id = conn.execute(sa.insert(_t).values(**values).returning(_t.c.id)).scalar_one()
        except IntegrityError as exc:
            # a concurrent writer took the unique key between our check and our insert (PostgreSQL)
            existing = self.by_unique_key(step.unique_key) if step.unique_key else None
            raise ExecutionReplayError(
                self._replay(
                    step,
                    replay_message,
                    existing.ref_id if existing else "?",
                    existing.created_at if existing else None,
                )
            ) from exc
        stored = RolloutStep(**{**row.__dict__, "id": int(new_id), "created_at": evidence.created_at,
                                "evidence_id": evidence.id})
        return stored, evidence, consumed

    @staticmethod
    def _replay(step: RolloutStep, message: str | None, ref_id: str, at: datetime | None) -> str:
        when = f" at {at.astimezone(UTC).isoformat()}" if at is not None else ""
        base = message or f"{step.step} {step.ref_id}: already recorded"
        return f"{base} (as {ref_id}{when})"

    # --- reads ---------------------------------------------------------------------------------

    def by_unique_key(self, key: str) -> RolloutStep | None:
        with self._store.reading() as conn:
            row = conn.execute(sa.select(_t).where(_t.c.unique_key == key)).first()
        return None if row is None else _row(row)

    def by_ref(self, ref_id: str, *, step: str | None = None) -> builtins.list[RolloutStep]:
        clauses = [_t.c.ref_id == ref_id]
        if step is not None:
            clauses.append(_t.c.step == step)
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(_t).where(*clauses).order_by(_t.c.id.asc())).all()
        return [_row(r) for r in rows]

    def by_approval(self, approval_id: str) -> builtins.list[RolloutStep]:
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(_t).where(_t.c.approval_id == approval_id).order_by(_t.c.id.asc())).all()
        return [_row(r) for r in rows]

    def for_rollout(self, rollout_id: str) -> builtins.list[RolloutStep]:
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(_t).where(_t.c.rollout_id == rollout_id).order_by(_t.c.id.asc())).all()
        return [_row(r) for r in rows]

    def latest_per_rollout(
        self, filters: StepFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[RolloutStep], int]:
        """Each rollout's latest step (its current ring and status), newest first, filtered."""
        _page(limit, offset)
        latest = sa.select(sa.func.max(_t.c.id).label("id")).group_by(_t.c.rollout_id).subquery()
        clauses = [_t.c.id.in_(sa.select(latest.c.id)), *filters.clauses(_t)]
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(_t).where(*clauses).order_by(_t.c.id.desc()).limit(limit).offset(offset)
            ).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(_t).where(*clauses)).scalar_one()
        return [_row(r) for r in rows], int(total)

    def search(
        self, filters: StepFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[RolloutStep], int]:
        """Every step matching ``filters``, newest first."""
        _page(limit, offset)
        clauses = filters.clauses(_t)
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(_t).where(*clauses).order_by(_t.c.id.desc()).limit(limit).offset(offset)
            ).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(_t).where(*clauses)).scalar_one()
        return [_row(r) for r in rows], int(total)
