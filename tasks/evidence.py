"""Prefect tasks for evidence: writing records (used by every flow) and verifying the chain.

Coarse on purpose: one task appends a whole batch of drafts, one task walks the whole chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ringward.core.evidence import ChainReport, EvidenceDraft
from ringward.operations import evidence_ops


def _current_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    value = flow_run.get_id()
    return str(value) if value else None


@task(name="write-evidence", cache_policy=NO_CACHE)
def write_evidence(drafts: list[EvidenceDraft], flow_run_id: str | None = None) -> list[dict[str, Any]]:
    """Append ``drafts`` to the evidence chain, attaching the flow-run id (given, or the current one)."""
    records = evidence_ops.append_evidence(drafts, flow_run_id=flow_run_id or _current_flow_run_id())
    return [
        {"evidence_id": r.id, "kind": r.kind, "record_hash": r.record_hash, "flow_run_id": r.flow_run_id}
        for r in records
    ]


@task(name="verify-evidence-chain", cache_policy=NO_CACHE)
def verify_evidence_chain_task(
    check_files: bool = True,
    evidence_root: str | None = None,
    checkpoint: str | None = None,
    trust_root: str | None = None,
    role: str = evidence_ops.DEFAULT_CHECKPOINT_ROLE,
    jobs: int | None = None,
) -> ChainReport:
    """Re-walk the chain and the bundle files (optionally against a signed checkpoint)."""
    from ringward.store import open_store

    loaded = trusted = None
    if checkpoint:
        loaded = evidence_ops.load_checkpoint(Path(checkpoint))
        trusted = evidence_ops.checkpoint_trusted_keys(trust_root=Path(trust_root) if trust_root else None, role=role)
    with open_store() as store:
        return evidence_ops.verify_evidence(
            store,
            root=Path(evidence_root) if evidence_root else None,
            check_files=check_files,
            checkpoint=loaded,
            checkpoint_source=str(checkpoint),
            trusted_keys=trusted,
            jobs=jobs,
        )
