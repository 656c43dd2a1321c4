"""Release flows on a real Prefect server: the flow path and the CLI's in-process path give the
same result and the same evidence for the same package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows._common import run_flow
from ringward.operations.release import release_ops
from ringward.operations.trust.keys import save_trust_root
from ringward.settings import evidence_root
from tests.release.simulator import NOW, ReleaseSimulator

pytestmark = pytest.mark.prefect


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "evidence"}


def _record(evidence_id: str) -> Any:
    from ringward.store import open_store

    with open_store() as store:
        return store.get_evidence(int(evidence_id))


@pytest.fixture
def sim(tmp_path: Path) -> ReleaseSimulator:
    return ReleaseSimulator(tmp_path)


@pytest.fixture
def pkg(sim: ReleaseSimulator) -> Path:
    return sim.package("1.2.3")


@pytest.fixture
def trust_file(sim: ReleaseSimulator, tmp_path: Path) -> str:
    path = tmp_path / "trust-root.json"
    save_trust_root(path, sim.trust_root(), overwrite=False)
    return str(path)


def test_flow_and_in_process_give_same_result_and_evidence(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, pkg: Path, trust_file: str
) -> None:
    from flows.verify_package import verify_package_flow

    params = {"package_dir": str(pkg), "trust_root": trust_file, "now": NOW, "record": True}
    in_process = release_ops.run_verify_package(**params)
    via_flow = run_flow(verify_package_flow, **params)
    assert in_process["valid"] and via_flow["valid"]
    assert _strip(in_process) == _strip(via_flow)

    first, second = _record(in_process["evidence"]["evidence_id"]), _record(via_flow["evidence"]["evidence_id"])
    assert first.kind == second.kind == "release-package-verification"
    assert first.payload_sha256 == second.payload_sha256
    assert first.artifacts == second.artifacts
    assert first.flow_run_id is None and second.flow_run_id
    root = evidence_root()
    for artifact in first.artifacts:
        assert (root / first.bundle_dir / artifact.name).read_bytes() == \
               (root / second.bundle_dir / artifact.name).read_bytes()
    assert second.previous_hash == first.record_hash


def test_flow_reports_the_failing_family(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, pkg: Path, trust_file: str
) -> None:
    from flows.verify_package import verify_package_flow

    sim.rewrite_json(pkg, "rt.sbom.spdx.json", lambda d: d["packages"][1].__setitem__("versionInfo", "0.0.1"))
    state = verify_package_flow(package_dir=str(pkg), trust_root=trust_file, now=NOW, return_state=True)
    assert state.is_failed()  # the run list shows the invalid package
    result = state.result(raise_on_failure=False)
    assert not result["valid"]
    failed = [f["family"] for f in result["families"] if f["status"] == "failed"]
    assert failed == ["sbom"]
    assert _record(result["evidence"]["evidence_id"]).subject.status == "failed"


def test_package_airgap_upgrade_and_smoke_flows(
    prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, trust_file: str, tmp_path: Path
) -> None:
    from flows.package_release import package_release_flow
    from flows.smoke_installers import smoke_installers_flow
    from flows.validate_upgrade import validate_upgrade_flow
    from flows.verify_airgap import verify_airgap_flow
    from ringward.core.trust.keys import private_key_pem

    key_file = tmp_path / "release.pem"
    key_file.write_bytes(private_key_pem(sim.key))
    dist = sim.dist("2.0.0", name="flow-dist")
    packaged = run_flow(package_release_flow, dist_dir=str(dist), output=str(tmp_path / "flow-out"), version="2.0.0",
                                    commit="c0ffee" + "0" * 34, ref="refs/tags/v2.0.0", repository="acme/runtime",
                                    signing_key=str(key_file), make_zip=True)
    assert packaged["signed"] and _record(packaged["evidence"]["evidence_id"]).flow_run_id
    airgap = run_flow(verify_airgap_flow, bundle=packaged["zip_path"], trust_root=trust_file, now=NOW)
    assert airgap["valid"], airgap["errors"]
    older = sim.package("1.9.0", out="older")
    upgrade = run_flow(validate_upgrade_flow, previous_dir=str(older), candidate_dir=packaged["package_dir"],
                                    trust_root=trust_file, now=NOW)
    assert upgrade["valid"], upgrade["errors"]
    rollback = run_flow(validate_upgrade_flow, previous_dir=packaged["package_dir"], candidate_dir=str(older),
                                     trust_root=trust_file, now=NOW)
    assert not rollback["valid"] and rollback["errors"][0]["code"] == "rollback-rejected"
    smoke = run_flow(smoke_installers_flow, package_dir=packaged["package_dir"], trust_root=trust_file,
                     execute=False, now=NOW)
    assert smoke["valid"] and len(smoke["verified_targets"]) == 4


def test_prefect_yaml_deploys(prefect_server: None, tmp_path: Path) -> None:
    """`prefect deploy --all` accepts prefect.yaml: entrypoints import, the event trigger is valid."""
    import asyncio
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    root = Path(__file__).resolve().parents[2]

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="ringward-local", type="process"), overwrite=True)

    asyncio.run(create_pool())
    prefect = Path(sys.executable).parent / "prefect"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "RINGWARD_CHECKOUT": str(root)}
    done = subprocess.run([str(prefect), "--no-prompt", "deploy", "--all"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    async def read() -> tuple[list[str], list[str]]:
        async with get_client() as client:
            deployments = await client.read_deployments()
            automations = await client.read_automations()
            return sorted(d.name for d in deployments), [a.name for a in automations]

    names, automations = asyncio.run(read())
    assert {"package-release", "verify-package", "verify-package-on-publish", "verify-airgap-bundle",
            "validate-upgrade", "smoke-installers"} <= set(names)
    assert any("verify-package-on-publish" in name for name in automations)


def test_cli_prefect_flag_runs_the_flow(prefect_server: None, ringward_home: Path, sim: ReleaseSimulator, pkg: Path,
                                        trust_file: str) -> None:
    """`ringward release verify-package --prefect` runs the flow and prints the same result."""
    import json
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "RINGWARD_HOME": str(ringward_home)}
    command = [sys.executable, "-m", "ringward", "release", "verify-package", str(pkg), "--trust-root", trust_file,
               "--at", NOW.isoformat(), "--json"]
    via_flow = subprocess.run([*command, "--prefect"], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    in_process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert via_flow.returncode == in_process.returncode == 0, via_flow.stderr[-2000:]
    first, second = json.loads(via_flow.stdout), json.loads(in_process.stdout)
    assert _strip(first) == _strip(second)
    assert _record(first["evidence"]["evidence_id"]).flow_run_id
    sim.flip_bit(pkg / "bin/rt_1.2.3_linux_amd64")
    failed = subprocess.run([*command, "--prefect"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode == 1 and json.loads(failed.stdout)["errors"][0]["code"] == "digest-mismatch"
