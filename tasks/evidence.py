"""Prefect tasks for evidence: writing records (used by every flow) and verifying the chain.

Coarse on purpose: one task appends a whole batch of drafts, one task walks the whole chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ringward.core.evidence.records import ChainReport, EvidenceDraft
from ringward.operations.evidence import evidence_ops


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


@task(name="checkpoint-evidence-chain", cache_policy=NO_CACHE)
def checkpoint_evidence_chain_task(
    checkpoint_dir: str,
    verified: ChainReport,
    connectors_config: str | None = None,
    provider: str = "all",
    trust_root: str | None = None,
    role: str = evidence_ops.DEFAULT_CHECKPOINT_ROLE,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Sign the head ``verified`` walked with ``$RINGWARD_SIGNING_KEY`` (never a parameter: parameters
    are shown in the UI), write ``checkpoint-<head>.json`` under ``checkpoint_dir`` and, with a
    connectors file, deliver it to the SIEM as a ``ringward.evidence.checkpoint`` event."""
    from ringward.core.errors import InputError
    from ringward.operations.release.release_ops import default_actor
    from ringward.operations.trust.keys import load_signing_key
    from ringward.store import open_store

    key = load_signing_key(None)
    if key is None:
        raise InputError("checkpoint: $RINGWARD_SIGNING_KEY is not set where this flow runs")
    if trust_root:
        evidence_ops.check_signing_key_trusted(key, trust_root=Path(trust_root), role=role)
    with open_store() as store:
        # the head the flow just verified, nothing appended since (the next run covers those)
        output = Path(checkpoint_dir) / f"checkpoint-{verified.head_id:012d}.json"
        checkpoint = evidence_ops.create_checkpoint(
            store, private_key=key, actor=default_actor(), output=output, overwrite=True, verified=verified
        )
        result: dict[str, Any] = {"checkpoint": checkpoint.to_document(), "path": str(output), "delivery": None}
        if connectors_config:
            from ringward.operations.delivery import delivery_ops
            from tasks.delivery import LOOKUPS

            run = delivery_ops.deliver_event(
                evidence_ops.checkpoint_event(checkpoint),
                delivery_ops.load_connector_config(Path(connectors_config)),
                store=store,
                providers=provider,
                lookups=LOOKUPS,
                source="ringward_evidence_checkpoint",
                actor="ringward-flow",
                flow_run_id=flow_run_id,
            )
            result["delivery"] = {**run.payload["delivery"], "evidence_id": run.evidence_id}
    return result
