"""Adversarial cases of trust-root rotation: retired/expired keys, self-signing to the new threshold,
spelling variants of the signed body, and the ``--at`` override being visible in evidence."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import RootThresholdError
from ringward.core.trust.root import KeyStatus, parse_trust_root
from ringward.core.trust.rotation import canonical_root_body, verify_rotation
from tests.trust.helpers import NOW, make_root, new_keys, signed
from tests.trust.test_update_cli import Env, env, rotation_evidence  # noqa: F401


def test_retired_or_expired_previous_keys_do_not_count() -> None:
    a, b, c = new_keys(3)
    v1 = signed(make_root(1, [a, b]), a)
    v2 = signed(make_root(2, [c]), a, c)
    retired = v1.model_copy(update={"keys": (v1.keys[0].model_copy(update={"status": KeyStatus.RETIRED}),
                                             v1.keys[1])})
    expired = v1.model_copy(update={"keys": (v1.keys[0].model_copy(update={"valid_until": NOW - timedelta(days=1)}),
                                             v1.keys[1])})
    for current in (retired, expired):
        with pytest.raises(RootThresholdError) as caught:
            verify_rotation(current, v2, NOW)
        assert caught.value.signers == "previous"


def test_a_new_root_cannot_self_sign_past_a_missing_previous_threshold() -> None:
    """Many own keys, all signing, and a lowered root threshold do not replace v1's 2-of-2."""
    a, b, *mine = new_keys(6)
    v1 = signed(make_root(1, [a, b], threshold=2), a, b)
    v2 = signed(make_root(2, [a, *mine], threshold=1), a, *mine)
    with pytest.raises(RootThresholdError) as caught:
        verify_rotation(v1, v2, NOW)
    assert caught.value.signers == "previous" and "signed by 1 of" in caught.value.message


@pytest.mark.parametrize("spelling", ["true", "1.0", '"1"'])
def test_the_signature_covers_the_parsed_meaning_not_the_spelling(spelling: str) -> None:
    """pydantic's lax ints read ``true``/``1.0``/``"1"`` as 1: the canonical body (what signatures
    cover) is the same, so a respelt file neither breaks nor forges a signature."""
    (a,) = new_keys(1)
    root = signed(make_root(1, [a]), a)
    text = dumps_document(root.model_dump(mode="json", exclude_none=True)).decode()
    respelt = json.loads(text)
    respelt["version"] = "@@"
    variant = parse_trust_root(json.dumps(respelt).replace('"@@"', spelling).encode(), source="v.json")
    assert variant.version == 1 and canonical_root_body(variant) == canonical_root_body(root)


def test_an_overridden_verification_time_is_recorded_in_evidence(env: Env) -> None:  # noqa: F811
    """``--at`` can make an expired successor (or an expired key) acceptable: the evidence must say
    which time the decision was made for, and that it was not the clock."""
    env.upgrade()
    new = env.successor(env.current, "next.json", add="r2", retire="r1", signers=[])
    assert env.trust("set-expiry", "--expires", "2030-01-01T00:00:00Z", root=new)[0] == 0
    for signer in ("r1", "r2"):
        assert env.trust("sign-root", "--signing-key", str(env.priv(signer)), root=new)[0] == 0
    assert env.trust("update", str(new), "--at", "2031-01-01T00:00:00Z")[0] == 1
    code, _, err = env.trust("update", str(new), "--at", "2029-12-31T00:00:00Z")
    assert code == 0, err
    by_decision = {e["decision"]: e for e in rotation_evidence()}
    refused, accepted = by_decision["refused"], by_decision["accepted"]
    assert refused["verified_at"].startswith("2031-01-01T00:00:00")
    assert accepted["verified_at"].startswith("2029-12-31T00:00:00")
    assert refused["time_overridden"] is True and accepted["time_overridden"] is True
