"""The :class:`Store`: one database, evidence chain plus approvals, tokens and key/value state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ringward.core.errors import InputError, StateError
from ringward.core.evidence.query import EvidencePage, EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.settings import database_url
from ringward.store.approvals.repo import ApprovalRepository
from ringward.store.db import (
    DEFAULT_BUSY_TIMEOUT_S,
    create_store_engine,
    database_label,
    migrate,
    redact_url,
    retry_unique,
    write_connection,
)
from ringward.store.evidence import repo as evidence_repo
from ringward.store.evidence.repo import ChainHead
from ringward.store.state_repo import StateRepository
from ringward.store.token_repo import TokenRepository

log = logging.getLogger("ringward.store")

#: drafts per transaction in :meth:`Store.append_many`
APPEND_BATCH = 1000

#: set by read-only front doors (the API's GET routes): any write transaction is then refused
READ_ONLY: ContextVar[bool] = ContextVar("ringward_store_read_only", default=False)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Persistence for evidence, approvals, API tokens and generic state.

    Use :func:`open_store`; close it (or use it as a context manager) when done.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: chain length at the last ANALYZE, as last read (None: not read yet)
        self._analyzed_through: int | None = None
        self.approvals = ApprovalRepository(self)
        self.tokens = TokenRepository(self)
        self.state = StateRepository(self)

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def label(self) -> str:
        return database_label(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- transactions --------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (never takes the write lock; GET routes use only this)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction: commits on success, rolls back on any exception."""
        if READ_ONLY.get():
            raise RuntimeError("write attempted in a read-only context (a GET route must never write)")
        with write_connection(self.engine) as conn, conn.begin():
            yield conn

    # --- evidence ------------------------------------------------------------------------------

    def append(self, draft: EvidenceDraft, *, now: datetime | None = None) -> EvidenceRecord:
        """Append one record to the chain (atomic, concurrent-safe)."""
        (record,) = self.append_many([draft], now=now, batch_size=1)
        return record

    def append_many(
        self, drafts: Iterable[EvidenceDraft], *, now: datetime | None = None, batch_size: int = APPEND_BATCH
    ) -> list[EvidenceRecord]:
        """Append records in order, ``batch_size`` per transaction."""
        _check_batch(batch_size, now)
        out: list[EvidenceRecord] = []
        batch: list[EvidenceDraft] = []
        for draft in drafts:
            if not isinstance(draft, EvidenceDraft):
                raise InputError(f"append: expected an EvidenceDraft, found {type(draft).__name__}")
            batch.append(draft)
            if len(batch) >= batch_size:
                out.extend(self._append_batch(batch, now))
                batch = []
        if batch:
            out.extend(self._append_batch(batch, now))
        return out

    def _append_batch(self, drafts: list[EvidenceDraft], now: datetime | None) -> list[EvidenceRecord]:
        records = _retry_locked(lambda: self._append_once(drafts, now))
        if records:
            self._after_append(records[-1].id)
        return records

    def _append_once(self, drafts: list[EvidenceDraft], now: datetime | None) -> list[EvidenceRecord]:
        with self.writing() as conn:
            return evidence_repo.append_locked(conn, drafts, now or _utcnow())

    def append_absent(
        self,
        keyed: Iterable[tuple[str, EvidenceDraft]],
        *,
        now: datetime | None = None,
        batch_size: int = APPEND_BATCH,
    ) -> list[EvidenceRecord | None]:
        """Insert-or-skip by import key: append each ``(key, draft)`` unless that key -- or a record
        of the same kind and payload -- is already in the chain (or earlier in ``keyed``).

        One result per item: its new record, or None when skipped. Each batch of ``batch_size``
        is one transaction whose check runs under the chain's write lock and whose inserts the
        unique ``import_key`` index guards, so concurrent or repeated imports record an item once.
        """
        _check_batch(batch_size, now)
        out: list[EvidenceRecord | None] = []
        batch: list[tuple[str, EvidenceDraft]] = []
        for key, draft in keyed:
            if not isinstance(draft, EvidenceDraft):
                raise InputError(f"append: expected an EvidenceDraft, found {type(draft).__name__}")
            if not key or len(key) > IMPORT_KEY_MAX:
                raise InputError(f"import key: expected 1..{IMPORT_KEY_MAX} characters, found {len(key)}")
            batch.append((key, draft))
            if len(batch) >= batch_size:
                out.extend(self._append_absent_batch(batch, now))
                batch = []
        if batch:
            out.extend(self._append_absent_batch(batch, now))
        return out

    def _append_absent_batch(
        self, keyed: list[tuple[str, EvidenceDraft]], now: datetime | None
    ) -> list[EvidenceRecord | None]:
        def once() -> list[EvidenceRecord | None]:
            with self.writing() as conn:
                return evidence_repo.append_absent_locked(conn, keyed, now or _utcnow())

        records = retry_unique(lambda: _retry_locked(once), what="import")
        appended = [r.id for r in records if r is not None]
        if appended:
            self._after_append(appended[-1])
        return records

    # --- planner statistics --------------------------------------------------------------------

    def _after_append(self, last_id: int) -> None:
        """Refresh planner statistics when the chain outgrew them (cheap check otherwise)."""
        if self._analyzed_through is None:
            with self.reading() as conn:
                self._analyzed_through = evidence_repo.analyzed_through(conn)
        if evidence_repo.statistics_due(self._analyzed_through, last_id):
            try:
                self.refresh_statistics(only_if_due=True)
            except DBAPIError as exc:  # the records are committed: a later append analyses instead
                log.warning("store: refreshing planner statistics failed: %s", exc.orig)

    def refresh_statistics(self, *, only_if_due: bool = False, now: datetime | None = None) -> int:
        """Refresh the planner statistics of the evidence table and return the chain length they
        cover: ``ANALYZE`` on SQLite, ``VACUUM (ANALYZE)`` on PostgreSQL (not left to autovacuum).

        Appends call this once the chain grew by 20 % (and at least 5,000 records) since the
        last run; bulk loads and imports may call it directly. ``only_if_due`` re-checks first,
        so concurrent writers rarely analyse twice (twice is harmless)."""
        with self.reading() as conn:
            done = evidence_repo.analyzed_through(conn)
            last_id = evidence_repo.read_head(conn).last_id
        if only_if_due and not evidence_repo.statistics_due(done, last_id):
            self._analyzed_through = done
            return done
        if self.dialect == "postgresql":
            if READ_ONLY.get():
                raise RuntimeError("write attempted in a read-only context (a GET route must never write)")
            with self.engine.connect() as conn:
                evidence_repo.vacuum_analyze_postgresql(conn.execution_options(isolation_level="AUTOCOMMIT"))
            with self.writing() as conn:
                evidence_repo.note_analyzed_locked(conn, last_id, now or _utcnow())
        else:
            with self.writing() as conn:
                last_id = evidence_repo.read_head(conn).last_id
                evidence_repo.analyze_sqlite_locked(conn)
                evidence_repo.note_analyzed_locked(conn, last_id, now or _utcnow())
        self._analyzed_through = last_id
        return last_id

    def get_evidence(self, record_id: int) -> EvidenceRecord:
        with self.reading() as conn:
            return evidence_repo.get_record(conn, record_id)

    def search_evidence(self, query: EvidenceQuery) -> EvidencePage:
        with self.reading() as conn:
            return evidence_repo.search(conn, query)

    def search_evidence_json(self, query: EvidenceQuery) -> bytes:
        """:meth:`search_evidence` as the API's JSON body, built from the rows directly."""
        with self.reading() as conn:
            return evidence_repo.search_json(conn, query)

    def head(self) -> ChainHead:
        with self.reading() as conn:
            return evidence_repo.read_head(conn)

    def count_evidence(self) -> int:
        return self.head().last_id

    def find_evidence_by_payload(self, kind: str, payload_sha256: str) -> int | None:
        with self.reading() as conn:
            return evidence_repo.find_by_payload_digest(conn, kind, payload_sha256)

    @contextmanager
    def chain_segment(self, start_id: int, end_id: int) -> Iterator[Iterator[tuple[Any, ...]]]:
        """Records ``start_id..end_id`` in id order (a parallel verifier's share of the chain)."""
        with self.engine.connect() as conn, conn.begin():
            yield evidence_repo.stream_chain_raw(conn, start_after=start_id - 1, stop_at=end_id)

    @contextmanager
    def chain_snapshot(self) -> Iterator[tuple[ChainHead, Iterator[tuple[Any, ...]]]]:
        """The head and a stream of every record up to it, read in one transaction.

        On PostgreSQL the transaction is REPEATABLE READ so rows appended meanwhile stay
        invisible; on SQLite a read transaction in WAL mode is already a snapshot.
        """
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                head = evidence_repo.read_head(conn)
                yield head, evidence_repo.stream_chain_raw(conn)


_T = TypeVar("_T")

#: longest import key (the ``import_key`` column)
IMPORT_KEY_MAX = 256


def _check_batch(batch_size: int, now: datetime | None) -> None:
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, found {batch_size}")
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise InputError("now: naive datetime, expected a timezone-aware (UTC) time")


def _retry_locked(fn: Callable[[], _T], *, attempts: int = 5) -> _T:
    """Retry a write transaction that lost to SQLite's lock after the busy timeout."""
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise StateError(f"store busy: {exc.orig}") from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def open_store(url: str | None = None, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Store:
    """Open (and migrate to head) the store at ``url`` or ``ringward.settings.database_url()``."""
    target = url or database_url()
    engine = create_store_engine(target, busy_timeout_s=busy_timeout_s)
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise StateError(f"cannot open store {redact_url(target)}: {type(exc.orig).__name__}: {exc.orig}") from exc
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
