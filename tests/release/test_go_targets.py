"""Every GOOS/GOARCH pair Go supports is packaged, signed and verified; endpoint deployment
templates exist for the six managed surfaces only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringward.core.errors import InputError
from ringward.core.release.package_format import (
    GO_DIST_LIST,
    MANAGED_TARGETS,
    binary_name_problem,
    parse_binary_name,
)
from tests.release.simulator import ReleaseSimulator, codes, family

PLAIN = ("freebsd_amd64", "openbsd_arm64", "linux_386", "linux_arm", "linux_riscv64", "linux_ppc64le", "linux_s390x",
         "js_wasm", "wasip1_wasm", "windows_386.exe")


@pytest.mark.parametrize("target", GO_DIST_LIST)
def test_every_go_dist_list_pair_is_a_binary_name(target: str) -> None:
    os_name, arch = target.split("/")
    name = f"rt_v1.2.3_{os_name}_{arch}" + (".exe" if os_name == "windows" else "")
    parsed = parse_binary_name(name)
    assert parsed is not None and parsed.target == target and parsed.version == "v1.2.3"
    assert binary_name_problem(name) is None


@pytest.mark.parametrize(("name", "reason"), [
    ("rt_1.2.3_linux_sparc", "linux/sparc is not a GOOS/GOARCH pair Go supports"),
    ("rt_1.2.3_darwin_386", "darwin/386 is not a GOOS/GOARCH pair Go supports"),
    ("rt_1.2.3_freebsd_amd64.exe", ".exe is required exactly for windows"),
    ("rt_1.2.3_windows_arm64", ".exe is required exactly for windows"),
    ("rt-1.2.3-linux-amd64", "is not a <runtime>_<version>_<os>_<arch>[.exe] binary name"),
])
def test_wrong_names_say_why(name: str, reason: str) -> None:
    assert parse_binary_name(name) is None
    assert reason in (binary_name_problem(name) or "")


def test_dist_list_covers_the_managed_six() -> None:
    assert set(MANAGED_TARGETS) <= set(GO_DIST_LIST) and len(set(GO_DIST_LIST)) == len(GO_DIST_LIST) == 49


def test_plain_targets_are_packaged_signed_and_verified(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", targets=("linux_amd64", "darwin_arm64", "windows_amd64.exe", *PLAIN))
    result = sim.verify(pkg)
    assert result.valid, result.errors
    installers = json.loads((pkg / "rt.installers.json").read_bytes())
    assert {t["target"] for t in installers["targets"]} >= {"freebsd/amd64", "js/wasm", "windows/386"}
    assert (pkg / "bin" / "rt_1.2.3_freebsd_amd64.sig.json").is_file()
    endpoint = json.loads((pkg / "rt.endpoint-deployment.json").read_bytes())
    deployed = {t["installer_target"] for t in endpoint["deployment_targets"]}
    assert deployed == {"linux/amd64", "darwin/arm64", "windows/amd64"}  # templates for managed surfaces only
    assert "freebsd/amd64" in family(result, "installers").checked


def test_plain_only_package_falls_back_to_generic_endpoints(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", targets=("freebsd_amd64", "linux_riscv64"))
    assert sim.verify(pkg).valid
    endpoint = json.loads((pkg / "rt.endpoint-deployment.json").read_bytes())
    assert [t["id"] for t in endpoint["deployment_targets"]] == ["managed-endpoint-freebsd-amd64",
                                                                 "managed-endpoint-linux-riscv64"]


def test_managed_surface_without_template_keeps_a_generic_target(sim: ReleaseSimulator) -> None:
    pkg = sim.package("1.2.3", targets=("linux_arm64", "freebsd_arm64"))
    endpoint = json.loads((pkg / "rt.endpoint-deployment.json").read_bytes())
    assert [t["id"] for t in endpoint["deployment_targets"]] == ["managed-endpoint-linux-arm64"]


def test_unsupported_pair_in_dist_is_bad_input_naming_the_pair(sim: ReleaseSimulator) -> None:
    dist = sim.dist("1.2.3", targets=("linux_amd64", "linux_sparc"))
    from ringward.operations.release.package import scan_dist

    with pytest.raises(InputError, match=r"linux/sparc is not a GOOS/GOARCH pair Go supports"):
        scan_dist(dist, "1.2.3", None)


def test_unsupported_pair_smuggled_into_a_package_names_the_reason(sim: ReleaseSimulator, pkg: Path) -> None:
    sim.add_file(pkg, "bin/rt_1.2.3_linux_sparc", b"#!/bin/sh\n", "go-binary")
    result = sim.verify(pkg)
    assert "metadata-mismatch" in codes(result)
    message = family(result, "release-evidence").errors[0].message
    assert "linux/sparc is not a GOOS/GOARCH pair Go supports" in message
