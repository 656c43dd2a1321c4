"""``POST /webhooks/sla/acknowledgements``: signed acknowledgement callbacks (Standard Webhooks, the
inventory receiver's verification and receipt store). Real HMAC and Ed25519 signatures, a real store,
loopback receivers: an accepted callback stops the ladder; every refusal (bad signature, stale or
future timestamp, replay, duplicate header, oversize body, non-owner, restricted source, no open
incident, bad body) is answered with its status and recorded."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.delivery.webhook_signing import public_key_text, signature_header
from ringward.core.errors import ConfigError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.sla.history import Acknowledged, AckRefused
from ringward.operations.inventory import webhook_ops
from ringward.operations.sla import sla_ops, webhook_ack_ops
from ringward.store import Store, open_store
from ringward.store.inventory.receipts import WebhookReceiptRepository, WebhookReplayError
from ringward.store.sla.ledger import SlaLedger
from tests.sla.test_api import ACK_AT, SlaApi, sla_api  # noqa: F401
from tests.sla.test_time_travel import BREACH, ladder_policy

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
CHAT_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
URL = "/webhooks/sla/acknowledgements"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """SQLite for the HTTP scenarios (both backends are covered by the ops-level test below)."""
    opened = open_store(f"sqlite:///{tmp_path / 'db' / 'ringward.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def hook_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PB_OLD", OLD)
    monkeypatch.setenv("PB_NEW", NEW)
    path = tmp_path / "sla-webhooks.yaml"
    path.write_text(yaml.safe_dump({
        "schema_version": "ringward.sla-webhooks.v1",
        "max_body_bytes": 2048,
        "sources": {
            "pager-bridge": {"secrets": ["env:PB_OLD", "env:PB_NEW"]},
            "chat-bot": {"public_keys": [public_key_text(CHAT_KEY)], "groups": ["endpoint-remediation/default"]},
        },
    }))
    monkeypatch.setenv("RINGWARD_SLA_WEBHOOKS", str(path))
    return path


@dataclass
class Hooks:
    api: SlaApi
    n: int = 0

    def send(self, body: Any, *, secret: str | None = NEW, key: Ed25519PrivateKey | None = None,
             msg_id: str | None = None, stamp: int | None = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> Any:
        self.n += 1
        data = raw if raw is not None else json.dumps(body).encode()
        ident = msg_id or f"msg_{self.n}"
        when = stamp if stamp is not None else int(self.api.clock.now.timestamp())
        signature = signature_header(ident, when, data, secrets=[secret] if secret else [],
                                     signing_keys=[key] if key else [])
        sent = {"webhook-id": ident, "webhook-timestamp": str(when), "webhook-signature": signature,
                "content-type": "application/json", **(headers or {})}
        return self.api.client.post(URL, content=data, headers=sent)

    def refusals(self) -> list[Any]:
        found = self.api.store.search_evidence(EvidenceQuery(kind=webhook_ack_ops.KIND_WEBHOOK_REFUSED, limit=200))
        return list(found.items)


@pytest.fixture
def hooks(hook_config: Path, sla_api: SlaApi) -> Hooks:  # noqa: F811
    return Hooks(sla_api)


def ack(person: str = "alice", state: str = "acknowledged", **extra: Any) -> dict[str, Any]:
    return {"group": "critical", "state": state, "acknowledged_by": person, **extra}


def test_an_owner_member_acknowledges_by_signed_callback_and_the_ladder_stops(hooks: Hooks) -> None:
    assert sorted(r["receiver"] for r in hooks.api.cycle(1).sent) == ["pager-ops", "slack-ops"]
    plan_id = hooks.api.get("dave").json()["owners"]["endpoint-ops"][0]["plan_id"]
    response = hooks.send(ack(comment="on it", plan_id=plan_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["acknowledged_by"], body["via"], body["plan_id"], body["owner"]) == (
        "alice", "pager-bridge", plan_id, "endpoint-ops")
    assert body["webhook"]["signature_version"] == "v1" and body["webhook"]["webhook_id"] == "msg_1"
    assert hooks.api.cycle(60).sent == [] and hooks.api.cycle(125).sent == []
    assert hooks.api.routes["jira-gov"].requests == []
    (record,) = hooks.api.evidence(sla_ops.KIND_ACK)
    stored = record.payload["webhook"]
    # the exact signed bytes are evidence: the signature verifies again offline
    raw = base64.b64decode(stored["body_base64"])
    from ringward.core.delivery.webhook_signing import verify_webhook

    verify_webhook({"webhook-id": stored["webhook_id"], "webhook-timestamp": str(stored["webhook_timestamp"]),
                    "webhook-signature": stored["webhook_signature"]}, raw, now=stored["webhook_timestamp"],
                   secrets=[NEW])
    (receipt,) = [r for r in WebhookReceiptRepository(hooks.api.store).open_receipts(("ingested",))]
    assert (receipt.source, receipt.webhook_id, receipt.evidence_id) == ("sla:pager-bridge", "msg_1", record.id)
    event = next(e for e in hooks.api.history() if isinstance(e, Acknowledged))
    assert event.via == "pager-bridge" and event.by == "alice"


def test_rotation_old_secret_and_ed25519_both_verify(hooks: Hooks) -> None:
    assert hooks.send(ack("endpoint-ops"), secret=OLD).status_code == 200
    hooks.api.clock.advance(minutes=1)
    # chat-bot may decide only the default group: its Ed25519 signature verifies, the group is refused
    restricted = hooks.send(ack("endpoint-ops"), secret=None, key=CHAT_KEY)
    assert restricted.status_code == 403 and restricted.json()["error"] == "forbidden"
    assert "may decide endpoint-remediation/default" in restricted.json()["message"]
    assert isinstance(hooks.api.history()[-1], AckRefused)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": "whsec_" + base64.b64encode(b"x" * 32).decode()}, "no signature in webhook-signature verifies"),
        ({"stamp": int(ACK_AT.timestamp()) - 301}, "expected within ±300s"),
        ({"stamp": int(ACK_AT.timestamp()) + 301}, "expected within ±300s"),
        ({"msg_id": "a.b"}, "webhook-id: expected no '.'"),
    ],
)
def test_bad_signatures_and_timestamps_are_401_and_recorded_without_the_body(
    hooks: Hooks, kwargs: dict[str, Any], message: str
) -> None:
    if kwargs.get("msg_id") == "a.b":
        data = json.dumps(ack()).encode()
        sig = signature_header("ab", int(ACK_AT.timestamp()), data, secrets=[NEW])
        response = hooks.api.client.post(URL, content=data, headers={
            "webhook-id": "a.b", "webhook-timestamp": str(int(ACK_AT.timestamp())), "webhook-signature": sig,
            "content-type": "application/json"})
    else:
        response = hooks.send(ack(), **kwargs)
    assert response.status_code == 401 and message in response.json()["message"]
    (refusal,) = hooks.refusals()
    assert refusal.payload["error"]["http_status"] == 401 and "body_base64" not in refusal.payload
    assert refusal.payload["body_sha256"] and hooks.api.history() == []


def test_missing_and_repeated_headers_are_401(hooks: Hooks) -> None:
    data = json.dumps(ack()).encode()
    missing = hooks.api.client.post(URL, content=data, headers={"content-type": "application/json"})
    assert missing.status_code == 401 and "missing header webhook-id" in missing.json()["message"]
    stamp = str(int(ACK_AT.timestamp()))
    signature = signature_header("m1", int(stamp), data, secrets=[NEW])
    twice = hooks.api.client.post(URL, content=data, headers=[
        ("webhook-id", "m1"), ("webhook-timestamp", stamp), ("webhook-signature", signature),
        ("webhook-signature", "v1,AAAA"), ("content-type", "application/json")])
    assert twice.status_code == 401 and "appears 2 times" in twice.json()["message"]
    assert len(hooks.refusals()) == 2 and hooks.api.history() == []


def test_a_replay_is_409_after_success_and_after_a_rejection(hooks: Hooks) -> None:
    assert hooks.send(ack(), msg_id="once").status_code == 200
    replay = hooks.send(ack(), msg_id="once")
    assert replay.status_code == 409 and replay.json()["error"] == "webhook-replayed"
    stranger = hooks.send(ack("mallory"), msg_id="twice")
    assert stranger.status_code == 403
    assert hooks.send(ack("mallory"), msg_id="twice").status_code == 409  # a rejected message is consumed too
    assert len(hooks.api.evidence(sla_ops.KIND_ACK)) == 1
    assert [r.payload["error"]["http_status"] for r in hooks.refusals()] == [409, 409]


def test_a_non_owner_is_403_and_recorded_and_the_ladder_goes_on(hooks: Hooks) -> None:
    hooks.api.cycle(1)
    response = hooks.send(ack("mallory"))
    assert response.status_code == 403 and response.json()["error"] == "sla-ack-refused"
    assert "mallory is not endpoint-ops" in response.json()["message"]
    (refused,) = hooks.api.evidence(sla_ops.KIND_ACK_REFUSED)
    assert refused.actor == "mallory" and refused.payload["webhook"]["source"] == "pager-bridge"
    assert [type(e) for e in hooks.api.history()][-1] is AckRefused
    (receipt,) = WebhookReceiptRepository(hooks.api.store).open_receipts(("rejected",))
    assert receipt.reason and receipt.reason.startswith("403")
    assert [r["receiver"] for r in hooks.api.cycle(60).sent] == ["jira-gov"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**ack(), "by": "alice"}, 422, "by"),
        ({"group": "critical", "state": "acknowledged"}, 422, "acknowledged_by"),
        ({**ack(), "state": "snoozed"}, 422, "state"),
        (ack(group="nope"), 404, "no route 'nope'"),
        (ack(plan_id="erslaesc-" + "0" * 16), 409, "is not the open incident"),
    ],
)
def test_authentic_but_unusable_callbacks_are_refused_and_consumed(
    hooks: Hooks, body: dict[str, Any], status: int, message: str
) -> None:
    response = hooks.send(body, msg_id="m")
    assert response.status_code == status and message in response.json()["message"], response.text
    assert hooks.send(body, msg_id="m").status_code == 409
    assert hooks.api.evidence(sla_ops.KIND_ACK) == []


def test_no_open_incident_is_409_and_bad_json_is_422(hooks: Hooks) -> None:
    assert hooks.send(ack(state="resolved")).status_code == 200
    hooks.api.clock.advance(minutes=1)
    again = hooks.send(ack())
    assert again.status_code == 409 and "no open incident" in again.json()["message"]
    duplicate_keys = b'{"group": "critical", "group": "x", "state": "acknowledged", "acknowledged_by": "alice"}'
    assert hooks.send(None, raw=duplicate_keys).status_code == 422


def test_body_caps(hooks: Hooks) -> None:
    big = hooks.send(ack(comment="x" * 2000))
    assert big.status_code == 413 and "expected at most 2048" in big.json()["message"]
    huge = hooks.send(None, raw=b"{" + b" " * 70_000 + b"}")
    assert huge.status_code == 413  # counted while streaming, never buffered past the cap
    assert hooks.refusals()[0].payload["error"]["http_status"] == 413


def test_no_source_configured_is_404_and_the_callback_is_outside_the_token_api(sla_api: SlaApi) -> None:  # noqa: F811
    response = sla_api.client.post(URL, content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 404 and "no SLA webhook source" in response.json()["message"]
    paths = set(sla_api.get("dave", "/openapi.json").json()["paths"])
    assert "/sla/reviews" in paths and URL not in paths  # like the inventory receiver: no schema, no token
    assert sla_api.client.get(URL).status_code == 405


def test_configuration_errors_and_secrets_shared_with_inventory(tmp_path: Path) -> None:
    def load(document: dict[str, Any], environ: dict[str, str] | None = None, inventory: Any = None) -> Any:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(document))
        return webhook_ack_ops.load_receiver(path, environ=environ or {"S": NEW, "T": OLD}, inventory=inventory)

    with pytest.raises(ConfigError, match="secret reference env:NAME"):
        load({"sources": {"a": {"secrets": [NEW]}}})
    with pytest.raises(ConfigError, match="expected at least one of secrets"):
        load({"sources": {"a": {}}})
    with pytest.raises(ConfigError, match="environment variable MISSING"):
        load({"sources": {"a": {"secrets": ["env:MISSING"]}}})
    with pytest.raises(ConfigError, match="also used by source a"):
        load({"sources": {"a": {"secrets": ["env:S"]}, "b": {"secrets": ["env:S"]}}})
    with pytest.raises(ConfigError, match="max_body_bytes"):
        load({"max_body_bytes": 1_000_000, "sources": {}})
    with pytest.raises(ConfigError, match="expected <scope>/<route id>"):
        load({"sources": {"a": {"secrets": ["env:S"], "groups": ["critical"]}}})
    inventory = webhook_ops.resolve_config(
        webhook_ops.WebhooksConfig.model_validate({"sources": {"jamf": {"provider": "jamf", "secrets": ["env:J"]}}}),
        source="webhooks.yaml", environ={"J": OLD})
    with pytest.raises(ConfigError, match="also used by inventory source jamf"):
        load({"sources": {"a": {"secrets": ["env:T"]}}}, inventory=inventory)
    ok = load({"sources": {"a": {"secrets": ["env:S"]}}}, inventory=inventory)
    assert NEW not in repr(ok) and NEW.removeprefix("whsec_") not in repr(ok)
    assert webhook_ack_ops.load_receiver(tmp_path / "absent.yaml").sources == {}


def test_replays_are_refused_by_the_receipt_store_on_both_backends(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ops path alone: a concurrent duplicate that passes the pre-check loses on the unique key."""
    from tests.sla.factory import handoff, status

    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    with open_store(db_url) as store:
        h = handoff(1, created_at=BREACH - timedelta(hours=2))
        inputs = tmp_path / "handoffs"
        inputs.mkdir()
        (inputs / "h.json").write_text(h.model_dump_json())
        (inputs / "s.json").write_text(status(h, "failed", BREACH).model_dump_json())
        sla_ops.make_report([inputs], now=BREACH, store=store)
        document = ladder_policy()
        document["owners"]["endpoint-ops"]["members"] = ["alice"]
        path = tmp_path / "routing.yaml"
        path.write_text(yaml.safe_dump(document))
        policy = sla_ops.load_policy(path)
        receiver = webhook_ack_ops.resolve_config(
            webhook_ack_ops.SlaWebhooksConfig.model_validate({"sources": {"pb": {"secrets": ["env:S"]}}}),
            source="t", environ={"S": NEW})
        now = ACK_AT
        body = json.dumps(ack()).encode()
        headers = {"webhook-id": "dup", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signature_header("dup", int(now.timestamp()), body, secrets=[NEW])}
        first = webhook_ack_ops.accept_acknowledgement(store, receiver, policy, headers, body, now=now)
        assert first["acknowledged_by"] == "alice"
        with pytest.raises(WebhookReplayError):
            webhook_ack_ops.accept_acknowledgement(store, receiver, policy, headers, body, now=now)
        # the race: the pre-check said "not seen", the insert of the second loses on (source, webhook-id)
        real_seen = WebhookReceiptRepository.seen
        calls: list[str] = []

        def seen_once_too_early(self: WebhookReceiptRepository, source: str, wid: str) -> bool:
            calls.append(wid)
            return False if len(calls) == 1 else real_seen(self, source, wid)

        with monkeypatch.context() as patched:
            patched.setattr(WebhookReceiptRepository, "seen", seen_once_too_early)
            with pytest.raises(WebhookReplayError):
                webhook_ack_ops.accept_acknowledgement(store, receiver, policy, headers, body,
                                                       now=now + timedelta(seconds=1))
        acks = [e for e in SlaLedger(store).history("endpoint-remediation") if isinstance(e, Acknowledged)]
        assert len(acks) == 1
