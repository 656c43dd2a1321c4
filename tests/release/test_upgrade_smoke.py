"""Upgrade validation (rows 25-26), installer smoke tests and reproducible packaging."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import InputError, VersionConflictError
from ringward.operations.release.package import write_reproducible_zip
from ringward.operations.release.smoke import current_target, smoke_installers
from ringward.operations.release.upgrade import validate_upgrade
from tests.release.simulator import NOW, ReleaseSimulator


def upgrade(sim: ReleaseSimulator, previous: Path, candidate: Path, **kwargs):
    return validate_upgrade(previous, candidate, sim.trust_root(), now=NOW, **kwargs)


def codes(result) -> set[str]:
    return {e.code for e in result.errors}


@pytest.mark.parametrize(
    ("previous", "candidate", "ok"),
    [
        ("1.2.9", "1.2.10", True),
        ("1.2.10", "1.2.9", False),
        ("1.3.0-rc.2", "1.3.0-rc.10", True),
        ("1.3.0-rc.10", "1.3.0-rc.2", False),
        ("1.3.0", "1.3.0-rc.1", False),
        ("1.3.0-rc.1", "1.3.0", True),
        ("2.0.0", "10.0.0", True),
    ],
)
def test_row25_version_ordering(sim: ReleaseSimulator, previous: str, candidate: str, ok: bool) -> None:
    prev = sim.package(previous, out="prev")
    cand = sim.package(candidate, out="cand")
    result = upgrade(sim, prev, cand)
    assert result.valid is ok, result.errors
    if not ok:
        assert codes(result) == {"rollback-rejected"}


def test_row26_same_version_different_bytes_is_a_conflict(sim: ReleaseSimulator) -> None:
    first = sim.package("1.3.0", out="a")
    second = sim.package("1.3.0", out="b", payload=b"different build")
    result = upgrade(sim, first, second, allow_same_version=True)
    assert codes(result) == {"version-conflict"}
    assert "bytes differ" in result.errors[0].message


def test_same_version_identical_bytes_needs_the_flag(sim: ReleaseSimulator) -> None:
    first = sim.package("1.3.0", out="a")
    assert codes(upgrade(sim, first, first)) == {"version-conflict"}
    assert upgrade(sim, first, first, allow_same_version=True).valid


@pytest.mark.parametrize("text", ["V1.3.0", "vv1.3.0", "v01.2.3", "1.3", "01.2.3", "1.3.0rc10", "1.2.3.4", ""])
def test_row26_non_canonical_versions_refused(sim: ReleaseSimulator, text: str) -> None:
    with pytest.raises(VersionConflictError):
        ReleaseVersion.parse(text)
    with pytest.raises((InputError, VersionConflictError)):
        sim.package(text or "x", out=f"bad-{len(text)}")


def test_build_metadata_does_not_order(sim: ReleaseSimulator) -> None:
    assert ReleaseVersion.parse("1.3.0+a") == ReleaseVersion.parse("1.3.0+b")


def test_removed_target_and_changed_install_path(sim: ReleaseSimulator) -> None:
    prev = sim.package("1.0.0", out="prev")
    cand = sim.package("1.1.0", out="cand", targets=("linux_amd64", "darwin_arm64", "windows_amd64.exe"))
    result = upgrade(sim, prev, cand)
    assert not result.valid
    assert any("removed runtime binary target: linux/arm64" in e.message for e in result.errors)
    assert result.comparison is not None
    assert result.comparison.artifact_changes["removed_targets"] == ["linux/arm64"]


def test_removed_control_is_refused(sim: ReleaseSimulator) -> None:
    prev = sim.package("1.0.0", out="prev")
    cand = sim.package("1.1.0", out="cand")
    sim.rewrite_json(cand, "rt.updater-policy.json",
                     lambda d: d.__setitem__("controls",
                                             [c for c in d["controls"] if c != "evidence-retention-required"]))
    result = upgrade(sim, prev, cand)
    assert any("removed release control: evidence-retention-required" in e.message for e in result.errors)


def test_install_path_change_is_reported(sim: ReleaseSimulator) -> None:
    prev = sim.package("1.0.0", out="prev")
    cand = sim.package("1.1.0", out="cand")
    sim.rewrite_json(cand, "rt.installers.json",
                     lambda d: d["targets"][0].__setitem__("install_path", "/opt/rt/bin/rt"))
    result = upgrade(sim, prev, cand)
    assert result.valid, result.errors
    assert result.comparison.install_path_changes[0]["candidate"] == "/opt/rt/bin/rt"


def test_upgrade_requires_both_packages_to_verify(sim: ReleaseSimulator) -> None:
    prev = sim.package("1.0.0", out="prev")
    cand = sim.package("1.1.0", out="cand", key=sim.attacker_key)
    result = upgrade(sim, prev, cand)
    assert not result.valid
    assert result.comparison is None
    assert any(e.message.startswith("candidate package: ") for e in result.errors)


# --- smoke installers ----------------------------------------------------------------------


def _host_target() -> str:
    os_name, arch = current_target().split("/")
    return f"{os_name}_{arch}" + (".exe" if os_name == "windows" else "")


@pytest.fixture
def host_pkg(sim: ReleaseSimulator) -> Path:
    return sim.package("1.2.3", out="host", targets=(_host_target(), "windows_amd64.exe"))


def test_smoke_executes_host_binary(sim: ReleaseSimulator, host_pkg: Path) -> None:
    result = smoke_installers(host_pkg, sim.trust_root(), now=NOW)
    assert result.valid, result.errors
    (execution,) = result.executions
    assert execution.returncode == 0 and "rt version 1.2.3" in execution.stdout
    assert execution.command[0] == "rt"


def test_smoke_skip_execution(sim: ReleaseSimulator, host_pkg: Path) -> None:
    result = smoke_installers(host_pkg, sim.trust_root(), now=NOW, execute=False)
    assert result.valid and not result.executions
    assert len(result.smoke.checked) == 2


def test_smoke_failing_binary(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", out="fail", targets=(_host_target(),), payload=b"exit 3\n")
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, expect_version=False)
    assert not result.valid
    assert "exit code" in result.smoke.errors[0].message or result.executions[0].returncode != 0


def test_smoke_timeout(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", out="slow", targets=(_host_target(),), payload=b"sleep 5\n")
    # the probe prints the version first, then hangs
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, timeout_seconds=0.5)
    assert not result.valid
    assert result.executions[0].timed_out
    assert "timed out" in result.smoke.errors[0].message


def test_smoke_missing_version_in_output(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", out="quiet", targets=(_host_target(),))
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, probe_args=("--help",))
    assert result.valid  # the sample script prints its version whatever the arguments
    result = smoke_installers(pkg, sim.trust_root(), now=NOW, target="linux/does-not-exist")
    assert result.valid and any("no installer metadata target matches" in w for w in result.smoke.warnings)


def test_smoke_refuses_unverified_package(sim: ReleaseSimulator, host_pkg: Path) -> None:
    sim.flip_bit(host_pkg / f"bin/rt_1.2.3_{_host_target()}")
    result = smoke_installers(host_pkg, sim.trust_root(), now=NOW)
    assert not result.valid and not result.executions
    assert "not smoke-tested" in result.smoke.errors[0].message


# --- reproducibility ---------------------------------------------------------------------


def test_zip_is_byte_for_byte_reproducible(sim: ReleaseSimulator) -> None:
    first = sim.package("1.2.3", out="one", make_zip=True)
    second = sim.package("1.2.3", out="two", make_zip=True)
    zip_one = (first.parent / "rt-1.2.3.zip").read_bytes()
    zip_two = (second.parent / "rt-1.2.3.zip").read_bytes()
    assert zip_one == zip_two
    again = sim.root / "again.zip"
    write_reproducible_zip(first, again, top="rt-1.2.3")
    assert again.read_bytes() == zip_one
    import zipfile

    names = zipfile.ZipFile(again).namelist()
    assert names == sorted(names) and all(n.startswith("rt-1.2.3/") for n in names)


def test_package_refuses_to_overwrite(sim: ReleaseSimulator) -> None:
    sim.package("1.2.3", out="same")
    from ringward.core.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        sim.package("1.2.3", out="same")
    assert not [p for p in (sim.root / "same").iterdir() if p.name.startswith(".")]  # no partial leftovers


def test_signing_key_from_environment(sim: ReleaseSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.core.trust.keys import private_key_pem
    from ringward.operations.trust.keys import load_signing_key

    pem = private_key_pem(sim.key).decode().replace("\n", "\\n")
    monkeypatch.setenv("RINGWARD_SIGNING_KEY", pem)
    key = load_signing_key(None)
    assert key is not None and key.sign(b"x") == sim.key.sign(b"x")


def test_package_documents_carry_reference_schema_strings(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3")
    documents = [json.loads((pkg / name).read_bytes()) for name in os.listdir(pkg)
                 if name.endswith(".json") and not name.endswith(".sig.json")]
    schemas = {d.get("schema_version") for d in documents if isinstance(d, dict)}
    assert schemas >= {"cavra.go-runtime.installers.v1", "cavra.go-runtime.endpoint-deployment.v1",
                       "cavra.go-runtime.channels.v1", "cavra.go-runtime.updater-policy.v1",
                       "cavra.offline-trust-bootstrap.v1", "cavra.go-release.evidence.v1"}
    sig = json.loads((pkg / "checksums.txt.sig.json").read_bytes())
    assert sig["schema_version"] == "cavra.go-release.signature.v1"
    bootstrap = json.loads((pkg / "offline-trust-root-bootstrap.json").read_bytes())
    assert bootstrap["trusted_keys"][0]["key_id"] in {k.key_id for k in sim.trust_root().keys}
    assert bootstrap["thresholds"] == {"release": 1}
