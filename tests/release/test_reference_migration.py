"""The migration step: validate-upgrade from a reference package to a Ringward-built successor
passes when the differences are only the known format ones, reported as migration notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringward.core.release.package_builder import ReleaseInfo
from ringward.core.trust.root import TrustRoot
from ringward.operations.release.package import package_release
from ringward.operations.release.upgrade import validate_upgrade
from tests.release.reference_packages import GO_TARGETS, REPOSITORY, ReferenceGenerator
from tests.release.simulator import NOW, ReleaseSimulator, trusted


def ringward_successor(sim: ReleaseSimulator, version: str, targets=GO_TARGETS, out: str = "rw") -> Path:
    dist = sim.root / f"dist-{out}"
    dist.mkdir()
    for target in targets:
        os_name, arch = target.split("/")
        path = dist / (f"cavra-runtime_{version}_{os_name}_{arch}" + (".exe" if os_name == "windows" else ""))
        path.write_text(f"#!/bin/sh\necho 'cavra-runtime version {version}'\n# {target}\n")
    info = ReleaseInfo(runtime="cavra-runtime", version=version, commit="b" * 40, ref=f"refs/tags/{version}",
                       repository=REPOSITORY, created_at=NOW)
    return package_release(dist, sim.root / out, info, sim.key).package_dir


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ReferenceGenerator, ReleaseSimulator, TrustRoot]:
    gen, sim = ReferenceGenerator(tmp_path / "ref"), ReleaseSimulator(tmp_path / "rw")
    (tmp_path / "rw").mkdir()
    root = TrustRoot(updated_at=NOW, keys=(trusted(gen.key, "cavra-release"), trusted(sim.key, "ringward-release")))
    return gen, sim, root


def test_reference_to_ringward_is_a_migration(setup) -> None:
    gen, sim, root = setup
    previous = gen.package("v1.2.5")
    candidate = ringward_successor(sim, "v1.2.6")
    result = validate_upgrade(previous, candidate, root, now=NOW, profile="auto")
    assert result.valid, [e.to_dict() for e in result.errors]
    comparison = result.comparison
    assert comparison is not None and comparison.migration
    notes = "\n".join(comparison.migration_notes)
    for known in ("ci-runner-bundles", "ci-runner-wrapper", "go-modules", "reproducible-go-build-flags",
                  "signed-ci-runner-bundles"):
        assert known in notes
    assert comparison.artifact_changes["removed_kinds"] == ["ci-runner-bundles", "ci-runner-wrapper", "go-modules"]
    assert result.to_dict()["profiles"] == {"previous": "reference", "candidate": "ringward"}
    assert any("windows/amd64" in w for w in comparison.warnings)  # install path moves are for the change record


def test_migration_still_refuses_real_regressions(setup) -> None:
    gen, sim, root = setup
    previous = gen.package("1.2.5")
    fewer = ringward_successor(sim, "1.2.6", targets=GO_TARGETS[:5], out="fewer")
    result = validate_upgrade(previous, fewer, root, now=NOW, profile="auto")
    assert [e.message for e in result.errors] == ["candidate removed runtime binary target: windows/arm64"]
    older = ringward_successor(sim, "1.2.4", out="older")
    assert {e.code for e in validate_upgrade(previous, older, root, now=NOW, profile="auto").errors} == {
        "rollback-rejected"}
    republished = ringward_successor(sim, "v1.2.5", out="same")
    conflict = validate_upgrade(previous, republished, root, now=NOW, profile="auto", allow_same_version=True)
    assert {e.code for e in conflict.errors} == {"version-conflict"}


def test_only_reference_to_ringward_is_a_migration(setup) -> None:
    gen, sim, root = setup
    first, second = gen.package("1.2.5", out="a"), gen.package("1.2.6", out="b", ci_bundles=False)
    result = validate_upgrade(first, second, root, now=NOW, profile="reference")
    assert not result.valid  # the reference verifier requires CI-runner bundles in the candidate
    ringward_old = ringward_successor(sim, "1.2.7", out="rw-old")
    backwards = validate_upgrade(ringward_old, gen.package("1.2.8", out="c"), root, now=NOW, profile="auto")
    assert backwards.comparison is not None and not backwards.comparison.migration
    assert any("removed release control" in e.message for e in backwards.errors)


def test_explicit_ringward_profile_refuses_the_reference_side_with_the_hint(setup) -> None:
    gen, sim, root = setup
    result = validate_upgrade(gen.package("1.2.5"), ringward_successor(sim, "1.2.6"), root, now=NOW)
    assert not result.valid and result.previous.hint and not result.candidate.hint
