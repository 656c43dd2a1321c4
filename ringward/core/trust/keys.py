"""Ed25519 key material: loading, fingerprints and the small-order check.

Key id convention (documented in the README): ``key_id`` is the lowercase hex SHA-256 of the
32 raw public-key bytes, always recomputed locally from the key itself. The reference system's
``public_key_sha256`` (SHA-256 of the SPKI PEM text) is kept alongside for interop, but only
``key_id`` drives thresholds ("distinct key material").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ringward.core.errors import KeyMaterialError

MAX_PEM_BYTES = 8192


@dataclass(frozen=True)
class PublicKey:
    """A validated Ed25519 public key with its locally computed fingerprints."""

    key: Ed25519PublicKey
    raw: bytes
    pem: str

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def pem_sha256(self) -> str:
        return hashlib.sha256(self.pem.encode("ascii")).hexdigest()

    def verify(self, signature: bytes, data: bytes | memoryview) -> bool:
        """True when ``signature`` is valid over ``data`` (used by verifiers that raise)."""
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _validated(key: Ed25519PublicKey, source: str) -> PublicKey:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # cryptography/OpenSSL accept small-order points (the identity key verifies a fixed
    # signature over every message); libsodium's point check rejects them.
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        raise KeyMaterialError(f"{source}: Ed25519 public key is a small-order or invalid point; refusing it")
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    return PublicKey(key=key, raw=raw, pem=pem)


def load_public_key_pem(data: bytes, *, source: str) -> PublicKey:
    if len(data) > MAX_PEM_BYTES:
        raise KeyMaterialError(f"{source}: {len(data)} bytes, expected a PEM public key under {MAX_PEM_BYTES}")
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as exc:  # ValueError, TypeError, UnsupportedAlgorithm: all mean "unusable key"
        raise KeyMaterialError(f"{source}: not a usable PEM public key ({type(exc).__name__})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyMaterialError(f"{source}: expected an Ed25519 public key, found {type(key).__name__}")
    return _validated(key, source)


def load_public_key_raw(raw: bytes, *, source: str) -> PublicKey:
    if len(raw) != 32:
        raise KeyMaterialError(f"{source}: expected 32 raw public-key bytes, found {len(raw)}")
    return _validated(Ed25519PublicKey.from_public_bytes(raw), source)


def load_private_key_pem(data: bytes, *, source: str) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 Ed25519 private key. ``source`` names the file or variable;
    the key bytes never appear in messages."""
    if len(data) > MAX_PEM_BYTES:
        raise KeyMaterialError(f"{source}: too large for a PEM private key")
    # CI secrets often carry literal "\n" sequences instead of newlines
    if b"\\n" in data and b"\n" not in data.strip():
        data = data.replace(b"\\n", b"\n")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise KeyMaterialError(f"{source}: private key is encrypted; expected an unencrypted PKCS#8 PEM") from exc
    except Exception as exc:  # ValueError, UnsupportedAlgorithm
        raise KeyMaterialError(f"{source}: not a usable PEM private key ({type(exc).__name__})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"{source}: expected an Ed25519 private key, found {type(key).__name__}")
    _validated(key.public_key(), source)
    return key


def public_key_of(private_key: Ed25519PrivateKey) -> PublicKey:
    return _validated(private_key.public_key(), "signing key")


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
