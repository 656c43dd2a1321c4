"""Adversarial review of the signed inventory webhook intake: path and header confusion, signature
header amplification, Content-Length parsing, cross-source replay, source names, and receipts
whose stored body path points outside the evidence root."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from ringward.core.delivery import webhook_signing
from ringward.core.delivery.webhook_signing import signature_header, verify_webhook
from ringward.core.errors import ConfigError, WebhookSignatureError
from ringward.operations.inventory import webhook_ops
from ringward.store.inventory.receipts import WebhookReceiptRepository
from tests.inventory.test_webhook import NEW_SECRET, T0, Hooks, hooks, jamf_body, refusals  # noqa: F401

STAMP = int(T0.timestamp())


def raw_request(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]],
                body: bytes = b"") -> tuple[int, bytes]:
    """One request straight into the ASGI app: no client-side URL normalisation or header checks."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode("latin-1"), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await app(scope, receive, send)

    anyio.run(call)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def signed_headers(msg_id: str, body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"webhook-id", msg_id.encode()), (b"webhook-timestamp", str(STAMP).encode()),
            (b"webhook-signature", signature_header(msg_id, STAMP, body, secrets=(NEW_SECRET,)).encode()),
            (b"content-type", b"application/json")]


# --- path and method confusion ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webhooks/inventory/../evidence", "/webhooks/inventory/jamf-prod/../../../evidence",
                                  "/webhooks/inventory/", "/webhooks/inventory/jamf-prod/x",
                                  "/webhooks/inventory/..%2Fevidence", "/webhooks/inventory/jamf-prod\n"])
def test_paths_under_the_prefix_never_reach_another_route(hooks: Hooks, path: str) -> None:  # noqa: F811
    status, _ = raw_request(hooks.client.app, "GET", path, [])
    assert status in (404, 405, 307)
    status, _ = raw_request(hooks.client.app, "POST", path, signed_headers("p", b"{}"), b"{}")
    assert status in (404, 307)
    assert hooks.receipt_count() == 0


@pytest.mark.parametrize("path", ["//webhooks/inventory/jamf-prod", "/webhooks/inventory",
                                  "/Webhooks/inventory/jamf-prod"])
def test_near_miss_paths_go_to_the_bearer_api_not_the_receiver(hooks: Hooks, path: str) -> None:  # noqa: F811
    body = jamf_body()
    status, _ = raw_request(hooks.client.app, "POST", path, signed_headers("n", body), body)
    assert status in (401, 404, 405)
    assert hooks.receipt_count() == 0


# --- headers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [b"webhook-id", b"webhook-timestamp", b"webhook-signature"])
def test_a_repeated_webhook_header_is_refused_as_ambiguous(hooks: Hooks, name: bytes) -> None:  # noqa: F811
    body = jamf_body()
    headers = signed_headers("dup", body)
    # the first copy is the one the signature covers: a proxy keeping the last one would disagree
    headers.append((name, next(v for k, v in headers if k == name) + b"0"))
    status, raw = raw_request(hooks.client.app, "POST", "/webhooks/inventory/jamf-prod", headers, body)
    assert status == 401, raw
    assert f"{name.decode()} appears 2 times" in json.loads(raw)["message"]
    assert hooks.receipt_count() == 0 and len(refusals(hooks.store)) == 1


@pytest.mark.parametrize("declared", [b"\xb2", b"1" * 5000, b"-1", b"1e3"])
def test_odd_content_length_is_never_a_server_error(hooks: Hooks, declared: bytes) -> None:  # noqa: F811
    body = jamf_body()
    headers = [*signed_headers("cl", body), (b"content-length", declared)]
    status, _ = raw_request(hooks.client.app, "POST", "/webhooks/inventory/jamf-prod", headers, body)
    assert status in (202, 400, 413)


# --- signature header amplification ------------------------------------------------------------------


class CountingKey:
    def __init__(self) -> None:
        self.calls = 0

    def verify(self, signature: bytes, data: bytes) -> None:
        self.calls += 1
        from cryptography.exceptions import InvalidSignature

        raise InvalidSignature


def test_many_signature_items_are_refused_before_any_expensive_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each item used to cost one HMAC or Ed25519 pass over the whole body (16 MiB by default):
    a 16 KiB header of ~300 items was ~300 passes per unauthenticated request."""
    body = b"x" * 4096
    fake = base64.b64encode(b"\0" * 64).decode()
    header = " ".join([f"v1a,{fake}"] * 150 + [f"v1,{fake}"] * 150)
    key = CountingKey()
    hmacs: list[int] = []
    real_new = webhook_signing.hmac.new

    def counting_new(*args: Any, **kwargs: Any) -> Any:
        hmacs.append(1)
        return real_new(*args, **kwargs)

    monkeypatch.setattr(webhook_signing.hmac, "new", counting_new)
    with pytest.raises(WebhookSignatureError, match="300 signatures, expected at most"):
        verify_webhook({"webhook-id": "m", "webhook-timestamp": str(STAMP), "webhook-signature": header}, body,
                       now=STAMP, secrets=(NEW_SECRET,), public_keys=(key,))  # type: ignore[arg-type]
    assert key.calls == 0 and not hmacs


def test_each_secret_is_one_hmac_pass_however_many_items(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"x" * 4096
    fake = base64.b64encode(b"\0" * 32).decode()
    good = signature_header("m", STAMP, body, secrets=(NEW_SECRET,))
    hmacs: list[int] = []
    real_new = webhook_signing.hmac.new

    def counting_new(*args: Any, **kwargs: Any) -> Any:
        hmacs.append(1)
        return real_new(*args, **kwargs)

    monkeypatch.setattr(webhook_signing.hmac, "new", counting_new)
    header = " ".join([f"v1,{fake}"] * (webhook_signing.MAX_SIGNATURE_ITEMS - 1) + [good])
    verified = verify_webhook({"webhook-id": "m", "webhook-timestamp": str(STAMP), "webhook-signature": header},
                              body, now=STAMP, secrets=(NEW_SECRET,))
    assert verified.version == "v1" and len(hmacs) == 1


# --- configuration -----------------------------------------------------------------------------------


def test_two_sources_sharing_a_secret_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature does not cover the source: a message signed for one source would verify, and be
    accepted as new, at any other source holding the same secret (its replay key is per source)."""
    config = webhook_ops.parse_config(b"""
sources:
  jamf-prod: {provider: jamf, secrets: [env:A]}
  jamf-lab: {provider: jamf, channel: beta, secrets: [env:B]}
""", source="webhooks.yaml")
    with pytest.raises(ConfigError, match=r"sources\.jamf-lab\.secrets\[0\].*also used by source jamf-prod"):
        webhook_ops.resolve_config(config, source="webhooks.yaml", environ={"A": NEW_SECRET, "B": NEW_SECRET})
    # the same key bytes written with and without the whsec_ prefix are still the same secret
    with pytest.raises(ConfigError, match="also used by source jamf-prod"):
        webhook_ops.resolve_config(config, source="webhooks.yaml",
                                   environ={"A": NEW_SECRET, "B": NEW_SECRET.removeprefix("whsec_")})


def test_a_source_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="source name"):
        webhook_ops.parse_config(b'sources:\n  "jamf\\n": {provider: jamf, secrets: [env:A]}\n', source="w.yaml")


# --- stored body path --------------------------------------------------------------------------------


def test_a_receipt_pointing_outside_the_evidence_root_is_not_ingested(hooks: Hooks, tmp_path: Path,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.core.errors import EvidenceIntegrityError
    from ringward.store.tables import webhook_receipt_table as wr_t

    monkeypatch.setattr("ringward.api.webhooks._ingest_after_response", lambda *a, **k: None)
    body = jamf_body()
    accepted = hooks.post("jamf-prod", body, msg_id="outside")
    assert accepted.status_code == 202
    receipt = hooks.receipt(accepted)
    elsewhere = tmp_path / "elsewhere" / "body.json"
    elsewhere.parent.mkdir()
    shutil.copyfile(receipt.raw_path, elsewhere)
    assert hashlib.sha256(elsewhere.read_bytes()).hexdigest() == receipt.body_sha256
    with hooks.store.writing() as conn:
        conn.execute(sa.update(wr_t).where(wr_t.c.id == receipt.receipt_id).values(raw_path=str(elsewhere)))
    moved = WebhookReceiptRepository(hooks.store).get(receipt.receipt_id)
    receiver = hooks.client.app.state.webhook_receiver
    with pytest.raises(EvidenceIntegrityError, match="outside the evidence root"):
        webhook_ops.ingest_receipt(hooks.store, receiver, moved, now=T0)
    assert WebhookReceiptRepository(hooks.store).get(receipt.receipt_id).status == "received"
