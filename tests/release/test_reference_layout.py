"""The other direction (cavra-spec §4.1/§4.2): `release package --layout reference` writes what a
fleet still running the reference verifier accepts, and Ringward still verifies it in full."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ringward.core.errors import InputError
from ringward.core.release.package_builder import ReleaseInfo
from ringward.operations.release.airgap import verify_airgap_bundle
from ringward.operations.release.package import package_release
from tests.release import reference_verifier
from tests.release.reference_packages import GO_TARGETS, ReferenceGenerator, zip_package
from tests.release.simulator import NOW, ReleaseSimulator

SCRIPT = b"#!/usr/bin/env bash\nset -euo pipefail\nexec ./cavra-runtime < \"$CAVRA_RELEASE_GOVERNANCE_REQUEST\"\n"
ACTION = b"name: release-governance\nruns: {using: composite, steps: []}\n"


def dist(root: Path, version: str, *, runtime: str = "cavra-runtime", bin_dir: bool = False,
         targets=GO_TARGETS) -> Path:
    base = root / f"dist-{runtime}-{version}-{bin_dir}"
    where = base / "bin" if bin_dir else base
    where.mkdir(parents=True)
    for target in targets:
        os_name, arch = target.split("/")
        name = f"{runtime}_{version}_{os_name}_{arch}" + (".exe" if os_name == "windows" else "")
        (where / name).write_text(f"#!/bin/sh\necho '{runtime} version {version}'\n# {target}\n")
    (base / "go-modules.json").write_text('{"Path": "example.com/rt", "Main": true}\n')
    return base


def build(sim: ReleaseSimulator, version: str = "v1.3.0", *, layout: str = "reference", wrappers: bool = True,
          runtime: str = "cavra-runtime", bin_dir: bool = True, out: str = "out", **info: Any):
    info = ReleaseInfo(runtime=runtime, version=version, commit="c" * 40, ref=f"refs/tags/{version}",
                       repository="acme/cavra", created_at=NOW, layout=layout, **info)
    return package_release(dist(sim.root, version, runtime=runtime, bin_dir=bin_dir), sim.root / out, info, sim.key,
                           make_zip=True, ci_wrappers=(SCRIPT, ACTION) if wrappers else None)


def test_reference_layout_passes_the_reference_verifier_and_ringward(sim: ReleaseSimulator) -> None:
    result = build(sim)
    assert result.package_dir.name == "go-runtime-v1.3.0"
    assert result.zip_path is not None and result.zip_path.name == "cavra-go-runtime-v1.3.0.zip"
    errors, _ = reference_verifier.verify_go_package(result.package_dir)
    assert errors == []
    assert reference_verifier.verify_airgap_bundle(result.zip_path) == []
    ringward = sim.verify(result.package_dir)
    assert ringward.valid, ringward.errors  # the default profile, 9 CI-runner controls
    assert next(f for f in ringward.families if f.family == "ci-runner-bundles").status == "passed"
    assert verify_airgap_bundle(result.zip_path, sim.trust_root(), now=NOW).valid
    evidence = json.loads((result.package_dir / "release-evidence.json").read_bytes())
    assert "signed-ci-runner-bundles" in evidence["controls"]
    bootstrap = json.loads((result.package_dir / "offline-trust-root-bootstrap.json").read_bytes())
    assert bootstrap["release_package"] == "cavra-go-runtime-v1.3.0.zip"
    assert "cavra release verify-go-package go-runtime-v1.3.0" in bootstrap["verification_commands"]
    assert (result.package_dir / "ci-runners" / "cavra-release-governance-runner.sh").stat().st_mode & 0o777 == 0o755
    with zipfile.ZipFile(result.zip_path) as archive:
        assert {n.split("/", 1)[0] for n in archive.namelist()} == {"go-runtime-v1.3.0"}


def test_default_layout_is_what_the_reference_verifier_refuses(sim: ReleaseSimulator) -> None:
    plain = build(sim, layout="ringward", wrappers=False, out="plain")
    assert plain.package_dir.name == "cavra-runtime-v1.3.0"
    errors, _ = reference_verifier.verify_go_package(plain.package_dir)
    assert errors == ["missing cavra-runtime.ci-runner-bundles.json"]
    assert plain.zip_path is not None
    assert reference_verifier.verify_airgap_bundle(plain.zip_path) == [
        "air-gapped bundle must contain exactly one go-runtime-* package directory"]


def test_the_test_verifier_matches_the_reference_corpus(tmp_path: Path) -> None:
    """Sanity of the re-stated verifier: the verifier generation accepts its own packager's output
    only with the 9 controls (cavra-spec §1 version skew)."""
    gen = ReferenceGenerator(tmp_path)
    newer = gen.package("1.2.5", ci_controls="verifier", out="a")
    assert reference_verifier.verify_go_package(newer)[0] == []
    assert reference_verifier.verify_airgap_bundle(zip_package(newer)) == []
    older = gen.package("1.2.5", ci_controls="stored", out="b")
    assert reference_verifier.verify_go_package(older)[0] == [
        "CI runner bundle metadata is missing control: runner-authentication-claims-signed"]


@pytest.mark.parametrize(("change", "message"), [
    ({"wrappers": False}, "--ci-runner-script FILE and --github-action FILE"),
    ({"runtime": "rt"}, "reads cavra-runtime.* documents only"),
    ({"layout": "cavra"}, "--layout: expected one of ringward, reference"),
])
def test_reference_layout_bad_input(sim: ReleaseSimulator, change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message.replace(".", r"\.").replace("*", r"\*")):
        build(sim, **change)
    assert not (sim.root / "out").exists() or not any((sim.root / "out").iterdir())


def test_reference_layout_needs_a_linux_amd64_runner_binary(sim: ReleaseSimulator) -> None:
    info = ReleaseInfo(runtime="cavra-runtime", version="1.3.0", commit="c" * 40, ref="r", repository="acme/cavra",
                       created_at=NOW, layout="reference")
    source = dist(sim.root, "1.3.0", targets=("darwin/arm64",))
    with pytest.raises(InputError, match="linux/amd64"):
        package_release(source, sim.root / "o", info, sim.key, ci_wrappers=(SCRIPT, ACTION))


def test_dist_dir_mixing_layouts_is_refused(sim: ReleaseSimulator) -> None:
    source = dist(sim.root, "1.3.0", bin_dir=True)
    (source / "cavra-runtime_1.3.0_linux_arm64").write_text("x")
    from ringward.operations.release.package import scan_dist

    with pytest.raises(InputError, match="either in DIST_DIR or in DIST_DIR/bin/"):
        scan_dist(source, "1.3.0", None)


def test_cli_layout_reference(sim: ReleaseSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.cli.main import run

    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    key = tmp_path / "k.pem"
    key.write_bytes(sim.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    (tmp_path / "runner.sh").write_bytes(SCRIPT)
    (tmp_path / "action.yml").write_bytes(ACTION)
    source = dist(tmp_path, "v1.3.0", bin_dir=True)
    common = ["release", "package", str(source), "--version", "v1.3.0", "--commit", "c" * 40, "--ref",
              "refs/tags/v1.3.0", "--repository", "acme/cavra", "--signing-key", str(key), "--no-evidence"]
    with pytest.raises(SystemExit) as done:
        run([*common, "--output", str(tmp_path / "out"), "--layout", "reference", "--ci-runner-script",
             str(tmp_path / "runner.sh"), "--github-action", str(tmp_path / "action.yml"), "--zip", "--json"])
    out = capsys.readouterr()
    assert done.value.code in (0, None), out.err
    result = json.loads(out.out)
    assert result["package_dir"].endswith("go-runtime-v1.3.0")
    assert result["zip_path"].endswith("cavra-go-runtime-v1.3.0.zip")
    assert reference_verifier.verify_go_package(Path(result["package_dir"]))[0] == []
    with pytest.raises(SystemExit) as refused:
        run([*common, "--output", str(tmp_path / "out2"), "--layout", "reference"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and len(err.strip().splitlines()) == 1 and "--ci-runner-script" in err


def test_output_that_is_a_file_is_bad_input(sim: ReleaseSimulator) -> None:
    from ringward.core.errors import OutputExistsError

    (sim.root / "out-file").write_text("x")
    with pytest.raises(OutputExistsError, match="exists and is not a directory"):
        build(sim, out="out-file")
