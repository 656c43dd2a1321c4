"""Benchmark: flow-run throughput of Ringward's multi-host path on one machine, one worker vs two.

A Prefect server on a fresh PostgreSQL database (scheduler and late-runs services off), the Ringward store
on another, ``ringward deploy`` into the ``process`` pool, then for each worker count a burst of
``--runs`` inventory-ingest flow runs (one small Linux export each: the flow's own work is ~0.1 s, so
this measures Prefect's per-run cost: a new Python process per run, state changes, events, heartbeats)
taken by ``ringward worker --limit L`` processes. Throughput = runs / (first run created -> last run
Completed). The workers are stopped (drained) between configurations; the databases are dropped at the end.

    .venv/bin/python bench/flow_throughput.py [--runs 40] [--limit 4] [--workers 1,2] [--json out.json]

PostgreSQL: ``--postgres-url`` (default ``$RINGWARD_TEST_POSTGRES_URL`` or
postgresql+psycopg://postgres@127.0.0.1:5432/test), a role allowed to CREATE DATABASE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ringward.operations.common.prefect_rest import PrefectRest  # noqa: E402
from ringward.operations.common.scale_out import PrefectAdmin  # noqa: E402
from ringward.operations.common.supervisor import descendants  # noqa: E402
from tests.up import cluster as cl  # noqa: E402

DEFAULT_PG = os.environ.get("RINGWARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _seconds(run: dict[str, Any], start: str, end: str) -> float | None:
    if not run.get(start) or not run.get(end):
        return None
    return (datetime.fromisoformat(run[end]) - datetime.fromisoformat(run[start])).total_seconds()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes and of their children they reaped (utime + stime + cutime + cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += sum(int(v) for v in fields[11:15]) / ticks
    return total


def tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def measure(made: cl.Cluster, workers: int, runs: int, limit: int) -> dict[str, Any]:
    names = [f"bench-{workers}w-{n}" for n in range(workers)]
    for name in names:
        made.start_worker(name, limit=limit)
    made.wait_workers_online(names)
    load_before = os.getloadavg()
    assert made.server is not None
    server_pids = tree(made.server.pid)
    worker_pids = [pid for name in names for pid in tree(made.workers[name].pid)]
    server_cpu, worker_cpu = cpu_seconds(server_pids), cpu_seconds(worker_pids)
    with PrefectRest(made.api_url) as client:
        started = time.monotonic()
        ids = cl.create_burst(client, made.work, runs, f"w{workers}")
        final = cl.wait_terminal(client, ids, timeout_s=3600)
        elapsed = time.monotonic() - started
    time.sleep(2)  # the last flow-run processes are reaped by their worker
    server_cpu = cpu_seconds(server_pids) - server_cpu
    worker_cpu = cpu_seconds(worker_pids) - worker_cpu
    for name in names:
        cl.stop(made.workers.pop(name), grace_s=60)
    states = {r["state"]["type"] for r in final.values()}
    queued = [s for r in final.values() if (s := _seconds(r, "expected_start_time", "start_time")) is not None]
    running = [s for r in final.values() if (s := _seconds(r, "start_time", "end_time")) is not None]
    return {
        "workers": workers, "limit_per_worker": limit, "runs": runs, "seconds": round(elapsed, 1),
        "runs_per_min": round(runs / elapsed * 60, 1), "all_completed": states == {"COMPLETED"},
        "queued_s_p50": round(statistics.median(queued), 1) if queued else None,
        "running_s_p50": round(statistics.median(running), 2) if running else None,
        "server_cpu_s_per_run": round(server_cpu / runs, 2), "worker_cpu_s_per_run": round(worker_cpu / runs, 2),
        "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--limit", type=int, default=4, help="--limit of each worker")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, in order")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    databases = cl.Databases(args.postgres_url)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ringward-flow-bench-") as scratch, \
                cl.cluster(Path(scratch), databases) as made:
            deployed = made.ringward("deploy", "--pool", made.pool)
            if deployed.returncode != 0:
                print(deployed.stderr, file=sys.stderr)
                return 1
            with PrefectAdmin(made.api_url) as client:  # only the burst: the catalog's event triggers off
                for automation in client.automations():
                    if "ringward-crash-recovery" not in automation.get("tags", []):
                        client.set_automation_enabled(automation["id"], False)
            for workers in counts:
                result = measure(made, workers, args.runs, args.limit)
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        databases.drop_all()
    document = {"benchmark": "flow_throughput", "python": platform.python_version(), "cpus": os.cpu_count(),
                "machine": platform.machine(), "results": results}
    print(f"\n{'workers':>7} {'limit':>5} {'runs':>5} {'seconds':>8} {'runs/min':>9} {'queued p50':>10} "
          f"{'running p50':>11} {'server cpu/run':>14} {'worker cpu/run':>14}")
    for r in results:
        print(f"{r['workers']:>7} {r['limit_per_worker']:>5} {r['runs']:>5} {r['seconds']:>8} {r['runs_per_min']:>9} "
              f"{r['queued_s_p50']!s:>10} {r['running_s_p50']!s:>11} {r['server_cpu_s_per_run']:>14} "
              f"{r['worker_cpu_s_per_run']:>14}")
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(r["all_completed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
