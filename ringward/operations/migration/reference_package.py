"""Writes packages in the reference system's (CAVRA) format, as its own packager does.

For the demo and for users who want to rehearse a migration without a reference installation at
hand: a package written here is what the reference's packager (cavra-spec §2.0-§2.11, §3.1)
produces, so ``ringward release verify-package --profile reference`` (or ``auto``) can be shown
verifying one under a Ringward trust root that pins its signing key. It mirrors the independent
test generator in ``tests/release/reference_packages.py`` (which stays separate on purpose: the
tests must not check Ringward against itself). Quirks kept, as a migrating user meets them:

- JSON is ``json.dumps(indent=2, sort_keys=True)`` + ``\\n``; timestamps are
  ``datetime.isoformat()`` (``+00:00`` offset, microseconds), also the SPDX
  ``creationInfo.created``;
- ``offline-trust-root-bootstrap.json`` has no ``generated_at`` and no key material;
- ``release-evidence.md`` is neither checksummed nor signed; ``release-evidence.json`` is signed
  but not checksummed;
- the CI-runner bundle document carries the stored packager's 5 controls (or the verifier's 9);
- versions may carry a leading ``v`` (Go tags), kept verbatim in every name and document;
- signatures are ``cavra.go-release.signature.v1`` whose ``key_id`` is an operator label.

Package directory ``go-runtime-<v>/``; zip ``cavra-go-runtime-<v>.zip`` whose single top folder is
``go-runtime-<v>/``. ``mutate={file name: fn(document)}`` changes a document before it is
checksummed and signed (a release whose producer wrote something unusual, still consistently signed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RUNTIME = "cavra-runtime"
REPOSITORY = "Huzefaaa2/cavra"
COMMIT = "9f1c2d3e4b5a69788796a5b4c3d2e1f00112233a"
#: the six GOOS/GOARCH pairs of the reference workflow (§2.8 internalParameters.go_targets)
GO_TARGETS = ("linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64")
#: ``datetime.now(timezone.utc).isoformat()`` as the reference writes it
CREATED = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
BUILDER = "https://github.com/actions/runner/github-hosted"

RUNNER_SCRIPT = "ci-runners/cavra-release-governance-runner.sh"
GITHUB_ACTION = "ci-runners/github-action/action.yml"
STORED_CI_CONTROLS = (
    "verified-signed-runtime-before-runner-use",
    "typed-release-governance-request-required",
    "daemon-evidence-artifacts-published",
    "blocking-decision-fails-closed-by-default",
    "runner-wrapper-included-in-signed-release-package",
)
VERIFIER_CI_CONTROLS = (
    "verified-signed-runtime-before-runner-use",
    "runner-authentication-claims-signed",
    "runner-authentication-oidc-verified",
    "runner-oidc-provider-token-acquisition",
    "daemon-evidence-stream-hmac-signed",
    "daemon-evidence-stream-verifier-cli",
    "evidence-verification-artifact-published",
    "runner-evidence-key-custody-documented",
    "blocking-decision-fails-closed-by-default",
)
EVIDENCE_CONTROLS = (
    "reproducible-go-build-flags", "sha256-checksums", "spdx-sbom", "slsa-provenance", "ed25519-detached-signatures",
    "signed-installer-metadata", "managed-endpoint-deployment-manifests", "signed-ci-runner-bundles",
    "release-channel-manifests", "managed-workstation-updater-policy", "release-evidence-manifest",
)
GO_MODULES: list[dict[str, Any]] = [
    {"Path": "github.com/Huzefaaa2/cavra/go/cavra-runtime", "Main": True, "GoVersion": "1.23"},
    {"Path": "golang.org/x/sys", "Version": "v0.38.0"},
]

INSTALLERS = f"{RUNTIME}.installers.json"
ENDPOINT = f"{RUNTIME}.endpoint-deployment.json"
CI_BUNDLES = f"{RUNTIME}.ci-runner-bundles.json"
CHANNELS = f"{RUNTIME}.channels.json"
UPDATER = f"{RUNTIME}.updater-policy.json"
SBOM = f"{RUNTIME}.sbom.spdx.json"
PROVENANCE = f"{RUNTIME}.provenance.intoto.json"
BOOTSTRAP = "offline-trust-root-bootstrap.json"
EVIDENCE = "release-evidence.json"
EVIDENCE_MD = "release-evidence.md"
KEYLESS = "github-keyless-attestation.json"

Mutations = Mapping[str, Callable[[dict[str, Any]], None]]


def write_json(path: Path, payload: Any) -> bytes:
    """The reference's writer: indent 2, sorted keys, ASCII escapes, trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8")
    path.write_bytes(data)
    return data


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_file(package: Path, subject: str, key: Ed25519PrivateKey, *, key_id: str, signer: str) -> dict[str, Any]:
    """§3.1: ``<subject>.sig.json`` over the file's raw bytes; returns the evidence entry."""
    path = package / subject
    pem = public_pem(key)
    payload = {
        "schema_version": "cavra.go-release.signature.v1",
        "subject": subject,
        "subject_sha256": sha256_file(path),
        "algorithm": "Ed25519",
        "key_id": key_id,
        "signer": signer,
        "public_key_sha256": hashlib.sha256(pem).hexdigest(),
        "public_key_pem": pem.decode("utf-8"),
        "value": base64.b64encode(key.sign(path.read_bytes())).decode("ascii"),
    }
    write_json(package / f"{subject}.sig.json", payload)
    return {"subject": subject, "signature": f"{subject}.sig.json", "algorithm": "Ed25519", "key_id": key_id,
            "public_key_sha256": payload["public_key_sha256"]}


def _header(version: str, commit: str, repository: str, generated_at: str | None) -> dict[str, Any]:
    header = {"product": "CAVRA", "component": "go-enforcement-plane", "version": version, "commit": commit,
              "repository": repository}
    if generated_at is not None:
        header["generated_at"] = generated_at
    return header


_TEMPLATES = (
    ("github-actions-linux-amd64-runner", "ci-runner", "GitHub Actions self-hosted runner", "linux/amd64",
     "runner-image-or-bootstrap-script", "GitHub Actions runner image pipeline"),
    ("gitlab-linux-amd64-runner", "ci-runner", "GitLab Runner", "linux/amd64", "runner-image-or-bootstrap-script",
     "GitLab runner image pipeline"),
    ("azure-linux-amd64-runner", "ci-runner", "Azure Pipelines self-hosted agent", "linux/amd64",
     "agent-image-or-bootstrap-script", "Azure Pipelines agent image pipeline"),
    ("linux-systemd-amd64-workstation", "developer-workstation", "Linux developer workstation", "linux/amd64",
     "fleet-management-script", "Linux endpoint management"),
    ("macos-jamf-arm64-workstation", "developer-workstation", "macOS developer workstation", "darwin/arm64",
     "jamf-policy", "Jamf Pro"),
    ("macos-jamf-amd64-workstation", "developer-workstation", "macOS developer workstation", "darwin/amd64",
     "jamf-policy", "Jamf Pro"),
    ("windows-intune-amd64-workstation", "developer-workstation", "Windows developer workstation", "windows/amd64",
     "intune-win32-app", "Microsoft Intune"),
)


@dataclass
class ReferenceGenerator:
    """Writes reference packages under ``root``; ``key`` is the release key a trust root pins."""

    root: Path
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    signer: str = "github-actions"

    def binary_name(self, version: str, target: str) -> str:
        os_name, arch = target.split("/")
        return f"{RUNTIME}_{version}_{os_name}_{arch}" + (".exe" if os_name == "windows" else "")

    def package(
        self,
        version: str = "v1.2.5",
        *,
        out: str = "dist",
        targets: Sequence[str] = GO_TARGETS,
        ci_controls: str = "stored",
        signed: bool = True,
        dry_run: bool = False,
        key: Ed25519PrivateKey | None = None,
        key_id: str | None = None,
        commit: str = COMMIT,
        ref: str | None = None,
        event: str = "release",
        repository: str = REPOSITORY,
        created: datetime = CREATED,
        builder_id: str = BUILDER,
        payload: bytes = b"",
        keyless_attestation: bool = False,
        ci_bundles: bool = True,
        mutate: Mutations | None = None,
    ) -> Path:
        """``<root>/<out>/go-runtime-<version>/`` in the reference packaging order (§2.0)."""
        mutate = dict(mutate or {})
        package = self.root / out / f"go-runtime-{version}"
        package.mkdir(parents=True)
        now = created.isoformat()
        ref = ref or f"refs/tags/{version if version.startswith('v') else 'v' + version}"
        key_id = key_id or f"cavra-go-release-{version}"

        def emit(name: str, document: dict[str, Any]) -> dict[str, Any]:
            if name in mutate:
                mutate[name](document)
            write_json(package / name, document)
            return document

        # the CI build: bin/ and go-modules.json (concatenated `go list -m -json all` objects)
        (package / "bin").mkdir()
        for target in targets:
            # the runtime answers the reference's smoke protocol (cavra-spec §4.4): a policy request on
            # stdin, a JSON decision on stdout; `--version` prints its version
            body = (f"#!/bin/sh\n# {target}\n".encode() + payload
                    + f"\nif [ \"${{1:-}}\" = --version ]; then echo '{RUNTIME} version {version}'; exit 0; fi\n"
                      "cat >/dev/null\n"
                      "echo '{\"session_id\":\"installer-smoke\",\"decision\":\"allow\"}'\n"
                      "exit 0\n".encode()
                    + b"# " + target.encode() * 32 + b"\n")
            path = package / "bin" / self.binary_name(version, target)
            path.write_bytes(body)
            path.chmod(0o755)
        (package / "go-modules.json").write_text("".join(json.dumps(m, indent="\t") + "\n" for m in GO_MODULES))

        # (2) SBOM -> installers -> endpoint deployment -> CI runner bundles -> channels + policy -> bootstrap
        sbom_packages: list[dict[str, Any]] = [{
            "SPDXID": "SPDXRef-Package-CAVRA-Go-Runtime", "name": RUNTIME, "versionInfo": version,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "BUSL-1.1", "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "OTHER", "referenceType": "commit", "referenceLocator": commit}],
        }]
        relationships = []
        for index, module in enumerate(GO_MODULES):
            spdx_id = f"SPDXRef-GoModule-{index}"
            sbom_packages.append({
                "SPDXID": spdx_id, "name": module["Path"], "versionInfo": str(module.get("Version", "main")),
                "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
            })
            relationships.append({"spdxElementId": "SPDXRef-Package-CAVRA-Go-Runtime",
                                  "relationshipType": "DEPENDS_ON", "relatedSpdxElement": spdx_id})
        emit(SBOM, {
            "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
            "name": f"CAVRA Go Runtime {version}",
            "documentNamespace": f"https://github.com/Huzefaaa2/cavra/releases/{version}/go-runtime/{commit}",
            "creationInfo": {"created": now, "creators": ["Tool: CAVRA Go release packaging"]},
            "packages": sbom_packages, "relationships": relationships,
        })

        installer_targets: dict[str, dict[str, Any]] = {}
        for target in targets:
            os_name, arch = target.split("/")
            name = self.binary_name(version, target)
            install_path = "%ProgramFiles%\\CAVRA\\cavra-runtime.exe" if os_name == "windows" \
                else "/usr/local/bin/cavra-runtime"
            installer_targets[target] = {
                "target": target, "os": os_name, "arch": arch, "binary": f"bin/{name}",
                "binary_sha256": sha256_file(package / "bin" / name),
                "size_bytes": (package / "bin" / name).stat().st_size, "install_method": "manual-binary",
                "install_path": install_path,
                "install_command": f'copy /Y "{name}" "{install_path}"' if os_name == "windows"
                else f"install -m 0755 {name} {install_path}",
                "verification_command": "sha256sum -c checksums.txt",
            }
        emit(INSTALLERS, {
            **_header(version, commit, repository, now), "schema_version": "cavra.go-runtime.installers.v1",
            "targets": [installer_targets[t] for t in sorted(installer_targets,
                                                             key=lambda t: self.binary_name(version, t))],
            "operator_notes": [
                "Verify this installer metadata through checksums, SLSA provenance, and detached signatures.",
                "Install only the binary matching the target operating system and architecture.",
                "Preserve this metadata with the change record.",
            ],
        })

        verify_cmds = [f"cavra release verify-go-package go-runtime-{version}",
                       f"cavra release smoke-installers go-runtime-{version} --skip-execution",
                       "sha256sum -c checksums.txt"]
        evidence_required = [EVIDENCE, PROVENANCE, INSTALLERS, ENDPOINT, "checksums.txt"]
        deployments: list[dict[str, Any]] = []

        def deployment(tid: str, surface: str, platform: str, installer: dict[str, Any], channel: str,
                       tool: str) -> dict[str, Any]:
            return {
                "id": tid, "surface": surface, "platform": platform, "os": installer["os"],
                "arch": installer["arch"], "installer_target": installer["target"], "binary": installer["binary"],
                "binary_sha256": installer["binary_sha256"], "install_path": installer["install_path"],
                "install_command": installer["install_command"], "deployment_channel": channel,
                "management_tool": tool, "rollout_gate": "signed-package-verified-and-change-approved",
                "verification_commands": list(verify_cmds),
                "rollback_steps": ["Pause the endpoint management rollout.",
                                   "Restore the previous signed CAVRA runtime package approved by change control.",
                                   "Run cavra release verify-go-package against the restored package."],
                "evidence_required": list(evidence_required),
            }

        for tid, surface, platform, target, channel, tool in _TEMPLATES:
            if target in installer_targets:
                deployments.append(deployment(tid, surface, platform, installer_targets[target], channel, tool))
        if not deployments:  # the generic fallback, only when no template matched
            for target, installer in installer_targets.items():
                deployments.append(deployment(f"managed-endpoint-{target.replace('/', '-')}", "managed-endpoint",
                                              "Generic managed endpoint channel", installer,
                                              "approved-endpoint-management-tool",
                                              "Enterprise endpoint management platform"))
        emit(ENDPOINT, {
            **_header(version, commit, repository, now),
            "schema_version": "cavra.go-runtime.endpoint-deployment.v1", "source_metadata": INSTALLERS,
            "controls": ["verify-go-package-before-install", "smoke-installers-before-rollout",
                         "signed-endpoint-deployment-manifest", "managed-endpoint-change-record",
                         "least-privilege-runner-install", "staged-workstation-rollout"],
            "deployment_targets": deployments,
            "operator_steps": ["Verify.", "Smoke.", "Publish per target.", "Stage rings.", "Preserve evidence."],
        })

        if ci_bundles:
            (package / "ci-runners" / "github-action").mkdir(parents=True)
            (package / RUNNER_SCRIPT).write_bytes(
                b"#!/usr/bin/env bash\nset -euo pipefail\n: \"${CAVRA_RELEASE_GOVERNANCE_REQUEST:?}\"\n"
                b"\"${CAVRA_RUNTIME_PATH:-./cavra-runtime}\" < \"$CAVRA_RELEASE_GOVERNANCE_REQUEST\"\n")
            (package / RUNNER_SCRIPT).chmod(0o755)
            (package / GITHUB_ACTION).write_bytes(
                b"name: cavra-release-governance-go-runtime\nruns:\n  using: composite\n  steps:\n"
                b"    - run: bash ci-runners/cavra-release-governance-runner.sh\n      shell: bash\n")
            linux = installer_targets.get("linux/amd64", {})

            def bundle(platform: str, tid: str, wrapper: str, invocation: str) -> dict[str, Any]:
                return {
                    "platform": platform, "deployment_target": tid, "runner_os": "linux", "runner_arch": "amd64",
                    "runtime_binary": linux.get("binary", "bin/cavra-runtime_<version>_linux_amd64"),
                    "runtime_binary_sha256": linux.get("binary_sha256", ""), "runtime_path": "./cavra-runtime",
                    "reusable_wrapper": wrapper, "invocation": invocation,
                    "default_request": "examples/go-runtime/typed-release-governance/approved-promotion.json",
                    "evidence_dir": ".cavra/go-daemon",
                    "verification_commands": ["cavra release verify-go-package .", "sha256sum -c checksums.txt",
                                              "gh attestation verify cavra-go-runtime-<version>.zip "
                                              "--repo Huzefaaa2/cavra"],
                    "required_outputs": [".cavra/go-daemon/release-governance-response.json",
                                         ".cavra/go-daemon/release-governance-evidence.jsonl"],
                }

            emit(CI_BUNDLES, {
                **_header(version, commit, repository, now),
                "schema_version": "cavra.go-runtime.ci-runner-bundles.v1", "source_metadata": ENDPOINT,
                "runner_script": {"path": RUNNER_SCRIPT, "sha256": sha256_file(package / RUNNER_SCRIPT),
                                  "required_environment": ["CAVRA_RUNTIME_PATH", "CAVRA_RELEASE_GOVERNANCE_REQUEST",
                                                           "CAVRA_EXPECTED_DECISION", "CAVRA_EXPECTED_RULE_ID",
                                                           "CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR"]},
                "github_action": {"path": GITHUB_ACTION, "sha256": sha256_file(package / GITHUB_ACTION)},
                "runner_bundles": [
                    bundle("GitHub Actions", "github-actions-linux-amd64-runner", GITHUB_ACTION,
                           "uses: ./ci-runners/github-action"),
                    bundle("GitLab CI", "gitlab-linux-amd64-runner", RUNNER_SCRIPT,
                           f"bash {RUNNER_SCRIPT}"),
                    bundle("Azure Pipelines", "azure-linux-amd64-runner", RUNNER_SCRIPT, f"bash {RUNNER_SCRIPT}"),
                ],
                "controls": list(STORED_CI_CONTROLS if ci_controls == "stored" else VERIFIER_CI_CONTROLS),
                "operator_steps": ["Verify first.", "Install the signed binary.", "Set the request.",
                                   "Publish evidence."],
            })

        workstation = [d for d in deployments if d["surface"] == "developer-workstation"] or [
            d for d in deployments if d["surface"] != "ci-runner"]
        channels = []
        for name, rings, recommended in (("canary", ["security-pilot"], False),
                                         ("beta", ["platform-pilot", "engineering-pilot"], False),
                                         ("stable", ["pilot", "broad", "enterprise"], True)):
            channels.append({
                "channel": name, "version": version, "commit": commit, "recommended": recommended,
                "ring_order": rings, "auto_update": False, "approval_required": True,
                "updater_policy_ref": f"{UPDATER}#{name}",
                "controls": ["verify-go-package-before-channel-publish", "smoke-installers-before-channel-publish",
                             "approval-required-before-workstation-update", "rollback-package-reference-required"],
                "workstation_targets": [{k: d[k] for k in ("id", "platform", "os", "arch", "installer_target",
                                                            "binary", "binary_sha256", "deployment_channel",
                                                            "management_tool")} for d in workstation],
                "verification_commands": ["cavra release verify-go-package .",
                                          "cavra release smoke-installers . --skip-execution",
                                          f"cavra release channel-manifest . --channel {name}"],
                "rollback": {"required": True, "strategy": "restore-previous-signed-package",
                             "approval": "release_rollback_endpoint_rollout"},
            })
        policies = []
        for name, pct, soak in (("canary", 2, 4), ("beta", 10, 24), ("stable", 25, 48)):
            policies.append({
                "channel": name, "auto_update": False, "approval_required": True, "minimum_approval": "change-approved",
                "rollout_rings": [{"ring": "pilot", "max_percentage": pct, "soak_hours": soak},
                                  {"ring": "broad", "max_percentage": 50, "soak_hours": soak * 2},
                                  {"ring": "enterprise", "max_percentage": 100, "soak_hours": soak * 3}],
                "hold_conditions": ["package verification failed", "installer smoke validation failed",
                                    "rollback package unavailable", "critical connector delivery alert active"],
                "rollback": {"required": True, "max_minutes_to_pause": 15,
                             "evidence": ["rollback execution record", "previous signed package verification"]},
            })
        emit(UPDATER, {
            **_header(version, commit, repository, now), "schema_version": "cavra.go-runtime.updater-policy.v1",
            "source_channel_manifest": CHANNELS, "default_auto_update": False,
            "controls": ["manual-approval-before-auto-update", "verify-go-package-before-update",
                         "smoke-installers-before-update", "staged-workstation-rollout", "rollback-package-required",
                         "evidence-retention-required"],
            "policies": policies, "operator_steps": ["Verify.", "Approve.", "Canary first.", "Retain evidence."],
        })
        emit(CHANNELS, {
            **_header(version, commit, repository, now), "schema_version": "cavra.go-runtime.channels.v1",
            "source_metadata": ENDPOINT, "updater_policy": UPDATER, "channels": channels,
            "operator_notes": ["Publish after verification.", "No auto-apply.", "Rollback references."],
        })
        emit(BOOTSTRAP, {
            **_header(version, commit, repository, None),  # §2.9: no generated_at
            "schema_version": "cavra.offline-trust-bootstrap.v1", "ref": ref, "mode": "air_gapped",
            "release_package": f"cavra-go-runtime-{version}.zip", "signature_key_id": key_id,
            "required_files": ["checksums.txt", ENDPOINT, CI_BUNDLES, INSTALLERS, CHANNELS, UPDATER, SBOM,
                               PROVENANCE, EVIDENCE, EVIDENCE_MD, BOOTSTRAP] if ci_bundles else
            ["checksums.txt", ENDPOINT, INSTALLERS, CHANNELS, UPDATER, SBOM, PROVENANCE, EVIDENCE, EVIDENCE_MD,
             BOOTSTRAP],
            "verification_commands": [f"cavra release verify-airgap-bundle cavra-go-runtime-{version}.zip",
                                      f"cavra release verify-go-package go-runtime-{version}"],
            "offline_operator_notes": ["Transfer through approved media.", "Verify before placing binaries.",
                                       "Map binaries with the endpoint deployment manifest.",
                                       "Preserve evidence with the change record."],
        })

        # (3) collect artifacts, ordered, with kinds
        artifacts = [(f"bin/{p.name}", "go-binary") for p in sorted((package / "bin").iterdir())]
        artifacts += [(INSTALLERS, "installer-metadata"), (ENDPOINT, "managed-endpoint-deployment")]
        if ci_bundles:
            artifacts.append((CI_BUNDLES, "ci-runner-bundles"))
            artifacts += [(p.relative_to(package).as_posix(), "ci-runner-wrapper")
                          for p in sorted((package / "ci-runners").glob("**/*")) if p.is_file()]
        artifacts += [(CHANNELS, "release-channel-manifest"), (UPDATER, "updater-policy"), (SBOM, "sbom"),
                      (BOOTSTRAP, "offline-trust-bootstrap"), ("go-modules.json", "go-modules")]

        # (4) provenance over those artifacts
        emit(PROVENANCE, {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": sha256_file(package / name)}} for name, _ in artifacts],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://github.com/Attestations/GitHubActionsWorkflow@v1",
                    "externalParameters": {"event": event, "ref": ref, "repository": repository, "version": version,
                                           "workflow_ref": ""},
                    "internalParameters": {"dry_run": dry_run, "go_targets": list(GO_TARGETS),
                                           "package_script": "scripts/package_go_release.py",
                                           "signing_required": signed},
                    "resolvedDependencies": [
                        {"uri": f"git+https://github.com/{repository}@{commit}", "digest": {"gitCommit": commit}},
                        {"uri": "pkg:golang/github.com/Huzefaaa2/cavra/go/cavra-runtime",
                         "digest": {"gitCommit": commit}},
                    ],
                },
                "runDetails": {"builder": {"id": builder_id},
                               "metadata": {"invocationId": "local", "startedOn": now, "finishedOn": now}},
            },
        })
        artifacts.append((PROVENANCE, "slsa-provenance"))
        # (5) checksums.txt over all artifacts so far, in artifact order
        (package / "checksums.txt").write_text(
            "\n".join(f"{sha256_file(package / name)}  {name}" for name, _ in artifacts) + "\n")
        artifacts.append(("checksums.txt", "checksums"))
        # (6) sign every artifact, or write the unsigned notice
        signing_key = (key or self.key) if signed else None
        signatures = [sign_file(package, name, signing_key, key_id=key_id, signer=self.signer)
                      for name, _ in artifacts] if signing_key is not None else []
        if signing_key is None:
            write_json(package / "unsigned-dry-run-notice.json", {
                "schema_version": "cavra.go-release.unsigned-notice.v1",
                "reason": "CAVRA_GO_RELEASE_SIGNING_KEY was not provided", "dry_run": dry_run})
        # (7) release evidence, signed; (8) the markdown summary, neither checksummed nor signed
        evidence = emit(EVIDENCE, {
            "schema_version": "cavra.go-release.evidence.v1", "product": "CAVRA", "component": "go-enforcement-plane",
            "version": version, "commit": commit, "ref": ref, "event": event, "created_at": now,
            "signer": self.signer, "dry_run": dry_run, "signing_required": signed,
            "signature_count": len(signatures),
            "artifacts": [{"relative_path": name, "sha256": sha256_file(package / name),
                           "size_bytes": (package / name).stat().st_size, "kind": kind} for name, kind in artifacts],
            "signatures": signatures, "controls": list(EVIDENCE_CONTROLS),
        })
        if signing_key is not None:
            sign_file(package, EVIDENCE, signing_key, key_id=key_id, signer=self.signer)
        write_markdown(package, evidence)
        if keyless_attestation:  # written by CI after the zip exists (§2.11): outside every signature
            write_json(package / KEYLESS, {
                "schema_version": "cavra.github-keyless-attestation.v1", "repository": repository,
                "workflow_run": "https://github.com/Huzefaaa2/cavra/actions/runs/1", "subject":
                f"cavra-go-runtime-{version}.zip", "subject_path": f"cavra-go-runtime-{version}.zip",
                "attestation_id": "1", "attestation_url": "https://github.com/Huzefaaa2/cavra/attestations/1",
                "bundle_path": f"github-attestations/cavra-go-runtime-{version}.sigstore-bundle.json",
                "issuer": "https://token.actions.githubusercontent.com", "signing": "sigstore-keyless-github-oidc",
                "verification_command": f"gh attestation verify cavra-go-runtime-{version}.zip --repo {repository}",
                "created_at": now})
        return package


def write_markdown(package: Path, evidence: Mapping[str, Any]) -> None:
    lines = ["# CAVRA Go Runtime Release Evidence", "", f"Version: `{evidence['version']}`",
             f"Commit: `{evidence['commit']}`", f"Ref: `{evidence['ref']}`", f"Dry run: `{evidence['dry_run']}`",
             f"Signature count: `{evidence['signature_count']}`", "", "## Artifacts", ""]
    lines += [f"- `{a['relative_path']}` `{a['sha256']}`" for a in evidence["artifacts"]]
    lines += ["", "## Signatures", ""]
    if evidence["signatures"]:
        lines += [f"- `{s['subject']}` -> `{s['signature']}`" for s in evidence["signatures"]]
    else:
        lines.append("- No signing key was provided for this dry-run package.")
    (package / EVIDENCE_MD).write_text("\n".join(lines) + "\n")


def zip_package(package: Path, out: Path | None = None) -> Path:
    """``cavra-go-runtime-<v>.zip`` whose single top-level folder is ``go-runtime-<v>/`` (as ``zip -r``
    would write it: directory entries included)."""
    version = package.name.removeprefix("go-runtime-")
    target = out or package.parent / f"cavra-go-runtime-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(package, f"{package.name}/")
        for path in sorted(package.rglob("*")):
            archive.write(path, f"{package.name}/{path.relative_to(package).as_posix()}" + ("/" if path.is_dir()
                                                                                          else ""))
    return target


def load(package: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((package / name).read_bytes())
    return document


__all__ = ["GO_TARGETS", "ReferenceGenerator", "load", "zip_package"]
