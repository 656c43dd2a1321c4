"""Engines and schema migrations for the Ringward store.

SQLite (the default) runs in WAL mode with a busy timeout; every write transaction starts with
``BEGIN IMMEDIATE`` so writers queue on the database lock instead of failing half-way with
"database is locked" on their first write. Read transactions start with a plain ``BEGIN`` and
never block writers (WAL). PostgreSQL serialises writers with row locks (``SELECT ... FOR
UPDATE``) inside READ COMMITTED transactions.

:func:`migrate` brings a database to the Alembic head. It is cheap when the schema is current
(one ``SELECT``) and safe when several processes open a fresh database at once: the upgrade runs
inside one write transaction that holds the database lock (SQLite) or a transaction-scoped
advisory lock (PostgreSQL), and re-reads the revision after taking it.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from ringward.core.errors import ConfigError, StoreConflictError, StoreSchemaError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: seconds a SQLite writer waits for the database lock before failing
DEFAULT_BUSY_TIMEOUT_S = 60.0

#: key of the PostgreSQL advisory lock held while migrating (arbitrary, fixed)
_PG_MIGRATION_LOCK = 0x52494E47  # "RING"

#: execution option marking a connection whose transactions write
WRITE_OPTION = "ringward_write"


def normalise_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means the psycopg 3 driver we ship."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"RINGWARD_DATABASE_URL: cannot parse {redact_url(url)!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"RINGWARD_DATABASE_URL: backend {parsed.get_backend_name()!r} is not supported, "
            "expected sqlite:///PATH or postgresql://..."
        )
    return parsed


def redact_url(url: str | URL) -> str:
    """A URL safe for messages (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True) if isinstance(url, str) else url.render_as_string()
    except ArgumentError:
        return "<unparseable url>"


def create_store_engine(url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """An engine configured for Ringward's transaction discipline (see the module docstring)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ConfigError("RINGWARD_DATABASE_URL: an in-memory SQLite database cannot be shared; give a file path")
        parent = Path(database).expanduser().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a directory should be, no permission, read-only medium
            raise ConfigError(f"RINGWARD_DATABASE_URL: cannot create the directory {parent} for the SQLite store "
                              f"({exc.strerror or type(exc).__name__})") from None
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
            pool_pre_ping=False,
        )
        _configure_sqlite(engine, busy_timeout_s)
        return engine
    return sa.create_engine(
        parsed,
        pool_pre_ping=False,
        connect_args={"connect_timeout": 10},
    )


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take transaction control away from the sqlite3 module: we emit BEGIN ourselves
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            _enable_wal(cursor, busy_timeout_s)
            # NORMAL in WAL mode never corrupts; FULL also syncs each commit (audit records)
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _enable_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Switch to WAL, waiting out concurrent openers of a fresh database file.

    Changing the journal mode needs an exclusive lock and SQLite does not call the busy handler
    for it: several processes opening a new database at once get "database is locked" at once.
    Once any of them has switched, the mode is persistent and this returns on the first read.
    """
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.005
    while True:
        try:
            row = cursor.execute("PRAGMA journal_mode").fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # alembic costs ~0.5 s to import; only migrations need it

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


_REVISION = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(None|[\"']([^\"']+)[\"'])", re.MULTILINE)


@functools.cache
def known_revisions() -> tuple[str, tuple[str, ...]]:
    """(head revision, every revision) of the migrations shipped with this Ringward.

    Read from the version files' ``revision`` / ``down_revision`` lines so the fast path of
    :func:`open_store` does not import Alembic; anything unusual falls back to Alembic itself.
    """
    revisions: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev is None or down is None:
            return _alembic_revisions()
        revisions[rev.group(1)] = down.group(2)
    heads = set(revisions) - {d for d in revisions.values() if d is not None}
    if len(heads) != 1:
        return _alembic_revisions()
    return heads.pop(), tuple(sorted(revisions))


def _alembic_revisions() -> tuple[str, tuple[str, ...]]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    heads = script.get_heads()
    if len(heads) != 1:
        raise StoreSchemaError(f"store migrations have {len(heads)} heads ({', '.join(heads)}), expected 1")
    return heads[0], tuple(rev.revision for rev in script.walk_revisions())


def current_revision(conn: Connection) -> str | None:
    """The revision stamped in the database, or None when it has no schema yet.

    One catalogue lookup and one read, without SQLAlchemy's inspector (whose import and
    reflection queries cost more than the rest of a read-only command's database work).
    """
    if conn.dialect.name == "sqlite":
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
    else:  # the first alembic_version on the search_path, as Alembic itself resolves it
        exists = conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
    if not exists:
        return None
    row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return None if row is None else str(row[0])


def migrate(engine: Engine) -> str:
    """Bring the schema to head; returns the head revision. See the module docstring."""
    head, known = known_revisions()
    with engine.connect() as conn:
        try:
            current = current_revision(conn)
        except DBAPIError:
            current = None
        conn.rollback()
    if current == head:
        return head
    if current is not None and current not in known:
        raise StoreSchemaError(
            f"database schema is at revision {current!r}, which this Ringward does not know "
            f"(head {head!r}); upgrade Ringward"
        )
    with write_connection(engine) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        current = current_revision(conn)
        if current != head:
            if current is not None and current not in known:
                raise StoreSchemaError(f"database schema is at unknown revision {current!r}")
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
    return head


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions take the write lock up front (SQLite ``BEGIN IMMEDIATE``)."""
    with engine.execution_options(**{WRITE_OPTION: True}).connect() as conn:
        yield conn


_T = TypeVar("_T")


def retry_unique(fn: Callable[[], _T], *, what: str, attempts: int = 5) -> _T:
    """Re-run an insert-or-skip transaction that a unique key refused.

    The check inside it runs under the chain lock, so this only happens if a writer bypassed
    the lock; the failed transaction rolled back whole, and the re-run sees the winner's rows
    and skips them.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except IntegrityError as exc:
            if attempt == attempts - 1:
                raise StoreConflictError(f"{what}: a concurrent writer kept winning on a unique key; retry") from exc
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


def database_label(engine: Engine) -> str:
    """Short human label: ``sqlite:/path`` or ``postgresql://host/db`` (no password)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:{os.path.abspath(url.database or '')}"
    return url.render_as_string(hide_password=True)


class Transactions(Protocol):
    """What a repository needs from the store: its dialect and read / write transactions.

    Repositories depend on this protocol, not on :class:`ringward.store.core.Store`, so the
    facade can import every repository without an import cycle."""

    @property
    def dialect(self) -> str: ...

    def reading(self) -> AbstractContextManager[Connection]: ...

    def writing(self) -> AbstractContextManager[Connection]: ...
