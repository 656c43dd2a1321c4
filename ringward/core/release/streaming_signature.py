"""Ed25519 detached signatures over a file's bytes without holding the file in memory.

The signature format (``cavra.go-release.signature.v1``, see ringward.core.trust.signatures)
signs a subject's *exact bytes* with pure Ed25519 (RFC 8032, not Ed25519ph), as the reference
does; changing that would break every verifier in the field. Pure Ed25519 hashes the message
twice, so the library one-shot ``sign(data)`` needs the whole message in memory (for an
800 MB binary: the mapped file plus a copy). This module computes the *same* deterministic
signature from two streamed passes over the bytes (RFC 8032 §5.1.6), with the scalar and point
arithmetic done by libsodium (PyNaCl), so packaging memory stays flat whatever the binary size.
The output is byte-identical to ``Ed25519PrivateKey.sign(data)`` (tests check it against the
library on random keys and messages).

Pure: the caller supplies the bytes as a re-openable chunk source; no file I/O here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import (
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_base_noclamp,
)

from ringward.core.common.jsonio import dumps_document
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.signatures import SIGNATURE_SCHEMA, DetachedSignature

#: a function that yields the message's bytes from the start each time it is called (every
#: call must yield the same bytes: the signature is computed in two passes)
ChunkSource = Callable[[], Iterable[bytes | memoryview]]


class _ExpandedKey:
    """RFC 8032 §5.1.5: the secret scalar ``a`` (reduced mod L), the nonce ``prefix`` and the
    encoded public key ``A``."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        digest = hashlib.sha512(private_key.private_bytes_raw()).digest()
        scalar = bytearray(digest[:32])
        scalar[0] &= 248
        scalar[31] &= 127
        scalar[31] |= 64
        self.scalar = crypto_core_ed25519_scalar_reduce(bytes(scalar) + bytes(32))
        self.prefix = digest[32:]
        self.public = private_key.public_key().public_bytes_raw()


def ed25519_sign_chunks(keys: Sequence[Ed25519PrivateKey], chunks: ChunkSource) -> list[bytes]:
    """The 64-byte pure-Ed25519 signature of the message by each key, in ``keys`` order.

    Two passes over the message whatever the number of keys: pass 1 derives every key's
    nonce ``r = SHA-512(prefix || M)``, pass 2 every challenge ``k = SHA-512(R || A || M)``.
    Raises ``ValueError`` if the two passes saw different bytes (the source changed underneath)."""
    expanded = [_ExpandedKey(key) for key in keys]
    if not expanded:
        return []
    nonce_hashes = [hashlib.sha512(k.prefix) for k in expanded]
    first_length = _feed(chunks, nonce_hashes)
    nonces = [crypto_core_ed25519_scalar_reduce(h.digest()) for h in nonce_hashes]
    commitments = [crypto_scalarmult_ed25519_base_noclamp(r) for r in nonces]
    challenge_hashes = [hashlib.sha512(big_r + k.public) for big_r, k in zip(commitments, expanded, strict=True)]
    if _feed(chunks, challenge_hashes) != first_length:
        raise ValueError("message changed between the two signing passes")
    signatures = []
    for key, r, big_r, h in zip(expanded, nonces, commitments, challenge_hashes, strict=True):
        k = crypto_core_ed25519_scalar_reduce(h.digest())
        s = crypto_core_ed25519_scalar_add(r, crypto_core_ed25519_scalar_mul(k, key.scalar))
        signatures.append(big_r + s)
    return signatures


def _feed(chunks: ChunkSource, hashes: Sequence[hashlib._Hash]) -> int:
    length = 0
    for chunk in chunks():
        length += len(chunk)
        for h in hashes:
            h.update(chunk)
    return length


def signature_document(signature: bytes, *, subject: str, subject_sha256: str, private_key: Ed25519PrivateKey,
                       signer: str) -> bytes:
    """The ``.sig.json`` bytes for a signature computed elsewhere: the same document, field for
    field, as :func:`ringward.core.trust.signatures.sign_bytes` writes for the same subject."""
    if len(signature) != 64:
        raise ValueError(f"Ed25519 signature is {len(signature)} bytes, expected 64")
    public = public_key_of(private_key)
    document = DetachedSignature(
        schema_version=SIGNATURE_SCHEMA,
        subject=subject,
        subject_sha256=subject_sha256,
        algorithm="Ed25519",
        key_id=public.key_id,
        signer=signer,
        public_key_sha256=public.pem_sha256,
        public_key_pem=public.pem,
        value=base64.b64encode(signature).decode("ascii"),
    )
    return dumps_document(document.model_dump(mode="json"))
