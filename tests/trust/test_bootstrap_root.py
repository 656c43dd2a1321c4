"""The offline bootstrap carries the trust-root version and root keys (so an air-gapped endpoint can
follow a rotation); without a chained trust root it is unchanged."""

from __future__ import annotations

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
