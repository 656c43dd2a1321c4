"""The offline bootstrap carries the trust-root version and root keys (so an air-gapped endpoint can
follow a rotation); without a chained trust root it is unchanged."""

from __future__ import annotations

from pathlib import Path

from ringward.core.release.package_builder import ReleaseInfo, build_bootstrap
from ringward.core.release.package_format import BootstrapDocument, RuntimeFiles
from ringward.core.trust.keys import load_public_key_pem, public_key_of
from ringward.core.trust.root import KeyStatus, Role, TrustedKey, TrustRoot
from ringward.core.trust.rotation import bootstrap_root_section, verify_rotation
from tests.trust.helpers import NOW, make_root, new_keys, signed


def bootstrap(section: dict | None) -> dict:  # type: ignore[type-arg]
    info = ReleaseInfo(runtime="cavra-runtime", version="v1.3.0", commit="c" * 40, ref="refs/tags/v1.3.0",
                       repository="acme/cavra", created_at=NOW)
    files = RuntimeFiles(info.runtime)
    return build_bootstrap(info, files, ["checksums.txt"], [], {"release": 1}, section)


def test_bootstrap_carries_version_root_keys_and_threshold() -> None:
    a, b, rel = new_keys(3)
    root = signed(make_root(4, [a, b], threshold=2, release=rel), a, b)
    doc = BootstrapDocument.model_validate(bootstrap(bootstrap_root_section(root)))
    assert doc.trust_root_version == 4 and doc.root_threshold == 2
    assert sorted(k.key_id for k in doc.root_keys) == sorted(k.key_id for k in root.keys_for(Role.ROOT))
    assert all(k.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----") for k in doc.root_keys)


def test_retired_root_keys_are_not_carried() -> None:
    a, b = new_keys(2)
    root = make_root(2, [a, b])
    retired = root.keys[0].model_copy(update={"status": KeyStatus.RETIRED})
    root = root.model_copy(update={"keys": (retired, root.keys[1])})
    assert [k["key_id"] for k in bootstrap_root_section(root)["root_keys"]] == [root.keys[1].key_id]


def test_legacy_trust_root_leaves_the_bootstrap_unchanged() -> None:
    rel = new_keys(1)[0]
    legacy = make_root(3, [], release=rel)
    assert bootstrap_root_section(legacy) == {}
    assert bootstrap(bootstrap_root_section(legacy)) == bootstrap(None)
    doc = BootstrapDocument.model_validate(bootstrap(None))
    assert doc.trust_root_version is None and doc.root_keys == []


def test_an_air_gapped_endpoint_can_verify_the_next_version_from_the_bootstrap_alone() -> None:
    a, b, rel = new_keys(3)
    v1 = signed(make_root(1, [a], release=rel), a)
    v2 = signed(make_root(2, [b], release=rel), a, b)
    doc = BootstrapDocument.model_validate(bootstrap(bootstrap_root_section(v1)))
    # rebuild the root role of v1 from the bootstrap (no other file from the build side)
    carried = TrustRoot(
        version=doc.trust_root_version or 0, updated_at=NOW,
        keys=tuple(trusted_from(k.public_key_pem, k.label) for k in doc.root_keys),
        thresholds={Role.ROOT: doc.root_threshold or 1},
    )
    result = verify_rotation(carried, v2, NOW)
    assert result.version == 2 and result.signed_by_previous == (public_key_of(a).key_id,)


def trusted_from(pem: str, label: str) -> TrustedKey:
    public = load_public_key_pem(pem.encode("ascii"), source=label)
    return TrustedKey(key_id=public.key_id, label=label, roles=(Role.ROOT,), public_key_pem=public.pem,
                      public_key_sha256=public.pem_sha256)


def test_release_package_with_a_chained_trust_root_carries_it_in_the_bootstrap(tmp_path, ringward_home) -> None:  # type: ignore[no-untyped-def]
    """`release package --trust-root T` (run_package) writes T's version and root keys into the
    signed bootstrap; the package verifies under T; without --trust-root the bootstrap has neither."""
    import json

    from cryptography.hazmat.primitives import serialization

    from ringward.core.release.package_format import BOOTSTRAP
    from ringward.operations.release.release_ops import run_package
    from ringward.operations.release.verify import verify_package
    from ringward.operations.trust.keys import save_trust_root
    from tests.release.simulator import NOW as SIM_NOW
    from tests.release.simulator import ReleaseSimulator

    sim = ReleaseSimulator(tmp_path / "sim")
    (holder,) = new_keys(1)
    root = signed(make_root(3, [holder], release=sim.key), holder)
    trust = tmp_path / "trust-root.json"
    save_trust_root(trust, root, overwrite=False)
    key_file = tmp_path / "release.pem"
    key_file.write_bytes(sim.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    common = {"version": "1.4.0", "commit": "c" * 40, "ref": "refs/tags/v1.4.0", "repository": "acme/rt",
              "signing_key": str(key_file), "record": False}
    with_root = run_package(dist_dir=str(sim.dist("1.4.0", name="d1")), output=str(tmp_path / "a"),
                            trust_root=str(trust), **common)
    without = run_package(dist_dir=str(sim.dist("1.4.0", name="d2")), output=str(tmp_path / "b"), **common)

    carried = json.loads((Path(with_root["package_dir"]) / BOOTSTRAP).read_text())
    assert carried["trust_root_version"] == 3 and carried["root_threshold"] == 1
    assert [k["key_id"] for k in carried["root_keys"]] == [public_key_of(holder).key_id]
    assert "trust_root_version" not in json.loads((Path(without["package_dir"]) / BOOTSTRAP).read_text())
    assert verify_package(Path(with_root["package_dir"]), root, now=SIM_NOW).valid
