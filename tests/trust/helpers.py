"""Building trust roots with root keys in memory for rotation tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustedKey, TrustRoot
from ringward.core.trust.rotation import sign_root

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def trusted(key: Ed25519PrivateKey, label: str, *roles: Role, status: KeyStatus = KeyStatus.ACTIVE) -> TrustedKey:
    public = public_key_of(key)
    return TrustedKey(key_id=public.key_id, label=label, roles=roles, status=status,
                      public_key_pem=public.pem, public_key_sha256=public.pem_sha256)


def make_root(version: int, root_keys: Sequence[Ed25519PrivateKey], *, threshold: int = 1,
              release: Ed25519PrivateKey | None = None, expires: datetime | None = None,
              builders: tuple[str, ...] | None = None) -> TrustRoot:
    keys = [trusted(k, f"root-{i}-{public_key_of(k).key_id[:8]}", Role.ROOT) for i, k in enumerate(root_keys)]
    if release is not None:
        keys.append(trusted(release, "release", Role.RELEASE))
    extra = {"trusted_builders": builders} if builders is not None else {}
    return TrustRoot(version=version, updated_at=NOW - timedelta(days=1), keys=tuple(keys),
                     thresholds={Role.RELEASE: 1, Role.ROOT: threshold}, expires=expires, **extra)


def signed(root: TrustRoot, *signers: Ed25519PrivateKey) -> TrustRoot:
    for key in signers:
        root = sign_root(root, key, signer=f"holder-{public_key_of(key).key_id[:8]}")
    return root


def new_keys(count: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.generate() for _ in range(count)]
