"""The keyless-attestation layer through the verify-package flow (``--prefect``): same result and
same evidence as the in-process path; a failing attestation is a red task and a Failed run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows._common import run_flow
from ringward.operations.release import release_ops
from ringward.operations.trust.keys import save_trust_root
from ringward.settings import evidence_root
from tests.release.sigstore_fixture import GITHUB_ISSUER, IDENTITY, SigstoreInstance, package_binaries, write_bundles
from tests.release.simulator import NOW, ReleaseSimulator

pytestmark = pytest.mark.prefect


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "evidence"}


@pytest.fixture
def params(tmp_path: Path) -> dict[str, Any]:
    sim = ReleaseSimulator(tmp_path)
    pkg = sim.package("1.2.3")
    save_trust_root(tmp_path / "trust-root.json", sim.trust_root(), overwrite=False)
    instance = SigstoreInstance()
    (tmp_path / "trusted_root.json").write_bytes(instance.trusted_root_bytes())
    write_bundles(pkg, instance.attest(package_binaries(pkg)))
    return {"package_dir": str(pkg), "trust_root": str(tmp_path / "trust-root.json"), "now": NOW, "record": True,
            "sigstore_trusted_root": str(tmp_path / "trusted_root.json"), "sigstore_identity": IDENTITY,
            "sigstore_issuer": GITHUB_ISSUER}


def test_flow_and_in_process_agree_with_the_keyless_layer(prefect_server: None, ringward_home: Path,
                                                          params: dict[str, Any]) -> None:
    from flows.verify_package import verify_package_flow

    in_process = release_ops.run_verify_package(**params)
    via_flow = run_flow(verify_package_flow, **params)
    assert in_process["valid"] and via_flow["valid"]
    assert _strip(in_process) == _strip(via_flow)
    assert via_flow["keyless_attestation"]["counts"] == {"verified": 4}
    root = evidence_root()
    first, second = (root / r["evidence"]["bundle_dir"] for r in (in_process, via_flow))
    kept = sorted(p.relative_to(first).as_posix() for p in (first / "keyless").iterdir())
    assert kept == sorted(p.relative_to(second).as_posix() for p in (second / "keyless").iterdir())
    assert len(kept) == 5  # the trusted root and four bundles
    for name in kept:
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_flow_fails_on_a_wrong_identity(prefect_server: None, ringward_home: Path, params: dict[str, Any]) -> None:
    from flows.verify_package import verify_package_flow

    params["sigstore_identity"] = "https://github.com/evil/fork/.github/workflows/release.yml@refs/heads/main"
    state = verify_package_flow(**params, return_state=True)
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    assert not result["valid"]
    assert {e["code"] for e in result["errors"]} == {"attestation-identity-mismatch"}
