"""Evidence search through the HTTP API at scale: every filter alone, common combinations and
time windows (p50/p95 of one client), then 8 concurrent clients (requests/s, p95).

    .venv/bin/python bench/bench_search_api.py --records 1000000 --backend sqlite --backend postgresql

Each backend's store is loaded once by ``bench/search_data.py`` (kept under ``--workdir`` for
SQLite, in the schema ``--postgres-schema`` for PostgreSQL; re-runs reuse it) and served by
``ringward api`` as a user starts it (``--workers`` processes, default one per CPU). Every
request is a real HTTP request on loopback with a bearer token; the clients run in this process
(one thread and one keep-alive connection each). Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import search_data as data  # noqa: E402

from ringward.store import open_store  # noqa: E402

Params = dict[str, str]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def _window(rng: random.Random, days: int) -> Params:
    start = data.START + timedelta(days=rng.uniform(0, 365 - days))
    end = start + timedelta(days=days)
    return {"created_from": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "created_to": end.strftime("%Y-%m-%dT%H:%M:%SZ")}


def query_sets(samples: dict[str, list[str]]) -> list[tuple[str, Callable[[random.Random], Params]]]:
    """(name, random parameters) of every benchmarked search; API parameter names."""
    c = random.Random.choice
    alone: list[tuple[str, Callable[[random.Random], Params]]] = [
        ("metadata_kind", lambda r: {"metadata_kind": c(r, data.KINDS)}),
        ("actor", lambda r: {"actor": c(r, data.ACTORS)}),
        ("flow_run_id", lambda r: {"flow_run_id": c(r, samples["flow_run_id"])}),
        ("release_version", lambda r: {"release_version": c(r, data.VERSIONS)}),
        ("runtime", lambda r: {"runtime": c(r, data.RUNTIMES)}),
        ("channel", lambda r: {"channel": c(r, data.CHANNELS)}),
        ("target_ring", lambda r: {"target_ring": c(r, data.RINGS)}),
        ("deployment_target", lambda r: {"deployment_target": c(r, data.TARGETS)}),
        ("environment", lambda r: {"environment": c(r, data.ENVIRONMENTS)}),
        ("rollout_status", lambda r: {"rollout_status": c(r, data.STATUSES)}),
        ("approval_id", lambda r: {"approval_id": c(r, samples["approval_id"])}),
        ("approval_state", lambda r: {"approval_state": c(r, data.APPROVAL_STATES)}),
        ("execution_status", lambda r: {"execution_status": c(r, data.EXECUTION_STATUSES)}),
        ("provider", lambda r: {"provider": c(r, data.PROVIDERS)}),
        ("success", lambda r: {"success": c(r, ["true", "false"])}),
        ("created 30-day window", lambda r: _window(r, 30)),
        ("no filter", lambda r: {}),
    ]
    combos: list[tuple[str, Callable[[random.Random], Params]]] = [
        (
            "kind + status + target",
            lambda r: {
                "metadata_kind": c(r, data.KINDS),
                "rollout_status": c(r, data.STATUSES),
                "deployment_target": c(r, data.TARGETS),
            },
        ),
        ("kind + status", lambda r: {"metadata_kind": c(r, data.KINDS), "rollout_status": c(r, data.STATUSES)}),
        ("kind + target", lambda r: {"metadata_kind": c(r, data.KINDS), "deployment_target": c(r, data.TARGETS)}),
        ("kind + success=false", lambda r: {"metadata_kind": c(r, data.KINDS), "success": "false"}),
        ("kind + actor", lambda r: {"metadata_kind": c(r, data.KINDS), "actor": c(r, data.ACTORS)}),
        (
            "ring + environment + status",
            lambda r: {
                "target_ring": c(r, data.RINGS),
                "environment": c(r, data.ENVIRONMENTS),
                "rollout_status": c(r, data.STATUSES),
            },
        ),
        (
            "release_version + channel",
            lambda r: {"release_version": c(r, data.VERSIONS), "channel": c(r, data.CHANNELS)},
        ),
        ("provider + success=false", lambda r: {"provider": c(r, data.PROVIDERS), "success": "false"}),
        (
            "execution_status + ring",
            lambda r: {"execution_status": c(r, data.EXECUTION_STATUSES), "target_ring": c(r, data.RINGS)},
        ),
        (
            "approval_state + kind",
            lambda r: {"approval_state": c(r, data.APPROVAL_STATES), "metadata_kind": c(r, data.APPROVAL_KINDS)},
        ),
        ("kind + 30-day window", lambda r: {"metadata_kind": c(r, data.KINDS), **_window(r, 30)}),
        ("target + 7-day window", lambda r: {"deployment_target": c(r, data.TARGETS), **_window(r, 7)}),
        (
            "status + 30-day window, oldest first",
            lambda r: {"rollout_status": c(r, data.STATUSES), "order": "oldest", **_window(r, 30)},
        ),
        ("kind, total=exact", lambda r: {"metadata_kind": c(r, data.KINDS), "total": "exact"}),
    ]
    return alone + combos


class Client:
    """One keep-alive HTTP connection with the bearer token."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()


def search_path(params: Params, limit: int = 50) -> str:
    return "/evidence?" + urlencode({**params, "limit": str(limit)})


def measure_filters(
    port: int, token: str, samples: dict[str, list[str]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    client = Client(port, token)
    out = []
    for name, make in query_sets(samples):
        if args.only and not any(o in name for o in args.only):
            continue
        latencies: list[float] = []
        hits: list[int] = []
        lower = 0
        for i in range(args.queries + 5):
            path = search_path(make(rng))
            t0 = time.perf_counter()
            status, body = client.get(path)
            elapsed = (time.perf_counter() - t0) * 1000
            if status != 200:
                raise SystemExit(f"{path}: HTTP {status}: {body[:300]!r}")
            if i < 5:  # warm-up
                continue
            page = json.loads(body)
            latencies.append(elapsed)
            hits.append(len(page["items"]))
            lower += bool(page["total_is_lower_bound"])
        row = {
            "search": name,
            "queries": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "max_ms": round(max(latencies), 2),
            "mean_hits": round(statistics.mean(hits), 1),
            "total_lower_bound_share": round(lower / len(latencies), 2),
        }
        print(
            f"    {name:40s} p50 {row['p50_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms  "
            f"max {row['max_ms']:7.2f}  hits {row['mean_hits']}",
            file=sys.stderr,
        )
        out.append(row)
    return out


def measure_concurrency(port: int, token: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--clients`` threads, each sending the issue's search (kind + status + target, page 50)
    back to back for ``--duration`` seconds."""
    stop = time.perf_counter() + args.duration
    latencies: list[list[float]] = [[] for _ in range(args.clients)]
    errors: list[str] = []
    barrier = threading.Barrier(args.clients + 1)

    def run(index: int) -> None:
        rng = random.Random(args.seed + index)
        client = Client(port, token)
        client.get("/healthz")
        barrier.wait()
        mine = latencies[index]
        while time.perf_counter() < stop:
            path = search_path(
                {
                    "metadata_kind": rng.choice(data.KINDS),
                    "rollout_status": rng.choice(data.STATUSES),
                    "deployment_target": rng.choice(data.TARGETS),
                }
            )
            t0 = time.perf_counter()
            status, body = client.get(path)
            mine.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    cpu0 = os.times()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    if errors:
        raise SystemExit(errors[0])
    every = [value for values in latencies for value in values]
    return {
        "clients": args.clients,
        "seconds": round(wall, 2),
        "requests": len(every),
        "requests_per_s": round(len(every) / wall, 1),
        "p50_ms": round(statistics.median(every), 2),
        "p95_ms": round(percentile(every, 95), 2),
        "client_cpu_s": round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 2),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, workers: int, home: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "RINGWARD_DATABASE_URL": url, "RINGWARD_HOME": str(home)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ringward",
            "api",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ringward api exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("ringward api did not answer /healthz within 120 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def samples_of(store: Any, column: str, rng: random.Random, count: int = 200) -> list[str]:
    """Values of ``column`` that occur in the store (the ids the benchmark looks up)."""
    import sqlalchemy as sa

    last = store.head().last_id
    ids = [rng.randint(1, last) for _ in range(count * 20)]
    with store.reading() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {column} FROM evidence_record WHERE id IN ({','.join(map(str, ids))}) AND {column} IS NOT NULL"
            )
        ).all()
    values = sorted({str(r[0]) for r in rows})
    return values[:count]


def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from ringward.operations.common.api_tokens import create_token

    result: dict[str, Any] = {"backend": name}
    with open_store(url) as store:
        last = store.head().last_id
        if last == 0:
            print(f"  {name}: loading {args.records:,} records", file=sys.stderr)
            data.load(store, args.records, seed=args.seed, log=lambda m: print(m, file=sys.stderr))
            last = store.head().last_id
        if last < args.records:
            raise SystemExit(f"{name}: the store holds {last:,} records, expected {args.records:,}; give a fresh one")
        result["records"] = last
        # what the store runs itself once the chain grew by 20 % (ANALYZE / VACUUM (ANALYZE))
        t0 = time.perf_counter()
        store.refresh_statistics()
        result["refresh_statistics_s"] = round(time.perf_counter() - t0, 2)
        rng = random.Random(args.seed)
        samples = {column: samples_of(store, column, rng) for column in ("flow_run_id", "approval_id")}
        _, token = create_token(store, name=f"bench-{os.urandom(5).hex()}", role="viewer", created_by="bench")
    home = args.workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    workers_list = args.workers or [0]
    for workers in workers_list:
        process, port = start_server(url, workers, home)
        try:
            label = f"workers={workers or 'auto'}"
            if workers == workers_list[0] and not args.no_filters:
                print(f"  {name}: filters ({label})", file=sys.stderr)
                result["filters"] = measure_filters(port, token, samples, args)
            print(f"  {name}: {args.clients} concurrent clients ({label})", file=sys.stderr)
            result.setdefault("concurrency", []).append(
                {"workers": workers or "auto", **measure_concurrency(port, token, args)}
            )
            print(f"    {result['concurrency'][-1]}", file=sys.stderr)
        finally:
            stop_server(process)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "search")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--postgres-schema", default="rw_bench_search", help="schema holding the PostgreSQL store (kept)"
    )
    parser.add_argument("--queries", type=int, default=200, help="searches per filter (one client)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the concurrent run")
    parser.add_argument("--workers", type=int, action="append", help="API processes (repeatable; 0 = one per CPU)")
    parser.add_argument("--only", action="append", help="only searches whose name contains this")
    parser.add_argument("--no-filters", action="store_true", help="only the concurrent run")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the API server this started is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for backend in args.backend or ["sqlite", "postgresql"]:
        if backend == "sqlite":
            url = f"sqlite:///{args.workdir / 'ringward.db'}"
        else:
            import psycopg

            plain = args.postgres_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{args.postgres_schema}"')
            url = f"{args.postgres_url}?options={quote(f'-csearch_path={args.postgres_schema}')}"
        results.append(run_backend(backend, url, args))
    load = os.getloadavg()
    document = {"load_average_after": [round(v, 2) for v in load], "results": results}
    print(json.dumps(document, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
