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

from sqlalchemy.exc import IntegrityError

from ringward.core.errors import StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.db import Transactions
from ringward.store.evidence.repo import append_locked
from ringward.store.state_repo import StateEntry, StateRepository, compare_and_set

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
                    compare_and_set(conn, namespace, key, value, expected, actor=actor, when=when)
                return append_locked(conn, list(drafts), when) if drafts else []
        except IntegrityError as exc:  # two first writers of one key: the insert of the loser fails
            raise StoreConflictError("incident state: written concurrently; re-read and retry") from exc


