"""Row-level backup and restore of every table that carries state (``ringward backup``).

The set of tables is not a hand-kept list: :func:`state_tables` imports every module of
``ringward.store`` (each registers its tables on ``ringward.store.tables.METADATA``) and takes all of them but
``alembic_version``, in foreign-key order. A table a later migration adds is therefore backed up
without touching this file; ``tests/backup`` fails if the migrated schema holds a table that is
not covered.

Rows travel as JSON objects keyed by column name, values exactly as stored: integers, strings,
booleans and nulls as themselves, :class:`~ringward.store.tables.UTCDateTime` values as ISO-8601
with a ``+00:00`` offset (microseconds kept), so the evidence chain's hashes re-verify byte for
byte on either backend.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ringward.core.errors import MalformedDocumentError
from ringward.core.evidence.records import GENESIS_HASH
from ringward.store.evidence.repo import ChainHead, read_head
from ringward.store.tables import METADATA, UTCDateTime

#: tables the migrations own for their own bookkeeping (never backed up or restored)
EXCLUDED_TABLES = frozenset({"alembic_version"})
#: the single evidence head row every migrated store starts with (chain of length 0)
HEAD_TABLE = "evidence_head"
#: rows per INSERT statement on restore
INSERT_BATCH = 1000
#: rows fetched per round trip while streaming a table out
FETCH_BATCH = 2000


@functools.cache
def state_tables() -> tuple[sa.Table, ...]:
    """Every table of the store except :data:`EXCLUDED_TABLES`, parents before children."""
    for module in pkgutil.walk_packages([str(Path(__file__).parent)], "ringward.store."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    tables = tuple(t for t in METADATA.sorted_tables if t.name not in EXCLUDED_TABLES)
    for table in tables:
        for column in table.columns:
            _kind(column)  # an unsupported column type fails here, not half-way through a backup
    return tables


def _kind(column: sa.Column[Any]) -> str:
    """How a column's values are written: ``datetime``, ``bool``, ``int`` or ``str``."""
    col_type = column.type
    if isinstance(col_type, UTCDateTime):
        return "datetime"
    if isinstance(col_type, sa.types.TypeDecorator):  # a decorated type is written as its base type
        col_type = col_type.impl_instance
    if isinstance(col_type, sa.Boolean):
        return "bool"
    if isinstance(col_type, sa.Integer):
        return "int"
    if isinstance(col_type, sa.String):  # String and Text
        return "str"
    raise TypeError(
        f"{column.table.name}.{column.name}: column type {col_type!r} has no backup encoding "
        "(add one to ringward/store/backup.py)"
    )


def encode_row(table: sa.Table, row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored row as a JSON object (see the module docstring)."""
    out: dict[str, Any] = {}
    for column in table.columns:
        value = row[column.name]
        if value is not None and _kind(column) == "datetime":
            value = value.astimezone(UTC).isoformat()
        out[column.name] = value
    return out


def decode_row(table: sa.Table, document: Any, *, source: str) -> dict[str, Any]:
    """A JSON object from a backup as bind values for ``table``; every column, nothing else.

    Raises:
        MalformedDocumentError: naming ``source`` and the column, expected vs found.
    """
    if not isinstance(document, dict):
        raise MalformedDocumentError(f"{source}: expected a JSON object, found {type(document).__name__}")
    names = [c.name for c in table.columns]
    if set(document) != set(names):
        missing = sorted(set(names) - set(document))
        extra = sorted(set(document) - set(names))
        raise MalformedDocumentError(
            f"{source}: columns of {table.name} differ (missing {missing or 'none'}, unexpected {extra or 'none'})"
        )
    out: dict[str, Any] = {}
    for column in table.columns:
        value = document[column.name]
        if value is None:
            if not column.nullable:
                raise MalformedDocumentError(f"{source}: {column.name}: null, expected a value (NOT NULL)")
            out[column.name] = None
            continue
        kind = _kind(column)
        if kind == "datetime":
            out[column.name] = _parse_time(value, source=f"{source}: {column.name}")
        elif kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise MalformedDocumentError(f"{source}: {column.name}: expected an integer, found {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            raise MalformedDocumentError(f"{source}: {column.name}: expected true or false, found {value!r}")
        elif kind == "str" and not isinstance(value, str):
            raise MalformedDocumentError(f"{source}: {column.name}: expected a string, found {value!r}")
        else:
            out[column.name] = value
    return out


def _parse_time(value: Any, *, source: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedDocumentError(f"{source}: expected an ISO-8601 UTC time, found {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedDocumentError(f"{source}: expected an ISO-8601 UTC time, found {value!r}") from None
    if parsed.utcoffset() is None:
        raise MalformedDocumentError(f"{source}: {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


# --- reading -------------------------------------------------------------------------------------


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction that sees a single point in time across all tables (PostgreSQL:
    REPEATABLE READ; SQLite: a WAL read transaction is already a snapshot)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def stream_rows(conn: Connection, table: sa.Table) -> Iterator[dict[str, Any]]:
    """Every row of ``table`` in primary-key order, encoded (see :func:`encode_row`)."""
    query = sa.select(table).order_by(*table.primary_key.columns)
    result = conn.execution_options(stream_results=True, yield_per=FETCH_BATCH).execute(query)
    for row in result.mappings():
        yield encode_row(table, row)


def count_rows(conn: Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def bundle_dirs(conn: Connection) -> list[str]:
    """Every distinct evidence bundle directory the chain names, sorted."""
    column = METADATA.tables["evidence_record"].c.bundle_dir
    query = sa.select(column).where(column.is_not(None)).distinct().order_by(column)
    return [str(value) for value in conn.execute(query).scalars()]


def chain_head(conn: Connection) -> ChainHead:
    return read_head(conn)


def lock_chain(conn: Connection) -> None:
    """Take the chain's write lock (PostgreSQL: the head row; SQLite's BEGIN IMMEDIATE already holds it)."""
    read_head(conn, for_update=True)


def occupied_tables(conn: Connection) -> dict[str, int]:
    """Tables holding state, with their row counts; a fresh store's genesis head row is not state."""
    out: dict[str, int] = {}
    for table in state_tables():
        rows = count_rows(conn, table)
        if table.name == HEAD_TABLE and rows == 1:
            head = read_head(conn)
            if head.last_id == 0 and head.last_hash == GENESIS_HASH:
                continue
        if rows:
            out[table.name] = rows
    return out


# --- writing -------------------------------------------------------------------------------------


def clear_genesis_head(conn: Connection) -> None:
    """Remove the genesis head row so the backup's head row takes its place."""
    head_table = METADATA.tables[HEAD_TABLE]
    conn.execute(sa.delete(head_table).where(head_table.c.last_id == 0))


def insert_rows(conn: Connection, table: sa.Table, rows: Iterable[dict[str, Any]]) -> int:
    """Insert decoded rows with their own ids, :data:`INSERT_BATCH` per statement."""
    count = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            conn.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def reset_sequences(conn: Connection, tables: Iterable[sa.Table]) -> None:
    """PostgreSQL: move every serial / identity sequence past the ids inserted explicitly, so the
    next ordinary insert does not collide with a restored row. SQLite needs nothing (its rowid
    allocation starts after the largest id present)."""
    if conn.dialect.name != "postgresql":
        return
    from sqlalchemy.dialects.postgresql import REGCLASS

    for table in tables:
        for column in table.primary_key.columns:
            if _kind(column) != "int":
                continue
            sequence = conn.execute(sa.select(sa.func.pg_get_serial_sequence(table.name, column.name))).scalar()
            if sequence is None:
                continue
            highest = sa.func.max(column)
            conn.execute(
                sa.select(
                    sa.func.setval(
                        sa.cast(sa.literal(sequence), REGCLASS), sa.func.coalesce(highest, 1), highest.is_not(None)
                    )
                ).select_from(table)
            )
