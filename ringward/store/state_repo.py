"""Generic key/value state (high-water marks, suppression windows) with compare-and-set.

Values are JSON; every write bumps ``version``. ``put(..., expected_version=N)`` succeeds only
if the stored version is still ``N`` (``0`` = "must not exist yet"), so two writers racing on
a high-water mark cannot both win.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError

from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import InputError, StoreConflictError
from ringward.store.db import Transactions
from ringward.store.tables import kv_state_table as kv_t


class StateEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    key: str
    value: Any
    version: int
    updated_at: datetime
    updated_by: str


def _entry(row: Any) -> StateEntry:
    return StateEntry(
        namespace=row.namespace,
        key=row.key,
        value=loads_strict(row.value.encode("utf-8"), source=f"kv_state {row.namespace}/{row.key}"),
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


class StateRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store

    def get(self, namespace: str, key: str) -> StateEntry | None:
        with self._store.reading() as conn:
            row = conn.execute(sa.select(kv_t).where(kv_t.c.namespace == namespace, kv_t.c.key == key)).first()
        return None if row is None else _entry(row)

    def list(self, namespace: str) -> list[StateEntry]:
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(kv_t).where(kv_t.c.namespace == namespace).order_by(kv_t.c.key)).all()
        return [_entry(r) for r in rows]

    def put(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        actor: str,
        now: datetime,
        expected_version: int | None = None,
    ) -> StateEntry:
        """Write ``value``; with ``expected_version`` only if the stored version still matches.

        Raises:
            InputError: the value is not plain JSON, or namespace/key are empty.
            StoreConflictError: the compare-and-set lost.
        """
        if not namespace or not key:
            raise InputError("kv_state: namespace and key must be non-empty")
        try:
            text = dumps_canonical(value).decode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InputError(f"kv_state {namespace}/{key}: value is not plain JSON: {exc}") from exc
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                query = sa.select(kv_t.c.version).where(kv_t.c.namespace == namespace, kv_t.c.key == key)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                row = conn.execute(query).first()
                current = 0 if row is None else int(row[0])
                if expected_version is not None and expected_version != current:
                    raise StoreConflictError(
                        f"kv_state {namespace}/{key}: expected version {expected_version}, found {current}"
                    )
                values = {"value": text, "version": current + 1, "updated_at": when, "updated_by": actor}
                if row is None:
                    conn.execute(sa.insert(kv_t).values(namespace=namespace, key=key, **values))
                else:
                    conn.execute(
                        sa.update(kv_t)
                        .where(kv_t.c.namespace == namespace, kv_t.c.key == key, kv_t.c.version == current)
                        .values(**values)
                    )
        except IntegrityError as exc:  # two first writers on PostgreSQL: one insert loses
            raise StoreConflictError(f"kv_state {namespace}/{key}: created concurrently; re-read and retry") from exc
        return StateEntry(
            namespace=namespace, key=key, value=value, version=current + 1, updated_at=when, updated_by=actor
        )

    def delete(self, namespace: str, key: str, *, expected_version: int | None = None) -> bool:
        with self._store.writing() as conn:
            clauses = [kv_t.c.namespace == namespace, kv_t.c.key == key]
            if expected_version is not None:
                clauses.append(kv_t.c.version == expected_version)
            result = conn.execute(sa.delete(kv_t).where(*clauses))
        if expected_version is not None and result.rowcount != 1:
            raise StoreConflictError(f"kv_state {namespace}/{key}: expected version {expected_version} to delete")
        return bool(result.rowcount)


def compare_and_set(conn: Any, namespace: str, key: str, value: Any | None, expected: int, *,
                    actor: str, when: datetime) -> None:
    """Compare-and-set one row inside the caller's transaction (``value`` None deletes it;
    ``expected`` 0 means "must not exist"), so a domain can change several keys and append its
    evidence in one transaction. Raises StoreConflictError when the version moved; the insert of two
    racing first writers fails on the primary key (the caller maps that IntegrityError)."""
    query = sa.select(kv_t.c.version).where(kv_t.c.namespace == namespace, kv_t.c.key == key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    current = 0 if row is None else int(row[0])
    if current != expected:
        raise StoreConflictError(f"kv_state {namespace}/{key}: expected version {expected}, found {current} "
                                 "(changed concurrently; re-run)")
    where = (kv_t.c.namespace == namespace, kv_t.c.key == key, kv_t.c.version == current)
    if value is None:
        if row is not None:
            conn.execute(sa.delete(kv_t).where(*where))
        return
    values = {"value": dumps_canonical(value).decode("utf-8"), "version": current + 1, "updated_at": when,
              "updated_by": actor}
    if row is None:
        conn.execute(sa.insert(kv_t).values(namespace=namespace, key=key, **values))
    else:
        conn.execute(sa.update(kv_t).where(*where).values(**values))
