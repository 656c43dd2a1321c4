"""verify_rotation / verify_chain: the TUF root-rotation rules, each failure with its own error."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import (
    ConfigError,
    RollbackError,
    RootExpiredError,
    RootForkError,
    RootRollbackError,
    RootThresholdError,
    RootVersionError,
    TrustRootRotationError,
)
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import KeyStatus, Role, RootSignature, parse_trust_root
from ringward.core.trust.rotation import (
    canonical_root_body,
    root_signers,
    sign_root,
    verify_chain,
    verify_rotation,
)
from tests.trust.helpers import NOW, make_root, new_keys, signed


def kid(key: object) -> str:
    return public_key_of(key).key_id  # type: ignore[arg-type]


def test_single_rotation_to_new_keys_signed_by_old_and_new() -> None:
    a, b = new_keys(2)
    v1 = signed(make_root(1, [a]), a)
    v2 = signed(make_root(2, [b]), a, b)
    result = verify_rotation(v1, v2, NOW)
    assert (result.previous_version, result.version) == (1, 2)
    assert result.signed_by_previous == (kid(a),) and result.signed_by_new == (kid(b),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.version = 3  # type: ignore[misc]


def test_multi_step_chain_with_full_key_turnover() -> None:
    a, b, c = new_keys(3)
    v1 = signed(make_root(1, [a]), a)
    v2 = signed(make_root(2, [b]), a, b)
    v3 = signed(make_root(3, [c]), b, c)
    chain = verify_chain(v1, [v2, v3], NOW)
    assert chain.final == v3 and [s.version for s in chain.steps] == [2, 3]
    # v3 alone cannot be verified from v1: it skips v2, and v1's key never signed it
    with pytest.raises(RootVersionError):
        verify_rotation(v1, v3, NOW)


def test_chain_fails_as_a_whole_when_a_middle_step_is_bad() -> None:
    a, b, c = new_keys(3)
    v1 = signed(make_root(1, [a]), a)
    v2 = signed(make_root(2, [b]), b)  # not signed by v1's key a
    v3 = signed(make_root(3, [c]), b, c)
    with pytest.raises(RootThresholdError) as caught:
        verify_chain(v1, [v2, v3], NOW)
    assert caught.value.signers == "previous" and "v2" in caught.value.message


def test_below_threshold_of_the_previous_versions_root_keys() -> None:
    a1, a2, a3, b = new_keys(4)
    v1 = signed(make_root(1, [a1, a2, a3], threshold=2), a1, a2)
    v2 = signed(make_root(2, [b]), a1, b)  # one of three old keys, threshold 2
    with pytest.raises(RootThresholdError) as caught:
        verify_rotation(v1, v2, NOW)
    assert caught.value.signers == "previous"
    assert "signed by 1 of previous version's (v1) root keys, threshold is 2" in caught.value.message
    assert caught.value.exit_code == 1
    assert verify_rotation(v1, signed(v2, a3), NOW).signed_by_previous == (kid(a1), kid(a3))


def test_below_threshold_of_the_new_versions_own_root_keys() -> None:
    a, b1, b2 = new_keys(3)
    v1 = signed(make_root(1, [a]), a)
    v2 = signed(make_root(2, [b1, b2], threshold=2), a, b1)
    with pytest.raises(RootThresholdError) as caught:
        verify_rotation(v1, v2, NOW)
    assert caught.value.signers == "new"
    assert "signed by 1 of its own (v2) root keys, threshold is 2" in str(caught.value)
    assert verify_rotation(v1, signed(v2, b2), NOW).signed_by_new == (kid(b1), kid(b2))


def test_a_key_signing_twice_counts_once() -> None:
    a1, a2 = new_keys(2)
    v1 = signed(make_root(1, [a1, a2], threshold=2), a1, a2)
    v2 = signed(make_root(2, [a1, a2], threshold=2), a1)
    doubled = v2.model_copy(update={"signatures": (v2.signatures[0], v2.signatures[0])})
    with pytest.raises(RootThresholdError) as caught:
        verify_rotation(v1, doubled, NOW)
    assert "signed by 1 of" in caught.value.message
    # re-signing with the same key replaces its signature instead of adding one
    assert len(sign_root(v2, a1, signer="again").signatures) == 1


def test_same_key_material_under_a_second_signature_hint_counts_once() -> None:
    a1, a2 = new_keys(2)
    v1 = signed(make_root(1, [a1, a2], threshold=2), a1, a2)
    v2 = signed(make_root(2, [a1, a2], threshold=2), a1)
    relabelled = RootSignature(**{**v2.signatures[0].model_dump(), "signer": "someone else"})
    forged = v2.model_copy(update={"signatures": (v2.signatures[0], relabelled)})
    assert root_signers(forged, v1, now=NOW).signed_by == (kid(a1),)
    with pytest.raises(RootThresholdError):
        verify_rotation(v1, forged, NOW)


def test_same_version_with_a_different_body_is_a_fork() -> None:
    a, b = new_keys(2)
    v2 = signed(make_root(2, [a]), a)
    other = signed(make_root(2, [a, b]), a, b)
    with pytest.raises(RootForkError) as caught:
        verify_rotation(v2, other, NOW)
    assert "forked" in caught.value.message
    # the identical version again is not a fork, but not progress either
    with pytest.raises(RootRollbackError, match="already the current version"):
        verify_rotation(v2, v2, NOW)


def test_rollback_to_an_older_version_is_refused() -> None:
    a = new_keys(1)[0]
    v2 = signed(make_root(2, [a]), a)
    v3 = signed(make_root(3, [a]), a)
    with pytest.raises(RootRollbackError) as caught:
        verify_rotation(v3, v2, NOW)
    assert isinstance(caught.value, RollbackError) and "older than the current v3" in caught.value.message


def test_skipped_version_is_refused() -> None:
    a = new_keys(1)[0]
    v1 = signed(make_root(1, [a]), a)
    v3 = signed(make_root(3, [a]), a)
    with pytest.raises(RootVersionError) as caught:
        verify_rotation(v1, v3, NOW)
    assert not isinstance(caught.value, RootRollbackError)
    assert "expected exactly v2" in caught.value.message


def test_expired_final_root_is_refused_but_an_expired_intermediate_is_followed() -> None:
    a = new_keys(1)[0]
    v1 = signed(make_root(1, [a]), a)
    v2 = signed(make_root(2, [a], expires=NOW - timedelta(hours=1)), a)
    v3 = signed(make_root(3, [a], expires=NOW + timedelta(days=365)), a)
    with pytest.raises(RootExpiredError, match="expired at"):
        verify_rotation(v1, v2, NOW)
    assert verify_chain(v1, [v2, v3], NOW).final.version == 3
    with pytest.raises(RootExpiredError):
        verify_chain(v1, [v2, v3], NOW + timedelta(days=366))
    assert verify_rotation(v1, v2, NOW - timedelta(hours=2)).version == 2


def test_a_tampered_new_body_fails_both_ways_and_says_why() -> None:
    a, b = new_keys(2)
    v1 = signed(make_root(1, [a]), a)
    v2 = signed(make_root(2, [b]), a, b)
    tampered = v2.model_copy(update={"trusted_builders": ("https://evil.example/builder",)})
    with pytest.raises(RootThresholdError) as caught:
        verify_rotation(v1, tampered, NOW)
    assert "changed after signing" in caught.value.message
    # swapping in an attacker's root key after signing breaks the signatures too
    mallory = new_keys(1)[0]
    swapped = signed(make_root(2, [mallory]), mallory).model_copy(update={"signatures": v2.signatures})
    with pytest.raises(RootThresholdError):
        verify_rotation(v1, swapped, NOW)


def test_signatures_by_unpinned_or_revoked_keys_do_not_count() -> None:
    a, b, c, mallory = new_keys(4)
    v1 = signed(make_root(1, [a, b]), a)
    revoked_a = v1.keys[0].model_copy(update={"status": KeyStatus.REVOKED})
    v1_revoked = v1.model_copy(update={"keys": (revoked_a, v1.keys[1])})
    v2 = signed(make_root(2, [c]), a, c)
    assert verify_rotation(v1, v2, NOW).signed_by_previous == (kid(a),)
    with pytest.raises(RootThresholdError) as caught:
        verify_rotation(v1_revoked, v2, NOW)
    assert caught.value.signers == "previous"
    with pytest.raises(RootThresholdError):
        verify_rotation(v1, signed(make_root(2, [c]), mallory, c), NOW)


def test_a_release_key_cannot_sign_the_root() -> None:
    a, rel = new_keys(2)
    v1 = signed(make_root(1, [a], release=rel), a)
    v2 = signed(make_root(2, [a], release=rel), rel)
    with pytest.raises(RootThresholdError):
        verify_rotation(v1, v2, NOW)


def test_a_legacy_current_root_cannot_be_rotated_from_until_upgraded() -> None:
    a, rel = new_keys(2)
    legacy = make_root(3, [], release=rel)
    v4 = signed(make_root(4, [a], release=rel), a)
    with pytest.raises(RootThresholdError, match="upgrade it in place"):
        verify_rotation(legacy, v4, NOW)
    # a new version that drops the root role cannot continue the chain
    v2 = signed(make_root(2, [], release=rel), a)
    with pytest.raises(RootThresholdError, match="pins no root keys of its own"):
        verify_rotation(signed(make_root(1, [a]), a), v2, NOW)


def test_empty_or_overlong_chains_are_refused() -> None:
    a = new_keys(1)[0]
    v1 = signed(make_root(1, [a]), a)
    with pytest.raises(TrustRootRotationError, match="no trust root newer"):
        verify_chain(v1, [], NOW)
    with pytest.raises(TrustRootRotationError, match="at most 1 rotations"):
        verify_chain(v1, [v1, v1], NOW, max_rotations=1)


def test_signed_body_survives_the_file_round_trip() -> None:
    a, b = new_keys(2)
    v1 = signed(make_root(1, [a], expires=NOW + timedelta(days=30)), a)
    v2 = signed(make_root(2, [b], expires=NOW + timedelta(days=30)), a, b)
    reread = parse_trust_root(dumps_document(v2.model_dump(mode="json", exclude_none=True)), source="v2.json")
    assert canonical_root_body(reread) == canonical_root_body(v2)
    assert verify_rotation(v1, reread, NOW).version == 2
    assert b'"signatures"' not in canonical_root_body(v2)


def test_legacy_files_without_version_or_signatures_load_as_unsigned_v1() -> None:
    rel = new_keys(1)[0]
    doc = make_root(1, [], release=rel).model_dump(mode="json", exclude_none=True)
    for field in ("version", "signatures", "expires"):
        doc.pop(field, None)
    doc["thresholds"] = {"release": 1}
    root = parse_trust_root(json.dumps(doc).encode(), source="legacy.json")
    assert root.version == 1 and root.signatures == () and root.expires is None
    assert root.threshold(Role.ROOT) == 1 and root.keys_for(Role.ROOT) == []


def test_schema_problems_of_new_fields_are_all_reported_at_once() -> None:
    a = new_keys(1)[0]
    doc = signed(make_root(1, [a]), a).model_dump(mode="json", exclude_none=True)
    doc["expires"] = "2027-01-01T00:00:00"
    doc["signatures"][0]["body_sha256"] = "nothex"
    doc["version"] = 0
    with pytest.raises(ConfigError) as caught:
        parse_trust_root(json.dumps(doc).encode(), source="bad.json")
    message = caught.value.message
    assert "3 problems" in message and "expires" in message and "signatures.0.body_sha256" in message
    assert "version" in message
