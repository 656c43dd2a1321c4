"""Signed checkpoints of the evidence chain head (``ringward.evidence-checkpoint.v1``).

A checkpoint pins "record N had hash H" under an Ed25519 signature from a trust-root key. A
later ``ringward evidence verify --checkpoint FILE`` re-walks the chain and requires record N to
still carry hash H: rewriting history (even re-hashing the whole chain consistently) or cutting
records off the end is then detected, which a bare hash chain alone cannot do.

The signature covers the canonical JSON of the checkpoint without its ``signature`` member. The
key embedded by id is only a hint: verification looks the key id up among keys the caller pins.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import CheckpointError
from ringward.core.evidence.records import ensure_utc, format_timestamp

CHECKPOINT_SCHEMA = "ringward.evidence-checkpoint.v1"
MAX_CHECKPOINT_BYTES = 64 * 1024


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the 32 raw public-key bytes (the project's key id convention)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


class CheckpointSignature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(min_length=1, max_length=256)


class Checkpoint(BaseModel):
    """The chain head at one moment, signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.evidence-checkpoint.v1"] = "ringward.evidence-checkpoint.v1"
    head_id: int = Field(ge=0)
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    record_count: int = Field(ge=0)
    created_at: str
    created_by: str = Field(min_length=1, max_length=256)
    database: str | None = Field(default=None, max_length=1024)
    signature: CheckpointSignature | None = None

    @field_validator("created_at")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"expected an ISO 8601 UTC time, found {value!r}") from exc
        ensure_utc(parsed)
        return value

    def signed_bytes(self) -> bytes:
        body: dict[str, Any] = self.model_dump(mode="json", exclude={"signature"})
        return dumps_canonical(body)

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def sign_checkpoint(
    *,
    head_id: int,
    head_hash: str,
    record_count: int,
    created_by: str,
    now: datetime,
    private_key: Ed25519PrivateKey,
    database: str | None = None,
) -> Checkpoint:
    unsigned = Checkpoint(
        head_id=head_id,
        head_hash=head_hash,
        record_count=record_count,
        created_at=format_timestamp(now),
        created_by=created_by,
        database=database,
    )
    signature = private_key.sign(unsigned.signed_bytes())
    return unsigned.model_copy(
        update={
            "signature": CheckpointSignature(
                key_id=key_id_of(private_key.public_key()),
                signature=base64.b64encode(signature).decode("ascii"),
            )
        }
    )


def parse_checkpoint(data: bytes, *, source: str) -> Checkpoint:
    """Parse a checkpoint file strictly.

    Raises:
        CheckpointError: not strict JSON or not a ``ringward.evidence-checkpoint.v1``.
    """
    try:
        raw = loads_strict(data, source=source, max_bytes=MAX_CHECKPOINT_BYTES)
    except Exception as exc:
        raise CheckpointError(str(exc)) from exc
    try:
        return Checkpoint.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise CheckpointError(f"{source}: {where}: {first['msg']}") from exc


def verify_checkpoint_signature(checkpoint: Checkpoint, trusted: Mapping[str, Ed25519PublicKey], *, source: str) -> str:
    """Check the signature under a pinned key; returns the key id that verified.

    Raises:
        CheckpointError: unsigned, signed by a key not in ``trusted``, or a bad signature.
    """
    sig = checkpoint.signature
    if sig is None:
        raise CheckpointError(f"{source}: unsigned checkpoint, expected an Ed25519 signature")
    key = trusted.get(sig.key_id)
    if key is None:
        raise CheckpointError(
            f"{source}: signed by key {sig.key_id[:16]}…, which is not among the {len(trusted)} trusted key(s)"
        )
    try:
        raw_signature = base64.b64decode(sig.signature, validate=True)
    except ValueError as exc:
        raise CheckpointError(f"{source}: signature is not base64") from exc
    try:
        key.verify(raw_signature, checkpoint.signed_bytes())
    except InvalidSignature as exc:
        raise CheckpointError(f"{source}: signature does not verify under key {sig.key_id[:16]}…") from exc
    return sig.key_id
