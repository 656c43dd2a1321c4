"""Signed, chained trust-root versions (TUF-style root rotation).

A trust root that carries ``root``-role keys is *chained*: version N+1 is accepted only when
a threshold of version N's root keys **and** a threshold of version N+1's own root keys signed
it, its version is exactly N+1, and (for the newest version of a chain) it has not expired. A
legacy trust root (no root keys, no signatures) still works everywhere as a pinned file; it
can be upgraded in place by adding root keys and signing it (``ringward trust sign-root``).

Signature convention: the signatures are embedded in the trust root itself (``signatures``,
as TUF's ``signed``/``signatures``), not detached ``.sig.json`` files, because a root needs a
*threshold* of signatures and must travel as one file (offline bootstrap, a directory of
versions ``N+1..M``, one atomic replace). The signed bytes are the canonical body -- the
document without ``signatures``, ``json.dumps(sort_keys=True, separators=(",", ":"))`` with
ASCII escaping -- the same rule as the embedded signatures of promotion requests
(``core/promotion/signed_payload.py``), computed over the validated model so every reader
signs and checks the same bytes. Signatures count per distinct key material (``key_id`` is the
SHA-256 of the raw public key, computed locally); a key signing twice counts once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.errors import (
    RootExpiredError,
    RootForkError,
    RootRollbackError,
    RootThresholdError,
    RootVersionError,
    TrustRootRotationError,
)
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import KeyStatus, Role, RootSignature, TrustRoot

#: a chain longer than this is refused (TUF's ``max_root_rotations``): bounds the work an
#: attacker-supplied directory of versions can cause
MAX_ROOT_ROTATIONS = 256


def canonical_root_body(root: TrustRoot) -> bytes:
    """The bytes root signatures cover: the trust root without ``signatures``, canonical JSON."""
    body = root.model_dump(mode="json", exclude_none=True, exclude={"signatures"})
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def root_body_sha256(root: TrustRoot) -> str:
    return hashlib.sha256(canonical_root_body(root)).hexdigest()


def is_chained(root: TrustRoot) -> bool:
    """True once the trust root pins root-role keys (it can then sign its successor)."""
    return bool(root.keys_for(Role.ROOT))


def sign_root(root: TrustRoot, private_key: Ed25519PrivateKey, *, signer: str) -> TrustRoot:
    """Return ``root`` with a root signature by ``private_key`` added (replacing that key's
    earlier signature, so re-signing never duplicates an entry)."""
    public = public_key_of(private_key)
    body = canonical_root_body(root)
    signature = RootSignature(
        key_id=public.key_id,
        signer=signer,
        body_sha256=hashlib.sha256(body).hexdigest(),
        value=base64.b64encode(private_key.sign(body)).decode("ascii"),
    )
    kept = tuple(s for s in root.signatures if s.key_id != public.key_id)
    return root.model_copy(update={"signatures": (*kept, signature)})


@dataclass(frozen=True)
class RootSigners:
    """Which distinct root keys of ``keys_from`` (a trust-root version) signed a body."""

    keys_from: int
    signed_by: tuple[str, ...]
    threshold: int
    #: signatures whose recorded body digest differs from the body: the body changed after signing
    stale: int


def root_signers(signed: TrustRoot, keys_from: TrustRoot, *, now: datetime) -> RootSigners:
    """Distinct active root keys of ``keys_from`` whose signature verifies over ``signed``'s body."""
    body = canonical_root_body(signed)
    digest = hashlib.sha256(body).hexdigest()
    keys = keys_from.trusted_keys(Role.ROOT, now)
    signed_by: list[str] = []
    stale = 0
    for signature in signed.signatures:
        if signature.body_sha256 != digest:
            stale += 1
            continue
        key = keys.get(signature.key_id)
        if key is None or signature.key_id in signed_by:
            continue  # unpinned/inactive key, or the same key material again: counts once
        try:
            value = base64.b64decode(signature.value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(value) == 64 and key.verify(value, body):
            signed_by.append(signature.key_id)
    return RootSigners(keys_from.version, tuple(signed_by), keys_from.threshold(Role.ROOT), stale)


@dataclass(frozen=True)
class RotationResult:
    """One verified step ``previous_version`` -> ``version`` of a trust-root chain."""

    previous_version: int
    version: int
    body_sha256: str
    signed_by_previous: tuple[str, ...]
    previous_threshold: int
    signed_by_new: tuple[str, ...]
    new_threshold: int
    expires: datetime | None


def _threshold_error(signers: RootSigners, new: TrustRoot, whose: str) -> RootThresholdError:
    which = "previous version's" if whose == "previous" else "its own"
    message = (f"trust root v{new.version}: signed by {len(signers.signed_by)} of {which} (v{signers.keys_from}) "
               f"root keys, threshold is {signers.threshold}")
    if signers.stale and not signers.signed_by:
        message += f" ({signers.stale} signature(s) cover another body: the trust root changed after signing)"
    return RootThresholdError(message, whose)


def verify_rotation(current: TrustRoot, new: TrustRoot, now: datetime, *, final: bool = True) -> RotationResult:
    """Verify that ``new`` is a valid successor of ``current`` at ``now``.

    ``final=False`` is for intermediate versions of a longer chain, which (as in TUF) may have
    expired since; only the newest version must be unexpired.

    Raises:
        RootRollbackError: ``new`` is older than ``current`` or the same version again.
        RootForkError: ``new`` has ``current``'s version but another body.
        RootVersionError: ``new`` skips a version (not exactly N+1).
        RootThresholdError: too few of ``current``'s root keys (``signers == "previous"``) or of
            ``new``'s own root keys (``signers == "new"``) signed it.
        RootExpiredError: ``new`` is the final version and has expired at ``now``.
    """
    digest = root_body_sha256(new)
    if new.version == current.version:
        if digest != root_body_sha256(current):
            raise RootForkError(
                f"trust root v{new.version}: same version as the current trust root with a different body "
                f"(sha256 {digest[:16]} vs {root_body_sha256(current)[:16]}); refusing a forked chain"
            )
        raise RootRollbackError(
            f"trust root v{new.version}: already the current version; expected v{current.version + 1}"
        )
    if new.version < current.version:
        raise RootRollbackError(
            f"trust root v{new.version}: older than the current v{current.version}; refusing a rollback"
        )
    if new.version != current.version + 1:
        raise RootVersionError(
            f"trust root v{new.version}: expected exactly v{current.version + 1} after v{current.version} "
            f"(versions cannot be skipped; supply v{current.version + 1}..v{new.version} in order)"
        )
    if not is_chained(current):
        raise RootThresholdError(
            f"trust root v{new.version}: the current trust root v{current.version} pins no root keys, so nothing "
            "can sign its successor; upgrade it in place first (trust add-key --key root=KEY, trust sign-root)",
            "previous",
        )
    previous = root_signers(new, current, now=now)
    if len(previous.signed_by) < previous.threshold:
        raise _threshold_error(previous, new, "previous")
    if not is_chained(new):
        raise RootThresholdError(
            f"trust root v{new.version}: pins no root keys of its own; a chained trust root must keep a root role",
            "new",
        )
    own = root_signers(new, new, now=now)
    if len(own.signed_by) < own.threshold:
        raise _threshold_error(own, new, "new")
    if final and new.expires is not None and now >= new.expires:
        raise RootExpiredError(
            f"trust root v{new.version}: expired at {new.expires.isoformat()} (checked at {now.isoformat()})"
        )
    return RotationResult(
        previous_version=current.version,
        version=new.version,
        body_sha256=digest,
        signed_by_previous=previous.signed_by,
        previous_threshold=previous.threshold,
        signed_by_new=own.signed_by,
        new_threshold=own.threshold,
        expires=new.expires,
    )


@dataclass(frozen=True)
class ChainResult:
    """A verified chain from ``previous_version`` to ``final``: every step in order."""

    previous_version: int
    final: TrustRoot
    steps: tuple[RotationResult, ...]


def verify_chain(current: TrustRoot, candidates: Sequence[TrustRoot], now: datetime, *,
                 max_rotations: int = MAX_ROOT_ROTATIONS) -> ChainResult:
    """Apply ``candidates`` (versions N+1..M, in order) to ``current``; every step must verify.

    Raises the first step's :class:`TrustRootRotationError`; nothing is accepted partially.
    """
    if not candidates:
        raise TrustRootRotationError(f"no trust root newer than the current v{current.version} was supplied")
    if len(candidates) > max_rotations:
        raise TrustRootRotationError(
            f"{len(candidates)} trust-root versions supplied, at most {max_rotations} rotations are followed at once"
        )
    steps: list[RotationResult] = []
    trusted = current
    for index, candidate in enumerate(candidates):
        steps.append(verify_rotation(trusted, candidate, now, final=index == len(candidates) - 1))
        trusted = candidate
    return ChainResult(previous_version=current.version, final=trusted, steps=tuple(steps))


def bootstrap_root_section(root: TrustRoot) -> dict[str, Any]:
    """The offline bootstrap's trust-root fields (``BootstrapDocument.trust_root_version``,
    ``root_keys``, ``root_threshold``) for a chained trust root; empty for a legacy one.

    The keys carry their PEM so an air-gapped endpoint can tell which trust-root version a package
    was built under and check the next signed version against these keys without the network."""
    if not is_chained(root):
        return {}
    return {
        "trust_root_version": root.version,
        "root_keys": [
            {"key_id": k.key_id, "public_key_sha256": k.public_key_sha256, "public_key_pem": k.public_key_pem,
             "label": k.label}
            for k in root.keys_for(Role.ROOT) if k.status is KeyStatus.ACTIVE
        ],
        "root_threshold": root.threshold(Role.ROOT),
    }
