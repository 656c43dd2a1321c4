"""Incident state on the versioned key/value table (``kv_state``), compare-and-set, each change
written with its evidence record in **one** transaction.

Namespaces (one JSON row per key; no table of its own, so no migration):

- ``incidents.records`` / ``<incident id>``: the ``ringward.incident.v1`` record, as last decided.
- ``incidents.dedup`` / ``<dedup key>``: ``{"incident_id", "generation"}`` of the latest incident
  opened for that key (a KEV match for one (CVE, package digest) -> one incident).
- ``incidents.notices`` / ``<incident id>|<clock>``: a breach notice delivered for that clock
  (so a re-run of the breach report does not send it again).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.state_repo import StateEntry, StateRepository
from ringward.store.tables import kv_state_table as kv_t

RECORDS_NAMESPACE: Final = "incidents.records"
DEDUP_NAMESPACE: Final = "incidents.dedup"
NOTICES_NAMESPACE: Final = "incidents.notices"

#: (namespace, key, value or None to delete, expected version; 0 = must not exist yet)
Change = tuple[str, str, Any | None, int]


class IncidentStateRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store
        self._state = StateRepository(store)

    def get(self, namespace: str, key: str) -> StateEntry | None:
        return self._state.get(namespace, key)

    def list(self, namespace: str) -> builtins.list[StateEntry]:
        return self._state.list(namespace)

    def decide(self, changes: Sequence[Change], drafts: Sequence[EvidenceDraft], *, actor: str,
               now: datetime) -> builtins.list[EvidenceRecord]:
        """Apply the changes and append ``drafts``, all or nothing.

        Raises:
            StoreConflictError: a row's version is not the expected one (another writer won).
        """
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                for namespace, key, value, expected in changes:
                    _compare_and_set(conn, namespace, key, value, expected, actor=actor, when=when)
                return append_locked(conn, list(drafts), when) if drafts else []
        except IntegrityError as exc:  # two first writers of one key: the insert of the loser fails
            raise StoreConflictError("incident state: written concurrently; re-read and retry") from exc


def _compare_and_set(conn: Connection, namespace: str, key: str, value: Any | None, expected: int, *,
                     actor: str, when: datetime) -> None:
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
