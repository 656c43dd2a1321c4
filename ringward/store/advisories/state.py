"""Advisory-domain state on the versioned key/value table (``kv_state``), compare-and-set, each
change written with its evidence record in **one** transaction.

Namespaces (one JSON row per key; no table of its own, so no migration):

- ``advisories.kev`` / ``catalog``: the imported CISA KEV catalog (version, release time, sha256,
  entries). Replaced only by a newer catalog; the caller passes the row version it read.
- ``advisories.published`` / ``<advisory id>``: what ``kev check`` needs of a published advisory
  (purl, range, CVEs, severity, digest).
- ``advisories.vex`` / ``sha256:<checksums digest>``: the OpenVEX documents stored with a release.
- ``advisories.kev-holds`` / ``<channel>``: the hold ``kev check`` put on a channel (which release,
  which findings, the hold reason), so only that hold is lifted when VEX resolves the findings.
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

KEV_NAMESPACE: Final = "advisories.kev"
KEV_KEY: Final = "catalog"
PUBLISHED_NAMESPACE: Final = "advisories.published"
VEX_NAMESPACE: Final = "advisories.vex"
HOLDS_NAMESPACE: Final = "advisories.kev-holds"


class AdvisoryStateRepository:
    def __init__(self, store: Transactions) -> None:
        self._store = store
        self._state = StateRepository(store)

    # --- reads -----------------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> StateEntry | None:
        return self._state.get(namespace, key)

    def list(self, namespace: str) -> builtins.list[StateEntry]:
        return self._state.list(namespace)

    def kev_catalog(self) -> StateEntry | None:
        return self._state.get(KEV_NAMESPACE, KEV_KEY)

    # --- one decision: state change(s) + evidence, one transaction -------------------------------

    def decide(
        self,
        changes: Sequence[tuple[str, str, Any | None, int]],
        drafts: Sequence[EvidenceDraft],
        *,
        actor: str,
        now: datetime,
    ) -> builtins.list[EvidenceRecord]:
        """Apply ``(namespace, key, value or None to delete, expected version)`` changes and append
        ``drafts``, all or nothing.

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
            raise StoreConflictError("advisory state: written concurrently; re-read and retry") from exc


