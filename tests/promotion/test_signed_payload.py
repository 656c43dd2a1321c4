"""Signed promotion payloads: pinned keys of the right role only, exact canonical bytes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.errors import (
    MalformedSignatureError,
    MissingSignatureError,
    SignatureError,
    ThresholdNotMetError,
    UntrustedKeyError,
)
from ringward.core.promotion.signed_payload import (
    CHANNEL_PROMOTION_SIGNATURE,
    canonical_payload_bytes,
    payload_digest,
    sign_payload,
    verify_signed_payload,
)
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustedKey, TrustRoot

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _root(*entries: tuple[Ed25519PrivateKey, tuple[Role, ...], KeyStatus], threshold: int = 1) -> TrustRoot:
    keys = []
    for n, (key, roles, status) in enumerate(entries):
        public = public_key_of(key)
        keys.append(TrustedKey(label=f"k{n}", key_id=public.key_id, public_key_pem=public.pem, roles=roles,
                               public_key_sha256=public.pem_sha256,
                               status=status))
    return TrustRoot(updated_at=NOW, keys=tuple(keys), thresholds={Role.PROMOTION: threshold})


def _doc() -> dict[str, object]:
    return {"schema_version": "cavra.go-runtime.release-channel-promotion-request.v1", "request_id": "rcp_1",
            "channel": "stable", "target_ring": "enterprise", "note": "caf\u00e9"}


def _verify(doc: dict[str, object], root: TrustRoot) -> object:
    return verify_signed_payload(doc, trust_root=root, role=Role.PROMOTION, now=NOW, label="promotion request",
                                 schema_version=CHANNEL_PROMOTION_SIGNATURE)


def test_pinned_promotion_key_verifies_and_digest_is_of_canonical_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    check = _verify(signed, _root((key, (Role.PROMOTION,), KeyStatus.ACTIVE)))
    assert check.key_id == public_key_of(key).key_id  # type: ignore[attr-defined]
    # reference canonical form: ASCII-escaped, sorted, compact
    assert b'"note":"caf\\u00e9"' in canonical_payload_bytes(signed)
    assert signed["signature"]["payload_sha256"] == payload_digest(signed).removeprefix("sha256:")  # type: ignore[index]


def test_release_role_key_is_not_enough() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    with pytest.raises(UntrustedKeyError, match="expected a promotion-role key"):
        _verify(signed, _root((key, (Role.RELEASE,), KeyStatus.ACTIVE)))


def test_unpinned_and_revoked_keys_fail() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    with pytest.raises(UntrustedKeyError, match="does not pin"):
        _verify(signed, _root((other, (Role.PROMOTION,), KeyStatus.ACTIVE)))
    with pytest.raises(UntrustedKeyError, match="revoked"):
        _verify(signed, _root((key, (Role.PROMOTION,), KeyStatus.REVOKED)))


def test_tampered_after_signing_fails_even_with_fixed_digest() -> None:
    key = Ed25519PrivateKey.generate()
    root = _root((key, (Role.PROMOTION,), KeyStatus.ACTIVE))
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    tampered = {**signed, "target_ring": "production"}
    with pytest.raises(SignatureError, match="changed after signing"):
        _verify(tampered, root)
    sig = dict(signed["signature"])  # type: ignore[arg-type]
    sig["payload_sha256"] = payload_digest(tampered).removeprefix("sha256:")
    with pytest.raises(SignatureError, match="does not verify"):
        _verify({**tampered, "signature": sig}, root)


def test_forged_key_swapped_in_is_untrusted() -> None:
    key, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    root = _root((key, (Role.PROMOTION,), KeyStatus.ACTIVE))
    forged = sign_payload({**_doc(), "target_ring": "production"}, private_key=forger, signer="rm",
                          schema_version=CHANNEL_PROMOTION_SIGNATURE)
    with pytest.raises(UntrustedKeyError):
        _verify(forged, root)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda s: None, MissingSignatureError, "signature missing"),
        (lambda s: "x", MalformedSignatureError, "must be an object"),
        (lambda s: {**s, "algorithm": "RS256"}, MalformedSignatureError, "algorithm"),
        (lambda s: {**s, "value": "!!"}, MalformedSignatureError, "base64"),
        (lambda s: {**s, "value": base64.b64encode(b"x" * 10).decode()}, MalformedSignatureError, "64"),
        (lambda s: {**s, "public_key_pem": "not a pem"}, MalformedSignatureError, "public_key_pem"),
        (lambda s: {**s, "public_key_sha256": "0" * 64}, MalformedSignatureError, "public_key_sha256"),
        (lambda s: {**s, "schema_version": "other"}, MalformedSignatureError, "schema_version"),
        (lambda s: {**s, "extra": 1}, MalformedSignatureError, "extra"),
    ],
)
def test_malformed_signatures(mutate, error, match) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    doc = {**signed, "signature": mutate(signed["signature"])}
    if doc["signature"] is None:
        del doc["signature"]
    with pytest.raises(error, match=match):
        _verify(doc, _root((key, (Role.PROMOTION,), KeyStatus.ACTIVE)))


def test_threshold_above_one_is_refused_clearly() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    with pytest.raises(ThresholdNotMetError, match="requires 2"):
        _verify(signed, _root((key, (Role.PROMOTION,), KeyStatus.ACTIVE), threshold=2))


def test_key_outside_validity_window() -> None:
    key = Ed25519PrivateKey.generate()
    public = public_key_of(key)
    root = TrustRoot(updated_at=NOW, keys=(TrustedKey(label="k", key_id=public.key_id, public_key_pem=public.pem,
                                                      public_key_sha256=public.pem_sha256,
                                                      roles=(Role.PROMOTION,), status=KeyStatus.ACTIVE,
                                                      valid_until=NOW - timedelta(days=1)),))
    signed = sign_payload(_doc(), private_key=key, signer="rm", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    with pytest.raises(UntrustedKeyError, match="validity window"):
        _verify(signed, root)
