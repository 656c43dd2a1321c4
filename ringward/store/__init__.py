"""Ringward's persistence: the evidence hash chain, approvals, API tokens and key/value state.

``open_store()`` opens the database named by ``RINGWARD_DATABASE_URL`` (default: SQLite in
WAL mode under ``RINGWARD_HOME``) and migrates it to the Alembic head.
"""

from __future__ import annotations

from ringward.core.evidence.records import EvidenceRecord
from ringward.store.core import Store, open_store
from ringward.store.evidence.repo import ChainHead
from ringward.store.state_repo import StateEntry
from ringward.store.token_repo import TokenInfo

__all__ = ["ChainHead", "EvidenceRecord", "StateEntry", "Store", "TokenInfo", "open_store"]
