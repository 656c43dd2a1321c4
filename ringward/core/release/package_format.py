"""The runtime release package: file names, schema strings and pydantic models of every document.

Names, fields and ``schema_version`` strings follow the reference system (CAVRA
``go-runtime-*`` packages) so either side's packages interoperate; Ringward adds fields (never
removes them) where the reference lacks binding, e.g. key fingerprints in the offline bootstrap.
Read models allow unknown fields the reference may add, except where an unknown field is itself
a tampering signal (provenance ``externalParameters``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# --- schema strings ---------------------------------------------------------------------------
INSTALLERS_SCHEMA = "cavra.go-runtime.installers.v1"
ENDPOINT_DEPLOYMENT_SCHEMA = "cavra.go-runtime.endpoint-deployment.v1"
CHANNELS_SCHEMA = "cavra.go-runtime.channels.v1"
UPDATER_POLICY_SCHEMA = "cavra.go-runtime.updater-policy.v1"
CI_RUNNER_BUNDLES_SCHEMA = "cavra.go-runtime.ci-runner-bundles.v1"
BOOTSTRAP_SCHEMA = "cavra.offline-trust-bootstrap.v1"
EVIDENCE_SCHEMA = "cavra.go-release.evidence.v1"
UNSIGNED_NOTICE_SCHEMA = "cavra.go-release.unsigned-notice.v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_PREDICATE = "https://slsa.dev/provenance/v1"
RINGWARD_BUILD_TYPE = "https://ringward.dev/buildtypes/runtime-package/v1"
REFERENCE_BUILD_TYPE = "https://github.com/Attestations/GitHubActionsWorkflow@v1"
KNOWN_BUILD_TYPES = (RINGWARD_BUILD_TYPE, REFERENCE_BUILD_TYPE)
GITHUB_HOSTED_BUILDER = "https://github.com/actions/runner/github-hosted"
LOCAL_BUILDER = "https://ringward.dev/builders/local/v1"

# --- fixed file names -------------------------------------------------------------------------
CHECKSUMS = "checksums.txt"
EVIDENCE_JSON = "release-evidence.json"
EVIDENCE_MD = "release-evidence.md"
BOOTSTRAP = "offline-trust-root-bootstrap.json"
UNSIGNED_NOTICE = "unsigned-dry-run-notice.json"
GO_MODULES = "go-modules.json"
DEPENDENCIES = "dependencies.json"
BIN_DIR = "bin"


@dataclass(frozen=True)
class RuntimeFiles:
    """Per-runtime document names (``<runtime>.installers.json`` ...)."""

    runtime: str

    @property
    def installers(self) -> str:
        return f"{self.runtime}.installers.json"

    @property
    def endpoint_deployment(self) -> str:
        return f"{self.runtime}.endpoint-deployment.json"

    @property
    def channels(self) -> str:
        return f"{self.runtime}.channels.json"

    @property
    def updater_policy(self) -> str:
        return f"{self.runtime}.updater-policy.json"

    @property
    def ci_runner_bundles(self) -> str:
        return f"{self.runtime}.ci-runner-bundles.json"

    @property
    def sbom(self) -> str:
        return f"{self.runtime}.sbom.spdx.json"

    @property
    def provenance(self) -> str:
        return f"{self.runtime}.provenance.intoto.json"


# artifact kinds, as in the reference release evidence
KIND_BINARY = "go-binary"
KIND_INSTALLERS = "installer-metadata"
KIND_ENDPOINT = "managed-endpoint-deployment"
KIND_CI_BUNDLES = "ci-runner-bundles"
KIND_CI_WRAPPER = "ci-runner-wrapper"
KIND_CHANNELS = "release-channel-manifest"
KIND_UPDATER = "updater-policy"
KIND_SBOM = "sbom"
KIND_BOOTSTRAP = "offline-trust-bootstrap"
KIND_GO_MODULES = "go-modules"
KIND_DEPENDENCIES = "dependency-list"
KIND_PROVENANCE = "slsa-provenance"
KIND_CHECKSUMS = "checksums"

#: Every GOOS/GOARCH pair Go supports: the output of `go tool dist list` of Go 1.23 (Go 1.24 lists
#: the same pairs except windows/arm, which it marks broken). Kept as data so that a new Go release
#: is a one-line change.
GO_DIST_LIST = (
    "aix/ppc64",
    "android/386", "android/amd64", "android/arm", "android/arm64",
    "darwin/amd64", "darwin/arm64",
    "dragonfly/amd64",
    "freebsd/386", "freebsd/amd64", "freebsd/arm", "freebsd/arm64", "freebsd/riscv64",
    "illumos/amd64",
    "ios/amd64", "ios/arm64",
    "js/wasm",
    "linux/386", "linux/amd64", "linux/arm", "linux/arm64", "linux/loong64", "linux/mips", "linux/mips64",
    "linux/mips64le", "linux/mipsle", "linux/ppc64", "linux/ppc64le", "linux/riscv64", "linux/s390x",
    "netbsd/386", "netbsd/amd64", "netbsd/arm", "netbsd/arm64",
    "openbsd/386", "openbsd/amd64", "openbsd/arm", "openbsd/arm64", "openbsd/ppc64", "openbsd/riscv64",
    "plan9/386", "plan9/amd64", "plan9/arm",
    "solaris/amd64",
    "wasip1/wasm",
    "windows/386", "windows/amd64", "windows/arm", "windows/arm64",
)
GO_TARGETS = frozenset(GO_DIST_LIST)
#: the six surfaces endpoint deployment templates exist for (the reference workflow's targets);
#: every other Go target is packaged, signed and verified as a plain binary
MANAGED_TARGETS = ("linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64")
OPERATING_SYSTEMS = tuple(sorted({t.split("/")[0] for t in GO_DIST_LIST}))
ARCHITECTURES = tuple(sorted({t.split("/")[1] for t in GO_DIST_LIST}))
RUNTIME_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
_BINARY = re.compile(
    r"^(?P<runtime>[a-z0-9][a-z0-9.-]{0,63})_(?P<version>[0-9A-Za-z.+-]+)_(?P<os>[a-z0-9]+)"
    r"_(?P<arch>[a-z0-9]+)(?P<ext>\.exe)?$"
)
BINARY_NAME_FORM = "<runtime>_<version>_<os>_<arch>[.exe]"


@dataclass(frozen=True)
class BinaryName:
    runtime: str
    version: str
    os: str
    arch: str
    filename: str

    @property
    def target(self) -> str:
        return f"{self.os}/{self.arch}"


def parse_binary_name(filename: str) -> BinaryName | None:
    """``<runtime>_<version>_<os>_<arch>[.exe]`` for a GOOS/GOARCH pair Go supports (``.exe``
    exactly for windows), or None (:func:`binary_name_problem` says why)."""
    match = _BINARY.match(filename)
    if match is None or f"{match['os']}/{match['arch']}" not in GO_TARGETS:
        return None
    if (match["os"] == "windows") != bool(match["ext"]):
        return None
    return BinaryName(match["runtime"], match["version"], match["os"], match["arch"], filename)


def binary_name_problem(filename: str) -> str | None:
    """Why ``filename`` is not a runtime binary name (None when it is one)."""
    match = _BINARY.match(filename)
    if match is None:
        return f"{filename!r} is not a {BINARY_NAME_FORM} binary name"
    target = f"{match['os']}/{match['arch']}"
    if target not in GO_TARGETS:
        return f"{target} is not a GOOS/GOARCH pair Go supports (go tool dist list)"
    if (match["os"] == "windows") != bool(match["ext"]):
        return f"{filename!r}: .exe is required exactly for windows binaries"
    return None


def verify_commands(runtime: str, version: str, package: str | None = None) -> list[str]:
    """Verification guidance; carries both front doors' command names so reference tooling and
    Ringward accept the same package. ``package`` is the package folder name (default
    ``<runtime>-<version>``)."""
    pkg = package or f"{runtime}-{version}"
    return [
        f"ringward release verify-package {pkg} --trust-root trust-root.json",
        f"cavra release verify-go-package {pkg}",
        f"ringward release smoke-installers {pkg} --trust-root trust-root.json --skip-execution",
        f"cavra release smoke-installers {pkg} --skip-execution",
        "sha256sum -c checksums.txt",
    ]


PACKAGE_VERIFY_MARKERS = ("ringward release verify-package", "cavra release verify-go-package")
SMOKE_MARKERS = ("ringward release smoke-installers", "cavra release smoke-installers")
AIRGAP_MARKERS = ("ringward release verify-airgap-bundle", "cavra release verify-airgap-bundle")
CHECKSUM_GUIDANCE = "sha256sum -c checksums.txt"


class _Doc(BaseModel):
    # reference documents may carry fields we do not model; keep them, check what we model
    model_config = ConfigDict(extra="allow", frozen=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestHeader(_Doc):
    product: str = "Ringward"
    component: str = "runtime-release"
    version: str
    commit: str
    repository: str
    generated_at: str


# --- installers ---------------------------------------------------------------------------------
class InstallerTarget(_Doc):
    target: str
    os: str
    arch: str
    binary: str
    binary_sha256: str
    size_bytes: int
    install_method: str
    install_path: str
    install_command: str
    verification_command: str


class InstallersDocument(ManifestHeader):
    schema_version: Literal["cavra.go-runtime.installers.v1"]
    runtime: str | None = None
    targets: list[InstallerTarget]
    operator_notes: list[str] = []


# --- endpoint deployment -----------------------------------------------------------------------
class DeploymentTarget(_Doc):
    id: str
    surface: Literal["ci-runner", "developer-workstation", "managed-endpoint"]
    platform: str
    os: str
    arch: str
    installer_target: str
    binary: str
    binary_sha256: str
    install_path: str
    install_command: str
    deployment_channel: str
    management_tool: str
    rollout_gate: str
    verification_commands: list[str]
    rollback_steps: list[str]
    evidence_required: list[str]


class EndpointDeploymentDocument(ManifestHeader):
    schema_version: Literal["cavra.go-runtime.endpoint-deployment.v1"]
    source_metadata: str
    controls: list[str]
    deployment_targets: list[DeploymentTarget]
    operator_steps: list[str] = []


# --- channels and updater policy ----------------------------------------------------------------
class WorkstationTarget(_Doc):
    id: str
    platform: str
    os: str
    arch: str
    installer_target: str
    binary: str
    binary_sha256: str
    deployment_channel: str
    management_tool: str


class RollbackRequirement(_Doc):
    required: bool
    strategy: str
    approval: str


class Channel(_Doc):
    channel: str
    version: str
    commit: str
    recommended: bool
    ring_order: list[str]
    auto_update: bool
    approval_required: bool
    updater_policy_ref: str
    controls: list[str]
    workstation_targets: list[WorkstationTarget]
    verification_commands: list[str]
    rollback: RollbackRequirement


class ChannelsDocument(ManifestHeader):
    schema_version: Literal["cavra.go-runtime.channels.v1"]
    source_metadata: str
    updater_policy: str
    channels: list[Channel]


class RolloutRing(_Doc):
    ring: str
    max_percentage: int = Field(ge=0, le=100)
    soak_hours: int = Field(ge=0)


class PolicyRollback(_Doc):
    required: bool
    max_minutes_to_pause: int
    evidence: list[str]


class ChannelPolicy(_Doc):
    channel: str
    auto_update: bool
    approval_required: bool
    minimum_approval: str
    rollout_rings: list[RolloutRing]
    hold_conditions: list[str]
    rollback: PolicyRollback


class UpdaterPolicyDocument(ManifestHeader):
    schema_version: Literal["cavra.go-runtime.updater-policy.v1"]
    source_channel_manifest: str
    default_auto_update: bool
    controls: list[str]
    policies: list[ChannelPolicy]


# --- offline bootstrap ---------------------------------------------------------------------------
class BootstrapKey(_Strict):
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: str
    signer: str


class BootstrapRootKey(_Strict):
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key_pem: str = Field(min_length=1, max_length=4096)
    label: str = Field(min_length=1, max_length=128)


class BootstrapDocument(ManifestHeader):
    schema_version: Literal["cavra.offline-trust-bootstrap.v1"]
    mode: Literal["air_gapped"]
    ref: str
    release_package: str
    signature_key_id: str | None = None
    required_files: list[str]
    verification_commands: list[str]
    offline_operator_notes: list[str] = []
    # Ringward additions: the key material that must sign this package, and thresholds
    trusted_keys: list[BootstrapKey] = []
    thresholds: dict[str, int] = {}
    # trust-root rotation: the version of the pinned trust root the package was built under and its
    # root-role keys (with key material), so an air-gapped endpoint can check which trust root it
    # holds and verify the next signed version offline (``ringward trust update``); absent when the
    # packager was given no chained trust root
    trust_root_version: int | None = Field(default=None, ge=1)
    root_keys: list[BootstrapRootKey] = []
    root_threshold: int | None = Field(default=None, ge=1)


class ReferenceBootstrapDocument(BootstrapDocument):
    """The reference packager's bootstrap carries no ``generated_at`` (cavra-spec §2.9); accepted
    only under the reference profile."""

    generated_at: str | None = None  # type: ignore[assignment]


# --- release evidence ----------------------------------------------------------------------------
class EvidenceArtifactEntry(_Doc):
    relative_path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    kind: str


class EvidenceSignatureEntry(_Doc):
    subject: str
    signature: str
    algorithm: str
    key_id: str
    public_key_sha256: str


class ReleaseEvidenceDocument(_Doc):
    schema_version: Literal["cavra.go-release.evidence.v1"]
    product: str = "Ringward"
    component: str = "runtime-release"
    runtime: str | None = None
    repository: str | None = None
    version: str
    commit: str
    ref: str
    event: str
    created_at: str
    signer: str
    dry_run: bool
    signing_required: bool
    signature_count: int
    artifacts: list[EvidenceArtifactEntry]
    signatures: list[EvidenceSignatureEntry]
    controls: list[str]


class UnsignedNotice(_Strict):
    schema_version: Literal["cavra.go-release.unsigned-notice.v1"]
    reason: str
    dry_run: bool


# --- provenance ------------------------------------------------------------------------------------
class DigestSet(_Doc):
    sha256: str | None = None
    gitCommit: str | None = None


class ResourceDescriptor(_Doc):
    name: str | None = None
    uri: str | None = None
    digest: DigestSet | None = None


class ExternalParameters(_Strict):
    """Exactly the parameters the packager records; an unknown field fails verification."""

    event: str
    ref: str
    repository: str
    version: str
    workflow_ref: str | None = None


class BuildDefinition(_Doc):
    buildType: str
    externalParameters: ExternalParameters
    internalParameters: dict[str, Any] = {}
    resolvedDependencies: list[ResourceDescriptor] = []


class Builder(_Doc):
    id: str


class RunMetadata(_Doc):
    invocationId: str | None = None
    startedOn: str | None = None
    finishedOn: str | None = None


class RunDetails(_Doc):
    builder: Builder
    metadata: RunMetadata | None = None


class ProvenancePredicate(_Doc):
    buildDefinition: BuildDefinition
    runDetails: RunDetails


class StatementSubject(_Doc):
    name: str
    digest: dict[str, str]


class ProvenanceStatement(_Doc):
    type_: str = Field(alias="_type")
    subject: list[StatementSubject] = Field(min_length=1)
    predicateType: str
    predicate: ProvenancePredicate

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


# --- CI runner bundles (optional in Ringward packages; checked when present) ------------------
CI_RUNNER_REQUIRED_CONTROLS = (
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


class FileRef(_Doc):
    path: str
    sha256: str


class RunnerScript(FileRef):
    required_environment: list[str] = []


class RunnerBundle(_Doc):
    platform: str
    deployment_target: str
    runtime_binary: str
    runtime_binary_sha256: str
    reusable_wrapper: str
    verification_commands: list[str]
    required_outputs: list[str]


class CiRunnerBundlesDocument(ManifestHeader):
    schema_version: Literal["cavra.go-runtime.ci-runner-bundles.v1"]
    source_metadata: str
    runner_script: RunnerScript
    github_action: FileRef
    runner_bundles: list[RunnerBundle]
    controls: list[str]


#: `release package --layout reference`: the reference's folder, zip and CI-runner wrapper names
#: (cavra-spec §2, §2.6); its verifier reads the documents of the runtime ``cavra-runtime`` only
LAYOUTS = ("ringward", "reference")
REFERENCE_RUNTIME = "cavra-runtime"
REFERENCE_RUNNER_SCRIPT = "ci-runners/cavra-release-governance-runner.sh"
REFERENCE_GITHUB_ACTION = "ci-runners/github-action/action.yml"
REFERENCE_RUNNER_ENVIRONMENT = (
    "CAVRA_RUNTIME_PATH",
    "CAVRA_RELEASE_GOVERNANCE_REQUEST",
    "CAVRA_EXPECTED_DECISION",
    "CAVRA_EXPECTED_RULE_ID",
    "CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR",
)


def package_folder(runtime: str, version: str, layout: str = "ringward") -> str:
    return f"go-runtime-{version}" if layout == "reference" else f"{runtime}-{version}"


def package_zip(runtime: str, version: str, layout: str = "ringward") -> str:
    return f"cavra-go-runtime-{version}.zip" if layout == "reference" else f"{runtime}-{version}.zip"


# --- controls (reference lists) ------------------------------------------------------------------
ENDPOINT_CONTROLS = [
    "verify-go-package-before-install",
    "smoke-installers-before-rollout",
    "signed-endpoint-deployment-manifest",
    "managed-endpoint-change-record",
    "least-privilege-runner-install",
    "staged-workstation-rollout",
]
CHANNEL_CONTROLS = [
    "verify-go-package-before-channel-publish",
    "smoke-installers-before-channel-publish",
    "approval-required-before-workstation-update",
    "rollback-package-reference-required",
]
UPDATER_CONTROLS = [
    "manual-approval-before-auto-update",
    "verify-go-package-before-update",
    "smoke-installers-before-update",
    "staged-workstation-rollout",
    "rollback-package-required",
    "evidence-retention-required",
]
EVIDENCE_CONTROLS = [
    "sha256-checksums",
    "spdx-sbom",
    "slsa-provenance",
    "ed25519-detached-signatures",
    "signed-installer-metadata",
    "managed-endpoint-deployment-manifests",
    "release-channel-manifests",
    "managed-workstation-updater-policy",
    "release-evidence-manifest",
    "pinned-trust-root-verification",
    "offline-trust-bootstrap-key-fingerprints",
]
