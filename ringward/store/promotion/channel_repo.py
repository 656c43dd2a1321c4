"""Release channel state in the store: high-water marks, holds and rollback allowances, with
compare-and-swap, each change recorded in the evidence chain in the same transaction.

Stored as one JSON row per channel in the versioned key/value table (``kv_state``, namespace
``release-channel``; no table of its own): every write re-reads the row under the write lock
(``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), applies the pure rules of
:mod:`ringward.core.promotion.channels`, and updates ``WHERE version = <read version>``
(a first write inserts; a concurrent first insert loses on the primary key and is retried).

Lock order, everywhere: approval rows (in approval-id order), then the channel row, then the
evidence chain head. An export consumes its approval -- and a break-glass approval when it runs
outside its promotion window -- through the approval repository's public
:meth:`~ringward.store.approvals.repo.ApprovalRepository.consume_in`, inside the transaction that
raises the mark.

API for the rollout-rollback executor (:mod:`ringward.operations.promotion.rollout_ops`), signatures
kept stable::

    ChannelRepository(store).allow_rollback(channel, *, from_version, from_digest, rollback_id, actor, now)
        -> ChannelState

Records in ``channel``'s state a single-use rollback allowance to the release promoted on the
channel before the current one (from the channel's promotion history). ``from_version`` /
``from_digest`` (``sha256:<hex of the package's checksums.txt>``; bare hex accepted) must be the
channel's current release (else ``BindingMismatchError``); no earlier promotion ->
``StateError``; a rollback id already exported -> ``ExecutionReplayError``; granting the same
rollback id again returns the state unchanged. An endpoint export of exactly that earlier
version and digest is then accepted once below the high-water mark, recorded as a rollback
export, and consumes the allowance (the mark itself stays). Writes a ``release-channel-state``
evidence record (status ``rollback-allowed``).

::

    ChannelRepository(store).yank(channel, *, version, digest, actor, reason, now, and_hold, ref)
        -> tuple[ChannelState, EvidenceRecord | None]

Marks ``version`` yanked on the channel (CH5) and, with ``and_hold``, holds the channel when it is not
held yet -- one transaction, one ``release-channel-state`` record (status ``yanked``); nothing to
change (already yanked and held) writes nothing and returns no record.

::

    ChannelRepository(store).channels_at(version, digest) -> list[str]

The channels whose current promoted release is exactly ``version`` with ``digest`` (sorted).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ringward.core.approvals.rules import Approval
from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.core.promotion.channels import (
    KIND_CHANNEL_STATE,
    ChannelState,
    PromotedRelease,
    check_channel_name,
    event_payload,
    grant_rollback,
    hold,
    normalise_digest,
    promote,
    unhold,
    yank,
)
from ringward.store.approvals import repo as approval_repo
from ringward.store.approvals.repo import ApprovalRepository
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.tables import kv_state_table as kv_t

NAMESPACE = "release-channel"
_ATTEMPTS = 5

_T = TypeVar("_T")


@dataclass(frozen=True)
class ApprovalUse:
    """A further approval one promotion consumes in its transaction (e.g. a break-glass approval
    letting an export run outside its promotion window), with the binding it must carry."""

    approval_id: str
    action: str
    subject_digest: str
    target: str


@dataclass(frozen=True)
class PromotionOutcome:
    """What :meth:`ChannelRepository.execute_promotion` committed."""

    before: ChannelState
    state: ChannelState
    approval: Approval
    #: evidence records in chain order: the consumption(s), the channel state, then ``drafts``
    records: list[EvidenceRecord]
    #: the ``also_consume`` approvals, consumed, in the order given
    also_consumed: tuple[Approval, ...] = ()

    @property
    def rollback(self) -> bool:
        return self.state.current is not None and self.state.current.kind.value == "rollback"


def _state(channel: str, row: Any) -> ChannelState:
    if row is None:
        return ChannelState(channel=channel)
    value = loads_strict(row.value.encode("utf-8"), source=f"kv_state {NAMESPACE}/{channel}")
    return ChannelState.model_validate(
        {**value, "version": row.version, "updated_at": row.updated_at, "updated_by": row.updated_by}
    )


def _read(conn: Connection, channel: str, *, for_update: bool) -> ChannelState:
    query = sa.select(kv_t).where(kv_t.c.namespace == NAMESPACE, kv_t.c.key == channel)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return _state(channel, conn.execute(query).first())


def _write(conn: Connection, before: ChannelState, after: ChannelState, *, actor: str, now: datetime) -> ChannelState:
    text = dumps_canonical(after.stored_value()).decode("utf-8")
    when = now.astimezone(UTC)
    values = {"value": text, "version": before.version + 1, "updated_at": when, "updated_by": actor}
    if before.version == 0:
        conn.execute(sa.insert(kv_t).values(namespace=NAMESPACE, key=before.channel, **values))
    else:
        result = conn.execute(
            sa.update(kv_t)
            .where(kv_t.c.namespace == NAMESPACE, kv_t.c.key == before.channel, kv_t.c.version == before.version)
            .values(**values)
        )
        if result.rowcount != 1:
            raise StoreConflictError(
                f"channel {before.channel}: changed concurrently (expected version {before.version}); re-read and retry"
            )
    return after.model_copy(update={"version": before.version + 1, "updated_at": when, "updated_by": actor})


def state_draft(
    before: ChannelState,
    after: ChannelState,
    *,
    event: str,
    actor: str,
    reason: str | None,
    now: datetime,
    flow_run_id: str | None = None,
    extra: dict[str, Any] | None = None,
    approval_id: str | None = None,
) -> EvidenceDraft:
    """The ``release-channel-state`` evidence record of one change."""
    current = after.current
    return EvidenceDraft(
        kind=KIND_CHANNEL_STATE,
        actor=actor,
        flow_run_id=flow_run_id,
        subject=EvidenceSubject(
            channel=after.channel,
            status=event,
            release_version=None if current is None else current.version,
            ring=None if current is None else current.target_ring,
            approval_id=approval_id,
            success=True,
        ),
        payload=event_payload(before, after, event=event, actor=actor, reason=reason, now=now, extra=extra),
    )


class ChannelRepository:
    """Channel state over one store (:class:`~ringward.store.db.Transactions`)."""

    def __init__(self, store: Transactions) -> None:
        self._store = store
        # the export consumes its approval in the same transaction as the mark it raises
        self._approvals = ApprovalRepository(store)

    # --- reads ---------------------------------------------------------------------------------

    def get(self, channel: str) -> ChannelState:
        """The channel's state (an empty state, version 0, when it was never written)."""
        check_channel_name(channel, option="channel")
        with self._store.reading() as conn:
            return _read(conn, channel, for_update=False)

    def list(self) -> builtins.list[ChannelState]:
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(kv_t).where(kv_t.c.namespace == NAMESPACE).order_by(kv_t.c.key)).all()
        return [_state(r.key, r) for r in rows]

    def channels_at(self, version: str, digest: str) -> builtins.list[str]:
        """Channels whose current promoted release is exactly ``version`` with ``digest``."""
        wanted = normalise_digest(digest, field="digest")
        parsed = ReleaseVersion.parse(version, field="version")
        return sorted(
            s.channel
            for s in self.list()
            if s.current is not None
            and s.current.digest == wanted
            and ReleaseVersion.parse(s.current.version) == parsed
        )

    # --- writes --------------------------------------------------------------------------------

    def hold(
        self, channel: str, *, actor: str, reason: str, now: datetime, flow_run_id: str | None = None
    ) -> tuple[ChannelState, EvidenceRecord]:
        """Hold the channel (CH3); refused when already held."""
        return self._change(channel, "held", actor, reason, now, flow_run_id,
                            lambda s: hold(s, actor=actor, reason=reason, now=now))

    def unhold(
        self, channel: str, *, actor: str, reason: str, now: datetime, flow_run_id: str | None = None
    ) -> tuple[ChannelState, EvidenceRecord]:
        """Lift the channel's hold; refused when not held."""
        return self._change(channel, "unheld", actor, reason, now, flow_run_id,
                            lambda s: unhold(s, actor=actor, reason=reason, now=now))

    def yank(
        self, channel: str, *, version: str, digest: str | None, actor: str, reason: str, now: datetime,
        and_hold: bool = True, ref: str | None = None, flow_run_id: str | None = None,
    ) -> tuple[ChannelState, EvidenceRecord | None]:
        """CH5 (and CH3 with ``and_hold``) in one change (see the module docstring)."""
        check_channel_name(channel, option="channel")

        def apply(conn: Connection) -> tuple[ChannelState, EvidenceRecord | None]:
            before = _read(conn, channel, for_update=True)
            after, changed = yank(before, version=version, digest=digest, actor=actor, reason=reason, now=now,
                                  ref=ref)
            held_now = and_hold and after.hold is None
            if held_now:
                after = hold(after, actor=actor, reason=reason, now=now)
            if not changed and not held_now:
                return before, None
            written = _write(conn, before, after, actor=actor, now=now)
            (record,) = append_locked(conn, [state_draft(
                before, written, event="yanked", actor=actor, reason=reason, now=now, flow_run_id=flow_run_id,
                extra={"yanked_version": version, "yanked_digest": digest, "yank_ref": ref,
                       "newly_yanked": changed, "newly_held": held_now,
                       "yanked": [y.model_dump(mode="json") for y in written.yanked]})], now)
            return written, record

        return self._retry(apply)

    def allow_rollback(
        self, channel: str, *, from_version: str, from_digest: str, rollback_id: str, actor: str, now: datetime
    ) -> ChannelState:
        """CH4: a single-use allowance to export the previously promoted release (see the module docstring)."""
        check_channel_name(channel, option="channel")

        def apply(conn: Connection) -> ChannelState:
            before = _read(conn, channel, for_update=True)
            after, changed = grant_rollback(
                before, from_version=from_version, from_digest=from_digest, rollback_id=rollback_id, actor=actor,
                now=now,
            )
            if not changed:
                return before
            written = _write(conn, before, after, actor=actor, now=now)
            append_locked(conn, [state_draft(before, written, event="rollback-allowed", actor=actor,
                                             reason=f"rollback {rollback_id}", now=now,
                                             extra={"rollback_id": rollback_id})], now)
            return written

        return self._retry(apply)

    def execute_promotion(
        self,
        channel: str,
        *,
        release: PromotedRelease,
        approval_id: str,
        action: str,
        subject_digest: str,
        target: str,
        actor: str,
        now: datetime,
        drafts: Callable[[ChannelState, ChannelState, Approval], builtins.list[EvidenceDraft]],
        flow_run_id: str | None = None,
        also_consume: Sequence[ApprovalUse] = (),
    ) -> PromotionOutcome:
        """One decision: consume the approval (binding, state, expiry, single use) and move the
        channel to ``release`` (hold, high-water mark and rollback allowance re-checked under the
        lock), appending the consumption record, the ``release-channel-state`` record and
        ``drafts(before, after, approval)`` -- all or nothing.

        ``also_consume``: further approvals consumed (same rules, ``execution_ref`` the export id)
        in the same transaction after the promotion's own approval, each appending its own
        consumption record; any refusal rolls the whole decision back.

        Raises:
            ApprovalNotFoundError, ApprovalBindingError, ApprovalConsumedError, ApprovalExpiredError,
            ApprovalStateError: from the approval rules.
            ChannelHeldError, RollbackError, VersionConflictError: from the channel rules.
        """
        check_channel_name(channel, option="channel")

        def apply(conn: Connection) -> PromotionOutcome:
            # lock order: approval rows (sorted, so two decisions sharing approvals cannot deadlock),
            # then the channel row; consume_in appends to the evidence chain (its head lock) last
            for aid in sorted({approval_id, *(use.approval_id for use in also_consume)}):
                approval_repo.load(conn, aid, for_update=True)
            before = _read(conn, channel, for_update=True)
            # the approval store's compare-and-swap update + decision row + consumption record,
            # inside this transaction (the repository's consume() would open its own)
            approval_after, consumption = self._approvals.consume_in(
                conn, approval_id, action=action, subject_digest=subject_digest, target=target, actor=actor,
                execution_ref=release.export_id, now=now, flow_run_id=flow_run_id,
            )
            extra = [
                self._approvals.consume_in(
                    conn, use.approval_id, action=use.action, subject_digest=use.subject_digest,
                    target=use.target, actor=actor, execution_ref=release.export_id, now=now,
                    flow_run_id=flow_run_id,
                )
                for use in also_consume
            ]
            after = promote(before, release)
            written = _write(conn, before, after, actor=actor, now=now)
            event = "rollback-promoted" if after.current is not None and after.current.kind.value == "rollback" \
                else "promoted"
            state_record = state_draft(
                before, written, event=event, actor=actor, reason=release.export_id, now=now,
                flow_run_id=flow_run_id, approval_id=approval_id,
                extra={"export_id": release.export_id, "request_id": release.request_id},
            )
            records = append_locked(conn, [state_record, *drafts(before, written, approval_after)], now)
            return PromotionOutcome(before, written, approval_after,
                                    [consumption, *(record for _, record in extra), *records],
                                    tuple(approval for approval, _ in extra))

        return self._retry(apply)

    # --- internals -----------------------------------------------------------------------------

    def _change(
        self,
        channel: str,
        event: str,
        actor: str,
        reason: str,
        now: datetime,
        flow_run_id: str | None,
        rule: Callable[[ChannelState], ChannelState],
    ) -> tuple[ChannelState, EvidenceRecord]:
        check_channel_name(channel, option="channel")

        def apply(conn: Connection) -> tuple[ChannelState, EvidenceRecord]:
            before = _read(conn, channel, for_update=True)
            after = _write(conn, before, rule(before), actor=actor, now=now)
            (record,) = append_locked(
                conn, [state_draft(before, after, event=event, actor=actor, reason=reason, now=now,
                                   flow_run_id=flow_run_id)], now
            )
            return after, record

        return self._retry(apply)

    def _retry(self, apply: Callable[[Connection], _T]) -> _T:
        """Run ``apply`` in one write transaction; a lost first insert (two writers creating the same
        channel row on PostgreSQL) rolls back whole and runs again against the winner's row."""
        for attempt in range(_ATTEMPTS):
            try:
                with self._store.writing() as conn:
                    return apply(conn)
            except IntegrityError as exc:
                if attempt == _ATTEMPTS - 1:
                    raise StoreConflictError("release channel: a concurrent writer kept winning; retry") from exc
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")
