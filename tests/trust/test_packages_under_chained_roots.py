"""Packages verify the same under a legacy (unsigned, version-less) trust root file and under the
same root upgraded in place (root key, signature); a rotation that swaps the release key moves
which packages verify."""

from __future__ import annotations

import json
from pathlib import Path

from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import Role, parse_trust_root
from ringward.core.trust.rotation import sign_root, verify_rotation
from ringward.operations.trust.keys import add_key, edited, new_trusted_key
from tests.release.simulator import NOW, ReleaseSimulator, trusted
from tests.trust.helpers import new_keys


def test_legacy_and_upgraded_roots_verify_the_same_package(tmp_path: Path) -> None:
    sim = ReleaseSimulator(tmp_path)
    package = sim.package()
    legacy_doc = sim.trust_root().model_dump(mode="json", exclude_none=True)
    for field in ("version", "signatures"):
        legacy_doc.pop(field)
    legacy = parse_trust_root(json.dumps(legacy_doc).encode(), source="legacy.json")
    assert legacy.version == 1 and not legacy.signatures
    assert sim.verify(package, legacy).valid

    root_key = new_keys(1)[0]
    upgraded = add_key(legacy, new_trusted_key(public_key_of(root_key), [Role.ROOT], "root-1", None, None), NOW)
    upgraded = sign_root(edited(upgraded, NOW, thresholds={**upgraded.thresholds, Role.ROOT: 1}), root_key,
                         signer="ops")
    assert upgraded.version == 2 and len(upgraded.signatures) == 1
    assert sim.verify(package, upgraded).valid

    # rotate: v3 replaces the release key with an attacker's -- only valid if the root keys signed it
    rotated = edited(upgraded, NOW, keys=(trusted(sim.attacker_key, "release-2"), *upgraded.keys_for(Role.ROOT)))
    rotated = sign_root(rotated, root_key, signer="ops")
    assert verify_rotation(upgraded, rotated, NOW).version == 3
    assert not sim.verify(package, rotated).valid
