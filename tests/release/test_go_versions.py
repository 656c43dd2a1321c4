"""Versions as Go projects write them: a leading ``v`` is accepted, kept verbatim in names and
documents, ordered by the SemVer after it, and ``v1.2.3`` is the same version as ``1.2.3``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ringward.core.common.versions import ReleaseVersion, same_version
from ringward.core.errors import VersionConflictError
from ringward.core.promotion.channels import CandidateVerdict, ChannelState, PromotedRelease, check_candidate
from ringward.core.trust.root import TrustRoot
from ringward.operations.release.upgrade import validate_upgrade
from tests.release.reference_packages import ReferenceGenerator
from tests.release.simulator import NOW, ReleaseSimulator, trusted

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_v_prefix_orders_by_the_semver_after_it() -> None:
    v = ReleaseVersion.parse
    assert v("v1.2.3") == v("1.2.3") and hash(v("v1.2.3")) == hash(v("1.2.3"))
    assert v("v1.2.10") > v("1.2.9") > v("v1.2.9-rc.10") > v("v1.2.9-rc.2")
    assert v("v1.2.3").text == "v1.2.3" and v("v1.2.3").canonical == "1.2.3"
    assert same_version("v1.2.3+build.1", "1.2.3") and not same_version("v1.2.3", "1.2.4")
    assert not same_version("x", "x")


@pytest.mark.parametrize("text", ["V1.2.3", "vv1.2.3", "v01.2.3", "v1.2", "v", " v1.2.3", "v1.2.3 "])
def test_only_one_lowercase_v_before_canonical_semver(text: str) -> None:
    with pytest.raises(VersionConflictError):
        ReleaseVersion.parse(text)


def test_v_version_package_keeps_the_exact_string(sim: ReleaseSimulator) -> None:
    pkg = sim.package("v1.2.4")
    assert pkg.name == "rt-v1.2.4"
    assert (pkg / "bin" / "rt_v1.2.4_linux_amd64").is_file()
    evidence = json.loads((pkg / "release-evidence.json").read_bytes())
    assert evidence["version"] == "v1.2.4"
    result = sim.verify(pkg)
    assert result.valid, result.errors
    assert result.version == "v1.2.4"


def test_upgrade_across_spellings(sim: ReleaseSimulator) -> None:
    root = sim.trust_root()
    plain = sim.package("1.2.3", out="plain")
    prefixed_same = sim.package("v1.2.3", out="prefixed")
    newer = sim.package("v1.2.4", out="newer")
    assert validate_upgrade(plain, newer, root, now=NOW).valid
    # re-publishing 1.2.3 as v1.2.3 with other bytes is a conflict, in both directions
    for previous, candidate in ((plain, prefixed_same), (prefixed_same, plain)):
        result = validate_upgrade(previous, candidate, root, now=NOW, allow_same_version=True)
        assert {e.code for e in result.errors} == {"version-conflict"}
        assert "bytes differ" in result.errors[0].message
    rollback = validate_upgrade(newer, plain, root, now=NOW)
    assert {e.code for e in rollback.errors} == {"rollback-rejected"}


def _state(version: str, digest: str) -> ChannelState:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    release = PromotedRelease(version=version, digest=digest, promoted_at=at, actor="a")
    return ChannelState(channel="stable", high_water=release, current=release, history=(release,))


def test_channel_high_water_mark_treats_spellings_as_one_version() -> None:
    state = _state("1.2.3", D1)
    with pytest.raises(VersionConflictError, match="equals the high-water mark"):
        check_candidate(state, version="v1.2.3", digest=D2)
    assert check_candidate(state, version="v1.2.3", digest=D1) is CandidateVerdict.SAME
    assert check_candidate(state, version="v1.2.4", digest=D2) is CandidateVerdict.NEW
    with pytest.raises(VersionConflictError, match="equals the high-water mark"):
        check_candidate(_state("v1.2.3", D1), version="1.2.3", digest=D2)


def test_reference_packages_with_v_versions(tmp_path: Path) -> None:
    gen = ReferenceGenerator(tmp_path)
    root = TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra"),))
    old = gen.package("v1.2.4", out="a")
    new = gen.package("v1.2.5", out="b")
    upgrade = validate_upgrade(old, new, root, now=NOW, profile="reference")
    assert upgrade.valid, upgrade.errors
    assert upgrade.comparison is not None and upgrade.comparison.candidate_version == "v1.2.5"
    republished = gen.package("1.2.5", out="c")
    conflict = validate_upgrade(new, republished, root, now=NOW, profile="reference", allow_same_version=True)
    assert {e.code for e in conflict.errors} == {"version-conflict"}


def test_package_cli_accepts_v_version(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.cli.main import run

    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    sim = ReleaseSimulator(tmp_path)
    dist = sim.dist("v1.2.4")
    (tmp_path / "k.pem").write_bytes(_pem(sim))
    args = ["release", "package", str(dist), "--version", "v1.2.4", "--commit", "a" * 40, "--ref",
            "refs/tags/v1.2.4", "--repository", "acme/rt", "--signing-key", str(tmp_path / "k.pem"), "--no-evidence"]
    with pytest.raises(SystemExit) as done:
        run([*args, "--output", str(tmp_path / "out"), "--json"])
    out = capsys.readouterr()
    assert done.value.code in (0, None), out.err
    assert json.loads(out.out)["package_dir"].endswith("rt-v1.2.4")
    # binaries spelled without the v: bad input naming both spellings
    plain = sim.dist("1.2.4", name="plain-dist")
    with pytest.raises(SystemExit) as refused:
        run(["release", "package", str(plain), *args[3:], "--output", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "spell the version exactly" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as malformed:
        run(["release", "package", str(sim.dist("1.2", name="short")), "--version", "1.2", *args[5:],
             "--output", str(tmp_path / "out3")])
    err = capsys.readouterr().err
    assert malformed.value.code == 2 and "--version" in err


def _pem(sim: ReleaseSimulator) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return sim.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
