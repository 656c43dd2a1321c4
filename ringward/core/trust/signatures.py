"""Detached signatures ``<file>.sig.json`` (wire format ``cavra.go-release.signature.v1``).

Signed bytes are the subject file's exact bytes, as in the reference system, so either side's
packages interoperate. Unlike the reference, the public key embedded in a signature is only a
hint: a signature counts only if it verifies under an active, in-window key of the pinned trust
root, and thresholds count distinct key material.

Co-signatures (threshold > 1) live beside the primary as ``<file>.<key_id[:16]>.sig.json``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.paths import is_safe_relative_name
from ringward.core.errors import (
    KeyMaterialError,
    MalformedSignatureError,
    MissingSignatureError,
    SignatureError,
    ThresholdNotMetError,
    UntrustedKeyError,
    validation_problem,
)
from ringward.core.trust.keys import PublicKey, load_public_key_pem, public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustRoot

SIGNATURE_SCHEMA = "cavra.go-release.signature.v1"
SIGNATURE_SUFFIX = ".sig.json"
MAX_SIGNATURE_BYTES = 64 * 1024
_COSIG = re.compile(r"^(?P<subject>.+)\.(?P<kid>[0-9a-f]{16})\.sig\.json$")


class DetachedSignature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["cavra.go-release.signature.v1"]
    subject: str = Field(min_length=1, max_length=1024)
    subject_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    algorithm: Literal["Ed25519"]
    key_id: str = Field(max_length=256)
    signer: str = Field(max_length=256)
    public_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key_pem: str = Field(max_length=4096)
    value: str = Field(max_length=256)

    def signature_bytes(self, *, source: str) -> bytes:
        try:
            raw = base64.b64decode(self.value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedSignatureError(f"{source}: value is not valid base64") from exc
        if len(raw) != 64:
            raise MalformedSignatureError(f"{source}: signature is {len(raw)} bytes, expected 64")
        return raw


def signature_path_for(subject: str) -> str:
    return subject + SIGNATURE_SUFFIX


def cosignature_path_for(subject: str, key_id: str) -> str:
    return f"{subject}.{key_id[:16]}{SIGNATURE_SUFFIX}"


def subject_of_signature_path(path: str) -> tuple[str, str | None]:
    """Subject a signature file name refers to, and the co-signer key-id prefix if any."""
    match = _COSIG.match(path)
    if match:
        return match["subject"], match["kid"]
    return path[: -len(SIGNATURE_SUFFIX)], None


def is_signature_path(path: str) -> bool:
    return path.endswith(SIGNATURE_SUFFIX)


def sign_bytes(
    data: bytes | memoryview,
    *,
    subject: str,
    private_key: Ed25519PrivateKey,
    signer: str,
    subject_sha256: str | None = None,
) -> bytes:
    """Return the ``.sig.json`` document bytes for ``data``."""
    public = public_key_of(private_key)
    digest = subject_sha256 or hashlib.sha256(data).hexdigest()
    document = DetachedSignature(
        schema_version=SIGNATURE_SCHEMA,
        subject=subject,
        subject_sha256=digest,
        algorithm="Ed25519",
        key_id=public.key_id,
        signer=signer,
        public_key_sha256=public.pem_sha256,
        public_key_pem=public.pem,
        value=base64.b64encode(private_key.sign(bytes(data) if isinstance(data, memoryview) else data)).decode(
            "ascii"
        ),
    )
    return dumps_document(document.model_dump(mode="json"))


def parse_signature(data: bytes, *, source: str) -> DetachedSignature:
    raw = loads_strict(data, source=source, max_bytes=MAX_SIGNATURE_BYTES)
    try:
        sig = DetachedSignature.model_validate(raw)
    except ValidationError as exc:
        raise MalformedSignatureError(f"{source}: {validation_problem(exc)}") from exc
    if not is_safe_relative_name(sig.subject):
        raise MalformedSignatureError(f"{source}: subject {sig.subject!r} is not a safe relative path")
    sig.signature_bytes(source=source)
    return sig


@dataclass(frozen=True)
class SignatureCheck:
    """One parsed signature file prepared for verification against the trust root.

    ``cosigner`` is the key-id prefix a co-signature file name commits to; such a signature is
    checked under that pinned key only."""

    path: str
    signature: DetachedSignature
    raw_signature: bytes
    cosigner: str | None = None

#: above this many bytes a failed signature is not re-checked under the embedded (unpinned) key
#: just to improve the error message: every Ed25519 pass over a large binary costs real time
DIAGNOSTIC_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class SubjectSignatures:
    """The verified outcome for one subject: which distinct trusted keys signed it."""

    subject: str
    signed_by: tuple[str, ...]
    signature_files: tuple[str, ...]


def prepare_signature(path: str, data: bytes, *, expected_subject: str, cosigner: str | None = None) \
        -> SignatureCheck:
    sig = parse_signature(data, source=path)
    if sig.subject != expected_subject:
        raise MalformedSignatureError(
            f"{path}: subject is {sig.subject!r}, expected {expected_subject!r} (from the file name)"
        )
    return SignatureCheck(path=path, signature=sig, raw_signature=sig.signature_bytes(source=path),
                          cosigner=cosigner)


def verify_subject_signatures(
    subject: str,
    data: bytes | memoryview,
    digest: str,
    checks: Iterable[SignatureCheck],
    trust_root: TrustRoot,
    *,
    now: datetime,
    role: Role = Role.RELEASE,
    trusted: Mapping[str, PublicKey] | None = None,
) -> SubjectSignatures:
    """Verify every signature over ``subject`` and require the role threshold.

    Raises the most specific error: ``SignatureError`` (a pinned key's signature is invalid or
    covers other bytes), ``UntrustedKeyError`` (valid only under an unpinned, revoked or
    expired key), ``ThresholdNotMetError`` (too few distinct trusted keys).
    """
    keys = dict(trusted) if trusted is not None else trust_root.trusted_keys(role, now)
    signed_by: list[str] = []
    files: list[str] = []
    problems: list[SignatureError] = []
    for check in checks:
        files.append(check.path)
        sig = check.signature
        if sig.subject_sha256 != digest:
            problems.append(
                SignatureError(
                    f"{check.path}: signature covers sha256 {sig.subject_sha256}, {subject} has {digest}"
                )
            )
            continue
        key_id = _verify_with_trusted(check, data, keys)
        if key_id is not None:
            if key_id not in signed_by:
                signed_by.append(key_id)
            continue
        problems.append(_explain_failure(check, data, trust_root, keys, now))
    if not files:
        raise MissingSignatureError(f"missing detached signature for {subject}")
    threshold = trust_root.threshold(role)
    if len(signed_by) >= threshold:
        return SubjectSignatures(subject, tuple(signed_by), tuple(files))
    if problems:
        raise problems[0]
    raise ThresholdNotMetError(
        f"{subject}: signed by {len(signed_by)} distinct trusted {role.value} key(s), threshold is {threshold}"
    )


def _verify_with_trusted(
    check: SignatureCheck, data: bytes | memoryview, keys: Mapping[str, PublicKey]
) -> str | None:
    # A co-signature file name commits to one key; a primary signature's embedded key is a
    # hint: when it names a pinned key only that key is tried, otherwise every pinned key is
    # (bounded by the trust root, so junk signatures cannot multiply Ed25519 passes).
    if check.cosigner is not None:
        candidates = [kid for kid in keys if kid.startswith(check.cosigner)]
    else:
        hint: str | None = None
        try:
            hint = load_public_key_pem(check.signature.public_key_pem.encode("ascii"), source=check.path).key_id
        except (KeyMaterialError, UnicodeEncodeError):
            hint = None
        candidates = [hint] if hint is not None and hint in keys else list(keys)
    for key_id in candidates:
        if keys[key_id].verify(check.raw_signature, data):
            return key_id
    return None


def _explain_failure(
    check: SignatureCheck,
    data: bytes | memoryview,
    trust_root: TrustRoot,
    keys: Mapping[str, PublicKey],
    now: datetime,
) -> SignatureError:
    sig = check.signature
    try:
        embedded = load_public_key_pem(sig.public_key_pem.encode("ascii"), source=check.path)
    except (KeyMaterialError, UnicodeEncodeError):
        return UntrustedKeyError(f"{check.path}: not signed by any active trusted key (embedded key unusable)")
    if embedded.key_id in keys:
        return SignatureError(f"{check.path}: invalid Ed25519 signature by trusted key {embedded.key_id[:16]}")
    pinned = trust_root.find(embedded.key_id)
    if pinned is not None and pinned.status is not KeyStatus.ACTIVE:
        return UntrustedKeyError(
            f"{check.path}: signed by {pinned.status.value} key {pinned.label!r} ({embedded.key_id[:16]})"
        )
    if pinned is not None:
        return UntrustedKeyError(
            f"{check.path}: signed by key {pinned.label!r} ({embedded.key_id[:16]}) outside its validity "
            f"window or role at {now.isoformat()}"
        )
    if len(data) <= DIAGNOSTIC_LIMIT and embedded.verify(check.raw_signature, data):
        return UntrustedKeyError(
            f"{check.path}: signed by unpinned key {embedded.key_id[:16]} (key_id hint {sig.key_id[:16]!r});"
            " expected a key of the trust root"
        )
    return UntrustedKeyError(f"{check.path}: not signed by any active trusted key")
