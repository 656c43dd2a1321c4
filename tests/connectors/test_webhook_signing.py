"""Standard Webhooks signatures: v1 (HMAC) with secret rotation and v1a (Ed25519) with a pinned whpk_.

The sender side runs through the real engine against a loopback server; the receiver side is
``ringward.core.webhook_signing.verify_webhook``, which refuses what a receiver must refuse.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_httpserver import HTTPServer

from connectors import DeliveryEngine, MemoryLedger, SecretResolver, resolve_destinations
from ringward.cli.main import run
from ringward.core.delivery.results import DeliveryStatus
from ringward.core.delivery.webhook_signing import (
    load_public_key,
    load_signing_key,
    public_key_text,
    signature_header,
    signing_key_text,
    verify_webhook,
)
from ringward.core.errors import ConfigError, KeyMaterialError, WebhookSignatureError
from tests.connectors.conftest import FakeClock, config_of, make_event

NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = 1_795_348_800


def _headers(**kw: Any) -> dict[str, str]:
    body = b'{"type":"x"}'
    header = signature_header("msg_1", NOW, body, **kw)
    return {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": header}


def test_v1a_round_trip_and_whpk_pinning() -> None:
    headers = _headers(signing_keys=[KEY])
    pinned = load_public_key(public_key_text(KEY), source="receiver")
    verified = verify_webhook(headers, b'{"type":"x"}', now=NOW + 10, public_keys=[pinned])
    assert verified.version == "v1a" and verified.msg_id == "msg_1"
    other = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32).public_key()
    with pytest.raises(WebhookSignatureError, match="no signature"):
        verify_webhook(headers, b'{"type":"x"}', now=NOW, public_keys=[other])
    with pytest.raises(WebhookSignatureError, match="no signature"):
        verify_webhook(headers, b'{"type":"y"}', now=NOW, public_keys=[pinned])  # tampered body


def test_rotation_signs_with_both_secrets_and_either_verifies() -> None:
    headers = _headers(secrets=[NEW_SECRET, OLD_SECRET])
    items = headers["webhook-signature"].split()
    assert [i.split(",")[0] for i in items] == ["v1", "v1"]
    for secret in (NEW_SECRET, OLD_SECRET):
        assert verify_webhook(headers, b'{"type":"x"}', now=NOW, secrets=[secret]).version == "v1"
    with pytest.raises(WebhookSignatureError):
        verify_webhook(headers, b'{"type":"x"}', now=NOW, secrets=["whsec_" + base64.b64encode(b"z" * 32).decode()])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-timestamp": str(NOW - 301)}, "-301s from now, expected within ±300s"),
        ({"webhook-timestamp": "soon"}, "expected Unix seconds"),
        ({"webhook-id": "msg_2"}, "no signature"),  # the id is signed: a replay under a new id fails
        ({"webhook-signature": "v2,AAAA v1,not-base64!"}, "no signature"),
    ],
)
def test_receiver_refusals(change: dict[str, str], message: str) -> None:
    headers = {**_headers(secrets=[NEW_SECRET]), **change}
    with pytest.raises(WebhookSignatureError, match=message):
        verify_webhook(headers, b'{"type":"x"}', now=NOW, secrets=[NEW_SECRET])
    missing = _headers(secrets=[NEW_SECRET])
    del missing["webhook-signature"]
    with pytest.raises(WebhookSignatureError, match="missing header webhook-signature"):
        verify_webhook(missing, b"", now=NOW, secrets=[NEW_SECRET])


def test_key_parsing_refuses_bad_material() -> None:
    seed_only = signing_key_text(KEY)
    assert load_signing_key(seed_only, source="k").public_key() == KEY.public_key()
    full = base64.b64decode(seed_only.removeprefix("whsk_")) + base64.b64decode(public_key_text(KEY)[5:])
    assert load_signing_key("whsk_" + base64.b64encode(full).decode(), source="k")  # libsodium 64-byte form
    wrong_half = full[:32] + b"\x00" * 32
    with pytest.raises(ConfigError, match="public half of the 64-byte key does not match"):
        load_signing_key("whsk_" + base64.b64encode(wrong_half).decode(), source="k")
    with pytest.raises(ConfigError, match="expected a 32-byte seed or 64-byte secret key, found 5 bytes"):
        load_signing_key("whsk_" + base64.b64encode(b"short").decode(), source="k")
    with pytest.raises(ConfigError, match="expected a whsk_"):
        load_signing_key(NEW_SECRET, source="k")
    with pytest.raises(ConfigError, match="not valid base64"):
        load_signing_key("whsk_***", source="k")
    identity = "whpk_" + base64.b64encode(b"\x01" + b"\x00" * 31).decode()  # small-order point
    with pytest.raises(KeyMaterialError, match="small-order"):
        load_public_key(identity, source="pin")
    with pytest.raises(ConfigError, match=r"'\.'"):
        signature_header("msg.1", NOW, b"", secrets=[NEW_SECRET])


def test_engine_sends_v1_v1_and_v1a_and_each_verifies(
    httpserver: HTTPServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_HOOK_NEW", NEW_SECRET)
    monkeypatch.setenv("RW_HOOK_OLD", OLD_SECRET)
    monkeypatch.setenv("RW_HOOK_KEY", signing_key_text(KEY))
    httpserver.expect_request("/hook", method="POST").respond_with_data("", 204)
    config = config_of(
        {
            "name": "hook",
            "provider": "webhook",
            "url": httpserver.url_for("/hook"),
            "signing_secret": "env:RW_HOOK_NEW",
            "signing_secret_previous": "env:RW_HOOK_OLD",
            "signing_key": "env:RW_HOOK_KEY",
        },
        max_attempts=1,
    )
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(1))
    (result,) = engine.deliver([make_event()], dests).all_results()
    assert result.status is DeliveryStatus.DELIVERED
    (request, _), = httpserver.log
    headers = dict(request.headers)
    assert [i.split(",")[0] for i in headers["Webhook-Signature"].split()] == ["v1", "v1", "v1a"]
    body, now = request.get_data(), int(clock.now.timestamp())
    pinned = load_public_key(public_key_text(KEY), source="receiver")
    assert verify_webhook(headers, body, now=now, public_keys=[pinned]).version == "v1a"
    assert verify_webhook(headers, body, now=now, secrets=[OLD_SECRET]).version == "v1"
    # the recorded request keeps the signature (not a secret) but none of the keys
    assert result.request is not None
    recorded = json.dumps(result.model_dump(mode="json"))
    for secret in (NEW_SECRET, OLD_SECRET, signing_key_text(KEY)):
        assert secret not in recorded


def test_unusable_signing_key_is_a_config_error_without_the_key(
    httpserver: HTTPServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = "whsk_" + base64.b64encode(b"k" * 40).decode()
    monkeypatch.setenv("RW_HOOK_KEY", bad)
    config = config_of(
        {"name": "hook", "provider": "webhook", "url": httpserver.url_for("/hook"), "signing_key": "env:RW_HOOK_KEY"}
    )
    _, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert errors == {
        "hook": "hook.signing_key (env:RW_HOOK_KEY): expected a 32-byte seed or 64-byte secret key, found 40 bytes"
    }
    assert bad not in errors["hook"]


def test_config_rules_for_the_new_fields() -> None:
    from ringward.core.delivery.config import validate_connector_config
    from ringward.core.errors import ConnectorConfigError

    with pytest.raises(ConnectorConfigError) as caught:
        validate_connector_config(
            {
                "providers": [
                    {"name": "w", "provider": "webhook", "url": "https://h.example", "signing_key": "env:K",
                     "signing_secret_previous": "env:O"},
                    {"name": "s", "provider": "splunk", "url": "https://s.example", "token": "env:T",
                     "signing_key": "env:K"},
                ]
            },
            source="connectors.yaml",
        )
    assert caught.value.problems == (
        "providers[0].signing_secret_previous: needs signing_secret (the new secret)",
        "providers[1].signing_key: only webhook destinations take it",
    )


def test_cli_keygen_and_public_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "hook.whsk"
    with pytest.raises(SystemExit) as done:
        run(["connectors", "webhook-keygen", "--output", str(key_file)])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    text = key_file.read_text().strip()
    assert key_file.stat().st_mode & 0o777 == 0o600 and text.startswith("whsk_") and text not in out
    printed = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("public key"))
    assert printed == public_key_text(load_signing_key(text, source="k"))
    with pytest.raises(SystemExit) as again:  # never overwritten silently
        run(["connectors", "webhook-keygen", "--output", str(key_file)])
    assert again.value.code == 2 and "already exists" in capsys.readouterr().err

    monkeypatch.setenv("RW_HOOK_KEY", text)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"providers": [
        {"name": "hook", "provider": "webhook", "url": "https://h.example/x", "signing_key": "env:RW_HOOK_KEY"},
        {"name": "plain", "provider": "webhook", "url": "https://h.example/y", "signing_secret": "env:RW_HOOK_KEY"},
    ]}))
    with pytest.raises(SystemExit) as shown:
        run(["connectors", "webhook-public-key", "hook", "--config", str(config)])
    assert shown.value.code in (0, None) and capsys.readouterr().out.strip() == printed
    with pytest.raises(SystemExit) as refused:
        run(["connectors", "webhook-public-key", "plain", "--config", str(config)])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "plain.signing_key: not configured" in err and "Traceback" not in err


def test_known_answer_vector_of_the_standard_webhooks_libraries() -> None:
    """The reference vector: the prefix is optional and padding may be missing; all sign alike."""
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    for secret in ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"):
        assert signature_header("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, secrets=[secret]) == expected
    unpadded = "whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("=")
    padded = "whsec_" + base64.b64encode(b"k" * 25).decode()
    assert signature_header("m", 1, b"", secrets=[unpadded]) == signature_header("m", 1, b"", secrets=[padded])
    with pytest.raises(ConfigError, match="not base64"):
        signature_header("m", 1, b"", secrets=["whsec_not base64!"])
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        signature_header("m", 1, b"", secrets=["whsec_" + base64.b64encode(b"short").decode()])


def test_keys_and_secrets_copied_with_a_trailing_newline_still_load() -> None:
    text = signing_key_text(KEY) + "\n"
    assert load_signing_key(text, source="k").public_key() == KEY.public_key()
    assert load_public_key(public_key_text(KEY) + "\n", source="p")
    trailing = signature_header("m", 1, b"", secrets=[NEW_SECRET + "\n"])
    assert trailing == signature_header("m", 1, b"", secrets=[NEW_SECRET])


@pytest.mark.parametrize("stamp", [" 1795348800", "+1795348800", "1_795_348_800", "1795348800.0"])
def test_receiver_refuses_non_canonical_timestamps(stamp: str) -> None:
    headers = {**_headers(secrets=[NEW_SECRET]), "webhook-timestamp": stamp}
    with pytest.raises(WebhookSignatureError, match="digits only"):
        verify_webhook(headers, b'{"type":"x"}', now=NOW, secrets=[NEW_SECRET])


def test_a_bad_signing_secret_is_a_config_error_naming_the_reference(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_HOOK_NEW", "whsec_***")
    config = config_of(
        {"name": "hook", "provider": "webhook", "url": httpserver.url_for("/h"), "signing_secret": "env:RW_HOOK_NEW"}
    )
    _, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert errors["hook"].startswith("hook.signing_secret (env:RW_HOOK_NEW): expected a whsec_<base64> webhook secret")
