"""Opening the store: defaults, migrations to head, concurrent first opens, refused schemas."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ringward.core.errors import ConfigError, StoreSchemaError
from ringward.store import open_store
from ringward.store.db import known_revisions
from ringward.store.tables import METADATA
from tests.store import workers


def test_default_store_is_wal_sqlite_under_ringward_home(ringward_home: Path) -> None:
    with open_store() as store:
        assert store.dialect == "sqlite"
        assert store.label == f"sqlite:{ringward_home / 'ringward.db'}"
    db = sqlite3.connect(ringward_home / "ringward.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == known_revisions()[0]


def test_database_url_setting_is_used(ringward_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "x.db"
    monkeypatch.setenv("RINGWARD_DATABASE_URL", f"sqlite:///{target}")
    with open_store() as store:
        assert store.label == f"sqlite:{target}"
    assert target.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "backend 'mysql' is not supported"),
        ("sqlite://", "in-memory SQLite"),
        ("not a url", "cannot parse"),
    ],
)
def test_unsupported_urls_are_refused_with_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_first_migration_is_0001_initial() -> None:
    head, known = known_revisions()
    assert "0001_initial" in known
    assert head in known


def test_schema_matches_the_table_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import ringward.store.tables as tables

    with open_store(db_url) as store, store.engine.connect() as conn:
        ours = sa.MetaData()
        for name in (
            "evidence_record",
            "evidence_head",
            "approval",
            "approval_decision",
            "api_token",
            "kv_state",
        ):
            METADATA.tables[name].to_metadata(ours)
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), ours)
        # tables other engineers' migrations add are not ours to compare
        diffs = [d for d in diffs if _table_of(d) in ours.tables]
        assert diffs == [], diffs
        assert tables.evidence_table.name == "evidence_record"


def _table_of(diff: object) -> str:
    if isinstance(diff, list):
        return _table_of(diff[0])
    assert isinstance(diff, tuple)
    op, obj = diff[0], diff[1]
    if op in ("add_table", "remove_table"):
        return str(obj.name)
    if op.endswith(("_index", "_constraint", "_fk")):
        return str(obj.table.name)
    return str(diff[2])


def test_reopening_a_current_store_is_fast(db_url: str) -> None:
    open_store(db_url).close()
    started = time.monotonic()
    for _ in range(5):
        open_store(db_url).close()
    assert (time.monotonic() - started) / 5 < 0.5


def test_unknown_schema_revision_is_refused(db_url: str) -> None:
    with open_store(db_url) as store, store.writing() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StoreSchemaError, match="9999_future"):
        open_store(db_url)


def test_parallel_first_opens_of_a_fresh_database_all_succeed(db_url: str) -> None:
    results = workers.run_parallel(workers.open_worker, [(db_url,)] * 6)
    assert results == [("ok", 0)] * 6
    with open_store(db_url) as store, store.reading() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM evidence_head")).scalar_one() == 1


def test_threads_opening_fresh_sqlite_files_at_once_never_see_database_locked(tmp_path: Path) -> None:
    """Switching a new file to WAL ignores SQLite's busy handler: openers must wait it out themselves.

    (Two Prefect delivery tasks opening a fresh RINGWARD_HOME at once hit this in CI.)
    """
    import threading

    failures: list[str] = []
    for attempt in range(40):
        url = f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}"

        def open_once(url: str = url) -> None:
            try:
                with open_store(url):
                    pass
            except Exception as exc:  # collected: the assertion below names them
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=open_once) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
