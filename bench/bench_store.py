"""Benchmark the evidence store: batched appends, filtered searches, chain verification.

    .venv/bin/python bench/bench_store.py --records 1000000 --backend sqlite --backend postgresql

For each backend: append ``--records`` evidence records in batches (records/s), run
``--searches`` filtered searches (kind + status + deployment target, newest first, page of 50,
with the total count) and report p50/p95, then verify the whole chain. Figures are recorded
in docs/benchmarks.md. PostgreSQL runs in a throw-away schema of ``--postgres-url``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import Store, open_store

KINDS = [
    "managed-endpoint-rollout",
    "rollout-promotion-execution",
    "rollout-rollback-execution",
    "release-channel-promotion-request",
    "endpoint-management-export",
    "endpoint-management-publication-delivery",
    "release-connector-delivery",
    "endpoint-inventory-ingestion",
    "endpoint-inventory-freshness-report",
    "managed-endpoint-reconciliation",
    "endpoint-reconciliation-automation",
    "endpoint-drift-remediation-request",
    "endpoint-drift-remediation-execution",
    "endpoint-remediation-handoff",
    "endpoint-remediation-sla-report",
    "release-package-verification",
    "approval-request",
    "approval-decision",
    "approval-consumption",
    "evidence-chain-verification",
]
STATUSES = ["planned", "staged", "succeeded", "failed", "rolled_back", "blocked"]
TARGETS = [
    f"{system}-{tool}-{arch}"
    for system in ("linux", "macos", "windows")
    for tool in ("fleet", "mdm")
    for arch in ("amd64", "arm64")
]
TARGETS += ["ci-github", "ci-gitlab", "ci-azure", "airgap-site-a", "airgap-site-b", "kiosk", "lab", "dmz"]
RINGS = ["pilot", "broad", "enterprise", "production"]
ENVIRONMENTS = ["dev", "staging", "prod"]


def make_drafts(start: int, count: int, rng: random.Random) -> list[EvidenceDraft]:
    drafts = []
    for i in range(start, start + count):
        kind = rng.choice(KINDS)
        drafts.append(
            EvidenceDraft(
                kind=kind,
                actor=f"bot-{i % 7}",
                flow_run_id=None,
                subject=EvidenceSubject(
                    release_version=f"1.{i % 40}.{i % 13}",
                    channel=rng.choice(["canary", "beta", "stable"]),
                    ring=rng.choice(RINGS),
                    deployment_target=rng.choice(TARGETS),
                    environment=rng.choice(ENVIRONMENTS),
                    status=rng.choice(STATUSES),
                    success=rng.random() > 0.1,
                ),
                payload={
                    "session_id": f"bench-{i}",
                    "metadata_kind": kind,
                    "sequence": i,
                    "endpoints": rng.randint(1, 5000),
                    "summary": "synthetic benchmark record " + secrets.token_hex(8),
                },
            )
        )
    return drafts


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"backend": name, "records": args.records, "batch": args.batch}
    with open_store(url) as store:
        # 1. appends, batch by batch (draft construction timed separately)
        build_s = append_s = 0.0
        done = 0
        base = datetime(2026, 1, 1, tzinfo=UTC)
        while done < args.records:
            count = min(args.batch, args.records - done)
            t0 = time.perf_counter()
            drafts = make_drafts(done, count, rng)
            t1 = time.perf_counter()
            store.append_many(drafts, now=base + timedelta(seconds=done), batch_size=args.batch)
            t2 = time.perf_counter()
            build_s += t1 - t0
            append_s += t2 - t1
            done += count
            if done % (args.batch * 100) == 0:
                print(f"  {name}: {done} appended ({done / append_s:,.0f} records/s)", file=sys.stderr)
        result["append_s"] = round(append_s, 2)
        result["append_records_per_s"] = round(args.records / append_s)
        result["draft_build_s"] = round(build_s, 2)
        result["end_to_end_records_per_s"] = round(args.records / (append_s + build_s))
        # 2. planner statistics, as an operator's maintenance job would keep them
        if args.analyze:
            t0 = time.perf_counter()
            analyze(store)
            result["analyze_s"] = round(time.perf_counter() - t0, 2)
        # 3. filtered searches: kind + status + target, newest first, page of 50 (+ total count)
        for with_total in (True, False):
            latencies = []
            hits = []
            for _ in range(args.searches):
                query = EvidenceQuery(
                    kind=rng.choice(KINDS),
                    status=rng.choice(STATUSES),
                    deployment_target=rng.choice(TARGETS),
                    limit=50,
                    with_total=with_total,
                )
                t0 = time.perf_counter()
                page = store.search_evidence(query)
                latencies.append((time.perf_counter() - t0) * 1000)
                hits.append(len(page.items))
            key = "search_with_total" if with_total else "search_page_only"
            result[key] = {
                "queries": args.searches,
                "p50_ms": round(statistics.median(latencies), 2),
                "p95_ms": round(percentile(latencies, 95), 2),
                "max_ms": round(max(latencies), 2),
                "mean_hits": round(statistics.mean(hits), 1),
            }
        # 3b. a broad search for contrast: kind only (~1/20 of all records match), with the total
        latencies = []
        for _ in range(args.searches // 3):
            t0 = time.perf_counter()
            store.search_evidence(EvidenceQuery(kind=rng.choice(KINDS), limit=50))
            latencies.append((time.perf_counter() - t0) * 1000)
        result["search_kind_only_with_total"] = {
            "queries": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
        }
        # 4. chain verification of every record: one process, then one worker per CPU
        for label, jobs in (("verify", 1), ("verify_parallel", min(os.cpu_count() or 1, 8))):
            t0 = time.perf_counter()
            report = verify_evidence(store, check_files=False, jobs=jobs)
            result[f"{label}_s"] = round(time.perf_counter() - t0, 2)
            result[f"{label}_jobs"] = jobs
            result[f"{label}_ok"] = report.ok and report.records_checked == args.records
    return result


def analyze(store: Store) -> None:
    import sqlalchemy as sa

    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(sa.text("VACUUM ANALYZE evidence_record"))
    else:
        with store.writing() as conn:
            conn.execute(sa.text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="records per append_many call / transaction")
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite file goes (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--no-analyze", dest="analyze", action="store_false", help="skip ANALYZE / VACUUM ANALYZE before searching"
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    results = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
                results.append(run_backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args))
        else:
            import psycopg

            plain = args.postgres_url.replace("postgresql+psycopg://", "postgresql://")
            schema = "rw_bench_" + secrets.token_hex(4)
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            try:
                url = f"{args.postgres_url}?options={quote(f'-csearch_path={schema}')}"
                results.append(run_backend("postgresql", url, args))
            finally:
                with psycopg.connect(plain, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        print(json.dumps(results[-1], indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
