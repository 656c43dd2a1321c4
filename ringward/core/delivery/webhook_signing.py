"""Standard Webhooks 1.0 signatures: symmetric ``v1`` (HMAC-SHA256) and asymmetric ``v1a`` (Ed25519).

The signed content is ``"{webhook-id}.{webhook-timestamp}.{raw body}"``. ``webhook-signature`` holds
one or more space-separated ``<version>,<base64 signature>`` items, so a sender can sign with the old
and the new secret during a rotation and a receiver accepts the message if any item verifies.

Keys:

- ``whsec_<base64>``: a symmetric secret (24-64 random bytes); the prefix is optional and the text
  is always base64, exactly as the Standard Webhooks libraries read it.
- ``whsk_<base64>``: an Ed25519 secret key, the 32-byte seed or libsodium's 64-byte seed||public key.
- ``whpk_<base64>``: the 32-byte Ed25519 public key a receiver pins (no shared secret to leak).

Pure: no I/O. Time is a parameter of :func:`verify_webhook`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ringward.core.errors import ConfigError, WebhookSignatureError
from ringward.core.trust.keys import load_public_key_raw

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
#: receivers refuse timestamps further than this from their clock (replays, stale retries)
DEFAULT_TOLERANCE_SECONDS = 300
#: items a ``webhook-signature`` may carry: each one costs a pass over the whole body, so an
#: unauthenticated header of hundreds of items would be hundreds of passes (a sender rotating
#: secrets and keys needs at most a handful)
MAX_SIGNATURE_ITEMS = 8


def _b64(value: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{what}: not valid base64") from exc


def secret_bytes(secret: str) -> bytes:
    """Key bytes of a symmetric secret, decoded as the Standard Webhooks libraries do: an optional
    ``whsec_`` prefix, then base64 (missing padding tolerated).

    Raises:
        ConfigError: the secret is not base64, or decodes to fewer than 16 bytes.
    """
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"expected a {SECRET_PREFIX}<base64> webhook secret, found text that is not base64") from exc
    if len(key) < 16:
        raise ConfigError(f"expected a webhook secret of at least 16 bytes (24-64 advised), found {len(key)}")
    return key


def load_signing_key(text: str, *, source: str) -> Ed25519PrivateKey:
    """Parse a ``whsk_`` Ed25519 secret key.

    Raises:
        ConfigError: wrong prefix, bad base64, wrong length, or a 64-byte key whose public half
            does not belong to its seed.
    """
    text = text.strip()
    if not text.startswith(SIGNING_KEY_PREFIX):
        raise ConfigError(f"{source}: expected a {SIGNING_KEY_PREFIX}<base64> Ed25519 secret key")
    raw = _b64(text.removeprefix(SIGNING_KEY_PREFIX), what=source)
    if len(raw) not in (32, 64):
        raise ConfigError(f"{source}: expected a 32-byte seed or 64-byte secret key, found {len(raw)} bytes")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and raw[32:] != public_key_bytes(key.public_key()):
        raise ConfigError(f"{source}: the public half of the 64-byte key does not match its seed")
    return key


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The ``whpk_`` text a receiver pins for ``key``."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(public_key_bytes(key.public_key())).decode("ascii")


def signing_key_text(key: Ed25519PrivateKey) -> str:
    """The ``whsk_`` text of ``key`` (the 32-byte seed)."""
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return SIGNING_KEY_PREFIX + base64.b64encode(seed).decode("ascii")


def load_public_key(text: str, *, source: str) -> Ed25519PublicKey:
    """Parse a pinned ``whpk_`` public key (small-order points are refused).

    Raises:
        ConfigError: wrong prefix, bad base64 or length.
        KeyMaterialError: the point is small-order or invalid.
    """
    text = text.strip()
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ConfigError(f"{source}: expected a {PUBLIC_KEY_PREFIX}<base64> Ed25519 public key")
    return load_public_key_raw(_b64(text.removeprefix(PUBLIC_KEY_PREFIX), what=source), source=source).key


def signed_content(msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_v1(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret_bytes(secret), signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_v1a(key: Ed25519PrivateKey, msg_id: str, timestamp: int, body: bytes) -> str:
    return "v1a," + base64.b64encode(key.sign(signed_content(msg_id, timestamp, body))).decode("ascii")


def signature_header(
    msg_id: str,
    timestamp: int,
    body: bytes,
    *,
    secrets: Sequence[str] = (),
    signing_keys: Sequence[Ed25519PrivateKey] = (),
) -> str:
    """The ``webhook-signature`` value: one item per secret and per key, space separated."""
    if "." in msg_id:
        raise ConfigError(f"webhook-id {msg_id!r} contains '.', which the signed content cannot carry")
    items = [sign_v1(s, msg_id, timestamp, body) for s in secrets]
    items += [sign_v1a(k, msg_id, timestamp, body) for k in signing_keys]
    return " ".join(items)


def _hmac_keys(secrets: Sequence[str]) -> list[bytes]:
    keys: list[bytes] = []
    for secret in secrets:
        try:
            keys.append(secret_bytes(secret))
        except ConfigError:
            continue
    return keys


@dataclass(frozen=True)
class VerifiedWebhook:
    """Which item of the header verified (for the receiver's logs)."""

    msg_id: str
    timestamp: int
    version: str


def verify_webhook(
    headers: dict[str, str],
    body: bytes,
    *,
    now: int,
    secrets: Sequence[str] = (),
    public_keys: Sequence[Ed25519PublicKey] = (),
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> VerifiedWebhook:
    """Verify a received message against pinned secrets / public keys (receivers, tests).

    Raises:
        WebhookSignatureError: a header is missing, the timestamp is outside the tolerance, or no
            item verifies under any pinned secret or key.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, stamp, header = lowered["webhook-id"], lowered["webhook-timestamp"], lowered["webhook-signature"]
    except KeyError as exc:
        raise WebhookSignatureError(f"missing header {exc.args[0]}") from exc
    if not re.fullmatch(r"[0-9]{1,12}", stamp):
        raise WebhookSignatureError(f"webhook-timestamp: expected Unix seconds (digits only), found {stamp[:40]!r}")
    if "." in msg_id:
        raise WebhookSignatureError(f"webhook-id: expected no '.', found {msg_id[:80]!r}")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookSignatureError(
            f"webhook-timestamp {timestamp} is {timestamp - now:+d}s from now, expected within ±{tolerance_seconds}s"
        )
    content = signed_content(msg_id, stamp, body)  # exactly the header text that was signed
    items = header.split()
    if len(items) > MAX_SIGNATURE_ITEMS:
        raise WebhookSignatureError(
            f"webhook-signature: {len(items)} signatures, expected at most {MAX_SIGNATURE_ITEMS}"
        )
    expected_macs: list[bytes] | None = None  # one HMAC pass per secret, however many v1 items
    for item in items:
        version, _, encoded = item.partition(",")
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1":
            if expected_macs is None:
                expected_macs = [hmac.new(key, content, hashlib.sha256).digest() for key in _hmac_keys(secrets)]
            for expected in expected_macs:
                if hmac.compare_digest(expected, signature):
                    return VerifiedWebhook(msg_id, timestamp, "v1")
        elif version == "v1a":
            if len(signature) != 64:  # not an Ed25519 signature: no pass over the body for it
                continue
            for public_key in public_keys:
                try:
                    public_key.verify(signature, content)
                except InvalidSignature:
                    continue
                return VerifiedWebhook(msg_id, timestamp, "v1a")
    raise WebhookSignatureError(
        f"no signature in webhook-signature verifies under the {len(secrets)} secret(s) "
        f"and {len(public_keys)} public key(s) pinned"
    )
