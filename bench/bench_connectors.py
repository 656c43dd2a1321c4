"""Benchmark: deliver 10,000 events to 4 loopback destinations with 10 % injected 5xx, through the
same operation the CLI runs (claims in the delivery log, retries, batching, evidence records), and
compare in the same run with sending events one by one without concurrency.

    .venv/bin/python bench/bench_connectors.py [--events 10000] [--baseline-events 500]
        [--mix siem|per-event|both] [--fail-rate 0.1] [--database-url URL] [--json bench/out/connectors.json]

Destination mixes (a sink server in a separate process: uvicorn + h11 on 127.0.0.1):
  siem       splunk (HEC, batches <= 100), sentinel (Logs Ingestion, batches <= 100),
             datadog (logs v2, batches <= 100), webhook (Standard Webhooks, one signed request per
             event, 4 in flight) -- the SOC audit fan-out
  per-event  splunk, datadog (batched) + webhook and queue (private queue over HTTP), one request
             per event each, 4 in flight -- the worst case for request count

The sink answers 503 to a random 10 % of requests (seeded) and 2xx otherwise, and counts every
event id it accepted per destination: lost = accepted 0 times, duplicated = accepted more than once.

Baseline ("one by one"): the same operation with one request in flight and no batching, one
destination after the other -- how the reference system sends (sequential providers, one request
per event). Claims and evidence are still batched, so the comparison isolates concurrency and
batching. It runs on the first --baseline-events events (distinct ids, fresh store) and its rate is
reported as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRETS = {
    "BENCH_SPLUNK_TOKEN": "bench-splunk-token-0123456789",
    "BENCH_DD_KEY": "bench-datadog-key-0123456789",
    "BENCH_WEBHOOK_SECRET": "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc4OQ==",
    "BENCH_QUEUE_TOKEN": "bench-queue-token-0123456789",
    "BENCH_SENTINEL_TOKEN": "bench-sentinel-token-0123456789",
}

MIXES = {
    "siem": ["splunk", "sentinel", "datadog", "webhook"],
    "per-event": ["splunk", "datadog", "webhook", "queue"],
}


# --- the sink (runs in its own process) --------------------------------------------------------------


def _ids(path: str, body: bytes) -> list[str]:
    if path.startswith("/sentinel"):
        return [record["EventId"] for record in json.loads(body)]
    if path.startswith("/splunk"):
        return [json.loads(line)["event"]["event_id"] for line in body.splitlines() if line.strip()]
    if path.startswith("/datadog"):
        return [entry["event_id"] for entry in json.loads(body)]
    if path.startswith("/webhook"):
        return [json.loads(body)["data"]["event_id"]]
    return [json.loads(body)["event"]["event_id"]]


def serve(port: int, fail_rate: float, seed: int) -> None:
    import uvicorn

    rng = random.Random(seed)
    accepted: dict[str, Counter[str]] = defaultdict(Counter)
    requests: Counter[str] = Counter()
    failures: Counter[str] = Counter()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        status, reply = 200, b"{}"
        if path == "/stats":
            reply = json.dumps(
                {
                    "accepted": {k: dict(v) for k, v in accepted.items()},
                    "requests": requests,
                    "failures": failures,
                }
            ).encode()
        elif path == "/reset":
            accepted.clear()
            requests.clear()
            failures.clear()
        elif path != "/health":
            name = path.strip("/").split("/")[0]
            requests[name] += 1
            if rng.random() < fail_rate:
                status, reply = 503, b'{"text":"Server is busy","code":9}'
                failures[name] += 1
            else:
                accepted[name].update(_ids(path, body))
                status = {"datadog": 202, "sentinel": 204}.get(name, 200)
                if status == 204:
                    reply = b""
                if name == "splunk":
                    reply = b'{"text":"Success","code":0}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(reply)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        interface="asgi3",
        lifespan="off",
        timeout_keep_alive=60,
    )


# --- the benchmark -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _config(base: str, *, sequential: bool) -> Any:
    from ringward.core.delivery.config import validate_connector_config

    per_event = 1 if sequential else 4
    batch = 1 if sequential else 100
    batched = 1 if sequential else 2
    return validate_connector_config(
        {
            "defaults": {
                "backoff_base_seconds": 0.02,
                "backoff_cap_seconds": 0.5,
                "max_attempts": 8,
                "timeout_seconds": 10,
                "budget_seconds": 120,
            },
            "providers": [
                {
                    "name": "splunk",
                    "provider": "splunk",
                    "url": f"{base}/splunk/services/collector/event",
                    "token": "env:BENCH_SPLUNK_TOKEN",
                    "batch_max_events": batch,
                    "max_in_flight": batched,
                },
                {
                    "name": "sentinel",
                    "provider": "sentinel",
                    "url": f"{base}/sentinel",
                    "dcr_immutable_id": "dcr-00112233445566778899aabbccddeeff",
                    "stream_name": "Custom-Ringward_CL",
                    "token": "env:BENCH_SENTINEL_TOKEN",
                    "batch_max_events": batch,
                    "max_in_flight": batched,
                },
                {
                    "name": "datadog",
                    "provider": "datadog",
                    "url": f"{base}/datadog/api/v2/logs",
                    "api_key": "env:BENCH_DD_KEY",
                    "batch_max_events": batch,
                    "max_in_flight": batched,
                },
                {
                    "name": "webhook",
                    "provider": "webhook",
                    "url": f"{base}/webhook/in",
                    "signing_secret": "env:BENCH_WEBHOOK_SECRET",
                    "max_in_flight": per_event,
                },
                {
                    "name": "queue",
                    "provider": "private_queue",
                    "url": f"{base}/queue/in",
                    "token": "env:BENCH_QUEUE_TOKEN",
                    "max_in_flight": per_event,
                },
            ],
        },
        source="bench",
    )


def _events(prefix: str, count: int) -> list[Any]:
    from ringward.core.delivery.event import ConnectorEvent

    now = datetime.now(UTC)
    return [
        ConnectorEvent(
            event_id=f"{prefix}-{n:06d}",
            event_type="ringward.promotion.executed",
            created_at=now,
            severity="info",
            title=f"cavra-runtime 1.4.{n % 50} promoted to ring broad",
            summary="benchmark event",
            release_version=f"1.4.{n % 50}",
            channel="stable",
            ring="broad",
            attributes={"n": n},
        )
        for n in range(count)
    ]


def _check(base: str, ids: list[str], names: list[str]) -> dict[str, Any]:
    stats = _get(f"{base}/stats")
    report: dict[str, Any] = {"requests": stats["requests"], "injected_5xx": stats["failures"]}
    lost = duplicated = 0
    for name in names:
        counts = stats["accepted"].get(name, {})
        lost += sum(1 for i in ids if counts.get(i, 0) == 0)
        duplicated += sum(1 for i in ids if counts.get(i, 0) > 1)
    report.update(lost=lost, duplicated=duplicated)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--baseline-events", type=int, default=500)
    parser.add_argument("--mix", choices=["siem", "per-event", "both"], default="both")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also measure N worker processes sharing the store, each delivering a shard "
        "(as N Prefect workers would); 1 disables",
    )
    parser.add_argument("--fail-rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--database-url", default=None, help="store URL (default: SQLite in a temp dir)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "connectors.json")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.fail_rate, args.seed)
        return 0

    os.environ.update(SECRETS)
    port = _free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(port),
            "--fail-rate",
            str(args.fail_rate),
            "--seed",
            str(args.seed),
        ]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                _get(f"{base}/health")
                break
            except OSError:
                time.sleep(0.05)
        return _run(args, base)
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def _concurrent(
    args: argparse.Namespace, base: str, names: list[str], url: str, prefix: str
) -> dict[str, Any]:
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    events = _events(prefix, args.events)
    with open_store(url) as store:
        started, cpu = time.perf_counter(), time.process_time()
        runs = ops.deliver_events(
            events,
            _config(base, sequential=False),
            store=store,
            providers=",".join(names),
            run_id=f"bench-{prefix}",
        )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        evidence = store.count_evidence()
    attempts = Counter(len(d.attempts) for r in runs for d in r.results)
    result = {
        "destinations": names,
        "events": args.events,
        "seconds": round(elapsed, 2),
        "client_cpu_seconds": round(cpu, 2),
        "events_per_second": round(args.events / elapsed, 1),
        "deliveries_per_second": round(args.events * len(names) / elapsed, 1),
        "events_fully_delivered": sum(1 for r in runs if r.success),
        "evidence_records": evidence,
        "attempts_histogram": dict(sorted(attempts.items())),
        **_check(base, [e.event_id for e in events], names),
    }
    _get(f"{base}/reset")
    return result


def _shard(
    queue: Any,
    barrier: Any,
    url: str,
    base: str,
    names: list[str],
    prefix: str,
    count: int,
    shard: int,
    shards: int,
) -> None:
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    os.environ.update(SECRETS)
    events = [e for n, e in enumerate(_events(prefix, count)) if n % shards == shard]
    config = _config(base, sequential=False)
    with open_store(url) as store:
        barrier.wait()
        started = time.time()
        runs = ops.deliver_events(
            events, config, store=store, providers=",".join(names), run_id=f"{prefix}-{shard}"
        )
        queue.put((started, time.time(), sum(1 for r in runs if r.success)))


def _workers(args: argparse.Namespace, base: str, names: list[str], url: str, prefix: str) -> dict[str, Any]:
    import multiprocessing as mp

    from ringward.store import open_store

    open_store(url).close()  # migrate once, before the race
    ctx = mp.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(args.workers)
    procs = [
        ctx.Process(
            target=_shard, args=(queue, barrier, url, base, names, prefix, args.events, n, args.workers)
        )
        for n in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    done = [queue.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    elapsed = max(d[1] for d in done) - min(d[0] for d in done)
    result = {
        "workers": args.workers,
        "events": args.events,
        "seconds": round(elapsed, 2),
        "events_per_second": round(args.events / elapsed, 1),
        "events_fully_delivered": sum(d[2] for d in done),
        **_check(base, [e.event_id for e in _events(prefix, args.events)], names),
    }
    _get(f"{base}/reset")
    return result


def _one_by_one(args: argparse.Namespace, base: str, names: list[str], url: str) -> dict[str, Any]:
    """Each destination after the other; within it, each event after the other (one request in
    flight, no batching). Claims, completions and evidence are still written in batches, so the
    comparison isolates concurrency and batching, not database round trips."""
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    count = min(args.baseline_events, args.events)
    events = _events("seq", count)
    sequential = _config(base, sequential=True)
    failures = 0
    with open_store(url) as store:
        started = time.perf_counter()
        for name in names:
            runs = ops.deliver_events(events, sequential, store=store, providers=name, run_id=f"seq-{name}")
            failures += sum(1 for r in runs if not r.success)
        elapsed = time.perf_counter() - started
    result = {
        "destinations": names,
        "events": count,
        "seconds": round(elapsed, 2),
        "events_per_second": round(count / elapsed, 1),
        "failed_deliveries": failures,
        **_check(base, [e.event_id for e in events], names),
    }
    _get(f"{base}/reset")
    return result


def _run(args: argparse.Namespace, base: str) -> int:
    mixes = list(MIXES) if args.mix == "both" else [args.mix]
    results: dict[str, Any] = {
        "events": args.events,
        "fail_rate": args.fail_rate,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_before": os.getloadavg(),
    }
    good = True
    with tempfile.TemporaryDirectory(prefix="bench-connectors-") as tmp:
        for mix in mixes:
            names = MIXES[mix]
            url = args.database_url or f"sqlite:///{tmp}/{mix}.db"
            concurrent = _concurrent(args, base, names, url, prefix=mix)
            seq_url = args.database_url or f"sqlite:///{tmp}/{mix}-sequential.db"
            one_by_one = _one_by_one(args, base, names, seq_url)
            speedup = round(concurrent["events_per_second"] / one_by_one["events_per_second"], 1)
            results[mix] = {"concurrent": concurrent, "one_by_one": one_by_one, "speedup": speedup}
            if args.workers > 1:
                wurl = args.database_url or f"sqlite:///{tmp}/{mix}-workers.db"
                results[mix]["workers"] = _workers(args, base, names, wurl, prefix=f"{mix}-w")
            c, s = concurrent, one_by_one
            print(f"[{mix}] {', '.join(names)}")
            print(
                f"  concurrent : {c['events']} events in {c['seconds']} s = {c['events_per_second']} events/s "
                f"({c['deliveries_per_second']} deliveries/s, client CPU {c['client_cpu_seconds']} s); "
                f"lost {c['lost']}, duplicated {c['duplicated']}; 5xx injected {sum(c['injected_5xx'].values())} "
                f"of {sum(c['requests'].values())} requests; evidence records {c['evidence_records']}"
            )
            print(
                f"  one by one : {s['events']} events in {s['seconds']} s = {s['events_per_second']} events/s; "
                f"lost {s['lost']}, duplicated {s['duplicated']}"
            )
            print(f"  speed-up   : {speedup}x")
            if "workers" in results[mix]:
                w = results[mix]["workers"]
                print(
                    f"  {w['workers']} workers  : {w['events']} events in {w['seconds']} s = {w['events_per_second']} "
                    f"events/s; lost {w['lost']}, duplicated {w['duplicated']}"
                )
                good = good and w["lost"] == 0 and w["duplicated"] == 0
            good = (
                good
                and c["lost"] == 0
                and c["duplicated"] == 0
                and c["events_fully_delivered"] == args.events
            )
            good = good and s["lost"] == 0 and s["duplicated"] == 0
    results["load_average_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.json}")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
