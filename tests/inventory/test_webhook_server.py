"""Signed inventory webhooks over real HTTP (``ringward api`` as a uvicorn subprocess), the replay
race on the unique key, and the event's parameters driving the ingestion flow as a Prefect run."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ringward.core.delivery.webhook_signing import signature_header
from ringward.core.inventory.observations import KIND_INGESTION
from ringward.operations.inventory.webhook_ops import RAW_BODY_FILE
from ringward.settings import evidence_root
from ringward.store import open_store
from ringward.store.inventory.receipts import WebhookReceiptRepository
from tests.inventory import payloads
from tests.inventory.conftest import records
from tests.inventory.test_webhook import NEW_SECRET, T0, Hooks, hooks, jamf_body, refusals  # noqa: F401

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signed(msg_id: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    stamp = int(datetime.now(UTC).timestamp())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "content-type": "application/json",
            "webhook-signature": signature_header(msg_id, stamp, body, secrets=(secret,))}


def test_real_server_accepts_streams_and_refuses(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "webhooks.yaml"
    config.write_text("max_body_bytes: 1048576\nsources:\n  fleet-main:\n    provider: fleet\n"
                      "    secrets: [env:RW_TEST_FLEET_SECRET]\n")
    home = tmp_path / "home"
    port = _free_port()
    env = {**os.environ, "RINGWARD_HOME": str(home), "RINGWARD_DATABASE_URL": db_url,
           "RINGWARD_EVIDENCE_ROOT": str(home / "evidence"), "RINGWARD_WEBHOOKS": str(config),
           "RW_TEST_FLEET_SECRET": SECRET, "RINGWARD_EMIT_EVENTS": "0"}
    server = subprocess.Popen([sys.executable, "-m", "ringward", "api", "--host", "127.0.0.1", "--port", str(port),
                               "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/webhooks/inventory/fleet-main"
    body = json.dumps(payloads.fleet_hosts()).encode() + b" " * (300 * 1024)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)

        def chunked(data: bytes) -> Any:
            for start in range(0, len(data), 65536):
                yield data[start:start + 65536]

        accepted = httpx.post(base, content=chunked(body), headers=_signed("evt_1", body), timeout=30)
        assert accepted.status_code == 202, accepted.text
        receipt_id = int(accepted.json()["receipt_id"])
        assert httpx.post(base, content=body, headers=_signed("evt_1", body), timeout=30).status_code == 409
        forged = httpx.post(base, content=body, headers=_signed("evt_2", body, NEW_SECRET), timeout=30)
        assert forged.status_code == 401 and forged.json()["error"] == "webhook-signature-invalid"
        big = b" " * (1024 * 1024 + 1)
        assert httpx.post(base, content=chunked(big), headers=_signed("evt_3", big), timeout=30).status_code == 413
        with open_store(db_url) as store:
            repo = WebhookReceiptRepository(store)
            deadline = time.monotonic() + 60
            while repo.get(receipt_id).status == "received":  # ingestion runs after the response
                assert time.monotonic() < deadline, "receipt never ingested"
                time.sleep(0.2)
            assert repo.get(receipt_id).status == "ingested"
            assert [r.payload["error"]["http_status"] for r in refusals(store)] == [409, 401, 413]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert b"Traceback" not in (server.stderr.read() if server.stderr else b"")


def test_a_racing_replay_loses_on_the_unique_key(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    body = jamf_body()
    assert hooks.post("jamf-prod", body).status_code == 202
    # the second delivery passes the read check (as if both arrived together) and loses on insert
    monkeypatch.setattr(WebhookReceiptRepository, "seen", lambda self, source, webhook_id: False)
    again = hooks.post("jamf-prod", body)
    assert again.status_code == 409 and again.json()["error"] == "webhook-replayed"
    assert hooks.receipt_count() == 1 and [r.payload["error"]["http_status"] for r in refusals(hooks.store)] == [409]
    # the loser's bundle is gone: one stored body on disk
    assert len(list(evidence_root().rglob(RAW_BODY_FILE))) == 1


@pytest.mark.prefect
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_received_event_parameters_run_the_ingestion_flow(prefect_server: None, hooks: Hooks,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.events
    import flows.inventory_ingest as ingest_flows
    from flows._common import run_flow

    sent: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "1")
    monkeypatch.setattr(flows.events, "emit_if_configured", lambda *event: sent.append(event))
    monkeypatch.setattr(ingest_flows, "emit", lambda *event: None)
    response = hooks.post("jamf-prod", jamf_body())
    assert response.status_code == 202 and hooks.receipt(response).status == "dispatched"
    ((_, _, payload),) = sent
    # exactly the mapping of the inventory-ingest-on-receive trigger
    from deployments.catalog import CATALOG

    (deployment,) = [d for d in CATALOG if d.name == "inventory-ingest-on-receive"]
    (trigger,) = deployment.triggers
    parameters = {name: payload[template.split("event.payload.")[1].rstrip(" }")]
                  for name, template in trigger.parameters.items()}
    assert set(parameters) == {"receipt_id"}  # nothing else is taken from the event
    outcome = run_flow(ingest_flows.inventory_ingest_receipt_flow, **parameters, now=T0)
    result = outcome["result"]
    assert result["status"] == "ingested" and result["channel"] == "stable" and result["endpoint_count"] == 3
    (ingestion,) = records(hooks.store, KIND_INGESTION)
    assert ingestion.flow_run_id and ingestion.actor == "webhook:jamf-prod"
    # the output directory comes from the receipt and the receiver's configuration, not from the event
    from ringward.operations.inventory.webhook_ops import load_receiver, output_dir

    assert "output" not in payload
    assert Path(result["output_dir"]) == output_dir(load_receiver(hooks.config), hooks.receipt(response))
    # the triggered run finished its receipt: nothing left for recover-webhooks; a replayed event is a no-op
    assert hooks.receipt(response).status == "ingested"
    again = run_flow(ingest_flows.inventory_ingest_receipt_flow, **parameters, now=T0)
    assert again["already_finished"] and len(records(hooks.store, KIND_INGESTION)) == 1
