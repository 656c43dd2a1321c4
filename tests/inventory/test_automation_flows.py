"""The issue's end-to-end path as Prefect flow runs on the session's Prefect server: a signed webhook
(the real ASGI app) -> ``ringward.inventory.received`` -> the ``inventory-ingest-on-receive`` run ->
``ringward.inventory.ingested`` (ids only) -> the ``inventory-automation-on-ingest`` run -> a remediation
request against channel stable's current release (the promotion domain's channel state); a second
webhook with the same drift attaches to that request instead of opening another approval. The
deployments are the catalog's, served by a Runner (tests/promotion/test_promotion_triggers.py); four
flow runs in all. Plus ``ringward inventory ingest --reconcile``, the same operation without Prefect."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ringward.api.app import create_app
from ringward.core.delivery.webhook_signing import signature_header
from ringward.core.remediation import request as rq
from ringward.operations.remediation.automation import KIND_AUTOMATION
from ringward.store.remediation.state import REQUESTS, RemediationStateRepository
from tests.inventory.conftest import cli, records
from tests.promotion.conftest import ChannelWorld
from tests.promotion.test_promotion_triggers import serving, wait_for_final_runs
from tests.remediation.conftest import RemediationWorld, drifted_fleet, rw  # noqa: F401

#: a triggered run is a fresh Python process on a shared 2-core box
WAIT_S = 150.0
SECRET = "whsec_" + base64.b64encode(b"e2e-automation-secret!".ljust(32, b"!")).decode()


@pytest.fixture
def automation_env(rw: RemediationWorld, tmp_path: Path,  # noqa: F811
                   monkeypatch: pytest.MonkeyPatch) -> RemediationWorld:
    """Channel stable promoted to the package (request -> approval -> export), released packages and the
    automation's keys where the settings say, a signed linux inventory source."""
    ChannelWorld(rw.store, rw.keys, rw.inv.sim, rw.inv.work, rw.inv.package).promote(provider="linux")
    config = tmp_path / "webhooks.yaml"
    config.write_text("sources:\n  fleet-main:\n    provider: linux\n    channel: stable\n    software: [rt]\n"
                      "    secrets: [env:RW_E2E_SECRET]\n")
    for name, value in {"RW_E2E_SECRET": SECRET, "RINGWARD_WEBHOOKS": str(config),
                        "RINGWARD_TRUST_ROOT": str(rw.keys.trust_root),
                        "RINGWARD_REMEDIATION_KEY": str(rw.keys.remediation_pem),
                        "RINGWARD_PACKAGES": str(rw.inv.package.parent)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RINGWARD_CHANNEL_RELEASES", raising=False)
    monkeypatch.delenv("RINGWARD_AUTOMATION_ACTOR", raising=False)
    return rw


def _post(client: TestClient, fleet: list[dict[str, Any]], msg_id: str) -> Any:
    body = json.dumps({"endpoints": fleet}).encode()
    stamp = int(datetime.now(UTC).timestamp())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "content-type": "application/json",
               "webhook-signature": signature_header(msg_id, stamp, body, secrets=(SECRET,))}
    return client.post("/webhooks/inventory/fleet-main", content=body, headers=headers)


def _approvals(w: RemediationWorld) -> list[str]:
    items, _ = w.store.approvals.list(now=datetime.now(UTC))
    return [a.approval_id for a in items if a.action == rq.ACTION]


@pytest.mark.prefect
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_webhook_to_remediation_request_as_flow_runs(prefect_server: None, automation_env: RemediationWorld,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    w = automation_env
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "1")  # the API sends ringward.inventory.received to Prefect
    names = {"inventory-ingest-on-receive", "inventory-automation-on-ingest"}
    with serving(names, {}) as ids, \
            TestClient(create_app(store=w.store, artifact_root=w.inv.work)) as client:
        accepted = _post(client, drifted_fleet(w.inv), "e2e_1")
        assert accepted.status_code == 202, accepted.text
        (ingest_run,) = wait_for_final_runs(ids["inventory-ingest-on-receive"], 1, WAIT_S)
        assert ingest_run.state.is_completed(), ingest_run.state
        assert ingest_run.parameters == {"receipt_id": int(accepted.json()["receipt_id"])}
        (first,) = wait_for_final_runs(ids["inventory-automation-on-ingest"], 1, WAIT_S)
        assert first.state.is_completed(), first.state
        assert "opened remediation request err_" in str(first.state.message), first.state.message
        assert set(first.parameters) >= {"inventory_id", "channel", "trust_root", "signing_key"}
        assert first.parameters["channel"] == "stable"
        (request_id,) = [e.key for e in RemediationStateRepository(w.store).list(REQUESTS)]
        (approval_id,) = _approvals(w)
        (automated,) = records(w.store, KIND_AUTOMATION)
        assert automated.flow_run_id == str(first.id) and automated.payload["remediation_request_id"] == request_id
        assert automated.payload["release_source"] == "channel-state"

        # a second delivery, other content (another inventory id), the same drift: it attaches
        again = _post(client, drifted_fleet(w.inv, behind="v1.2.1"), "e2e_2")
        assert again.status_code == 202, again.text
        runs = wait_for_final_runs(ids["inventory-automation-on-ingest"], 2, WAIT_S)
        (second,) = [r for r in runs if r.id != first.id]
        assert second.state.is_completed() and "attached to open request" in str(second.state.message), \
            second.state.message
        assert second.parameters["inventory_id"] != first.parameters["inventory_id"]
    assert _approvals(w) == [approval_id]  # no second approval
    entry = RemediationStateRepository(w.store).get(REQUESTS, request_id)
    assert entry is not None and len(entry.value["attached_runs"]) == 1
    attached = [r for r in records(w.store, rq.KIND_REQUEST) if r.subject.status == "attached"]
    assert len(attached) == 1 and attached[0].flow_run_id == str(second.id)
    assert len(wait_for_final_runs(ids["inventory-ingest-on-receive"], 2, WAIT_S)) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_without_prefect_the_receiver_runs_the_automation_in_process(automation_env: RemediationWorld,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    w = automation_env
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    with TestClient(create_app(store=w.store, artifact_root=w.inv.work)) as client:
        assert _post(client, drifted_fleet(w.inv), "inproc_1").status_code == 202
        assert _post(client, drifted_fleet(w.inv, behind="v1.2.1"), "inproc_2").status_code == 202
    (approval_id,) = _approvals(w)
    outcomes = [r.subject.status for r in records(w.store, KIND_AUTOMATION)]
    assert outcomes == ["requested", "attached"]
    # unconfigured (no remediation key): the ingestion stands, nothing is automated
    monkeypatch.setenv("RINGWARD_REMEDIATION_KEY", str(w.inv.work / "absent.pem"))
    with TestClient(create_app(store=w.store, artifact_root=w.inv.work)) as client:
        assert _post(client, drifted_fleet(w.inv, behind="v1.0.0"), "inproc_3").status_code == 202
    assert len(records(w.store, KIND_AUTOMATION)) == 2 and _approvals(w) == [approval_id]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ingest_reconcile_runs_the_same_operation_in_process(automation_env: RemediationWorld, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    w = automation_env
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    source = tmp_path / "fleet.json"
    source.write_text(json.dumps({"endpoints": drifted_fleet(w.inv)}))
    argv = ["inventory", "ingest", str(source), "--provider", "linux", "--channel", "stable", "--software", "rt",
            "--reconcile", "--output", str(tmp_path / "obs")]
    code, out, err = cli(capsys, *argv)
    assert code == 1, err  # drift
    assert "AUTOMATION REQUESTED: drift on stable" in out
    (approval_id,) = _approvals(w)
    # the same export again: identical content is one ingestion, the automation answers from its record
    code, out, err = cli(capsys, *argv[:-2], "--output", str(tmp_path / "obs"), "--json")
    result = json.loads(out)
    assert code == 1 and result["status"] == "duplicate" and result["automation"]["repeat"] is True
    assert _approvals(w) == [approval_id]
    # without the remediation key: one line naming where it is expected, exit 2
    monkeypatch.setenv("RINGWARD_REMEDIATION_KEY", str(tmp_path / "nope.pem"))
    source.write_text(json.dumps({"endpoints": drifted_fleet(w.inv, behind="v1.0.0")}))
    code, _, err = cli(capsys, "inventory", "ingest", str(source), "--provider", "linux", "--channel", "stable",
                       "--software", "rt", "--reconcile", "--output", str(tmp_path / "obs2"))
    assert code == 2 and "no remediation key" in err and len(err.strip().splitlines()) == 1


def test_trigger_payloads_fit_the_flow_parameter_schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server validates a triggered run's parameters against the flow's JSON schema without coercion:
    a receipt id sent as a string never started the ingestion. Both payloads, rendered as the
    triggers do, must validate as they are."""
    import importlib

    import jsonschema

    from deployments.catalog import by_name
    from deployments.serve import build
    from ringward.operations.inventory.events import ingested_event
    from ringward.operations.inventory.webhook_ops import received_event
    from ringward.store.inventory.receipts import WebhookReceipt

    now = datetime.now(UTC)
    receipt = WebhookReceipt(receipt_id=7, source="fleet-main", webhook_id="m", provider="linux", channel=None,
                             received_at=now, body_sha256="0" * 64, body_bytes=2, raw_path="/x", status="received",
                             reason=None, evidence_id=1, inventory_id=None)
    ingested = ingested_event({"status": "ingested", "inventory_id": "eii_0123456789ab", "provider": "linux",
                               "channel": None})
    assert ingested is not None
    payloads = {"inventory-ingest-on-receive": received_event(receipt)[2],
                "inventory-automation-on-ingest": ingested[2]}
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    for name, payload in payloads.items():
        deployment = build(by_name()[name], {})
        (trigger,) = by_name()[name].triggers
        rendered = {param: payload[template.split("event.payload.")[1].rstrip(" }")]
                    for param, template in trigger.parameters.items()}
        module, _, function = by_name()[name].entrypoint.partition(":")
        flow = getattr(importlib.import_module(module), function)
        jsonschema.validate({**deployment.parameters, **rendered}, flow.parameters.model_dump(mode="json"))


def test_the_automation_deployment_needs_its_key_and_trust_root(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.catalog import by_name, unconfigured_lines
    from deployments.serve import build

    home = tmp_path / "home"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    for name in ("RINGWARD_TRUST_ROOT", "RINGWARD_REMEDIATION_KEY"):
        monkeypatch.delenv(name, raising=False)
    spec = by_name()["inventory-automation-on-ingest"]
    assert [t.enabled for t in build(spec, {}).triggers] == [False]
    assert (f"inventory-automation-on-ingest: off until {home / 'trust-root.json'}, {home / 'remediation-key.pem'} "
            "exists") in unconfigured_lines()
    home.mkdir()
    (home / "trust-root.json").write_text("{}")
    (home / "remediation-key.pem").write_text("-")
    served = build(spec, {})
    assert [t.enabled for t in served.triggers] == [True]
    assert served.parameters["signing_key"] == str(home / "remediation-key.pem")
    monkeypatch.setenv("RINGWARD_REMEDIATION_KEY", str(tmp_path / "elsewhere.pem"))
    assert [t.enabled for t in build(spec, {}).triggers] == [False]  # the variable wins; that file is missing
