"""Evidence rows: append to the chain under the head lock (or insert-or-skip by import key),
read, search, and stream for verify."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import EvidenceNotFoundError
from ringward.core.evidence.query import EvidencePage, EvidenceQuery
from ringward.core.evidence.records import (
    EVIDENCE_RECORD_SCHEMA,
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
from ringward.store.tables import kv_state_table as kv_t

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
#: the API page's columns: ``created_at`` as the driver returns it (SQLite text, PostgreSQL
#: datetime), formatted by ``_timestamp_text`` without the parse-then-format round trip
_PAGE_COLUMNS = tuple(sa.type_coerce(c, sa.String).label(c.name) if c is ev_t.c.created_at else c for c in _COLUMNS)


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
        found.update(str(r[0]) for r in conn.execute(sa.select(ev_t.c.import_key).where(ev_t.c.import_key.in_(chunk))))
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


class _Plan:
    """The SQL shape of one search: its WHERE clauses (without the page cursor) and whether it
    matches nothing outright (a time window past the last record)."""

    __slots__ = ("clauses", "empty", "id_range")

    def __init__(self, clauses: list[sa.ColumnElement[bool]], empty: bool, id_range: tuple[int, int | None]) -> None:
        self.clauses = clauses
        self.empty = empty
        #: [low, high) ids the time window covers (high None: up to the head)
        self.id_range = id_range


def _first_id_at_or_after(conn: Connection, moment: datetime) -> int | None:
    """The smallest id whose ``created_at`` is at or after ``moment`` (index-only, ``(created_at, id)``)."""
    row = conn.execute(
        sa.select(ev_t.c.id).where(ev_t.c.created_at >= moment).order_by(ev_t.c.created_at, ev_t.c.id).limit(1)
    ).first()
    return None if row is None else int(row[0])


def _plan(conn: Connection, query: EvidenceQuery) -> _Plan:
    """Equality filters as column comparisons; a time window as an id range.

    ``created_at`` never decreases along the chain (chain invariant 4, checked by verify), so
    the records of ``[created_from, created_to)`` are exactly the ids ``[first id at or after
    created_from, first id at or after created_to)``. Two index-only lookups find those ids, and
    every ``(<filter>, id)`` index (or the primary key) then serves the window in id order: no
    sort of the matches, whatever the window's size.
    """
    clauses: list[sa.ColumnElement[bool]] = [ev_t.c[name] == value for name, value in query.equality_filters().items()]
    low, high = 1, None
    if query.created_from is not None:
        first = _first_id_at_or_after(conn, query.created_from)
        if first is None:
            return _Plan(clauses, True, (low, high))
        low = first
        clauses.append(ev_t.c.id >= first)
    if query.created_to is not None:
        end = _first_id_at_or_after(conn, query.created_to)
        if end is not None:
            high = end
            clauses.append(ev_t.c.id < end)
    if high is not None and high <= low:
        return _Plan(clauses, True, (low, high))
    return _Plan(clauses, False, (low, high))


def _count(conn: Connection, query: EvidenceQuery, plan: _Plan, seen: int) -> tuple[int, bool]:
    """(total, is a lower bound) for the query's filters, ignoring the page cursor.

    ``seen`` is how many matches the page query returned (up to ``limit + 1``, from ``offset``).
    """
    if plan.empty:
        return 0, False
    if query.before_id is None and seen <= query.limit and (seen > 0 or query.offset == 0):
        # the page reached the last match: nothing left to count
        return query.offset + seen, False
    if not query.equality_filters():
        # ids are 1..head without gaps (chain invariant 1): a window's count is arithmetic
        low, high = plan.id_range
        if high is None:
            high = read_head(conn).last_id + 1
        return max(0, high - low), False
    if query.total_limit is None:
        statement = sa.select(sa.func.count()).select_from(ev_t).where(*plan.clauses)
        return int(conn.execute(statement).scalar_one()), False
    # count at most total_limit + 1 matches, the newest ones: ordering by id steers the planner to
    # walk a (filter, id) index backwards -- an index range of that length, never a table scan
    bounded = (
        sa.select(ev_t.c.id).where(*plan.clauses).order_by(ev_t.c.id.desc()).limit(query.total_limit + 1).subquery()
    )
    found = _count_within(conn, sa.select(sa.func.count()).select_from(bounded), query.total_budget_ms)
    if found is None:
        # filters no single index covers can need many row reads per match: past the budget,
        # report what the page proved (before_id pages may have skipped matches: only the page)
        return (query.offset if query.before_id is None else 0) + seen, True
    if found > query.total_limit:
        return query.total_limit, True
    return found, False


#: SQLite virtual-machine steps between two checks of a count's time budget (a few microseconds)
PROGRESS_STEPS = 200


def _count_within(conn: Connection, statement: sa.Select[Any], budget_ms: int | None) -> int | None:
    """Run a count, abandoning it (None) once it ran ``budget_ms`` milliseconds."""
    if budget_ms is None:
        return int(conn.execute(statement).scalar_one())
    if conn.dialect.name == "sqlite":
        raw: Any = conn.connection.driver_connection
        deadline = time.monotonic() + budget_ms / 1000
        # called every PROGRESS_STEPS virtual-machine steps; a non-zero return interrupts the statement
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
        try:
            return int(conn.execute(statement).scalar_one())
        except OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            return None
        finally:
            raw.set_progress_handler(None, 0)
    savepoint = conn.begin_nested()  # a cancelled statement must not abort the read transaction
    try:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(budget_ms)}")
        found = int(conn.execute(statement).scalar_one())
    except OperationalError as exc:
        savepoint.rollback()
        if getattr(exc.orig, "sqlstate", None) != "57014":  # query_canceled
            raise
        return None
    savepoint.rollback()  # also undoes the SET LOCAL
    return found


def search_rows(
    conn: Connection, query: EvidenceQuery, columns: Sequence[Any] = _COLUMNS
) -> tuple[list[Sequence[Any]], int | None, bool]:
    """The page's rows (up to ``limit + 1``: one more says there is a next page) in the
    query's order, the total and whether it is a lower bound."""
    plan = _plan(conn, query)
    if plan.empty:
        return [], (0 if query.with_total else None), False
    page_clauses = list(plan.clauses)
    if query.before_id is not None:
        page_clauses.append(ev_t.c.id < query.before_id)
    order = ev_t.c.id.desc() if query.order == "newest" else ev_t.c.id.asc()
    rows: list[Sequence[Any]] = [
        tuple(row)
        for row in conn.execute(
            sa.select(*columns).where(*page_clauses).order_by(order).limit(query.limit + 1).offset(query.offset)
        )
    ]
    total: int | None = None
    lower_bound = False
    if query.with_total:
        total, lower_bound = _count(conn, query, plan, len(rows))
    return rows, total, lower_bound


def search(conn: Connection, query: EvidenceQuery) -> EvidencePage:
    rows, total, lower_bound = search_rows(conn, query)
    more = len(rows) > query.limit
    items = tuple(_record_from_row(tuple(row)) for row in rows[: query.limit])
    next_before = items[-1].id if (more and items and query.order == "newest") else None
    return EvidencePage(
        items=items,
        total=total,
        limit=query.limit,
        offset=query.offset,
        next_before_id=next_before,
        total_is_lower_bound=lower_bound,
    )


def _page_item(row: Sequence[Any]) -> dict[str, Any]:
    """A record's ``to_document()`` for orjson, straight from its row: the payload and artifact
    list are spliced in as the JSON text they are stored as (``orjson.Fragment``) instead of being
    parsed and encoded again -- they were validated and canonicalised on append, and a page of
    fifty records through ``json`` or the pydantic models cost more than the query itself."""
    subject = dict(zip(SUBJECT_FIELDS, row[5 : 5 + _N_SUBJECT], strict=True))
    if subject["success"] is not None:
        subject["success"] = bool(subject["success"])
    payload_text, payload_sha256, bundle_dir, artifacts_text, previous_hash, stored_hash = row[5 + _N_SUBJECT :]
    return {
        "id": row[0],
        "kind": row[1],
        "actor": row[2],
        "created_at": _timestamp_text(row[3]),
        "flow_run_id": row[4],
        "subject": subject,
        "payload": orjson.Fragment(payload_text),
        "payload_sha256": payload_sha256,
        "bundle_dir": bundle_dir,
        "artifacts": orjson.Fragment(artifacts_text),
        "previous_hash": previous_hash,
        "record_hash": stored_hash,
        "schema_version": EVIDENCE_RECORD_SCHEMA,
    }


def search_json(conn: Connection, query: EvidenceQuery) -> bytes:
    """The search page as the API's JSON body (the same document as ``search(...).to_document()``)."""
    rows, total, lower_bound = search_rows(conn, query, _PAGE_COLUMNS)
    more = len(rows) > query.limit
    page = rows[: query.limit]
    document = {
        "items": [_page_item(row) for row in page],
        "total": total,
        "total_is_lower_bound": lower_bound,
        "limit": query.limit,
        "offset": query.offset,
        "next_before_id": page[-1][0] if (more and page and query.order == "newest") else None,
    }
    return orjson.dumps(document)


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


# --- planner statistics ---------------------------------------------------------------------------

#: kv_state entry recording how many records the last ANALYZE of the evidence table saw
STATS_NAMESPACE = "ringward.store"
STATS_KEY = "evidence.analyzed_through"
#: re-analyse once the chain grew by this many records since the last ANALYZE...
STATS_MIN_GROWTH = 5000
#: ...and by at least this fraction of its size then (so a big chain is not re-analysed per batch)
STATS_GROWTH_FRACTION = 0.2
#: ``PRAGMA analysis_limit`` (0: read every row). A sample of each index's first entries sees
#: only its first keys -- for a column that is mostly NULL (``provider``) it reports the NULLs'
#: count for every value and the planner picks the wrong index. A full ANALYZE of a million
#: records takes ~3 s and runs once per 20 % of growth.
SQLITE_ANALYSIS_LIMIT = 0


def statistics_due(analyzed_through: int, last_id: int) -> bool:
    """Whether a chain of ``last_id`` records, last analysed at ``analyzed_through``, needs ANALYZE."""
    grown = last_id - analyzed_through
    return grown >= STATS_MIN_GROWTH and grown >= analyzed_through * STATS_GROWTH_FRACTION


def analyzed_through(conn: Connection) -> int:
    """The chain length the last ANALYZE saw (0 when never analysed)."""
    row = conn.execute(
        sa.select(kv_t.c.value).where(kv_t.c.namespace == STATS_NAMESPACE, kv_t.c.key == STATS_KEY)
    ).first()
    try:
        return int(row[0]) if row is not None else 0
    except ValueError:  # not ours to trust: analyse again
        return 0


def analyze_sqlite_locked(conn: Connection) -> None:
    """``ANALYZE`` the evidence table in the caller's SQLite write transaction."""
    conn.exec_driver_sql(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
    conn.exec_driver_sql("ANALYZE evidence_record")


def vacuum_analyze_postgresql(conn: Connection) -> None:
    """``VACUUM (ANALYZE)`` the evidence table; ``conn`` must be in autocommit mode.

    ANALYZE alone refreshes the estimates; VACUUM also marks the appended pages all-visible, which
    is what lets the planner count matches with an index-only scan of a ``(<filter>, id)`` index
    instead of reading each row. On an append-only table it reads only the pages added since.
    """
    conn.exec_driver_sql("VACUUM (ANALYZE) evidence_record")


def note_analyzed_locked(conn: Connection, last_id: int, now: datetime) -> None:
    """Record in the caller's write transaction that statistics cover ``last_id`` records."""
    conn.execute(sa.delete(kv_t).where(kv_t.c.namespace == STATS_NAMESPACE, kv_t.c.key == STATS_KEY))
    conn.execute(
        sa.insert(kv_t).values(
            namespace=STATS_NAMESPACE,
            key=STATS_KEY,
            value=str(last_id),
            version=1,
            updated_at=now,
            updated_by="ringward-store",
        )
    )
