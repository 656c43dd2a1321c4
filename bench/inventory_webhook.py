"""Benchmark: signed inventory webhook intake, requests per second.

Each request is a real ``POST /webhooks/inventory/{source}`` through the real app (FastAPI's
TestClient, in-process, sequential: no network), signed with two HMAC ``v1`` items (one stale
secret, one current, as during a rotation: the receiver tries both) and checked for timestamp,
replay (a unique ``webhook-id`` per request), then stored: raw body as an evidence bundle plus its
receipt row, one transaction. Three figures:

1. ``verify``: ``verify_webhook`` alone (the signature check, pure);
2. ``intake``: the request up to the 202 with the receipt handed on (Prefect path: the event is
   replaced by a no-op so the Prefect server's latency is not measured here);
3. ``intake+ingest``: no Prefect API, so every body is also normalised and recorded in-process
   after its response (what a single-node install does).

    .venv/bin/python bench/inventory_webhook.py [--requests 300] [--hosts 50] [--database-url URL] [--json out.json]

The body is a Jamf ``computers-inventory`` page of ``--hosts`` computers (distinct per request, so
every ingestion is a new record). The store is a fresh SQLite file unless ``--database-url`` is given.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringward.core.delivery.webhook_signing import signature_header, verify_webhook

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"a" * 32).decode()


def jamf_page(hosts: int, seed: int) -> bytes:
    results = [{
        "id": str(i), "udid": f"UDID-{seed}-{i}",
        "general": {"name": f"mac-{seed}-{i}", "lastContactTime": "2026-11-22T11:02:00Z",
                    "reportDate": "2026-11-22T09:15:30Z",
                    "extensionAttributes": [{"name": "ringward deployment target", "values": ["macos-arm64"]}]},
        "applications": [{"name": "rt.app", "version": "1.2.3", "bundleId": "com.example.rt"}],
    } for i in range(hosts)]
    return json.dumps({"totalCount": hosts, "results": results}).encode()


def headers(msg_id: str, body: bytes) -> dict[str, str]:
    stamp = int(NOW.timestamp())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "content-type": "application/json",
            "webhook-signature": signature_header(msg_id, stamp, body, secrets=(OLD_SECRET, SECRET))}


def run(requests: int, hosts: int, database_url: str | None) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    import flows.events
    from ringward.api.app import create_app
    from ringward.store import open_store

    work = Path(tempfile.mkdtemp(prefix="rw-webhook-bench-"))
    os.environ.update({"RINGWARD_HOME": str(work / "home"), "RINGWARD_EVIDENCE_ROOT": str(work / "home/evidence"),
                       "RW_BENCH_SECRET": SECRET, "RW_BENCH_OLD_SECRET": OLD_SECRET})
    config = work / "webhooks.yaml"
    config.write_text("sources:\n  jamf-prod:\n    provider: jamf\n    software: [rt]\n"
                      "    secrets: [env:RW_BENCH_OLD_SECRET, env:RW_BENCH_SECRET]\n")
    os.environ["RINGWARD_WEBHOOKS"] = str(config)
    bodies = [jamf_page(hosts, n) for n in range(requests)]
    figures: dict[str, Any] = {"requests": requests, "hosts_per_body": hosts,
                               "body_bytes": len(bodies[0]), "python": platform.python_version()}

    signed = [(headers(f"v{n}", b), b) for n, b in enumerate(bodies)]
    started = time.perf_counter()
    for head, body in signed:
        verify_webhook(head, body, now=int(NOW.timestamp()), secrets=(OLD_SECRET, SECRET))
    figures["verify_per_s"] = round(len(signed) / (time.perf_counter() - started))

    def measure(label: str, emit_events: bool) -> None:
        url = database_url or f"sqlite:///{work / label / 'ringward.db'}"
        store = open_store(url)
        os.environ["RINGWARD_EMIT_EVENTS"] = "1" if emit_events else "0"
        original = flows.events.emit_if_configured
        if emit_events:
            flows.events.emit_if_configured = lambda *event: None  # type: ignore[assignment]
        try:
            with TestClient(create_app(store=store, clock=lambda: NOW)) as client:
                for n in range(3):  # warm-up: first-use imports are not intake
                    warm = jamf_page(hosts, -1 - n)
                    client.post("/webhooks/inventory/jamf-prod", content=warm, headers=headers(f"w{label}{n}", warm))
                started = time.perf_counter()
                for n, body in enumerate(bodies):
                    answer = client.post("/webhooks/inventory/jamf-prod", content=body,
                                         headers=headers(f"{label}-{n}", body))
                    assert answer.status_code == 202, answer.text
                elapsed = time.perf_counter() - started
        finally:
            flows.events.emit_if_configured = original  # type: ignore[assignment]
            store.close()
        figures[f"{label}_per_s"] = round(requests / elapsed, 1)
        figures[f"{label}_ms_per_request"] = round(1000 * elapsed / requests, 2)

    try:
        measure("intake", emit_events=True)
        measure("intake_ingest", emit_events=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = run(args.requests, args.hosts, args.database_url)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
