"""Evidence rows: append to the chain under the head lock (or insert-or-skip by import key),
read, search, and stream for verify."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import EvidenceNotFoundError
from ringward.core.evidence.query import EvidencePage, EvidenceQuery
from ringward.core.evidence.records import (
    GENESIS_HASH,
    SUBJECT_FIELDS,
    EvidenceArtifact,
    EvidenceDraft,
    EvidenceRecord,
    EvidenceSubject,
    artifact_triples,
    format_timestamp,
    link_hash,
)
from ringward.store.tables import evidence_head_table as head_t
from ringward.store.tables import evidence_table as ev_t

#: rows fetched per round trip when streaming the chain
STREAM_BATCH = 5000
#: keys per IN (...) lookup (far below SQLite's bound-parameter limit)
KEY_CHUNK = 400

_COLUMNS = (
    ev_t.c.id,
    ev_t.c.kind,
    ev_t.c.actor,
    ev_t.c.created_at,
    ev_t.c.flow_run_id,
    *[ev_t.c[name] for name in SUBJECT_FIELDS],
    ev_t.c.payload,
    ev_t.c.payload_sha256,
    ev_t.c.bundle_dir,
    ev_t.c.artifacts,
    ev_t.c.previous_hash,
    ev_t.c.record_hash,
)
_N_SUBJECT = len(SUBJECT_FIELDS)


class ChainHead:
    """The head the store recorded: last id, its hash and its time."""

    __slots__ = ("last_created_at", "last_hash", "last_id")

    def __init__(self, last_id: int, last_hash: str, last_created_at: datetime | None) -> None:
        self.last_id = last_id
        self.last_hash = last_hash
        self.last_created_at = last_created_at


def read_head(conn: Connection, *, for_update: bool = False) -> ChainHead:
    query = sa.select(head_t.c.last_id, head_t.c.last_hash, head_t.c.last_created_at).where(head_t.c.id == 1)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:  # the migration inserts it; a missing head is a damaged database
        return ChainHead(0, GENESIS_HASH, None)
    return ChainHead(int(row[0]), str(row[1]), row[2])


def append_locked(
    conn: Connection,
    drafts: Sequence[EvidenceDraft],
    now: datetime,
    *,
    import_keys: Sequence[str | None] | None = None,
    head: ChainHead | None = None,
) -> list[EvidenceRecord]:
    """Append ``drafts`` in order inside the caller's write transaction.

    Takes the head lock (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds
    the database lock), links each record to its predecessor and moves the head. The primary key
    on ``id`` and the unique ``previous_hash`` make a fork impossible even if locking were wrong.
    ``import_keys`` (one per draft, or None) fill the unique ``import_key`` column; use
    :func:`append_absent_locked` rather than passing keys that may already exist. ``head`` is the
    head the caller already read with :func:`lock_head` in this transaction.
    """
    if not drafts:
        return []
    return _append_at(conn, head or lock_head(conn), drafts, now, import_keys)


def _append_at(
    conn: Connection,
    head: ChainHead,
    drafts: Sequence[EvidenceDraft],
    now: datetime,
    import_keys: Sequence[str | None] | None,
) -> list[EvidenceRecord]:
    """Link ``drafts`` after ``head`` (read under the head lock by the caller) and move the head."""
    if import_keys is not None and len(import_keys) != len(drafts):
        raise ValueError(f"import_keys: {len(import_keys)} keys for {len(drafts)} drafts")
    created_at = now.astimezone(UTC)
    # time never runs backwards along the chain, whatever the clocks of concurrent writers say
    if head.last_created_at is not None and created_at < head.last_created_at:
        created_at = head.last_created_at
    created_text = format_timestamp(created_at)
    last_id, last_hash = head.last_id, head.last_hash
    rows: list[dict[str, Any]] = []
    records: list[EvidenceRecord] = []
    for index, draft in enumerate(drafts):
        last_id += 1
        subject = draft.subject.model_dump()
        artifacts = [a.model_dump() for a in draft.artifacts]
        payload_sha256 = draft.payload_sha256()
        digest = link_hash(
            last_id,
            draft.kind,
            draft.actor,
            created_text,
            draft.flow_run_id,
            [subject[name] for name in SUBJECT_FIELDS],
            payload_sha256,
            draft.bundle_dir,
            artifact_triples(artifacts),
            last_hash,
        )
        row = {
            "id": last_id,
            "kind": draft.kind,
            "actor": draft.actor,
            "created_at": created_at,
            "flow_run_id": draft.flow_run_id,
            **subject,
            "payload": draft.payload_bytes().decode("utf-8"),
            "payload_sha256": payload_sha256,
            "bundle_dir": draft.bundle_dir,
            "artifacts": dumps_canonical(artifacts).decode("utf-8"),
            "previous_hash": last_hash,
            "record_hash": digest,
        }
        if import_keys is not None:  # only then: appends keep working on a store not yet migrated
            row["import_key"] = import_keys[index]
        rows.append(row)
        # every value comes from a validated draft or was computed here: skip re-validation
        records.append(
            EvidenceRecord.model_construct(
                id=last_id,
                kind=draft.kind,
                actor=draft.actor,
                created_at=created_at,
                flow_run_id=draft.flow_run_id,
                subject=draft.subject,
                payload=draft.payload,
                payload_sha256=payload_sha256,
                bundle_dir=draft.bundle_dir,
                artifacts=draft.artifacts,
                previous_hash=last_hash,
                record_hash=digest,
            )
        )
        last_hash = digest
    conn.execute(sa.insert(ev_t), rows)
    conn.execute(
        sa.update(head_t)
        .where(head_t.c.id == 1)
        .values(last_id=last_id, last_hash=last_hash, last_created_at=created_at)
    )
    return records


def lock_head(conn: Connection) -> ChainHead:
    """Take the chain's write lock in the caller's write transaction and return the head.

    Every append holds it until commit (``FOR UPDATE`` on the head row on PostgreSQL; on SQLite
    the write transaction's ``BEGIN IMMEDIATE`` is the lock), so a check made after this call
    sees every record committed before it and nothing can be appended until this commits.
    """
    return read_head(conn, for_update=True)


def existing_import_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    """The ``keys`` some record already carries as its import key."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), KEY_CHUNK):
        chunk = wanted[start : start + KEY_CHUNK]
        found.update(
            str(r[0]) for r in conn.execute(sa.select(ev_t.c.import_key).where(ev_t.c.import_key.in_(chunk)))
        )
    return found


def existing_payloads(conn: Connection, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (kind, payload_sha256) ``pairs`` some record of the chain already holds."""
    wanted = set(pairs)
    digests = sorted({digest for _, digest in wanted})
    found: set[tuple[str, str]] = set()
    for start in range(0, len(digests), KEY_CHUNK):
        chunk = digests[start : start + KEY_CHUNK]
        rows = conn.execute(
            sa.select(ev_t.c.kind, ev_t.c.payload_sha256).where(ev_t.c.payload_sha256.in_(chunk)).distinct()
        )
        found.update(pair for pair in ((str(r[0]), str(r[1])) for r in rows) if pair in wanted)
    return found


def append_absent_locked(
    conn: Connection, keyed: Sequence[tuple[str, EvidenceDraft]], now: datetime
) -> list[EvidenceRecord | None]:
    """Insert-or-skip by import key, in the caller's write transaction: one result per draft,
    its record, or None when the key (or the same kind and payload) is already in the chain, or
    appeared earlier in ``keyed``.

    The check runs under the head lock (:func:`lock_head`), so no append can slip between it and
    the insert; the unique index on ``import_key`` backs it: were the lock ever bypassed, the
    losing transaction fails with an IntegrityError instead of recording the item twice.
    """
    if not keyed:
        return []
    pairs = [(draft.kind, draft.payload_sha256()) for _, draft in keyed]
    head = lock_head(conn)
    taken = existing_import_keys(conn, (key for key, _ in keyed))
    recorded = existing_payloads(conn, pairs)
    fresh: list[EvidenceDraft] = []
    keys: list[str | None] = []
    slots: list[int] = []
    for index, ((key, draft), pair) in enumerate(zip(keyed, pairs, strict=True)):
        if key in taken or pair in recorded:
            continue
        taken.add(key)
        recorded.add(pair)
        fresh.append(draft)
        keys.append(key)
        slots.append(index)
    out: list[EvidenceRecord | None] = [None] * len(keyed)
    if fresh:
        for index, record in zip(slots, _append_at(conn, head, fresh, now, keys), strict=True):
            out[index] = record
    return out


def _record_from_row(row: Sequence[Any]) -> EvidenceRecord:
    subject_values = row[5 : 5 + _N_SUBJECT]
    rest = row[5 + _N_SUBJECT :]
    payload_text, payload_sha256, bundle_dir, artifacts_text, previous_hash, stored_hash = rest
    return EvidenceRecord(
        id=row[0],
        kind=row[1],
        actor=row[2],
        created_at=row[3],
        flow_run_id=row[4],
        subject=EvidenceSubject.model_construct(**dict(zip(SUBJECT_FIELDS, subject_values, strict=True))),
        payload=json.loads(payload_text),
        payload_sha256=payload_sha256,
        bundle_dir=bundle_dir,
        artifacts=tuple(EvidenceArtifact.model_construct(**a) for a in json.loads(artifacts_text)),
        previous_hash=previous_hash,
        record_hash=stored_hash,
    )


def get_record(conn: Connection, record_id: int) -> EvidenceRecord:
    row = conn.execute(sa.select(*_COLUMNS).where(ev_t.c.id == record_id)).first()
    if row is None:
        raise EvidenceNotFoundError(f"evidence record {record_id} not found")
    return _record_from_row(tuple(row))


def _where(query: EvidenceQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [ev_t.c[name] == value for name, value in query.equality_filters().items()]
    if query.created_from is not None:
        clauses.append(ev_t.c.created_at >= query.created_from)
    if query.created_to is not None:
        clauses.append(ev_t.c.created_at < query.created_to)
    return clauses


def search(conn: Connection, query: EvidenceQuery) -> EvidencePage:
    clauses = _where(query)
    page_clauses = list(clauses)
    if query.before_id is not None:
        page_clauses.append(ev_t.c.id < query.before_id)
    order = ev_t.c.id.desc() if query.order == "newest" else ev_t.c.id.asc()
    rows = conn.execute(
        sa.select(*_COLUMNS).where(*page_clauses).order_by(order).limit(query.limit + 1).offset(query.offset)
    ).all()
    more = len(rows) > query.limit
    items = tuple(_record_from_row(tuple(row)) for row in rows[: query.limit])
    total: int | None = None
    if query.with_total:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(ev_t).where(*clauses)).scalar_one())
    next_before = items[-1].id if (more and items and query.order == "newest") else None
    return EvidencePage(items=items, total=total, limit=query.limit, offset=query.offset, next_before_id=next_before)


def find_by_payload_digest(conn: Connection, kind: str, payload_sha256: str) -> int | None:
    row = conn.execute(
        sa.select(ev_t.c.id)
        .where(ev_t.c.payload_sha256 == payload_sha256, ev_t.c.kind == kind)
        .order_by(ev_t.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else int(row[0])


def stream_chain(conn: Connection, *, batch: int = STREAM_BATCH, start_after: int = 0) -> Iterator[tuple[Any, ...]]:
    """Every record in id order as raw tuples (keyset batches: constant memory, no long cursor)."""
    last = start_after
    query = sa.select(*_COLUMNS).order_by(ev_t.c.id.asc()).limit(batch)
    while True:
        rows = conn.execute(query.where(ev_t.c.id > last)).all()
        if not rows:
            return
        for row in rows:
            yield tuple(row)
        last = rows[-1][0]


_RAW_COLUMNS = ", ".join(
    [
        "id",
        "kind",
        "actor",
        "created_at",
        "flow_run_id",
        *SUBJECT_FIELDS,
        "payload",
        "payload_sha256",
        "bundle_dir",
        "artifacts",
        "previous_hash",
        "record_hash",
    ]
)
_SUCCESS_INDEX = 5 + SUBJECT_FIELDS.index("success")


def _timestamp_text(value: Any) -> str:
    """The chain's text form of a stored created_at, straight from the driver's value."""
    if isinstance(value, str):  # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (UTC, see UTCDateTime)
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        return format_timestamp(datetime.fromisoformat(value).replace(tzinfo=UTC))
    return format_timestamp(value.astimezone(UTC))


def stream_chain_raw(
    conn: Connection, *, batch: int = STREAM_BATCH, start_after: int = 0, stop_at: int | None = None
) -> Iterator[tuple[Any, ...]]:
    """Every record in id order as plain tuples, bypassing result processing (the verify loop).

    ``created_at`` comes back as the chain's text form and ``success`` as a bool or None; the
    other columns are as stored. Keyset batches keep memory constant.
    """
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT {_RAW_COLUMNS} FROM evidence_record WHERE id > {mark} AND id <= {mark} ORDER BY id LIMIT {mark}"  # noqa: S608
    upper = stop_at if stop_at is not None else 2**62
    last = start_after
    last_stamp: Any = None
    last_text = ""
    while True:
        rows = conn.exec_driver_sql(sql, (last, upper, batch)).fetchall()
        if not rows:
            return
        for row in rows:
            values = list(row)
            stamp = values[3]
            if stamp != last_stamp:  # batched appends share one time: format it once
                last_stamp, last_text = stamp, _timestamp_text(stamp)
            values[3] = last_text
            success = values[_SUCCESS_INDEX]
            if success is not None:
                values[_SUCCESS_INDEX] = bool(success)
            yield tuple(values)
        last = rows[-1][0]


def row_parts(row: tuple[Any, ...]) -> dict[str, Any]:
    """Split a streamed tuple into named parts (for messages and bundle checks)."""
    rest = row[5 + _N_SUBJECT :]
    return {
        "id": row[0],
        "kind": row[1],
        "bundle_dir": rest[2],
        "artifacts": json.loads(rest[3]) if rest[3] != "[]" else [],
    }


SUBJECT_SLICE = slice(5, 5 + _N_SUBJECT)
REST_OFFSET = 5 + _N_SUBJECT
