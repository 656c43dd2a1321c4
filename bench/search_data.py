"""A synthetic evidence chain for the search and API benchmarks: realistic value spreads for
every search filter, loaded quickly but through the store's own append path (valid records,
an unbroken chain that ``ringward evidence verify`` accepts).

Loading drops the evidence table's secondary indexes, appends in large batches, builds the
indexes back from ``ringward/store/tables.py`` (which a test keeps equal to the migrations)
and refreshes the planner statistics the way the store does after bulk appends.

    .venv/bin/python bench/search_data.py --url sqlite:///bench/out/search/ringward.db --records 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import Store, open_store
from ringward.store.tables import evidence_table

#: the chain spans one year, oldest first
START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=365)

APPROVAL_KINDS = ["approval-request", "approval-decision", "approval-consumption"]
EXECUTION_KINDS = ["rollout-promotion-execution", "rollout-rollback-execution", "endpoint-drift-remediation-execution"]
DELIVERY_KINDS = ["release-connector-delivery", "endpoint-management-publication-delivery"]
OTHER_KINDS = [
    "managed-endpoint-rollout",
    "release-channel-promotion-request",
    "endpoint-management-export",
    "endpoint-inventory-ingestion",
    "endpoint-inventory-freshness-report",
    "managed-endpoint-reconciliation",
    "endpoint-reconciliation-automation",
    "endpoint-drift-remediation-request",
    "endpoint-remediation-handoff",
    "endpoint-remediation-sla-report",
    "release-package-verification",
    "evidence-chain-verification",
]
KINDS = APPROVAL_KINDS + EXECUTION_KINDS + DELIVERY_KINDS + OTHER_KINDS
STATUSES = ["planned", "staged", "succeeded", "failed", "rolled_back", "blocked"]
TARGETS = [f"{s}-{t}-{a}" for s in ("linux", "macos", "windows") for t in ("fleet", "mdm") for a in ("amd64", "arm64")]
TARGETS += ["ci-github", "ci-gitlab", "ci-azure", "airgap-site-a", "airgap-site-b", "kiosk", "lab", "dmz"]
RINGS = ["canary", "pilot", "broad", "production"]
ENVIRONMENTS = ["dev", "staging", "prod"]
CHANNELS = ["nightly", "beta", "stable", "lts"]
RUNTIMES = ["python", "node", "java", "go", "dotnet", "ruby", "php", "rust"]
ACTORS = [f"bot-{i}" for i in range(8)] + [f"user{i}@example.org" for i in range(40)]
PROVIDERS = ["splunk", "sentinel", "datadog", "webhook", "servicenow", "jira", "slack", "teams", "intune", "jamf"]
APPROVAL_STATES = ["pending", "approved", "denied", "expired", "revoked"]
EXECUTION_STATUSES = ["succeeded", "failed", "partial", "refused"]
VERSIONS = [f"{major}.{minor}.{patch}" for major in (1, 2, 3) for minor in range(12) for patch in range(15)]


@dataclass
class Generated:
    """Values seen while generating (the benchmark draws its queries from them)."""

    flow_run_ids: list[str]
    approval_ids: list[str]


def make_drafts(start: int, count: int, rng: random.Random, seen: Generated) -> list[EvidenceDraft]:
    drafts = []
    for i in range(start, start + count):
        kind = rng.choice(KINDS)
        # a flow run leaves ~10 records in a row; a third of the records come from outside flows
        flow_run_id = None
        if i % 30 >= 10:
            if i % 10 == 0 or not seen.flow_run_ids:
                seen.flow_run_ids.append(str(uuid.UUID(int=rng.getrandbits(128))))
            flow_run_id = seen.flow_run_ids[-1]
        subject: dict[str, Any] = {
            "release_version": rng.choice(VERSIONS),
            "runtime": rng.choice(RUNTIMES) if rng.random() < 0.8 else None,
            "channel": rng.choice(CHANNELS),
            "ring": rng.choice(RINGS),
            "deployment_target": rng.choice(TARGETS),
            "environment": rng.choice(ENVIRONMENTS),
            "status": rng.choice(STATUSES),
            "success": rng.random() > 0.08,
        }
        if kind in APPROVAL_KINDS:
            if i % 3 == 0 or not seen.approval_ids:
                seen.approval_ids.append(f"apr_{rng.getrandbits(80):020x}")
            subject["approval_id"] = seen.approval_ids[-1]
            subject["approval_state"] = rng.choice(APPROVAL_STATES)
        if kind in EXECUTION_KINDS:
            subject["execution_status"] = rng.choice(EXECUTION_STATUSES)
        if kind in DELIVERY_KINDS:
            subject["provider"] = rng.choice(PROVIDERS)
        drafts.append(
            EvidenceDraft(
                kind=kind,
                actor=rng.choice(ACTORS),
                flow_run_id=flow_run_id,
                subject=EvidenceSubject(**subject),
                payload={
                    "session_id": f"bench-{i}",
                    "metadata_kind": kind,
                    "sequence": i,
                    "endpoints": rng.randint(1, 5000),
                    "summary": f"synthetic benchmark record {rng.getrandbits(64):016x}",
                },
            )
        )
    return drafts


def secondary_indexes() -> list[Any]:
    return sorted(evidence_table.indexes, key=lambda index: index.name)


def load(store: Store, records: int, *, seed: int = 7, batch: int = 1000, log: Any = print) -> Generated:
    """Append ``records`` records to an empty store (indexes dropped meanwhile, rebuilt after)."""
    if store.head().last_id != 0:
        raise SystemExit(f"{store.label}: not empty; give a fresh database")
    rng = random.Random(seed)
    seen = Generated([], [])
    indexes = secondary_indexes()
    with store.writing() as conn:
        for index in indexes:
            index.drop(conn)
    t0 = time.perf_counter()
    done = 0
    step = SPAN / max(1, records // batch)
    while done < records:
        count = min(batch, records - done)
        store.append_many(make_drafts(done, count, rng, seen), now=START + step * (done // batch), batch_size=count)
        done += count
        if done % (batch * 50) == 0 or done == records:
            elapsed = time.perf_counter() - t0
            log(f"  {store.dialect}: {done:,} appended ({done / elapsed:,.0f} records/s)")
    t1 = time.perf_counter()
    with store.writing() as conn:
        for index in indexes:
            index.create(conn)
    t2 = time.perf_counter()
    store.refresh_statistics()
    log(
        f"  {store.dialect}: append {t1 - t0:.1f} s, indexes {t2 - t1:.1f} s, "
        f"statistics {time.perf_counter() - t2:.1f} s"
    )
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with open_store(args.url) as store:
        load(store, args.records, seed=args.seed)


if __name__ == "__main__":
    main()
