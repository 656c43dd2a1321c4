"""The connector delivery log: one row per (event id, provider, destination), its attempts, the
events themselves (for redelivery) and disabled destinations.

Idempotency holds across processes because a key is *claimed in the database*:

- the unique constraint ``uq_connector_delivery_key`` makes the first insert of a key win;
- taking over an existing row is a compare-and-swap ``UPDATE ... WHERE state IN (claimable)``
  (on PostgreSQL the row lock makes a concurrent claimer re-check the new state; on SQLite every
  write transaction is ``BEGIN IMMEDIATE``), so two runs never both own a key;
- a row in state ``succeeded`` is never claimed again; completing a row requires still owning it;
- a claim whose lease has passed (``in_progress``, ``lease_until < now``: the process holding it
  died or hung) is *stalled*: it is due for redelivery like a failed row, and redelivery takes it
  over through the same compare-and-swap claim, so one redeliverer wins and resends the stored
  event (same event id, same idempotency headers).

The claim rules are those of ``connectors.ledger`` (this class implements its protocol); the
completion rule is ``ringward.core.connector_delivery.completed_entry``.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.results import (
    AttemptRecord,
    ClaimStatus,
    Completion,
    DeliveryKey,
    DeliveryLogEntry,
    DeliveryState,
    DestinationStats,
    completion_values,
)
from ringward.store.db import Transactions
from ringward.store.tables import METADATA, UTCDateTime

#: keys per statement (stays far below SQLite's bound-parameter limit)
CHUNK = 400

_CLAIMABLE = (
    DeliveryState.FAILED.value,
    DeliveryState.REJECTED.value,
    DeliveryState.DISABLED.value,
    DeliveryState.EXPIRED.value,
)
_FAILED = _CLAIMABLE


#: One delivery key and where it stands.
connector_delivery_table = sa.Table(
    "connector_delivery",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("run_count", sa.Integer(), nullable=False, default=0),
    sa.Column("attempt_count", sa.Integer(), nullable=False, default=0),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("first_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("succeeded_at", UTCDateTime(), nullable=True),
    sa.Column("next_attempt_after", UTCDateTime(), nullable=True),
    sa.Column("redeliver_until", UTCDateTime(), nullable=True),
    sa.Column("external_ref", sa.String(256), nullable=True),
    #: JSON list of every attempt across runs: {number, run_id, started_at, completed_at, outcome,
    #: status_code, error, retry_after_seconds, wait_seconds, batch_size} (always read with the row)
    sa.Column("attempts", sa.Text(), nullable=False, default="[]"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("event_id", "provider", "destination", name="uq_connector_delivery_key"),
    sa.Index("ix_connector_delivery_state_next", "state", "next_attempt_after"),
    sa.Index("ix_connector_delivery_dest_updated", "provider", "destination", "updated_at"),
    sa.Index("ix_connector_delivery_updated", "updated_at"),
)

#: An event as first delivered (what redelivery sends again).
connector_event_table = sa.Table(
    "connector_event",
    METADATA,
    sa.Column("event_id", sa.String(256), primary_key=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("event_sha256", sa.String(64), nullable=False),
    sa.Column("document", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
)

#: Destination state (disabled after HTTP 410 until re-enabled).
connector_destination_table = sa.Table(
    "connector_destination",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("disabled_at", UTCDateTime(), nullable=True),
    sa.Column("disabled_reason", sa.Text(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

delivery_t = connector_delivery_table
event_t = connector_event_table
destination_t = connector_destination_table


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _attempts_of(row: Any, run_id: str | None = None) -> tuple[AttemptRecord, ...]:
    out = []
    for item in json.loads(row.attempts or "[]"):
        if run_id is not None and item.get("run_id") != run_id:
            continue
        item.pop("run_id", None)
        out.append(AttemptRecord.model_validate(item))
    return tuple(out)


def _entry(row: Any, *, with_attempts: bool = False) -> DeliveryLogEntry:
    return DeliveryLogEntry(
        event_id=row.event_id,
        event_type=row.event_type,
        provider=row.provider,
        destination=row.destination,
        state=DeliveryState(row.state),
        attempt_count=row.attempt_count,
        run_count=row.run_count,
        status_code=row.status_code,
        outcome=row.outcome,
        error=row.error,
        first_attempt_at=row.first_attempt_at,
        last_attempt_at=row.last_attempt_at,
        succeeded_at=row.succeeded_at,
        next_attempt_after=row.next_attempt_after,
        redeliver_until=row.redeliver_until,
        external_ref=row.external_ref,
        updated_at=row.updated_at,
        attempts=_attempts_of(row) if with_attempts else (),
    )


def _iso(value: datetime) -> str:
    return value.isoformat()


def _stalled(now: datetime) -> sa.ColumnElement[bool]:
    """A claim whose lease has passed: the run holding it stopped without recording an outcome."""
    return sa.and_(
        delivery_t.c.state == DeliveryState.IN_PROGRESS.value,
        delivery_t.c.lease_until.is_not(None),
        delivery_t.c.lease_until < now,
    )


def _attempts_json(completion: Completion, *, first_number: int, run_id: str) -> str:
    """This completion's attempts as JSON list items (without brackets), numbered from ``first_number``."""
    items = [
        {
            "number": n,
            "run_id": run_id,
            "started_at": _iso(a.started_at),
            "completed_at": _iso(a.completed_at),
            "outcome": a.outcome.value,
            "status_code": a.status_code,
            "error": a.error,
            "retry_after_seconds": a.retry_after_seconds,
            "wait_seconds": a.wait_seconds,
            "batch_size": a.batch_size,
            **({"calls": list(a.calls)} if a.calls is not None else {}),
        }
        for n, a in enumerate(completion.result.attempts, start=first_number)
    ]
    return json.dumps(items, separators=(",", ":"), sort_keys=True)[1:-1]


class DeliveryLog:
    """The delivery log of one store; implements ``connectors.ledger.DeliveryLedger``."""

    def __init__(self, store: Transactions) -> None:
        self._store = store
    # keys this instance inserted with claim() and has not completed yet, with their owner:
    # their row is known (nothing recorded yet), so complete() can write without reading it
    # first. Another owner taking a key over (expired lease) makes the guarded UPDATE miss,
    # exactly as on the general path.
        self._fresh: set[tuple[str, str, str, str]] = set()
        self._fresh_lock = threading.Lock()

    # --- claims ------------------------------------------------------------------------------------

    def claim(
        self,
        keys: Sequence[DeliveryKey],
        *,
        event_types: Mapping[str, str],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> dict[DeliveryKey, ClaimStatus]:
        """Claim keys for ``owner`` (see the module docstring); one transaction per chunk."""
        lease = now + timedelta(seconds=lease_seconds)
        grouped: dict[tuple[str, str], list[DeliveryKey]] = defaultdict(list)
        for key in keys:
            grouped[(key.provider, key.destination)].append(key)
        out: dict[DeliveryKey, ClaimStatus] = {}
        for (provider, destination), group in grouped.items():
            for chunk in _chunks(group):
                with self._store.writing() as conn:
                    out.update(
                        self._claim_chunk(conn, provider, destination, chunk, event_types, owner, now, lease)
                    )
        return out

    def _claim_chunk(
        self,
        conn: Connection,
        provider: str,
        destination: str,
        keys: Sequence[DeliveryKey],
        event_types: Mapping[str, str],
        owner: str,
        now: datetime,
        lease: datetime,
    ) -> dict[DeliveryKey, ClaimStatus]:
        disabled = conn.execute(
            sa.select(destination_t.c.disabled_at).where(destination_t.c.name == destination)
        ).scalar_one_or_none()
        if disabled is not None:
            return dict.fromkeys(keys, ClaimStatus.DESTINATION_DISABLED)
    # (1) insert new keys; the unique constraint lets exactly one claimer win, and RETURNING
    # names the keys this statement inserted (the common case: nothing else to do)
        insert = (
            _insert(conn, delivery_t)
            .on_conflict_do_nothing(index_elements=["event_id", "provider", "destination"])
            .returning(delivery_t.c.event_id)
        )
        inserted = (
            conn.execute(
                insert,
                [
                    {
                        "event_id": k.event_id,
                        "provider": provider,
                        "destination": destination,
                        "event_type": event_types.get(k.event_id, "")[:128],
                        "state": DeliveryState.IN_PROGRESS.value,
                        "owner": owner,
                        "lease_until": lease,
                        "run_count": 1,
                        "attempt_count": 0,
                        "attempts": "[]",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for k in keys
                ],
            )
            .scalars()
            .all()
        )
        out: dict[DeliveryKey, ClaimStatus] = {}
        claimed = set(inserted)
        with self._fresh_lock:
            self._fresh.update((event_id, provider, destination, owner) for event_id in claimed)
        rest = [k for k in keys if k.event_id not in claimed]
        for key in keys:
            if key.event_id in claimed:
                out[key] = ClaimStatus.CLAIMED
        if not rest:
            return out
        where_key = sa.and_(
            delivery_t.c.provider == provider,
            delivery_t.c.destination == destination,
            delivery_t.c.event_id.in_([k.event_id for k in rest]),
        )
    # (2) take over existing rows by compare-and-swap on their state (the row lock makes a
    # concurrent claimer re-check the new state on PostgreSQL; SQLite writers are serial)
        conn.execute(
            delivery_t.update()
            .where(
                where_key,
                sa.or_(
                    delivery_t.c.state.in_(_CLAIMABLE),
                    sa.and_(
                        delivery_t.c.state == DeliveryState.IN_PROGRESS.value,
                        sa.or_(delivery_t.c.lease_until < now, delivery_t.c.owner == owner),
                    ),
                ),
            )
            .values(
                state=DeliveryState.IN_PROGRESS.value,
                owner=owner,
                lease_until=lease,
                run_count=delivery_t.c.run_count + 1,
                updated_at=now,
            )
        )
    # (3) read back who owns the rest
        rows = conn.execute(
            sa.select(delivery_t.c.event_id, delivery_t.c.state, delivery_t.c.owner).where(where_key)
        ).all()
        found = {r.event_id: r for r in rows}
        for key in rest:
            row = found.get(key.event_id)
            if row is None:  # pragma: no cover - the insert above guarantees a row
                raise RuntimeError(f"delivery log lost key {key}")
            if row.state == DeliveryState.IN_PROGRESS.value and row.owner == owner:
                out[key] = ClaimStatus.CLAIMED
            elif row.state == DeliveryState.SUCCEEDED.value:
                out[key] = ClaimStatus.ALREADY_DELIVERED
            else:
                out[key] = ClaimStatus.IN_FLIGHT
        return out

    # --- completions -------------------------------------------------------------------------------

    def complete(self, completions: Sequence[Completion], *, owner: str, now: datetime) -> None:
        """Record outcomes of keys ``owner`` still holds (others are left alone: lost claims)."""
        grouped: dict[tuple[str, str], list[Completion]] = defaultdict(list)
        for completion in completions:
            grouped[(completion.result.provider, completion.result.destination)].append(completion)
        with self._store.writing() as conn:
            for (provider, destination), group in grouped.items():
                for chunk in _chunks(group):
                    self._complete_chunk(conn, provider, destination, chunk, owner, now)

    def _complete_chunk(
        self,
        conn: Connection,
        provider: str,
        destination: str,
        completions: Sequence[Completion],
        owner: str,
        now: datetime,
    ) -> None:
        with self._fresh_lock:
            fresh = [c for c in completions if (c.result.event_id, provider, destination, owner) in self._fresh]
            self._fresh.difference_update((c.result.event_id, provider, destination, owner) for c in fresh)
        if fresh:
            self._complete_fresh(conn, provider, destination, fresh, owner, now)
            if len(fresh) == len(completions):
                return
            done = {c.result.event_id for c in fresh}
            completions = [c for c in completions if c.result.event_id not in done]
        by_event = {c.result.event_id: c for c in completions}
        d = delivery_t
        rows = conn.execute(
            sa.select(
                d.c.id,
                d.c.event_id,
                d.c.attempt_count,
                d.c.first_attempt_at,
                d.c.last_attempt_at,
                d.c.status_code,
                d.c.external_ref,
                d.c.attempts,
            ).where(
                d.c.provider == provider,
                d.c.destination == destination,
                d.c.event_id.in_(list(by_event)),
                d.c.owner == owner,
                d.c.state == DeliveryState.IN_PROGRESS.value,
            )
        ).all()
        updates: list[dict[str, Any]] = []
        for row in rows:
            completion = by_event[row.event_id]
            values = completion_values(
                attempt_count=row.attempt_count,
                first_attempt_at=row.first_attempt_at,
                last_attempt_at=row.last_attempt_at,
                status_code=row.status_code,
                external_ref=row.external_ref,
                completion=completion,
                now=now,
            )
            values["state"] = values["state"].value
            added = _attempts_json(completion, first_number=row.attempt_count + 1, run_id=owner[:128])
            existing = (row.attempts or "[]").strip()
            if added:
                values["attempts"] = f"[{added}]" if existing == "[]" else f"{existing[:-1]},{added}]"
            else:
                values["attempts"] = existing
            updates.append({"b_id": row.id, "b_owner": owner, **values})
        if updates:
            conn.execute(
                d.update()
                .where(
                    d.c.id == sa.bindparam("b_id"),
                    d.c.owner == sa.bindparam("b_owner"),
                    d.c.state == DeliveryState.IN_PROGRESS.value,
                )
                .values(
                    state=sa.bindparam("state"),
                    owner=None,
                    lease_until=None,
                    attempt_count=sa.bindparam("attempt_count"),
                    status_code=sa.bindparam("status_code"),
                    outcome=sa.bindparam("outcome"),
                    error=sa.bindparam("error"),
                    first_attempt_at=sa.bindparam("first_attempt_at"),
                    last_attempt_at=sa.bindparam("last_attempt_at"),
                    succeeded_at=sa.bindparam("succeeded_at"),
                    next_attempt_after=sa.bindparam("next_attempt_after"),
                    redeliver_until=sa.bindparam("redeliver_until"),
                    external_ref=sa.bindparam("external_ref"),
                    attempts=sa.bindparam("attempts"),
                    updated_at=sa.bindparam("updated_at"),
                ),
                updates,
            )

    @staticmethod
    def _complete_fresh(
        conn: Connection,
        provider: str,
        destination: str,
        completions: Sequence[Completion],
        owner: str,
        now: datetime,
    ) -> None:
        """Completions of keys claimed fresh by this instance: one driver-level executemany.

        The delivery benchmark writes tens of thousands of these; binding through SQLAlchemy's
        type machinery cost more than the database work. Values are the same as the general path
        computes (``completion_values`` from an empty row); times are bound as each backend stores them.
        """
        sqlite = conn.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"

        def when(value: datetime | None) -> Any:
            if value is None:
                return None
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError("naive datetime given to the store; expected a UTC-aware datetime")
            value = value.astimezone(UTC)
            # SQLite: the exact text SQLAlchemy's DATETIME writes (fixed width, so text order is time order)
            return value.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else value

        columns = (
            "state",
            "attempt_count",
            "status_code",
            "outcome",
            "error",
            "first_attempt_at",
            "last_attempt_at",
            "succeeded_at",
            "next_attempt_after",
            "redeliver_until",
            "external_ref",
            "attempts",
            "updated_at",
        )
        assignments = ", ".join(f"{name} = {mark}" for name in columns)
    # fixed identifiers only; every value is bound
        where = " AND ".join(f"{name} = {mark}" for name in ("event_id", "provider", "destination", "owner", "state"))
        statement = f"UPDATE {delivery_t.name} SET {assignments}, owner = NULL, lease_until = NULL WHERE {where}"  # noqa: S608
        rows = []
        for completion in completions:
            values = completion_values(
                attempt_count=0,
                first_attempt_at=None,
                last_attempt_at=None,
                status_code=None,
                external_ref=None,
                completion=completion,
                now=now,
            )
            added = _attempts_json(completion, first_number=1, run_id=owner[:128])
            rows.append(
                (
                    values["state"].value,
                    values["attempt_count"],
                    values["status_code"],
                    values["outcome"],
                    values["error"],
                    when(values["first_attempt_at"]),
                    when(values["last_attempt_at"]),
                    when(values["succeeded_at"]),
                    when(values["next_attempt_after"]),
                    when(values["redeliver_until"]),
                    values["external_ref"],
                    f"[{added}]" if added else "[]",
                    when(values["updated_at"]),
                    completion.result.event_id,
                    provider,
                    destination,
                    owner,
                    DeliveryState.IN_PROGRESS.value,
                )
            )
        conn.exec_driver_sql(statement, rows)

    # --- destinations ------------------------------------------------------------------------------

    def disabled_destinations(self) -> dict[str, str]:
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(destination_t.c.name, destination_t.c.disabled_reason).where(
                    destination_t.c.disabled_at.is_not(None)
                )
            ).all()
        return {r.name: r.disabled_reason or "disabled" for r in rows}

    def disable_destination(self, name: str, *, provider: str, reason: str, now: datetime) -> None:
        with self._store.writing() as conn:
            insert = _insert(conn, destination_t).values(
                name=name, provider=provider, disabled_at=now, disabled_reason=reason, updated_at=now
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["name"],
                    set_={
                        "disabled_at": now,
                        "disabled_reason": reason,
                        "updated_at": now,
                        "provider": provider,
                    },
                )
            )

    def enable_destination(
        self, name: str, *, now: datetime, redeliver_window_seconds: float = 86400.0
    ) -> int:
        """Re-enable a destination; its ``disabled`` deliveries become due for redelivery.

        Returns:
            how many deliveries were queued for redelivery (-1 when the destination was not disabled).
        """
        with self._store.writing() as conn:
            changed = conn.execute(
                destination_t.update()
                .where(destination_t.c.name == name, destination_t.c.disabled_at.is_not(None))
                .values(disabled_at=None, disabled_reason=None, updated_at=now)
            ).rowcount
            queued = conn.execute(
                delivery_t.update()
                .where(delivery_t.c.destination == name, delivery_t.c.state == DeliveryState.DISABLED.value)
                .values(
                    state=DeliveryState.FAILED.value,
                    next_attempt_after=now,
                    redeliver_until=now + timedelta(seconds=redeliver_window_seconds),
                    updated_at=now,
                )
            ).rowcount
        return queued if changed else -1

    # --- events ------------------------------------------------------------------------------------

    def record_events(self, events: Sequence[ConnectorEvent], *, now: datetime) -> None:
        """Keep each event's first delivered form (redelivery sends exactly that)."""
        unique = list({e.event_id: e for e in events}.values())
        for chunk in _chunks(unique):
            with self._store.writing() as conn:
                insert = _insert(conn, event_t).on_conflict_do_nothing(index_elements=["event_id"])
                conn.execute(
                    insert,
                    [
                        {
                            "event_id": e.event_id,
                            "event_type": e.event_type[:128],
                            "event_sha256": e.digest(),
                            "document": dumps_canonical(e.to_document()).decode("utf-8"),
                            "created_at": e.created_at,
                            "recorded_at": now,
                        }
                        for e in chunk
                    ],
                )

    def load_events(self, event_ids: Sequence[str]) -> dict[str, ConnectorEvent]:
        out: dict[str, ConnectorEvent] = {}
        for chunk in _chunks(list(dict.fromkeys(event_ids))):
            with self._store.reading() as conn:
                rows = conn.execute(
                    sa.select(event_t.c.event_id, event_t.c.document).where(event_t.c.event_id.in_(chunk))
                ).all()
            for row in rows:
                document = loads_strict(
                    row.document.encode("utf-8"), source=f"connector_event {row.event_id}"
                )
                out[row.event_id] = ConnectorEvent.model_validate(document)
        return out

    # --- queries -----------------------------------------------------------------------------------

    def get(self, key: DeliveryKey, *, with_attempts: bool = True) -> DeliveryLogEntry | None:
        with self._store.reading() as conn:
            row = conn.execute(
                sa.select(delivery_t).where(
                    delivery_t.c.event_id == key.event_id,
                    delivery_t.c.provider == key.provider,
                    delivery_t.c.destination == key.destination,
                )
            ).first()
        return None if row is None else _entry(row, with_attempts=with_attempts)

    def run_attempts(self, key: DeliveryKey, run_id: str) -> tuple[AttemptRecord, ...]:
        """Attempts one run made for ``key`` (every try of a retried Prefect task run shares its run id)."""
        with self._store.reading() as conn:
            row = conn.execute(
                sa.select(delivery_t.c.attempts).where(
                    delivery_t.c.event_id == key.event_id,
                    delivery_t.c.provider == key.provider,
                    delivery_t.c.destination == key.destination,
                )
            ).first()
        return () if row is None else _attempts_of(row, run_id[:128])

    def history(
        self,
        *,
        provider: str | None = None,
        destination: str | None = None,
        event_id: str | None = None,
        success: bool | None = None,
        limit: int = 50,
        offset: int = 0,
        with_attempts: bool = True,
    ) -> tuple[list[DeliveryLogEntry], int]:
        """Newest first; ``provider`` matches the kind or the destination name."""
        limit = max(1, min(limit, 500))
        offset = max(0, offset)
        clauses: list[sa.ColumnElement[bool]] = []
        if provider:
            clauses.append(sa.or_(delivery_t.c.provider == provider, delivery_t.c.destination == provider))
        if destination:
            clauses.append(delivery_t.c.destination == destination)
        if event_id:
            clauses.append(delivery_t.c.event_id == event_id)
        if success is True:
            clauses.append(delivery_t.c.state == DeliveryState.SUCCEEDED.value)
        elif success is False:
            clauses.append(delivery_t.c.state != DeliveryState.SUCCEEDED.value)
        with self._store.reading() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(delivery_t).where(*clauses)
            ).scalar_one()
            rows = conn.execute(
                sa.select(delivery_t)
                .where(*clauses)
                .order_by(delivery_t.c.updated_at.desc(), delivery_t.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [_entry(r, with_attempts=with_attempts) for r in rows], int(total)

    def due(self, *, now: datetime, limit: int = 1000) -> list[DeliveryLogEntry]:
        """What redelivery takes, inside the redelivery window: failed (retryable) deliveries whose
        wait has passed, and stalled claims (``in_progress`` with an expired lease), oldest first.

        Listing a row claims nothing: redelivery claims it (compare-and-swap), so a concurrent
        redeliverer that lists the same row finds it held and sends nothing.
        """
        d = delivery_t
        failed = sa.and_(
            d.c.state == DeliveryState.FAILED.value,
            sa.or_(d.c.next_attempt_after.is_(None), d.c.next_attempt_after <= now),
        )
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(d)
                .where(
                    sa.or_(failed, _stalled(now)),
                    sa.or_(d.c.redeliver_until.is_(None), d.c.redeliver_until > now),
                )
                .order_by(sa.func.coalesce(d.c.next_attempt_after, d.c.lease_until), d.c.id)
                .limit(limit)
            ).all()
        return [_entry(r) for r in rows]

    def held(self, *, now: datetime, limit: int = 1000) -> list[DeliveryKey]:
        """Keys a live claim holds (``in_progress``, lease not expired): another run is delivering them."""
        d = delivery_t
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(d.c.event_id, d.c.provider, d.c.destination)
                .where(d.c.state == DeliveryState.IN_PROGRESS.value, d.c.lease_until >= now)
                .order_by(d.c.id)
                .limit(limit)
            ).all()
        return [DeliveryKey(r.event_id, r.provider, r.destination) for r in rows]

    def leases(self, keys: Sequence[DeliveryKey]) -> dict[DeliveryKey, datetime]:
        """Lease ends of the ``in_progress`` rows among ``keys`` (past ones are stalled claims)."""
        out: dict[DeliveryKey, datetime] = {}
        grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
        for key in keys:
            grouped[(key.provider, key.destination)].append(key.event_id)
        d = delivery_t
        with self._store.reading() as conn:
            for (provider, destination), event_ids in grouped.items():
                for chunk in _chunks(event_ids):
                    rows = conn.execute(
                        sa.select(d.c.event_id, d.c.lease_until).where(
                            d.c.provider == provider,
                            d.c.destination == destination,
                            d.c.event_id.in_(chunk),
                            d.c.state == DeliveryState.IN_PROGRESS.value,
                            d.c.lease_until.is_not(None),
                        )
                    ).all()
                    for row in rows:
                        out[DeliveryKey(row.event_id, provider, destination)] = row.lease_until
        return out

    def stalled_counts(self, *, now: datetime) -> dict[tuple[str, str], int]:
        """Stalled claims per (provider, destination)."""
        d = delivery_t
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(d.c.provider, d.c.destination, sa.func.count().label("n"))
                .where(_stalled(now))
                .group_by(d.c.provider, d.c.destination)
            ).all()
        return {(r.provider, r.destination): int(r.n) for r in rows}

    def expire_overdue(self, *, now: datetime) -> int:
        """Failed deliveries and stalled claims past their redelivery window become ``expired``
        (kept, not retried; an explicit re-run still may). A live claim is never touched."""
        d = delivery_t
        with self._store.writing() as conn:
            return int(
                conn.execute(
                    d.update()
                    .where(
                        sa.or_(d.c.state == DeliveryState.FAILED.value, _stalled(now)),
                        d.c.redeliver_until.is_not(None),
                        d.c.redeliver_until <= now,
                    )
                    .values(
                        state=DeliveryState.EXPIRED.value,
                        next_attempt_after=None,
                        owner=None,
                        lease_until=None,
                        updated_at=now,
                    )
                ).rowcount
            )

    def stats(self) -> tuple[list[DestinationStats], dict[str, int]]:
        """Per-destination aggregates and event-type counts, computed in SQL."""
        d = delivery_t
        failed = d.c.state.in_(_FAILED)
        with self._store.reading() as conn:
            agg = conn.execute(
                sa.select(
                    d.c.provider,
                    d.c.destination,
                    sa.func.count().label("total"),
                    sa.func.sum(sa.case((d.c.state == DeliveryState.SUCCEEDED.value, 1), else_=0)).label(
                        "success"
                    ),
                    sa.func.sum(sa.case((failed, 1), else_=0)).label("failed"),
                    sa.func.sum(sa.case((d.c.state == DeliveryState.IN_PROGRESS.value, 1), else_=0)).label(
                        "in_progress"
                    ),
                    sa.func.sum(d.c.attempt_count).label("attempt_count"),
                    sa.func.sum(
                        sa.case((sa.and_(failed, d.c.event_type.like("%rollback%")), 1), else_=0)
                    ).label("rollback_failures"),
                ).group_by(d.c.provider, d.c.destination)
            ).all()
            latest = conn.execute(
                self._latest_per_destination(d.c.last_attempt_at.is_not(None), d.c.last_attempt_at)
            )
            last_seen = {(r.provider, r.destination): r for r in latest}
            errors = conn.execute(
                self._latest_per_destination(sa.and_(failed, d.c.error.is_not(None)), d.c.updated_at)
            )
            last_error = {(r.provider, r.destination): r for r in errors}
            types = conn.execute(sa.select(d.c.event_type, sa.func.count()).group_by(d.c.event_type)).all()
        stats = []
        for row in agg:
            key = (row.provider, row.destination)
            seen = last_seen.get(key)
            err = last_error.get(key)
            stats.append(
                DestinationStats(
                    provider=row.provider,
                    destination=row.destination,
                    total=int(row.total or 0),
                    success=int(row.success or 0),
                    failed=int(row.failed or 0),
                    in_progress=int(row.in_progress or 0),
                    attempt_count=int(row.attempt_count or 0),
                    rollback_failures=int(row.rollback_failures or 0),
                    last_delivery_at=seen.last_attempt_at if seen else None,
                    last_status_code=seen.status_code if seen else None,
                    last_error=err.error if err else None,
                    last_error_at=err.last_attempt_at if err else None,
                )
            )
        return stats, {str(t): int(n) for t, n in types}

    @staticmethod
    def _latest_per_destination(
        condition: sa.ColumnElement[bool], order: sa.ColumnElement[Any]
    ) -> sa.Select[Any]:
        d = delivery_t
        ranked = (
            sa.select(
                d.c.provider,
                d.c.destination,
                d.c.error,
                d.c.status_code,
                d.c.last_attempt_at,
                sa.func.row_number()
                .over(partition_by=(d.c.provider, d.c.destination), order_by=(order.desc(), d.c.id.desc()))
                .label("rn"),
            )
            .where(condition)
            .subquery()
        )
        return sa.select(ranked).where(ranked.c.rn == 1)
