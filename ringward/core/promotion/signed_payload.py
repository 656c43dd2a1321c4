"""Signed JSON payloads with an embedded ``signature`` object (reference §3.2), verified against
pinned trust.

Wire format (kept for interop): the signed bytes are ``json.dumps(payload without "signature",
sort_keys=True, separators=(",", ":"))`` with Python's default ASCII escaping, and the signature
object carries ``schema_version``, ``algorithm``, ``signer``, ``key_id`` (first 16 hex of
``public_key_sha256``), ``public_key_sha256``, ``public_key_pem``, ``payload_sha256`` and ``value``.

What differs from the reference: the embedded public key is only a hint. A payload counts as signed
only when the key is an active, in-window key of the required role in the pinned trust root (a
release-role key does not sign promotion requests), and the digest is recomputed locally.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.errors import (
    KeyMaterialError,
    MalformedSignatureError,
    MissingSignatureError,
    SignatureError,
    ThresholdNotMetError,
    UntrustedKeyError,
    validation_problem,
)
from ringward.core.trust.keys import load_public_key_pem, public_key_of
from ringward.core.trust.root import Role, TrustRoot

#: signature schema strings of the reference, by document family
ROLLOUT_PROMOTION_SIGNATURE = "cavra.rollout-promotion.signature.v1"
CHANNEL_PROMOTION_SIGNATURE = "cavra.release-channel-promotion.signature.v1"
#: Ringward's own signed documents (rollback requests, ...)
RINGWARD_PAYLOAD_SIGNATURE = "ringward.signed-payload.signature.v1"


class EmbeddedSignature(BaseModel):
    """The ``signature`` object of a signed payload, parsed strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = Field(min_length=1, max_length=128)
    algorithm: str = Field(max_length=32)
    signer: str = Field(min_length=1, max_length=256)
    key_id: str = Field(max_length=128)
    public_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key_pem: str = Field(min_length=1, max_length=4096)
    payload_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    value: str = Field(min_length=1, max_length=256)


@dataclass(frozen=True)
class SignedPayloadCheck:
    """What a verified signed payload proved: who signed which exact canonical bytes."""

    key_id: str
    signer: str
    role: Role
    payload_sha256: str


def canonical_payload_bytes(document: dict[str, Any]) -> bytes:
    """The bytes the signature covers: the document without ``signature``, canonical JSON."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def payload_digest(document: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical signed bytes (what approvals bind to)."""
    return "sha256:" + hashlib.sha256(canonical_payload_bytes(document)).hexdigest()


def sign_payload(
    document: dict[str, Any], *, private_key: Ed25519PrivateKey, signer: str, schema_version: str
) -> dict[str, Any]:
    """Return a copy of ``document`` with its embedded signature (any old one replaced)."""
    public = public_key_of(private_key)
    body = {k: v for k, v in document.items() if k != "signature"}
    data = canonical_payload_bytes(body)
    signature = EmbeddedSignature(
        schema_version=schema_version,
        algorithm="Ed25519",
        signer=signer,
        key_id=public.pem_sha256[:16],
        public_key_sha256=public.pem_sha256,
        public_key_pem=public.pem,
        payload_sha256=hashlib.sha256(data).hexdigest(),
        value=base64.b64encode(private_key.sign(data)).decode("ascii"),
    )
    return {**body, "signature": signature.model_dump(mode="json")}


def verify_signed_payload(
    document: dict[str, Any],
    *,
    trust_root: TrustRoot,
    role: Role,
    now: datetime,
    label: str,
    schema_version: str | None = None,
) -> SignedPayloadCheck:
    """Verify ``document``'s embedded signature under a pinned key of ``role`` at ``now``.

    ``label`` names the document in errors ("rollout promotion request"). Raises a
    :class:`SignatureError` subclass naming what was expected and what was found.
    """
    raw = document.get("signature")
    if raw is None:
        raise MissingSignatureError(f"{label}: signature missing, expected an embedded Ed25519 signature")
    if not isinstance(raw, dict):
        raise MalformedSignatureError(f"{label}: signature must be an object, found {type(raw).__name__}")
    try:
        sig = EmbeddedSignature.model_validate(raw)
    except ValidationError as exc:
        raise MalformedSignatureError(f"{label}: signature.{validation_problem(exc)}") from exc
    if schema_version is not None and sig.schema_version != schema_version:
        raise MalformedSignatureError(
            f"{label}: signature.schema_version expected {schema_version!r}, found {sig.schema_version!r}"
        )
    if sig.algorithm != "Ed25519":
        raise MalformedSignatureError(f"{label}: signature.algorithm expected 'Ed25519', found {sig.algorithm!r}")
    try:
        value = base64.b64decode(sig.value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSignatureError(f"{label}: signature.value is not valid base64") from exc
    if len(value) != 64:
        raise MalformedSignatureError(f"{label}: signature.value is {len(value)} bytes, expected 64")
    try:
        public = load_public_key_pem(sig.public_key_pem.encode("ascii", "replace"), source=f"{label} signature")
    except KeyMaterialError as exc:  # a forged document's key is the document's fault, not the caller's
        raise MalformedSignatureError(f"{label}: signature.public_key_pem: {exc}") from exc
    if public.pem_sha256 != sig.public_key_sha256:
        raise MalformedSignatureError(
            f"{label}: signature.public_key_sha256 expected {public.pem_sha256}, found {sig.public_key_sha256}"
        )
    data = canonical_payload_bytes(document)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sig.payload_sha256:
        raise SignatureError(
            f"{label}: payload digest expected {sig.payload_sha256} (signed), found {digest} "
            "(the document changed after signing)"
        )
    if not public.verify(value, data):
        raise SignatureError(f"{label}: Ed25519 signature does not verify over the canonical payload")
    # the embedded key is only a hint: the signature counts under a pinned key of the role
    pinned = trust_root.find(public.key_id)
    if pinned is None:
        raise UntrustedKeyError(
            f"{label}: signed by key {public.key_id[:16]}, which the trust root does not pin"
        )
    if role not in pinned.roles:
        roles = ", ".join(sorted(r.value for r in pinned.roles)) or "none"
        raise UntrustedKeyError(
            f"{label}: key {public.key_id[:16]} has role(s) {roles}, expected a {role.value}-role key"
        )
    if not pinned.is_trusted_at(now):
        raise UntrustedKeyError(
            f"{label}: key {public.key_id[:16]} is {pinned.status.value} or outside its validity window "
            f"at {now.isoformat()}"
        )
    threshold = trust_root.threshold(role)
    if threshold > 1:
        # one embedded signature is one key; the reference format has no co-signatures
        raise ThresholdNotMetError(
            f"{label}: the trust root requires {threshold} {role.value}-role signatures, found 1 "
            "(embedded signatures carry one key; lower the threshold for this role)"
        )
    return SignedPayloadCheck(key_id=public.key_id, signer=sig.signer, role=role, payload_sha256=digest)
