"""Build every document of a release package from facts about its binaries (pure: no I/O).

The operations layer hashes the binaries, calls these builders in the reference packaging
order (SBOM, installers, endpoint deployment, channels + updater policy, offline bootstrap,
provenance, checksums, release evidence) and signs the bytes they return.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ringward.core.common.checksums import render_checksums
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import InputError, VersionConflictError
from ringward.core.release.package_format import (
    BIN_DIR,
    BOOTSTRAP,
    BOOTSTRAP_SCHEMA,
    CHANNEL_CONTROLS,
    CHANNELS_SCHEMA,
    CHECKSUM_GUIDANCE,
    CHECKSUMS,
    CI_RUNNER_BUNDLES_SCHEMA,
    CI_RUNNER_REQUIRED_CONTROLS,
    ENDPOINT_CONTROLS,
    ENDPOINT_DEPLOYMENT_SCHEMA,
    EVIDENCE_CONTROLS,
    EVIDENCE_JSON,
    EVIDENCE_MD,
    EVIDENCE_SCHEMA,
    INSTALLERS_SCHEMA,
    KIND_BINARY,
    KIND_BOOTSTRAP,
    KIND_CHANNELS,
    KIND_CHECKSUMS,
    KIND_CI_BUNDLES,
    KIND_CI_WRAPPER,
    KIND_ENDPOINT,
    KIND_INSTALLERS,
    KIND_PROVENANCE,
    KIND_SBOM,
    KIND_UPDATER,
    LAYOUTS,
    MANAGED_TARGETS,
    PROVENANCE_PREDICATE,
    REFERENCE_GITHUB_ACTION,
    REFERENCE_RUNNER_ENVIRONMENT,
    REFERENCE_RUNNER_SCRIPT,
    REFERENCE_RUNTIME,
    RINGWARD_BUILD_TYPE,
    STATEMENT_TYPE,
    UNSIGNED_NOTICE_SCHEMA,
    UPDATER_CONTROLS,
    UPDATER_POLICY_SCHEMA,
    BinaryName,
    RuntimeFiles,
    package_folder,
    package_zip,
    verify_commands,
)

REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


@dataclass(frozen=True)
class ReleaseInfo:
    """What the release engineer asserts about this build (all signed into the package)."""

    runtime: str
    version: str
    commit: str
    ref: str
    repository: str
    created_at: datetime
    event: str = "manual"
    signer: str = "ringward"
    builder_id: str = "https://ringward.dev/builders/local/v1"
    workflow_ref: str | None = None
    invocation_id: str = "local"
    dry_run: bool = False
    signing_required: bool = True
    github_server_url: str = "https://github.com"
    #: ``ringward`` (``<runtime>-<version>/``) or ``reference`` (``go-runtime-<version>/`` in
    #: ``cavra-go-runtime-<version>.zip``, for fleets still running the reference verifier)
    layout: str = "ringward"

    def validate(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"--layout: expected one of {', '.join(LAYOUTS)}, found {self.layout!r}")
        if self.layout == "reference" and self.runtime != REFERENCE_RUNTIME:
            raise InputError(
                f"--layout reference: the reference verifier reads {REFERENCE_RUNTIME}.* documents only; the "
                f"binaries must be named {REFERENCE_RUNTIME}_<version>_<os>_<arch>[.exe], found runtime "
                f"{self.runtime!r}"
            )
        try:
            ReleaseVersion.parse(self.version, field="--version")
        except VersionConflictError as exc:  # a malformed --version is bad input (exit 2)
            raise InputError(exc.message) from exc
        if not COMMIT.match(self.commit):
            raise InputError(f"--commit: expected 7-64 lowercase hex characters, found {self.commit!r}")
        if not REPOSITORY.match(self.repository):
            raise InputError(f"--repository: expected OWNER/NAME, found {self.repository!r}")
        if not self.ref or len(self.ref) > 256 or any(ord(c) < 0x20 for c in self.ref):
            raise InputError(f"--ref: expected a git ref such as refs/tags/v1.2.3, found {self.ref!r}")
        if self.created_at.utcoffset() is None:
            raise InputError("created_at must be timezone-aware")

    @property
    def timestamp(self) -> str:
        return self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def package_name(self) -> str:
        return package_folder(self.runtime, self.version, self.layout)

    @property
    def zip_name(self) -> str:
        return package_zip(self.runtime, self.version, self.layout)

    def header(self) -> dict[str, Any]:
        return {
            "product": "Ringward",
            "component": "runtime-release",
            "version": self.version,
            "commit": self.commit,
            "repository": self.repository,
            "generated_at": self.timestamp,
        }


@dataclass(frozen=True)
class BinaryFact:
    name: BinaryName
    sha256: str
    size_bytes: int

    @property
    def path(self) -> str:
        return f"{BIN_DIR}/{self.name.filename}"


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    purl: str | None = None


@dataclass
class PackagePlan:
    """Documents in packaging order; ``kinds`` maps each artifact path to its kind."""

    documents: dict[str, bytes] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)


# --- dependency lists ------------------------------------------------------------------------------


def parse_go_modules(data: bytes, *, source: str) -> list[Dependency]:
    """``go list -m -json all`` output: concatenated JSON objects."""
    text = data.decode("utf-8", errors="strict") if data else ""
    import json

    decoder = json.JSONDecoder()
    position, deps = 0, []
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            obj, end = decoder.raw_decode(text, position)
        except ValueError as exc:
            raise InputError(f"{source}: invalid JSON object at offset {position}: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("Path"), str):
            raise InputError(f"{source}: object at offset {position} has no string 'Path'")
        deps.append(Dependency(obj["Path"], str(obj.get("Version") or "main"), _go_purl(obj)))
        position = end
    return deps


def _go_purl(obj: dict[str, Any]) -> str | None:
    version = obj.get("Version")
    return f"pkg:golang/{obj['Path']}@{version}" if version else None


def parse_dependency_list(data: bytes, *, source: str) -> list[Dependency]:
    """``dependencies.json``: ``[{"name": ..., "version": ..., "purl": ...}, ...]``."""
    raw = loads_strict(data, source=source)
    if not isinstance(raw, list):
        raise InputError(f"{source}: expected a JSON list of {{name, version, purl}} objects")
    deps = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise InputError(f"{source}: [{index}].name: expected a non-empty string")
        version = item.get("version", "NOASSERTION")
        purl = item.get("purl")
        if not isinstance(version, str) or (purl is not None and not isinstance(purl, str)):
            raise InputError(f"{source}: [{index}]: version and purl must be strings")
        deps.append(Dependency(item["name"], version, purl))
    return deps


# --- documents ---------------------------------------------------------------------------------------


def _install_path(os_name: str, runtime: str) -> str:
    if os_name == "windows":
        return f"%ProgramFiles%\\Ringward\\{runtime}.exe"
    return f"/usr/local/bin/{runtime}"


def _install_command(binary: BinaryFact, runtime: str) -> str:
    path = _install_path(binary.name.os, runtime)
    if binary.name.os == "windows":
        return f'copy /Y "{binary.path}" "{path}"'
    return f"install -m 0755 {binary.path} {path}"


def build_installers(info: ReleaseInfo, binaries: Sequence[BinaryFact]) -> dict[str, Any]:
    return {
        **info.header(),
        "schema_version": INSTALLERS_SCHEMA,
        "runtime": info.runtime,
        "targets": [
            {
                "target": b.name.target,
                "os": b.name.os,
                "arch": b.name.arch,
                "binary": b.path,
                "binary_sha256": b.sha256,
                "size_bytes": b.size_bytes,
                "install_method": "manual-binary",
                "install_path": _install_path(b.name.os, info.runtime),
                "install_command": _install_command(b, info.runtime),
                "verification_command": CHECKSUM_GUIDANCE,
            }
            for b in binaries
        ],
        "operator_notes": [
            "Verify the package against the pinned trust root before installing any binary.",
            "Install only the binary whose target matches the endpoint's operating system and architecture.",
            "Keep the previous signed package available for rollback.",
        ],
    }


# (template id, surface, os, arch, deployment_channel, management_tool, platform)
_TEMPLATES = (
    ("github-actions-linux-amd64-runner", "ci-runner", "linux", "amd64", "runner-image-or-bootstrap-script",
     "GitHub Actions", "github-actions"),
    ("gitlab-linux-amd64-runner", "ci-runner", "linux", "amd64", "runner-image-or-bootstrap-script",
     "GitLab CI", "gitlab-ci"),
    ("azure-linux-amd64-runner", "ci-runner", "linux", "amd64", "agent-image-or-bootstrap-script",
     "Azure Pipelines", "azure-pipelines"),
    ("linux-systemd-amd64-workstation", "developer-workstation", "linux", "amd64", "fleet-management-script",
     "Linux endpoint management", "linux"),
    ("macos-jamf-arm64-workstation", "developer-workstation", "darwin", "arm64", "jamf-policy", "Jamf Pro",
     "macos"),
    ("macos-jamf-amd64-workstation", "developer-workstation", "darwin", "amd64", "jamf-policy", "Jamf Pro",
     "macos"),
    ("windows-intune-amd64-workstation", "developer-workstation", "windows", "amd64", "intune-win32-app",
     "Microsoft Intune", "windows"),
)


def _evidence_required(files: RuntimeFiles) -> list[str]:
    return [EVIDENCE_JSON, files.provenance, files.installers, files.endpoint_deployment, CHECKSUMS]


def build_endpoint_deployment(info: ReleaseInfo, binaries: Sequence[BinaryFact]) -> dict[str, Any]:
    files = RuntimeFiles(info.runtime)
    by_target = {b.name.target: b for b in binaries}
    covered: set[str] = set()
    targets = []

    def target(tid: str, surface: str, b: BinaryFact, channel: str, tool: str, platform: str) -> dict[str, Any]:
        return {
            "id": tid,
            "surface": surface,
            "platform": platform,
            "os": b.name.os,
            "arch": b.name.arch,
            "installer_target": b.name.target,
            "binary": b.path,
            "binary_sha256": b.sha256,
            "install_path": _install_path(b.name.os, info.runtime),
            "install_command": _install_command(b, info.runtime),
            "deployment_channel": channel,
            "management_tool": tool,
            "rollout_gate": "signed-package-verified-and-change-approved",
            "verification_commands": verify_commands(info.runtime, info.version, info.package_name),
            "rollback_steps": [
                "Pause the rollout ring and stop new installs.",
                "Reinstall the binary from the previous signed package after verifying it.",
                "Record the rollback execution as evidence and notify the change owner.",
            ],
            "evidence_required": _evidence_required(files),
        }

    for tid, surface, os_name, arch, channel, tool, platform in _TEMPLATES:
        b = by_target.get(f"{os_name}/{arch}")
        if b is not None:
            targets.append(target(tid, surface, b, channel, tool, platform))
            covered.add(b.name.target)
    # every managed surface stays deployable even without a named template; other Go targets are
    # packaged, signed and verified as plain binaries (installers metadata only), unless nothing at
    # all is deployable (then, like the reference, every target gets a generic managed-endpoint entry)
    uncovered = [b for b in binaries if b.name.target not in covered]
    managed = [b for b in uncovered if b.name.target in MANAGED_TARGETS]
    for b in managed if (targets or managed) else uncovered:
        targets.append(
            target(f"managed-endpoint-{b.name.os}-{b.name.arch}", "managed-endpoint", b,
                   "managed-endpoint-package", "endpoint management", b.name.os)
        )
    return {
        **info.header(),
        "schema_version": ENDPOINT_DEPLOYMENT_SCHEMA,
        "source_metadata": files.installers,
        "controls": list(ENDPOINT_CONTROLS),
        "deployment_targets": targets,
        "operator_steps": [
            "Verify the package against the pinned trust root.",
            "Run the installer smoke checks on a pilot endpoint.",
            "Open a change record and obtain approval for the rollout ring.",
            "Deploy through the listed management tool, ring by ring.",
            "Capture rollout evidence and reconcile observed inventory.",
        ],
    }


_CHANNELS = (("canary", ["security-pilot"], False), ("beta", ["platform-pilot", "engineering-pilot"], False),
             ("stable", ["pilot", "broad", "enterprise"], True))
_POLICY = {"canary": (2, 4), "beta": (10, 24), "stable": (25, 48)}


def build_channels(info: ReleaseInfo, endpoint: dict[str, Any]) -> dict[str, Any]:
    files = RuntimeFiles(info.runtime)
    targets = endpoint["deployment_targets"]
    workstation = [t for t in targets if t["surface"] == "developer-workstation"] or [
        t for t in targets if t["surface"] != "ci-runner"
    ]
    keys = ("id", "platform", "os", "arch", "installer_target", "binary", "binary_sha256", "deployment_channel",
            "management_tool")
    channels = []
    for name, rings, recommended in _CHANNELS:
        channels.append(
            {
                "channel": name,
                "version": info.version,
                "commit": info.commit,
                "recommended": recommended,
                "ring_order": rings,
                "auto_update": False,
                "approval_required": True,
                "updater_policy_ref": f"{files.updater_policy}#{name}",
                "controls": list(CHANNEL_CONTROLS),
                "workstation_targets": [{k: t[k] for k in keys} for t in workstation],
                "verification_commands": [
                    *verify_commands(info.runtime, info.version, info.package_name)[:4],
                    f"ringward release channel-manifest {info.package_name} --trust-root trust-root.json "
                    f"--channel {name}",
                ],
                "rollback": {
                    "required": True,
                    "strategy": "restore-previous-signed-package",
                    "approval": "release_rollback_endpoint_rollout",
                },
            }
        )
    return {
        **info.header(),
        "schema_version": CHANNELS_SCHEMA,
        "source_metadata": files.endpoint_deployment,
        "updater_policy": files.updater_policy,
        "channels": channels,
    }


def build_updater_policy(info: ReleaseInfo) -> dict[str, Any]:
    files = RuntimeFiles(info.runtime)
    policies = []
    for name, _, _ in _CHANNELS:
        pct, soak = _POLICY[name]
        policies.append(
            {
                "channel": name,
                "auto_update": False,
                "approval_required": True,
                "minimum_approval": "change-approved",
                "rollout_rings": [
                    {"ring": "pilot", "max_percentage": pct, "soak_hours": soak},
                    {"ring": "broad", "max_percentage": 50, "soak_hours": 2 * soak},
                    {"ring": "enterprise", "max_percentage": 100, "soak_hours": 3 * soak},
                ],
                "hold_conditions": [
                    "package verification failed",
                    "installer smoke validation failed",
                    "rollback package unavailable",
                    "critical connector delivery alert active",
                ],
                "rollback": {
                    "required": True,
                    "max_minutes_to_pause": 15,
                    "evidence": ["rollback execution record", "previous signed package verification"],
                },
            }
        )
    return {
        **info.header(),
        "schema_version": UPDATER_POLICY_SCHEMA,
        "source_channel_manifest": files.channels,
        "default_auto_update": False,
        "controls": list(UPDATER_CONTROLS),
        "policies": policies,
    }


def _spdx_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", text)


def build_sbom(info: ReleaseInfo, binaries: Sequence[BinaryFact], deps: Sequence[Dependency]) -> dict[str, Any]:
    root_id = f"SPDXRef-Package-{_spdx_id(info.runtime)}"
    packages: list[dict[str, Any]] = [
        {
            "SPDXID": root_id,
            "name": info.runtime,
            "versionInfo": info.version,
            "downloadLocation": f"git+{info.github_server_url}/{info.repository}@{info.commit}",
            "filesAnalyzed": False,
            "supplier": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [
                {
                    "referenceCategory": "PERSISTENT-ID",
                    "referenceType": "gitoid",
                    "referenceLocator": f"gitoid:commit:sha1:{info.commit}",
                }
            ]
            if len(info.commit) == 40
            else [],
        }
    ]
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root_id}
    ]
    for b in binaries:
        bid = f"SPDXRef-Binary-{_spdx_id(b.name.os)}-{_spdx_id(b.name.arch)}"
        packages.append(
            {
                "SPDXID": bid,
                "name": b.name.filename,
                "versionInfo": info.version,
                "packageFileName": b.path,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "primaryPackagePurpose": "APPLICATION",
                "checksums": [{"algorithm": "SHA256", "checksumValue": b.sha256}],
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
            }
        )
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS", "relatedSpdxElement": bid})
    for index, dep in enumerate(deps):
        did = f"SPDXRef-Dependency-{index}"
        package: dict[str, Any] = {
            "SPDXID": did,
            "name": dep.name,
            "versionInfo": dep.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }
        if dep.purl:
            package["externalRefs"] = [
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": dep.purl}
            ]
        packages.append(package)
        relationships.append({"spdxElementId": root_id, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": did})
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{info.runtime} {info.version}",
        "documentNamespace": (
            f"{info.github_server_url}/{info.repository}/releases/{info.version}/{info.runtime}/{info.commit}"
        ),
        "creationInfo": {"created": info.timestamp, "creators": ["Tool: Ringward release packaging"]},
        "packages": packages,
        "relationships": relationships,
    }


def build_bootstrap(info: ReleaseInfo, files: RuntimeFiles, required: Sequence[str],
                    keys: Sequence[dict[str, str]], thresholds: dict[str, int],
                    root_section: dict[str, Any] | None = None) -> dict[str, Any]:
    """``root_section`` (``core.trust.rotation.bootstrap_root_section`` of the pinned trust root) adds
    the trust-root version and root keys an air-gapped endpoint needs to follow a rotation."""
    return {
        **info.header(),
        "schema_version": BOOTSTRAP_SCHEMA,
        "mode": "air_gapped",
        "ref": info.ref,
        "release_package": info.zip_name,
        "signature_key_id": keys[0]["key_id"] if keys else None,
        "required_files": list(required),
        "verification_commands": [
            f"ringward release verify-airgap-bundle {info.zip_name} --trust-root trust-root.json",
            f"cavra release verify-airgap-bundle {info.zip_name}",
            f"ringward release verify-package {info.package_name} --trust-root trust-root.json",
            f"cavra release verify-go-package {info.package_name}",
        ],
        "offline_operator_notes": [
            "Carry the trust root to the air-gapped network separately from the package.",
            "Check that the trusted_keys fingerprints below match the pinned trust root.",
            "Verify the bundle before extracting it; never extract it with a general-purpose unzip.",
            "Keep the previous signed bundle for rollback.",
        ],
        "trusted_keys": list(keys),
        "thresholds": dict(thresholds),
        **(root_section or {}),
    }


_RUNNER_PLATFORMS = (("GitHub Actions", "github-actions-linux-amd64-runner", REFERENCE_GITHUB_ACTION,
                      "uses: ./ci-runners/github-action"),
                     ("GitLab CI", "gitlab-linux-amd64-runner", REFERENCE_RUNNER_SCRIPT,
                      f"bash {REFERENCE_RUNNER_SCRIPT}"),
                     ("Azure Pipelines", "azure-linux-amd64-runner", REFERENCE_RUNNER_SCRIPT,
                      f"bash {REFERENCE_RUNNER_SCRIPT}"))


def build_ci_runner_bundles(info: ReleaseInfo, endpoint: dict[str, Any], script_sha256: str,
                            action_sha256: str) -> dict[str, Any]:
    """The CI-runner bundle document (cavra-spec §2.6) over wrappers the release engineer supplies.

    The controls are the nine the reference verifier requires; they describe what the supplied
    wrappers do, which the release engineer asserts by signing the package (Ringward checks the
    wrappers' bytes, not their behaviour)."""
    files = RuntimeFiles(info.runtime)
    runners = {t["id"]: t for t in endpoint["deployment_targets"] if t["surface"] == "ci-runner"}
    if not runners:
        raise InputError("--layout reference: CI-runner bundles need a linux/amd64 binary (the reference's runner "
                         "targets are linux/amd64)")
    bundles = []
    for platform, target_id, wrapper, invocation in _RUNNER_PLATFORMS:
        target = runners[target_id]
        bundles.append({
            "platform": platform,
            "deployment_target": target_id,
            "runner_os": target["os"],
            "runner_arch": target["arch"],
            "runtime_binary": target["binary"],
            "runtime_binary_sha256": target["binary_sha256"],
            "runtime_path": f"./{info.runtime}",
            "reusable_wrapper": wrapper,
            "invocation": invocation,
            "evidence_dir": ".cavra/go-daemon",
            "verification_commands": [
                *verify_commands(info.runtime, info.version, info.package_name)[:2],
                CHECKSUM_GUIDANCE,
                f"gh attestation verify {info.zip_name} --repo {info.repository}",
            ],
            "required_outputs": [".cavra/go-daemon/release-governance-response.json",
                                 ".cavra/go-daemon/release-governance-evidence.jsonl"],
        })
    return {
        **info.header(),
        "schema_version": CI_RUNNER_BUNDLES_SCHEMA,
        "source_metadata": files.endpoint_deployment,
        "runner_script": {"path": REFERENCE_RUNNER_SCRIPT, "sha256": script_sha256,
                          "required_environment": list(REFERENCE_RUNNER_ENVIRONMENT)},
        "github_action": {"path": REFERENCE_GITHUB_ACTION, "sha256": action_sha256},
        "runner_bundles": bundles,
        "controls": list(CI_RUNNER_REQUIRED_CONTROLS),
        "operator_steps": [
            "Verify the package against the pinned trust root before copying the binary or wrappers into CI.",
            "Install only the signed runtime binary this manifest names for the runner platform.",
            "Set CAVRA_RELEASE_GOVERNANCE_REQUEST to a reviewed release-governance request file.",
            "Publish the evidence directory as a CI artifact for the change record.",
        ],
    }


def build_provenance(info: ReleaseInfo, subjects: dict[str, str], targets: Sequence[str]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": subjects[name]}} for name in sorted(subjects)],
        "predicateType": PROVENANCE_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": RINGWARD_BUILD_TYPE,
                "externalParameters": {
                    "event": info.event,
                    "ref": info.ref,
                    "repository": info.repository,
                    "version": info.version,
                    "workflow_ref": info.workflow_ref,
                },
                "internalParameters": {
                    "dry_run": info.dry_run,
                    "targets": list(targets),
                    "package_tool": "ringward release package",
                    "signing_required": info.signing_required,
                },
                "resolvedDependencies": [
                    {
                        "uri": f"git+{info.github_server_url}/{info.repository}@{info.ref}",
                        "digest": {"gitCommit": info.commit},
                    }
                ],
            },
            "runDetails": {
                "builder": {"id": info.builder_id},
                "metadata": {"invocationId": info.invocation_id, "startedOn": info.timestamp,
                             "finishedOn": info.timestamp},
            },
        },
    }


def plan_documents(
    info: ReleaseInfo,
    binaries: Sequence[BinaryFact],
    deps: Sequence[Dependency],
    dependency_file: tuple[str, str, bytes] | None,
    keys: Sequence[dict[str, str]],
    thresholds: dict[str, int],
    sha256: Any,
    ci_wrappers: tuple[bytes, bytes] | None = None,
    root_section: dict[str, Any] | None = None,
) -> PackagePlan:
    """All documents up to and including ``checksums.txt`` (release evidence comes after
    signing). ``sha256`` is the digest function (bytes -> hex); ``dependency_file`` is an
    optional (name, kind, bytes) copied into the package; ``ci_wrappers`` (runner script, GitHub
    action bytes) adds the CI-runner bundle document and its wrappers (``--layout reference``);
    ``root_section`` puts the pinned trust root's version and root keys into the offline bootstrap."""
    info.validate()
    files = RuntimeFiles(info.runtime)
    plan = PackagePlan()
    digests: dict[str, str] = {}
    for b in binaries:
        plan.kinds[b.path] = KIND_BINARY
        digests[b.path] = b.sha256

    def add(name: str, kind: str, body: bytes) -> None:
        plan.documents[name] = body
        plan.kinds[name] = kind
        digests[name] = sha256(body)

    if dependency_file is not None:
        add(dependency_file[0], dependency_file[1], dependency_file[2])
    add(files.sbom, KIND_SBOM, dumps_document(build_sbom(info, binaries, deps)))
    add(files.installers, KIND_INSTALLERS, dumps_document(build_installers(info, binaries)))
    endpoint = build_endpoint_deployment(info, binaries)
    add(files.endpoint_deployment, KIND_ENDPOINT, dumps_document(endpoint))
    required = [CHECKSUMS, files.endpoint_deployment, files.installers, files.channels, files.updater_policy,
                files.sbom, files.provenance, EVIDENCE_JSON, EVIDENCE_MD, BOOTSTRAP]
    if ci_wrappers is not None:
        script, action = ci_wrappers
        bundles = build_ci_runner_bundles(info, endpoint, sha256(script), sha256(action))
        add(files.ci_runner_bundles, KIND_CI_BUNDLES, dumps_document(bundles))
        add(REFERENCE_RUNNER_SCRIPT, KIND_CI_WRAPPER, script)
        add(REFERENCE_GITHUB_ACTION, KIND_CI_WRAPPER, action)
        required.insert(2, files.ci_runner_bundles)
    add(files.channels, KIND_CHANNELS, dumps_document(build_channels(info, endpoint)))
    add(files.updater_policy, KIND_UPDATER, dumps_document(build_updater_policy(info)))
    add(BOOTSTRAP, KIND_BOOTSTRAP, dumps_document(build_bootstrap(info, files, required, keys, thresholds,
                                                                         root_section)))
    targets = sorted(b.name.target for b in binaries)
    add(files.provenance, KIND_PROVENANCE, dumps_document(build_provenance(info, dict(digests), targets)))
    add(CHECKSUMS, KIND_CHECKSUMS, render_checksums(digests))
    return plan


def build_release_evidence(
    info: ReleaseInfo,
    artifacts: Sequence[dict[str, Any]],
    signatures: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "schema_version": EVIDENCE_SCHEMA,
        "product": "Ringward",
        "component": "runtime-release",
        "runtime": info.runtime,
        "repository": info.repository,
        "version": info.version,
        "commit": info.commit,
        "ref": info.ref,
        "event": info.event,
        "created_at": info.timestamp,
        "signer": info.signer,
        "dry_run": info.dry_run,
        "signing_required": info.signing_required,
        "signature_count": len(signatures),
        "artifacts": list(artifacts),
        "signatures": list(signatures),
        "controls": list(EVIDENCE_CONTROLS) + (
            ["signed-ci-runner-bundles"] if any(a.get("kind") == KIND_CI_BUNDLES for a in artifacts) else []),
    }


def render_release_evidence_md(evidence: dict[str, Any]) -> bytes:
    lines = [
        f"# Release evidence: {evidence.get('runtime') or 'runtime'} {evidence['version']}",
        "",
        f"- Version: {evidence['version']}",
        f"- Commit: {evidence['commit']}",
        f"- Ref: {evidence['ref']}",
        f"- Repository: {evidence.get('repository')}",
        f"- Created: {evidence['created_at']}",
        f"- Dry run: {str(evidence['dry_run']).lower()}",
        f"- Signature count: {evidence['signature_count']}",
        "",
        "## Artifacts",
        "",
        "| path | kind | size | sha256 |",
        "|---|---|---:|---|",
    ]
    lines += [f"| `{a['relative_path']}` | {a['kind']} | {a['size_bytes']} | `{a['sha256']}` |"
              for a in evidence["artifacts"]]
    lines += ["", "## Signatures", ""]
    if evidence["signatures"]:
        lines += [f"- `{s['subject']}` signed by key `{s['key_id'][:16]}` ({s['algorithm']})"
                  for s in evidence["signatures"]]
    else:
        lines.append("UNSIGNED DRY RUN: no signing key was provided. Do not deploy this package.")
    return ("\n".join(lines) + "\n").encode("utf-8")


def unsigned_notice() -> bytes:
    return dumps_document(
        {"schema_version": UNSIGNED_NOTICE_SCHEMA, "reason": "no signing key was provided (dry run)",
         "dry_run": True}
    )
