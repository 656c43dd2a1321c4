"""``POST /webhooks/inventory/{source}`` over the real app (TestClient): Standard Webhooks signatures
(HMAC v1, Ed25519 v1a, rotation), timestamps, persisted replay refusal, body cap, receipts as
evidence, in-process ingestion, the Prefect event path, crash recovery and content addressing.
SQLite and PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from ringward.api.app import create_app
from ringward.core.delivery.webhook_signing import public_key_text, signature_header
from ringward.core.errors import ConfigError, InputError
from ringward.core.inventory.observations import KIND_INGESTION
from ringward.operations.inventory.webhook_ops import KIND_WEBHOOK, RAW_BODY_FILE, RECEIVED_EVENT
from ringward.settings import evidence_root
from ringward.store import Store, open_store
from ringward.store.inventory.receipts import WebhookReceiptRepository
from tests.inventory import payloads
from tests.inventory.conftest import cli, records

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
WRONG_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()
EDR_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
MAX_BODY = 256 * 1024


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Hooks:
    client: TestClient
    store: Store
    config: Path
    clock: Clock
    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def post(self, source: str, body: bytes, *, msg_id: str = "msg_1", at: datetime | None = None,
             secrets: tuple[str, ...] = (NEW_SECRET,), keys: tuple[Ed25519PrivateKey, ...] = (),
             drop: str | None = None, **extra: Any) -> Any:
        stamp = int((at or self.clock.now).timestamp())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "content-type": "application/json",
                   "webhook-signature": signature_header(msg_id, stamp, body, secrets=secrets, signing_keys=keys)}
        if drop:
            del headers[drop]
        headers.update(extra.pop("headers", {}))
        return self.client.post(f"/webhooks/inventory/{source}", content=body, headers=headers, **extra)

    def receipt(self, response: Any) -> Any:
        return WebhookReceiptRepository(self.store).get(int(response.json()["receipt_id"]))

    def receipt_count(self) -> int:
        with self.store.reading() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM webhook_receipt")).scalar_one())


def write_config(path: Path, *, max_body: int = MAX_BODY, extra: str = "") -> Path:
    path.write_text(f"""
schema_version: ringward.inventory-webhooks.v1
max_body_bytes: {max_body}
output_root: {path.parent / "webhook-out"}
sources:
  jamf-prod:
    provider: jamf
    channel: stable
    software: [rt]
    secrets: [env:RW_TEST_WEBHOOK_SECRET, "file:{path.parent / 'previous.secret'}"]
  edr-relay:
    provider: edr
    software: [rt]
    public_keys: [{public_key_text(EDR_KEY)}]
{extra}""")
    return path


@pytest.fixture
def hooks(inventory_env: Path, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    (tmp_path / "previous.secret").write_text(OLD_SECRET + "\n")
    config = write_config(tmp_path / "webhooks.yaml")
    monkeypatch.setenv("RW_TEST_WEBHOOK_SECRET", NEW_SECRET)
    monkeypatch.setenv("RINGWARD_WEBHOOKS", str(config))
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    opened = open_store(db_url)
    clock = Clock()
    try:
        with TestClient(create_app(store=opened, clock=clock, artifact_root=tmp_path)) as client:
            yield Hooks(client, opened, config, clock)
    finally:
        opened.close()


def jamf_body(**changes: Any) -> bytes:
    payload = payloads.jamf_page()
    payload.update(changes)
    return json.dumps(payload).encode()


def refusals(store: Store) -> list[Any]:
    return [r for r in records(store, KIND_WEBHOOK) if r.subject.status == "refused"]


# --- accepted --------------------------------------------------------------------------------------


def test_hmac_signed_body_is_evidence_then_ingested(hooks: Hooks) -> None:
    body = jamf_body()
    response = hooks.post("jamf-prod", body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "received" and answer["signature_version"] == "v1"
    assert answer["body_sha256"] == hashlib.sha256(body).hexdigest()
    # the raw body and its digest are evidence
    (received,) = [r for r in records(hooks.store, KIND_WEBHOOK) if r.subject.status == "received"]
    assert str(received.id) == answer["evidence_id"]
    assert received.payload["body_sha256"] == answer["body_sha256"] and received.actor == "webhook:jamf-prod"
    assert (evidence_root() / received.bundle_dir / RAW_BODY_FILE).read_bytes() == body
    # ingested in-process after the response (no Prefect API)
    receipt = hooks.receipt(response)
    assert receipt.status == "ingested" and receipt.inventory_id.startswith("eii_")
    assert Path(receipt.raw_path).is_absolute() and Path(receipt.raw_path).read_bytes() == body
    (ingestion,) = records(hooks.store, KIND_INGESTION)
    assert ingestion.payload["inventory_id"] == receipt.inventory_id and ingestion.subject.channel == "stable"
    assert ingestion.payload["endpoint_count"] == 3
    observations = hooks.config.parent / "webhook-out" / "jamf-prod" / f"receipt-{receipt.receipt_id}"
    assert (observations / "endpoint-inventory.json").is_file()


def test_ed25519_v1a_signature(hooks: Hooks) -> None:
    body = json.dumps(payloads.edr_mixed()).encode()
    response = hooks.post("edr-relay", body, secrets=(), keys=(EDR_KEY,))
    assert response.status_code == 202, response.text
    assert response.json()["signature_version"] == "v1a"
    assert hooks.receipt(response).status == "ingested"
    # the HMAC secret of another source does not open this one
    assert hooks.post("edr-relay", body, msg_id="msg_2").status_code == 401


def test_second_secret_during_rotation(hooks: Hooks) -> None:
    body = jamf_body()
    assert hooks.post("jamf-prod", body, msg_id="old", secrets=(OLD_SECRET,)).status_code == 202
    assert hooks.post("jamf-prod", body, msg_id="both", secrets=(WRONG_SECRET, NEW_SECRET)).status_code == 202


def test_body_over_the_api_wide_64k_cap_is_accepted(hooks: Hooks) -> None:
    body = jamf_body() + b" " * (100 * 1024)  # trailing whitespace: still one JSON document
    response = hooks.post("jamf-prod", body)
    assert response.status_code == 202, response.text
    assert hooks.receipt(response).status == "ingested"


def test_identical_payloads_under_different_ids_are_one_ingestion(hooks: Hooks) -> None:
    body = jamf_body()
    first = hooks.post("jamf-prod", body, msg_id="a1")
    second = hooks.post("jamf-prod", body, msg_id="a2")
    assert first.status_code == second.status_code == 202
    assert first.json()["receipt_id"] != second.json()["receipt_id"]
    one, two = hooks.receipt(first), hooks.receipt(second)
    assert one.status == two.status == "ingested" and one.inventory_id == two.inventory_id
    assert len(records(hooks.store, KIND_INGESTION)) == 1


# --- refused ---------------------------------------------------------------------------------------


def test_bad_signature_is_401_and_recorded_without_body(hooks: Hooks) -> None:
    body = jamf_body()
    response = hooks.post("jamf-prod", body, secrets=(WRONG_SECRET,))
    assert response.status_code == 401
    assert response.json()["error"] == "webhook-signature-invalid"
    assert "no signature in webhook-signature verifies" in response.json()["message"]
    (refusal,) = refusals(hooks.store)
    assert refusal.bundle_dir is None and not refusal.artifacts
    assert refusal.payload["error"]["http_status"] == 401 and refusal.payload["webhook_id"] == "msg_1"
    assert refusal.payload["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert NEW_SECRET not in json.dumps(refusal.payload) and "RW_TEST" not in json.dumps(refusal.payload)
    assert hooks.receipt_count() == 0 and not records(hooks.store, KIND_INGESTION)
    # a tampered body under a valid signature of another body
    stamp = str(int(T0.timestamp()))
    headers = {"webhook-id": "m", "webhook-timestamp": stamp,
               "webhook-signature": signature_header("m", int(stamp), body, secrets=(NEW_SECRET,))}
    tampered = hooks.client.post("/webhooks/inventory/jamf-prod", content=body + b" ", headers=headers)
    assert tampered.status_code == 401


def test_a_bearer_token_is_no_substitute_for_the_signature(hooks: Hooks) -> None:
    response = hooks.client.post("/webhooks/inventory/jamf-prod", content=jamf_body(),
                                 headers={"Authorization": "Bearer rwt_anything"})
    assert response.status_code == 401 and "missing header" in response.json()["message"]
    # and every other route still wants its bearer token
    assert hooks.client.get("/evidence").status_code == 401


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_401(hooks: Hooks, header: str) -> None:
    response = hooks.post("jamf-prod", jamf_body(), drop=header)
    assert response.status_code == 401
    assert response.json()["message"] == f"missing header {header}"
    assert len(refusals(hooks.store)) == 1 and hooks.receipt_count() == 0


@pytest.mark.parametrize("offset,accepted", [(-301, False), (301, False), (-299, True), (299, True)])
def test_timestamp_tolerance(hooks: Hooks, offset: int, accepted: bool) -> None:
    response = hooks.post("jamf-prod", jamf_body(), at=T0 + timedelta(seconds=offset))
    if accepted:
        assert response.status_code == 202
        return
    assert response.status_code == 401
    assert f"is {offset:+d}s from now, expected within ±300s" in response.json()["message"]
    assert len(refusals(hooks.store)) == 1


def test_replay_is_409_recorded_and_survives_a_restart(hooks: Hooks, tmp_path: Path) -> None:
    body = jamf_body()
    assert hooks.post("jamf-prod", body).status_code == 202
    again = hooks.post("jamf-prod", body)
    assert again.status_code == 409 and again.json()["error"] == "webhook-replayed"
    # a replay under a fresh timestamp and a different body is still the same message id
    hooks.clock.now = T0 + timedelta(minutes=3)
    assert hooks.post("jamf-prod", jamf_body(totalCount=9)).status_code == 409
    # the same id from another source is another message
    edr = json.dumps(payloads.edr_mixed()).encode()
    assert hooks.post("edr-relay", edr, secrets=(), keys=(EDR_KEY,)).status_code == 202
    with TestClient(create_app(store=hooks.store, clock=hooks.clock, artifact_root=tmp_path)) as restarted:
        stamp = int(hooks.clock.now.timestamp())
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
                   "webhook-signature": signature_header("msg_1", stamp, body, secrets=(NEW_SECRET,))}
        assert restarted.post("/webhooks/inventory/jamf-prod", content=body, headers=headers).status_code == 409
    assert [r.payload["error"]["http_status"] for r in refusals(hooks.store)] == [409, 409, 409]
    assert hooks.receipt_count() == 2 and len(records(hooks.store, KIND_INGESTION)) == 2


def test_oversized_body_is_413_while_streaming(hooks: Hooks) -> None:
    big = b"[" + b"0," * MAX_BODY + b"0]"
    response = hooks.post("jamf-prod", big)
    assert response.status_code == 413 and response.json()["error"] == "body-too-large"
    # no content-length (chunked): counted while reading

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 8192

    stamp = str(int(T0.timestamp()))
    streamed = hooks.client.post("/webhooks/inventory/jamf-prod", content=chunks(),
                                 headers={"webhook-id": "s", "webhook-timestamp": stamp, "webhook-signature": "v1,x"})
    assert streamed.status_code == 413
    assert [r.payload["error"]["http_status"] for r in refusals(hooks.store)] == [413, 413]
    assert all(r.payload["body_sha256"] is None for r in refusals(hooks.store))
    assert hooks.receipt_count() == 0


@pytest.mark.parametrize("source", ["intune-prod", "UPPER", "a" * 65])
def test_unknown_source_is_404_and_not_recorded(hooks: Hooks, source: str) -> None:
    response = hooks.post(source, jamf_body())
    assert response.status_code == 404 and response.json()["error"] == "not-found"
    assert not records(hooks.store, KIND_WEBHOOK)


def test_other_methods_are_405(hooks: Hooks) -> None:
    response = hooks.client.get("/webhooks/inventory/jamf-prod")
    assert response.status_code == 405 and response.json()["error"] == "method-not-allowed"


@pytest.mark.parametrize("body,reason", [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "jamf inventory payload: expected a JSON object, found list"),
])
def test_malformed_payload_is_202_then_rejected_with_reason(hooks: Hooks, body: bytes, reason: str) -> None:
    response = hooks.post("jamf-prod", body)
    assert response.status_code == 202
    receipt = hooks.receipt(response)
    assert receipt.status == "rejected" and reason in (receipt.reason or "")
    assert "\n" not in (receipt.reason or "")
    # the raw body stays evidence twice over: the receipt's bundle and the ingestion's refusal
    (refused,) = records(hooks.store, KIND_INGESTION)
    assert refused.subject.status == "refused"
    assert (evidence_root() / refused.bundle_dir / "source-payload.json").read_bytes() == body
    assert Path(receipt.raw_path).read_bytes() == body


def test_malformed_record_names_provider_record_and_field(hooks: Hooks) -> None:
    broken = payloads.jamf_page()
    broken["results"][1]["general"]["lastContactTime"] = "last tuesday"
    receipt = hooks.receipt(hooks.post("jamf-prod", json.dumps(broken).encode()))
    assert receipt.status == "rejected" and "jamf record 1" in (receipt.reason or "")


# --- after the 202 ---------------------------------------------------------------------------------


def test_event_path_hands_the_stored_body_to_prefect(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.events

    sent: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "1")
    monkeypatch.setattr(flows.events, "emit_if_configured", lambda *event: sent.append(event))
    body = jamf_body()
    response = hooks.post("jamf-prod", body)
    assert response.status_code == 202
    receipt = hooks.receipt(response)
    assert receipt.status == "dispatched" and not records(hooks.store, KIND_INGESTION)
    ((name, resource, payload),) = sent
    assert name == RECEIVED_EVENT and resource == "ringward.inventory.webhook.jamf-prod"
    # no path, output or actor travels in the event: the trigger takes the receipt id only
    assert not {"source", "output", "actor"} & set(payload)
    assert payload["provider"] == "jamf" and payload["channel"] == "stable" and payload["software"] == ["rt"]
    assert payload["receipt_id"] == int(response.json()["receipt_id"])  # a number: the flow takes an int
    assert payload["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert Path(receipt.raw_path).read_bytes() == body
    # recover-webhooks --include-dispatched finishes a dispatched receipt whose run never came
    from ringward.operations.inventory.webhook_ops import ingest_receipt_by_id, load_receiver, recover_webhooks

    summary = recover_webhooks(hooks.store, load_receiver(hooks.config), now=T0, include_dispatched=True)
    assert summary["ingested"] == 1 and len(records(hooks.store, KIND_INGESTION)) == 1
    assert hooks.receipt(response).status == "ingested"
    # the triggered run then arrives with the id alone: the receipt is finished, nothing is ingested twice
    late = ingest_receipt_by_id(hooks.store, int(payload["receipt_id"]), now=T0)
    assert late["already_finished"] and len(records(hooks.store, KIND_INGESTION)) == 1


def test_unsent_event_falls_back_to_in_process_ingestion(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.events

    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "1")
    monkeypatch.setattr(flows.events, "emit_if_configured", lambda *event: "event not sent: down")
    response = hooks.post("jamf-prod", jamf_body())
    assert response.status_code == 202 and hooks.receipt(response).status == "ingested"


def test_crash_after_202_is_recovered_once(hooks: Hooks, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from ringward.operations.inventory import webhook_ops

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(webhook_ops, "ingest_receipt", crash)
        good = hooks.post("jamf-prod", jamf_body(), msg_id="good")
        bad = hooks.post("jamf-prod", b"[1]", msg_id="bad")
    assert good.status_code == bad.status_code == 202
    assert hooks.receipt(good).status == hooks.receipt(bad).status == "received"
    assert not records(hooks.store, KIND_INGESTION)
    code, out, err = cli(capsys, "inventory", "recover-webhooks", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["recovered"], result["ingested"], result["rejected"]) == (2, 1, 1)
    assert hooks.receipt(good).status == "ingested" and hooks.receipt(bad).status == "rejected"
    assert len([r for r in records(hooks.store, KIND_INGESTION) if r.subject.status == "ingested"]) == 1
    code, out, _ = cli(capsys, "inventory", "recover-webhooks")
    assert code == 0 and out.startswith("RECOVERED: 0 receipts")
    assert len(records(hooks.store, KIND_INGESTION)) == 2  # one ingestion, one refusal: nothing new


def test_recovery_reports_a_lost_body(hooks: Hooks, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ringward.operations.inventory import webhook_ops

    with monkeypatch.context() as patch:
        patch.setattr(webhook_ops, "ingest_receipt", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
        receipt = hooks.receipt(hooks.post("jamf-prod", jamf_body()))
    Path(receipt.raw_path).unlink()
    code, out, _ = cli(capsys, "inventory", "recover-webhooks", "--json")
    assert code == 1
    (outcome,) = json.loads(out)["receipts"]
    assert outcome["status"] == "error" and "cannot be read" in outcome["reason"]
    assert hooks.receipt_count() == 1 and WebhookReceiptRepository(hooks.store).get(receipt.receipt_id).status \
        == "received"


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra,message", [
    ("  bad:\n    provider: jamf\n    secrets: [whsec_abc]\n",
     "sources.bad.secrets: must be a secret reference env:NAME or file:PATH"),
    ("  bad:\n    provider: sccm\n    secrets: [env:X]\n", "sources.bad.provider"),
    ("  bad:\n    provider: jamf\n", "expected at least one of secrets"),
    ("  bad:\n    provider: jamf\n    secrets: [env:RW_UNSET_SECRET]\n",
     "sources.bad.secrets[0]: environment variable RW_UNSET_SECRET (from env:RW_UNSET_SECRET) is not set"),
    ("  bad:\n    provider: jamf\n    public_keys: [whpk_AAAA]\n", "sources.bad.public_keys[0]"),
    ("  Bad:\n    provider: jamf\n    secrets: [env:X]\n", "source name 'Bad'"),
])
def test_bad_configuration_fails_at_startup_in_one_line(hooks: Hooks, extra: str, message: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RW_UNSET_SECRET", raising=False)
    write_config(hooks.config, extra=extra)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        create_app(store=hooks.store)
    assert "\n" not in info.value.message and NEW_SECRET not in info.value.message
    assert str(hooks.config) in info.value.message


def test_weak_secret_is_named_by_reference_only(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    weak = "whsec_" + base64.b64encode(b"short").decode()
    monkeypatch.setenv("RW_TEST_WEBHOOK_SECRET", weak)
    with pytest.raises(ConfigError, match=r"env:RW_TEST_WEBHOOK_SECRET\).*at least 16 bytes") as info:
        create_app(store=hooks.store)
    assert weak not in info.value.message


def test_no_configuration_file_accepts_no_source(hooks: Hooks, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("RINGWARD_WEBHOOKS", str(tmp_path / "absent.yaml"))
    with TestClient(create_app(store=hooks.store, clock=hooks.clock)) as client:
        assert client.post("/webhooks/inventory/jamf-prod", content=b"{}").status_code == 404
