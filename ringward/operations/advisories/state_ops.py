"""Advisory-domain state writes shared by the operations (each with its evidence, one transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ringward.core.advisories.record import AdvisoryRecord
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord
from ringward.store.advisories.state import PUBLISHED_NAMESPACE, AdvisoryStateRepository

if TYPE_CHECKING:
    from ringward.store import Store


def repo(store: Store) -> AdvisoryStateRepository:
    return AdvisoryStateRepository(store)


def index_published(store: Store, record: AdvisoryRecord, *, signed_sha256: str, draft: EvidenceDraft, actor: str,
                    now: datetime) -> EvidenceRecord:
    """Record the publication and index the advisory for ``kev check`` (a re-publication replaces
    the index entry: the newest signed revision is what KEV matching reads)."""
    from ringward.operations.advisories.advisory_ops import known_advisory_facts

    state = repo(store)
    current = state.get(PUBLISHED_NAMESPACE, record.advisory_id)
    value: dict[str, Any] = {**known_advisory_facts(record), "signed_sha256": signed_sha256,
                             "published_at": now.isoformat()}
    (evidence,) = state.decide([(PUBLISHED_NAMESPACE, record.advisory_id, value,
                                 0 if current is None else current.version)], [draft], actor=actor, now=now)
    return evidence
