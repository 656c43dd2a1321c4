"""``POST /webhooks/handoff-status`` over the real app (TestClient, real crypto, SQLite and PostgreSQL):
Standard Webhooks signatures under the configured senders, §9.4 statuses recorded with the remediation
domain's transition rules (409 for an illegal transition, recorded), and every refusal -- bad signature,
stale timestamp, replay, oversized body, malformed body, a provider the sender may not update, an
unknown handoff -- answered 4xx and recorded; a crash after the body is stored is recovered."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from ringward.api.app import create_app
from ringward.core.delivery.webhook_signing import public_key_text, signature_header
from ringward.core.remediation.handoff_build import KIND_STATUS
from ringward.operations.remediation.handoff_webhook import KIND_HANDOFF_WEBHOOK, accept_handoff_status
from ringward.operations.remediation.remediation_ops import handoff_remediation
from ringward.settings import ringward_home
from ringward.store.inventory.receipts import WebhookReceiptRepository
from ringward.store.remediation.state import STATUSES, RemediationStateRepository
from tests.inventory.conftest import records
from tests.remediation.conftest import RemediationWorld, at
from tests.remediation.test_handoff import receivers  # noqa: F401

SENDER_SECRET = "whsec_" + base64.b64encode(b"h" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
RELAY_KEY = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)


@dataclass
class StatusHooks:
    rw: RemediationWorld
    client: TestClient
    handoff_id: str
    config: Path
    clock: Any

    def post(self, body: dict[str, Any] | bytes, *, msg_id: str = "st_1", secrets: tuple[str, ...] = (SENDER_SECRET,),
             keys: tuple[Ed25519PrivateKey, ...] = (), stamp_offset: int = 0, headers: dict[str, str] | None = None,
             ) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = int(self.clock().timestamp()) + stamp_offset
        signed = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "content-type": "application/json",
                  "webhook-signature": signature_header(msg_id, stamp, data, secrets=secrets, signing_keys=keys)}
        signed.update(headers or {})
        return self.client.post("/webhooks/handoff-status", content=data, headers=signed)

    def status(self, status: str, provider: str = "webhook", **extra: Any) -> dict[str, Any]:
        return {"handoff_id": self.handoff_id, "provider": provider, "status": status, **extra}

    def refusals(self, kind: str = KIND_HANDOFF_WEBHOOK) -> list[Any]:
        return [r for r in records(self.rw.store, kind) if r.subject.status == "refused"]


def _config(path: Path, *, senders: bool = True) -> Path:
    body = "sources: {}\n"
    if senders:
        body += f"""handoff_status:
  max_body_bytes: 4096
  senders:
    ops-queue:
      providers: [webhook]
      secrets: [env:RW_HS_SECRET]
    chat-relay:
      providers: [slack]
      public_keys: [{public_key_text(RELAY_KEY)}]
"""
    path.write_text(body)
    return path


@pytest.fixture
def status_hooks(rw: RemediationWorld, receivers: Path, tmp_path: Path,  # noqa: F811
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[StatusHooks]:
    _requested, executed = rw.executed()
    handoff = handoff_remediation(rw.store, source=Path(executed["execution"]), providers="webhook,slack",
                                  config=receivers, actor="carol", now=at(5))
    monkeypatch.setenv("RW_HS_SECRET", SENDER_SECRET)
    config = _config(tmp_path / "webhooks.yaml")
    monkeypatch.setenv("RINGWARD_WEBHOOKS", str(config))
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")

    def clock() -> Any:
        return at(6)

    with TestClient(create_app(store=rw.store, clock=clock, artifact_root=tmp_path)) as client:
        yield StatusHooks(rw, client, handoff["handoff_id"], config, clock)


def _current(hooks: StatusHooks, provider: str = "webhook") -> str:
    entry = RemediationStateRepository(hooks.rw.store).get(STATUSES, f"{hooks.handoff_id}/{provider}")
    assert entry is not None
    return str(entry.value["status"]["status"])


def test_statuses_are_recorded_with_the_transition_rules(status_hooks: StatusHooks) -> None:
    hooks = status_hooks
    answer = hooks.post(hooks.status("acknowledged", external_ref="OPS-1", external_url="https://q.example/OPS-1"
                                     "?sig=abcdef0123456789", callback={"api_token": "tok-123", "who": "ops",
                                                                        "link": "https://u:p@q.example/x"}))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "recorded" and body["previous_status"] == "delivered" and body["final"] is False
    assert _current(hooks) == "acknowledged"
    (recorded,) = [r for r in records(hooks.rw.store, KIND_STATUS) if r.payload.get("handoff_status")
                   == "acknowledged"]
    assert recorded.actor == "webhook:ops-queue"
    status_record = recorded.payload["status_record"]
    assert status_record["callback_payload"] == {"api_token": "REDACTED", "who": "ops",
                                                 "link": "https://REDACTED@q.example/x"}
    assert "sig=" not in (status_record["external_url"] or "") and "tok-123" not in json.dumps(recorded.payload)
    written = ringward_home() / "endpoint-remediation-handoff-status" / body["status_id"]
    assert json.loads((written / "endpoint-remediation-handoff-status.json").read_text())["status"] == "acknowledged"
    assert hooks.post(hooks.status("completed"), msg_id="st_2").json()["final"] is True
    # completed is final: an illegal transition answers 409 and is recorded as a refusal
    refused = hooks.post(hooks.status("in_progress"), msg_id="st_3")
    assert refused.status_code == 409 and "completed is final" in refused.json()["message"]
    assert hooks.post(hooks.status("queued"), msg_id="st_4").status_code == 409
    assert _current(hooks) == "completed"
    assert len(hooks.refusals(KIND_STATUS)) == 2
    receipts = WebhookReceiptRepository(hooks.rw.store)
    assert receipts.get(int(refused.json()["receipt_id"])).status == "rejected"
    # the other work item: no going back to queued from in_progress either
    relay = dict(keys=(RELAY_KEY,), secrets=())
    assert hooks.post(hooks.status("in_progress", provider="slack"), msg_id="st_5", **relay).status_code == 200
    assert hooks.post(hooks.status("queued", provider="slack"), msg_id="st_6", **relay).status_code == 409


def test_signature_replay_and_size_refusals_are_recorded(status_hooks: StatusHooks) -> None:
    hooks = status_hooks
    good = hooks.status("acknowledged")
    assert hooks.post(good, secrets=(OTHER_SECRET,)).status_code == 401
    stale = hooks.post(good, msg_id="st_stale", stamp_offset=-301)
    assert stale.status_code == 401 and "from now" in stale.json()["message"]
    assert hooks.post(good, msg_id="st_future", stamp_offset=301).status_code == 401
    missing = hooks.client.post("/webhooks/handoff-status", content=json.dumps(good).encode())
    assert missing.status_code == 401 and "missing header" in missing.json()["message"]
    data = json.dumps(good).encode()
    stamp = int(hooks.clock().timestamp())
    signature = signature_header("st_dup", stamp, data, secrets=(SENDER_SECRET,))
    duplicated = hooks.client.post("/webhooks/handoff-status", content=data, headers=[
        ("webhook-id", "st_dup"), ("webhook-timestamp", str(stamp)), ("webhook-signature", signature),
        ("webhook-signature", "v1,AAAA")])
    assert duplicated.status_code == 401 and "appears 2 times" in duplicated.json()["message"]
    assert hooks.post(good, msg_id="st_ok").status_code == 200
    replay = hooks.post(good, msg_id="st_ok")
    assert replay.status_code == 409 and replay.json()["error"] == "webhook-replayed"
    big = json.dumps({**good, "note": "x" * 5000}).encode()
    assert hooks.post(big, msg_id="st_big").status_code == 413
    codes = [r.payload["error"]["http_status"] for r in hooks.refusals()]
    assert codes == [401, 401, 401, 401, 401, 409, 413]
    assert all("body" not in r.payload or r.payload.get("body_sha256") for r in hooks.refusals())
    assert _current(hooks) == "acknowledged"


def test_body_provider_and_handoff_refusals(status_hooks: StatusHooks) -> None:
    hooks = status_hooks
    for n, body in enumerate([b"{not json", b"[1]", json.dumps(hooks.status("done")).encode(),
                              json.dumps({**hooks.status("acknowledged"), "extra": 1}).encode(),
                              json.dumps({**hooks.status("acknowledged"), "handoff_id": "x"}).encode()]):
        answer = hooks.post(body, msg_id=f"bad_{n}")
        assert answer.status_code == 422, (body, answer.text)
    forbidden = hooks.post(hooks.status("acknowledged", provider="slack"), msg_id="p_1")
    assert forbidden.status_code == 403 and "may update the work items of webhook, not slack" in forbidden.text
    unknown = hooks.post({**hooks.status("acknowledged"), "handoff_id": "erh_000000000000"}, msg_id="p_2")
    assert unknown.status_code == 404
    assert [r.payload["error"]["code"] for r in hooks.refusals(KIND_STATUS)] == ["binding-mismatch", "not-found"]
    assert _current(hooks) == "delivered" and _current(hooks, "slack") == "delivered"
    # every body was kept as evidence with its receipt, rejected with the reason
    with hooks.rw.store.reading() as conn:
        import sqlalchemy as sa

        rows = conn.execute(sa.text("SELECT status, reason FROM webhook_receipt")).all()
    assert len(rows) == 7 and {r[0] for r in rows} == {"rejected"}


def test_unconfigured_route_is_404(rw: RemediationWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWARD_WEBHOOKS", str(_config(tmp_path / "webhooks.yaml", senders=False)))
    with TestClient(create_app(store=rw.store, artifact_root=tmp_path)) as client:
        answer = client.post("/webhooks/handoff-status", content=b"{}")
    assert answer.status_code == 404 and answer.json()["error"] == "not-found"


def test_a_stored_status_is_recovered_after_a_crash(status_hooks: StatusHooks) -> None:
    from ringward.operations.inventory.webhook_ops import ingest_receipt_by_id, load_receiver, recover_webhooks

    hooks = status_hooks
    receiver = load_receiver(hooks.config)
    data = json.dumps(hooks.status("in_progress")).encode()
    stamp = int(hooks.clock().timestamp())
    headers = {"webhook-id": "st_crash", "webhook-timestamp": str(stamp),
               "webhook-signature": signature_header("st_crash", stamp, data, secrets=(SENDER_SECRET,))}
    accepted = accept_handoff_status(hooks.rw.store, receiver, headers, data, now=hooks.clock())
    # (the process dies here) -- an event naming the receipt cannot make it an inventory ingestion
    assert ingest_receipt_by_id(hooks.rw.store, accepted.receipt.receipt_id, now=hooks.clock())["already_finished"]
    summary = recover_webhooks(hooks.rw.store, receiver, now=hooks.clock())
    assert summary["ingested"] == 1 and summary["receipts"][0]["kind"] == "handoff-status"
    assert _current(hooks) == "in_progress"
    assert recover_webhooks(hooks.rw.store, receiver, now=hooks.clock())["recovered"] == 0


def test_sender_configuration_is_checked_at_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.core.errors import ConfigError
    from ringward.operations.inventory.webhook_ops import load_receiver

    monkeypatch.setenv("RW_HS_SECRET", SENDER_SECRET)
    config = tmp_path / "webhooks.yaml"
    # one secret for an inventory source and a status sender: a body signed for one would verify at the other
    config.write_text("sources:\n  jamf-prod:\n    provider: jamf\n    secrets: [env:RW_HS_SECRET]\n"
                      "handoff_status:\n  senders:\n    ops-queue:\n      secrets: [env:RW_HS_SECRET]\n")
    with pytest.raises(ConfigError, match=re.escape("handoff_status.senders.ops-queue.secrets[0] (env:RW_HS_SECRET): "
                                                              "also used")):
        load_receiver(config)
    for bad, match in (("    Bad.Name:\n      secrets: [env:RW_HS_SECRET]\n", "sender name"),
                       ("    ops:\n      providers: [pagerduty]\n      secrets: [env:RW_HS_SECRET]\n", "providers"),
                       ("    ops:\n      secrets: [whsec_inline]\n", "secret reference"),
                       ("    ops:\n      providers: [jira]\n", "at least one of")):
        config.write_text("handoff_status:\n  senders:\n" + bad)
        with pytest.raises(ConfigError, match=match):
            load_receiver(config)
