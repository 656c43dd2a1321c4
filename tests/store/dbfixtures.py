"""Database fixtures shared by the store, evidence, approvals and API tests.

``db_url`` runs a test once per backend: a fresh SQLite file, and a fresh PostgreSQL schema in
the ``postgres_url`` database (skipped visibly, with the reason, when PostgreSQL is down).
Import the fixtures into a directory's conftest.py with
``from tests.store.dbfixtures import db_url, store  # noqa: F401``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from ringward.store import Store, open_store

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def make_pg_schema(base_url: str) -> tuple[str, str]:
    """A fresh schema in the PostgreSQL test database: (schema name, URL whose search_path is it)."""
    import psycopg

    schema = "rw_test_" + secrets.token_hex(5)
    with psycopg.connect(_plain(base_url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    return schema, f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"


def drop_pg_schema(base_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(_plain(base_url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'ringward.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    schema, url = make_pg_schema(base)
    try:
        yield url
    finally:
        drop_pg_schema(base, schema)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()
