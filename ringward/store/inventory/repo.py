"""Inventory persistence, with no tables of its own.

- Ingestions are evidence records keyed by their content id (``import_key`` =
  ``inventory:<eii_...>``), so an identical re-ingest is one record; :meth:`ingestion_record_id`
  finds them again.
- Freshness states live in the versioned key/value table (namespace ``inventory-freshness``, one
  row per scope or source); :meth:`transition` changes one with compare-and-set and appends the
  change's evidence record in the same transaction, so a state and its event never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.tables import evidence_table as ev_t
from ringward.store.tables import kv_state_table as kv_t

INGESTION_KEY_PREFIX = "inventory:"
FRESHNESS_NAMESPACE = "inventory-freshness"


def ingestion_key(inventory_id: str) -> str:
    return INGESTION_KEY_PREFIX + inventory_id


class InventoryRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store

    def ingestion_record_id(self, inventory_id: str) -> int | None:
        """The evidence record id of the ingestion with this content id, or None."""
        with self._store.reading() as conn:
            row = conn.execute(sa.select(ev_t.c.id).where(ev_t.c.import_key == ingestion_key(inventory_id))).first()
        return None if row is None else int(row[0])

    def transition(self, key: str, value: dict[str, Any], *, expected_version: int, draft: EvidenceDraft,
                   actor: str, now: datetime) -> EvidenceRecord:
        """Set freshness state ``key`` to ``value`` if its version is still ``expected_version`` (0 = absent)
        and append ``draft``, in one transaction.

        Raises:
            StoreConflictError: another evaluation changed the state first; re-read and decide again.
        """
        text = dumps_canonical(value).decode("utf-8")
        when = now.astimezone(UTC)
        try:
            with self._store.writing() as conn:
                query = sa.select(kv_t.c.version).where(kv_t.c.namespace == FRESHNESS_NAMESPACE, kv_t.c.key == key)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                row = conn.execute(query).first()
                current = 0 if row is None else int(row[0])
                if current != expected_version:
                    raise StoreConflictError(f"freshness state {key}: expected version {expected_version}, "
                                             f"found {current}")
                values = {"value": text, "version": current + 1, "updated_at": when, "updated_by": actor}
                if row is None:
                    conn.execute(sa.insert(kv_t).values(namespace=FRESHNESS_NAMESPACE, key=key, **values))
                else:
                    conn.execute(sa.update(kv_t).where(kv_t.c.namespace == FRESHNESS_NAMESPACE, kv_t.c.key == key,
                                                       kv_t.c.version == current).values(**values))
                (record,) = append_locked(conn, [draft], now)
        except IntegrityError as exc:  # two first writers: one insert loses on the primary key
            raise StoreConflictError(f"freshness state {key}: created concurrently; re-read and retry") from exc
        return record
