"""Check families that run on a package whose bytes were already verified.

The operations layer reads, hashes and signature-checks every file first (the "integrity and
signatures" family); these rules then parse only documents whose exact bytes passed, and
check that every document describes the same release (version, commit, digests, sizes) so
documents from another release or channel cannot be mixed in. Each family stops at its first
error, like the reference verifier's sub-validators; families are independent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ringward.core.common.checksums import ChecksumManifest
from ringward.core.common.jsonio import loads_strict
from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import (
    BindingMismatchError,
    MalformedDocumentError,
    MetadataMismatchError,
    MissingFileError,
    ProvenanceError,
    SbomError,
    UnsignedPackageError,
    UntrustedBuilderError,
    VerificationError,
    validation_problem,
)
from ringward.core.release.package_builder import render_release_evidence_md
from ringward.core.release.package_format import (
    AIRGAP_MARKERS,
    BIN_DIR,
    BOOTSTRAP,
    CHECKSUM_GUIDANCE,
    CHECKSUMS,
    CI_RUNNER_REQUIRED_CONTROLS,
    EVIDENCE_JSON,
    EVIDENCE_MD,
    KIND_BINARY,
    KIND_CHECKSUMS,
    KNOWN_BUILD_TYPES,
    PACKAGE_VERIFY_MARKERS,
    PROVENANCE_PREDICATE,
    SMOKE_MARKERS,
    STATEMENT_TYPE,
    BootstrapDocument,
    ChannelsDocument,
    CiRunnerBundlesDocument,
    EndpointDeploymentDocument,
    InstallersDocument,
    ProvenanceStatement,
    ReferenceBootstrapDocument,
    ReleaseEvidenceDocument,
    RuntimeFiles,
    UpdaterPolicyDocument,
    binary_name_problem,
    parse_binary_name,
)
from ringward.core.release.profiles import (
    SPDX_NO_DESCRIBES,
    Profile,
    ci_control_generation,
    normalise_spdx_created,
)
from ringward.core.release.verification import FamilyCollector, FamilyResult, Skip, run_family
from ringward.core.trust.root import TrustRoot

M = TypeVar("M", bound=BaseModel)

#: validates an SPDX document dict; returns problems (empty when valid). Injected because the
#: SPDX library is an I/O-capable dependency the pure core does not import.
SpdxValidator = Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class VerifiedContent:
    """What the integrity family established: the signed manifest, actual digests and sizes of
    every listed file, and the bytes of documents whose integrity and signatures passed."""

    label: str
    manifest: ChecksumManifest
    digests: Mapping[str, str]
    sizes: Mapping[str, int]
    documents: Mapping[str, bytes]
    failed: frozenset[str]
    trust_root: TrustRoot
    signers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_unsigned: bool = False
    unsigned: bool = False
    #: the rule set the document families apply (see ringward.core.release.profiles)
    profile: Profile = Profile.RINGWARD
    #: files present but covered by no signature, reported and never used (reference profile)
    ignored: frozenset[str] = frozenset()

    def listed(self) -> dict[str, str]:
        return self.manifest.as_dict()

    @property
    def reference(self) -> bool:
        return self.profile is Profile.REFERENCE


# --- helpers ---------------------------------------------------------------------------------------


def _load(content: VerifiedContent, name: str, model: type[M], label: str) -> M:
    if name in content.failed:
        raise Skip(f"{name} failed integrity or signature checks; not parsed")
    if name not in content.documents:
        if name not in content.listed():
            raise MissingFileError(f"missing {name}")
        raise Skip(f"{name} was not read")
    raw = loads_strict(content.documents[name], source=name)
    if not isinstance(raw, dict):
        raise MalformedDocumentError(f"{name}: expected a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        if exc.errors()[0]["loc"] == ("schema_version",):
            raise MalformedDocumentError(
                f"{label} has an invalid schema_version: found {raw.get('schema_version')!r}"
            ) from exc
        raise MalformedDocumentError(f"{name}: {validation_problem(exc)}") from exc


def release_evidence(content: VerifiedContent) -> ReleaseEvidenceDocument:
    return _load(content, EVIDENCE_JSON, ReleaseEvidenceDocument, "release-evidence.json")


def runtime_of(content: VerifiedContent) -> str:
    """The runtime name, from the single ``<runtime>.installers.json`` in the manifest."""
    names = [n for n in content.listed() if "/" not in n and n.endswith(".installers.json")]
    if len(names) != 1:
        raise MissingFileError(
            f"expected exactly one <runtime>.installers.json in checksums.txt, found {len(names)}"
        )
    return names[0][: -len(".installers.json")]


def _expect_version(doc_version: str, evidence: ReleaseEvidenceDocument, name: str) -> None:
    if doc_version != evidence.version:
        raise BindingMismatchError(
            f"{name}: version {doc_version!r} does not match release-evidence.json version {evidence.version!r}"
        )


def _check_binary_ref(content: VerifiedContent, binary: str, sha: str, where: str) -> None:
    listed = content.listed()
    if binary not in listed:
        raise MissingFileError(f"{where}: binary {binary} is not listed in checksums.txt")
    if sha != listed[binary]:
        raise MetadataMismatchError(f"{where}: binary_sha256 {sha} disagrees with checksums.txt ({listed[binary]})")
    actual = content.digests.get(binary)
    if actual is not None and actual != sha:
        raise MetadataMismatchError(f"{where}: binary_sha256 {sha} does not match {binary} ({actual})")


def _contains(commands: list[str], markers: tuple[str, ...]) -> bool:
    return any(marker in command for command in commands for marker in markers)


# --- families ----------------------------------------------------------------------------------------


def check_release_evidence(content: VerifiedContent, c: FamilyCollector) -> None:
    evidence = release_evidence(content)
    try:
        ReleaseVersion.parse(evidence.version, field="release-evidence.json version")
    except VerificationError as exc:
        if not content.reference:
            raise
        # the reference verifier does not look at the version's form; upgrade and channel checks will
        c.warn(f"{exc.message}; accepted by the reference profile, but upgrades and channels will refuse it")
    if evidence.dry_run and not content.allow_unsigned:
        raise UnsignedPackageError("release-evidence.json marks this package as an unsigned dry run")
    runtime = runtime_of(content)
    if evidence.runtime is not None and evidence.runtime != runtime:
        raise BindingMismatchError(f"release-evidence.json runtime {evidence.runtime!r}, package has {runtime!r}")
    listed = content.listed()
    recorded: dict[str, str] = {}
    for artifact in evidence.artifacts:
        path = artifact.relative_path
        if path in recorded:
            raise MalformedDocumentError(f"release-evidence.json lists {path} twice")
        recorded[path] = artifact.sha256
        if artifact.kind == KIND_CHECKSUMS or path == CHECKSUMS:
            actual = content.digests.get(CHECKSUMS)
            if actual is not None and artifact.sha256 != actual:
                raise BindingMismatchError(
                    f"release-evidence.json records checksums.txt sha256 {artifact.sha256}, found {actual}"
                    " (manifest from another release?)"
                )
            continue
        if path not in listed:
            raise BindingMismatchError(f"evidence artifact missing from checksums.txt: {path}")
        if artifact.sha256 != listed[path]:
            raise BindingMismatchError(
                f"release-evidence.json records sha256 {artifact.sha256} for {path}, checksums.txt has {listed[path]}"
            )
        size = content.sizes.get(path)
        if size is not None and size != artifact.size_bytes:
            raise BindingMismatchError(
                f"release-evidence.json records {artifact.size_bytes} bytes for {path}, found {size}"
            )
        if artifact.kind == KIND_BINARY:
            parsed = parse_binary_name(path.rsplit("/", 1)[-1])
            if not path.startswith(f"{BIN_DIR}/"):
                raise MetadataMismatchError(f"{path}: a go-binary artifact must be under bin/")
            if parsed is None:
                raise MetadataMismatchError(f"{path}: {binary_name_problem(path.rsplit('/', 1)[-1])}")
            if parsed.version != evidence.version or parsed.runtime != runtime:
                raise BindingMismatchError(
                    f"{path}: binary of {parsed.runtime} {parsed.version}, release is {runtime} {evidence.version}"
                )
        c.checked.append(path)
    for path in listed:
        if path not in recorded:
            raise BindingMismatchError(f"checksums.txt lists {path}, which release-evidence.json does not record")
    if CHECKSUMS not in recorded:
        raise BindingMismatchError("release-evidence.json does not record checksums.txt")
    # release-evidence.md is the human rendering of release-evidence.json: it must be exactly
    # that rendering, so a signed summary from another release cannot ride along (the reference
    # renders its own markdown, which is never used: not compared under the reference profile)
    if EVIDENCE_MD in content.documents and not content.reference:
        raw = loads_strict(content.documents[EVIDENCE_JSON], source=EVIDENCE_JSON)
        if content.documents[EVIDENCE_MD] != render_release_evidence_md(raw):
            raise BindingMismatchError(f"{EVIDENCE_MD} is not the rendering of {EVIDENCE_JSON} (from another release?)")


def check_installers(content: VerifiedContent, c: FamilyCollector) -> None:
    evidence = release_evidence(content)
    files = RuntimeFiles(runtime_of(content))
    doc = _load(content, files.installers, InstallersDocument, "installer metadata")
    _expect_version(doc.version, evidence, files.installers)
    if doc.commit != evidence.commit:
        raise BindingMismatchError(f"{files.installers}: commit {doc.commit} does not match release evidence")
    if not doc.targets:
        raise MetadataMismatchError("installer metadata has no targets")
    seen: set[str] = set()
    for t in doc.targets:
        if not t.target or t.target in seen:
            raise MetadataMismatchError(f"installer metadata target is missing or duplicated: {t.target}")
        seen.add(t.target)
        parsed = parse_binary_name(t.binary.rsplit("/", 1)[-1])
        if parsed is None:
            raise MetadataMismatchError(f"installer metadata target {t.target}: {binary_name_problem(t.binary)}")
        if f"{parsed.os}/{parsed.arch}" != t.target or t.target != f"{t.os}/{t.arch}":
            raise MetadataMismatchError(f"installer metadata target {t.target} does not match binary {t.binary}")
        _check_binary_ref(content, t.binary, t.binary_sha256, f"installer target {t.target}")
        actual_size = content.sizes.get(t.binary)
        if actual_size is not None and actual_size != t.size_bytes:
            raise MetadataMismatchError(
                f"installer target {t.target}: size_bytes {t.size_bytes}, {t.binary} has {actual_size}"
            )
        if not t.install_path or not t.install_method:
            raise MetadataMismatchError(f"installer metadata target is missing install guidance: {t.target}")
        if CHECKSUM_GUIDANCE not in t.verification_command:
            raise MetadataMismatchError(
                f"installer metadata target is missing checksum verification guidance: {t.target}"
            )
        c.checked.append(t.target)
    binaries = {t.binary for t in doc.targets}
    for path in content.listed():
        if path.startswith(f"{BIN_DIR}/") and parse_binary_name(path[len(BIN_DIR) + 1:]) and path not in binaries:
            raise MetadataMismatchError(f"{path}: binary has no installer target in {files.installers}")


def check_endpoint_deployment(content: VerifiedContent, c: FamilyCollector) -> None:
    evidence = release_evidence(content)
    files = RuntimeFiles(runtime_of(content))
    doc = _load(content, files.endpoint_deployment, EndpointDeploymentDocument, "endpoint deployment metadata")
    _expect_version(doc.version, evidence, files.endpoint_deployment)
    if doc.source_metadata != files.installers:
        raise MetadataMismatchError(f"endpoint deployment metadata must reference {files.installers}")
    installers = {t.target: t for t in _load(content, files.installers, InstallersDocument,
                                             "installer metadata").targets}
    if not doc.deployment_targets:
        raise MetadataMismatchError("endpoint deployment metadata has no deployment targets")
    if "smoke-installers-before-rollout" not in doc.controls:
        raise MetadataMismatchError("endpoint deployment metadata is missing smoke installer rollout control")
    seen: set[str] = set()
    for t in doc.deployment_targets:
        if not t.id or t.id in seen:
            raise MetadataMismatchError(f"endpoint deployment target is missing or duplicated: {t.id}")
        seen.add(t.id)
        installer = installers.get(t.installer_target)
        if installer is None:
            raise MetadataMismatchError(
                f"endpoint deployment target references unknown installer target: {t.installer_target}"
            )
        if t.binary != installer.binary:
            raise MetadataMismatchError(f"endpoint deployment binary does not match installer metadata: {t.id}")
        _check_binary_ref(content, t.binary, t.binary_sha256, f"endpoint deployment target {t.id}")
        if not all((t.surface, t.platform, t.deployment_channel, t.management_tool, t.install_path,
                    t.install_command)):
            raise MetadataMismatchError(f"endpoint deployment target is missing deployment guidance: {t.id}")
        if not t.verification_commands:
            raise MetadataMismatchError(f"endpoint deployment target is missing verification commands: {t.id}")
        if not _contains(t.verification_commands, PACKAGE_VERIFY_MARKERS):
            raise MetadataMismatchError(f"endpoint deployment target is missing package verification guidance: {t.id}")
        if not _contains(t.verification_commands, SMOKE_MARKERS):
            raise MetadataMismatchError(f"endpoint deployment target is missing smoke installer guidance: {t.id}")
        c.checked.append(t.id)


def check_channels(content: VerifiedContent, c: FamilyCollector) -> None:
    evidence = release_evidence(content)
    files = RuntimeFiles(runtime_of(content))
    manifest = _load(content, files.channels, ChannelsDocument, "channel manifest")
    policy = _load(content, files.updater_policy, UpdaterPolicyDocument, "updater policy")
    _expect_version(manifest.version, evidence, files.channels)
    if manifest.source_metadata != files.endpoint_deployment:
        raise MetadataMismatchError(f"channel manifest must reference {files.endpoint_deployment}")
    if manifest.updater_policy != files.updater_policy:
        raise MetadataMismatchError(f"channel manifest must reference {files.updater_policy}")
    if not manifest.channels:
        raise MetadataMismatchError("channel manifest has no channels")
    names: set[str] = set()
    for ch in manifest.channels:
        if not ch.channel or ch.channel in names:
            raise MetadataMismatchError(f"channel is missing or duplicated: {ch.channel}")
        names.add(ch.channel)
        if ch.version != evidence.version or ch.commit != evidence.commit:
            raise BindingMismatchError(
                f"channel {ch.channel}: describes {ch.version} @ {ch.commit[:12]}, release is "
                f"{evidence.version} @ {evidence.commit[:12]}"
            )
        if ch.auto_update is not False or ch.approval_required is not True:
            raise MetadataMismatchError(f"channel {ch.channel} must require approval and disable auto_update")
        if "verify-go-package-before-channel-publish" not in ch.controls:
            raise MetadataMismatchError(f"channel {ch.channel} is missing package verification controls")
        if not ch.workstation_targets:
            raise MetadataMismatchError(f"channel {ch.channel} has no workstation targets")
        if not _contains(ch.verification_commands, PACKAGE_VERIFY_MARKERS) or not _contains(
            ch.verification_commands, SMOKE_MARKERS
        ):
            raise MetadataMismatchError(f"channel {ch.channel} is missing verification commands")
        for t in ch.workstation_targets:
            _check_binary_ref(content, t.binary, t.binary_sha256, f"channel {ch.channel} target {t.id}")
            if not all((t.id, t.platform, t.installer_target, t.deployment_channel, t.management_tool)):
                raise MetadataMismatchError(f"channel {ch.channel} target is missing deployment guidance")
        if not ch.rollback.required:
            raise MetadataMismatchError(f"channel {ch.channel} must require a rollback package")
        c.checked.append(ch.channel)
    _expect_version(policy.version, evidence, files.updater_policy)
    if policy.source_channel_manifest != files.channels:
        raise MetadataMismatchError(f"updater policy must reference {files.channels}")
    if policy.default_auto_update is not False:
        raise MetadataMismatchError("updater policy must disable default_auto_update")
    if "manual-approval-before-auto-update" not in policy.controls:
        raise MetadataMismatchError("updater policy is missing manual approval control")
    if not policy.policies:
        raise MetadataMismatchError("updater policy has no channel policies")
    if {p.channel for p in policy.policies} != names or len(policy.policies) != len(names):
        raise MetadataMismatchError("updater policy channels must match channel manifest channels")
    for p in policy.policies:
        if p.auto_update is not False or p.approval_required is not True:
            raise MetadataMismatchError(f"updater policy {p.channel} must require approval and disable auto_update")
        if not p.rollout_rings:
            raise MetadataMismatchError(f"updater policy {p.channel} has no rollout rings")
        if p.rollback.required is not True:
            raise MetadataMismatchError(f"updater policy {p.channel} must require rollback")


def check_ci_runner_bundles(content: VerifiedContent, c: FamilyCollector) -> None:
    files = RuntimeFiles(runtime_of(content))
    if files.ci_runner_bundles not in content.listed():
        if content.reference:  # the reference verifier requires it (cavra-spec §4.1 step 7)
            raise MissingFileError(f"missing {files.ci_runner_bundles} (required by the reference profile)")
        raise Skip(f"{files.ci_runner_bundles} not present (optional)")
    evidence = release_evidence(content)
    doc = _load(content, files.ci_runner_bundles, CiRunnerBundlesDocument, "CI runner bundle metadata")
    _expect_version(doc.version, evidence, files.ci_runner_bundles)
    if doc.source_metadata != files.endpoint_deployment:
        raise MetadataMismatchError(f"CI runner bundle metadata must reference {files.endpoint_deployment}")
    listed = content.listed()
    for label, ref in (("runner script", doc.runner_script), ("GitHub action", doc.github_action)):
        if ref.path not in listed:
            raise MissingFileError(f"CI runner {label} is missing: {ref.path}")
        if ref.sha256 != listed[ref.path]:
            raise MetadataMismatchError(f"CI runner {label} disagrees with checksums.txt: {ref.path}")
    if "CAVRA_RELEASE_GOVERNANCE_REQUEST" not in doc.runner_script.required_environment:
        raise MetadataMismatchError("CI runner script must require CAVRA_RELEASE_GOVERNANCE_REQUEST")
    if content.reference:
        generation, missing = ci_control_generation(doc.controls, CI_RUNNER_REQUIRED_CONTROLS)
        if generation == "stored-packager":
            c.warn(f"{files.ci_runner_bundles} carries the stored reference packager's 5 CI-runner controls "
                   "(older generation); accepted by the reference profile")
    else:
        missing = [ctl for ctl in CI_RUNNER_REQUIRED_CONTROLS if ctl not in doc.controls]
    if missing:
        raise MetadataMismatchError(f"CI runner bundle metadata is missing controls: {', '.join(missing)}")
    endpoint = {t.id: t for t in _load(content, files.endpoint_deployment, EndpointDeploymentDocument,
                                       "endpoint deployment metadata").deployment_targets}
    if not doc.runner_bundles:
        raise MetadataMismatchError("CI runner bundle metadata has no runner bundles")
    for b in doc.runner_bundles:
        target = endpoint.get(b.deployment_target)
        if target is None or target.surface != "ci-runner":
            raise MetadataMismatchError(f"CI runner bundle references unknown ci-runner target: {b.deployment_target}")
        if b.runtime_binary != target.binary:
            raise MetadataMismatchError(f"CI runner bundle binary does not match deployment target: {b.platform}")
        _check_binary_ref(content, b.runtime_binary, b.runtime_binary_sha256, f"CI runner bundle {b.platform}")
        if b.reusable_wrapper not in listed:
            raise MissingFileError(f"CI runner bundle wrapper is missing: {b.reusable_wrapper}")
        if not _contains(b.verification_commands, PACKAGE_VERIFY_MARKERS) or not _contains(
            b.verification_commands, ("gh attestation verify",)
        ):
            raise MetadataMismatchError(f"CI runner bundle is missing verification commands: {b.platform}")
        if not any("release-governance-evidence.jsonl" in o for o in b.required_outputs):
            raise MetadataMismatchError(f"CI runner bundle is missing evidence outputs: {b.platform}")
        c.checked.append(b.platform)


def check_provenance(content: VerifiedContent, c: FamilyCollector) -> None:
    evidence = release_evidence(content)
    files = RuntimeFiles(runtime_of(content))
    name = files.provenance
    if name in content.failed:
        raise Skip(f"{name} failed integrity or signature checks; not parsed")
    if name not in content.documents:
        raise MissingFileError(f"missing {name}")
    raw = loads_strict(content.documents[name], source=name)
    if not isinstance(raw, dict):
        raise ProvenanceError(f"{name}: expected a JSON object")
    if raw.get("_type") != STATEMENT_TYPE:
        raise ProvenanceError(f"{name}: unsupported Statement _type {raw.get('_type')!r}, expected {STATEMENT_TYPE}")
    if raw.get("predicateType") != PROVENANCE_PREDICATE:
        raise ProvenanceError(
            f"{name}: unsupported predicateType {raw.get('predicateType')!r}, expected {PROVENANCE_PREDICATE}"
        )
    try:
        statement = ProvenanceStatement.model_validate(raw)
    except ValidationError as exc:
        raise ProvenanceError(f"SLSA provenance {validation_problem(exc, default_location='')}") from exc
    build = statement.predicate.buildDefinition
    if build.buildType not in KNOWN_BUILD_TYPES:
        raise ProvenanceError(f"SLSA provenance has unexpected buildType {build.buildType!r}")
    builder = statement.predicate.runDetails.builder.id
    if builder not in content.trust_root.trusted_builders:
        raise UntrustedBuilderError(
            f"SLSA provenance builder.id {builder!r} is not a trusted builder of the trust root"
        )
    params = build.externalParameters
    expected = {"version": evidence.version, "ref": evidence.ref, "event": evidence.event}
    repository = evidence.repository
    if repository is None and content.reference:  # the reference evidence names no repository
        repository = _load(content, files.installers, InstallersDocument, "installer metadata").repository
    if repository is not None:
        expected["repository"] = repository
    for key, value in expected.items():
        found = getattr(params, key)
        if found != value:
            raise ProvenanceError(
                f"SLSA provenance externalParameters.{key} is {found!r}, release evidence says {value!r}"
            )
    commits = [d.digest.gitCommit for d in build.resolvedDependencies if d.digest and d.digest.gitCommit]
    for commit in commits:  # every resolved source (the reference records two) is the release commit
        if commit != evidence.commit:
            raise ProvenanceError(
                f"SLSA provenance source commit {commit} does not match release commit {evidence.commit}"
            )
    listed = content.listed()
    subjects: set[str] = set()
    for s in statement.subject:
        digest = s.digest.get("sha256")
        if not digest:
            raise ProvenanceError(f"SLSA provenance subject {s.name} has no sha256 digest")
        if s.name not in listed:
            raise ProvenanceError(f"SLSA provenance subject is not in checksums.txt: {s.name}")
        if digest != listed[s.name]:
            raise ProvenanceError(f"SLSA provenance subject disagrees with checksums.txt: {s.name}")
        subjects.add(s.name)
        c.checked.append(s.name)
    for path in listed:
        if path not in subjects and path not in (CHECKSUMS, name):
            raise ProvenanceError(f"SLSA provenance subject list is missing {path}")


def check_sbom(content: VerifiedContent, c: FamilyCollector, validate: SpdxValidator | None) -> None:
    evidence = release_evidence(content)
    files = RuntimeFiles(runtime_of(content))
    name = files.sbom
    if name in content.failed:
        raise Skip(f"{name} failed integrity or signature checks; not parsed")
    if name not in content.listed():
        raise SbomError(f"missing {name} (the SBOM must be listed in checksums.txt and signed)")
    if name not in content.documents:
        raise Skip(f"{name} was not read")
    raw = loads_strict(content.documents[name], source=name)
    if not isinstance(raw, dict):
        raise SbomError(f"{name}: expected a JSON object")
    if raw.get("spdxVersion") != "SPDX-2.3":
        raise SbomError(f"{name}: spdxVersion {raw.get('spdxVersion')!r}, expected 'SPDX-2.3'")
    if content.reference:
        _check_reference_sbom(content, c, name, raw, evidence, validate)
        return
    if validate is not None:
        problems = validate(raw)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SbomError(f"{name}: invalid SPDX 2.3: {problems[0]}{more}")
    packages = raw.get("packages")
    if not isinstance(packages, list):
        raise SbomError(f"{name}: no packages")
    by_file: dict[str, dict[str, Any]] = {}
    for package in packages:
        if isinstance(package, dict):
            for key in ("packageFileName", "name"):
                value = package.get(key)
                if isinstance(value, str):
                    by_file.setdefault(value, package)
    for path, digest in content.listed().items():
        parsed = parse_binary_name(path.rsplit("/", 1)[-1])
        if not path.startswith(f"{BIN_DIR}/") or parsed is None:
            continue
        package = by_file.get(path) or by_file.get(parsed.filename)
        if package is None:
            raise SbomError(f"{name}: no SBOM package for binary {path}")
        listed_sums = package.get("checksums")
        sums = {s.get("algorithm"): s.get("checksumValue")
                for s in (listed_sums if isinstance(listed_sums, list) else []) if isinstance(s, dict)}
        if sums.get("SHA256") != digest:
            raise SbomError(f"{name}: SHA256 for {path} is {sums.get('SHA256')!r}, checksums.txt has {digest}")
        if package.get("versionInfo") != evidence.version:
            raise SbomError(
                f"{name}: version of {path} is {package.get('versionInfo')!r}, release is {evidence.version!r}"
            )
        c.checked.append(path)
    if not c.checked:
        raise SbomError(f"{name}: describes none of the package's binaries")


def _check_reference_sbom(content: VerifiedContent, c: FamilyCollector, name: str, raw: dict[str, Any],
                          evidence: ReleaseEvidenceDocument, validate: SpdxValidator | None) -> None:
    """Reference profile: valid SPDX 2.3 once the timestamp form is normalised (on a copy), about
    this release; per-binary detail comes from the signed installers metadata instead."""
    document = dict(raw)
    info = raw.get("creationInfo")
    created = info.get("created") if isinstance(info, dict) else None
    normalised = normalise_spdx_created(created)
    if isinstance(info, dict) and normalised is not None and normalised != created:
        document["creationInfo"] = {**info, "created": normalised}
        c.warn(f"{name}: creationInfo.created {created!r} is not in SPDX form (YYYY-MM-DDThh:mm:ssZ); "
               f"validated as {normalised!r}")
    elif isinstance(info, dict) and normalised is None and created is not None:
        raise SbomError(f"{name}: creationInfo.created {created!r} is not a timestamp with a UTC offset")
    if validate is not None:
        problems = []
        for problem in validate(document):
            if problem.startswith(SPDX_NO_DESCRIBES):
                c.warn(f"{name}: no DESCRIBES relationship (reference SBOM); accepted by the reference profile")
            else:
                problems.append(problem)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SbomError(f"{name}: invalid SPDX 2.3: {problems[0]}{more}")
    # a swapped-in SBOM of another release must not pass: the reference names the release version
    # in the document name and namespace
    namespace, doc_name = raw.get("documentNamespace"), raw.get("name")
    about = (isinstance(namespace, str) and f"/{evidence.version}/" in namespace) or (
        isinstance(doc_name, str) and doc_name.split(" ")[-1] == evidence.version)
    if not about:
        raise SbomError(f"{name}: names neither version {evidence.version!r} in its name {doc_name!r} nor in "
                        f"its documentNamespace (an SBOM of another release?)")
    c.warn(f"{name}: per-binary detail taken from the signed installers metadata (reference SBOM lists no "
           "binaries)")
    c.checked.append(name)


def check_bootstrap(content: VerifiedContent, c: FamilyCollector) -> None:
    evidence = release_evidence(content)
    model = ReferenceBootstrapDocument if content.reference else BootstrapDocument
    doc = _load(content, BOOTSTRAP, model, "offline trust bootstrap")
    _expect_version(doc.version, evidence, BOOTSTRAP)
    if not doc.required_files:
        raise MetadataMismatchError("offline bootstrap has no required_files")
    listed = set(content.listed()) | set(content.documents) | {CHECKSUMS} | set(content.ignored)
    for path in doc.required_files:
        if path not in listed:
            raise MissingFileError(f"offline bootstrap required file is missing: {path}")
    if not _contains(doc.verification_commands, PACKAGE_VERIFY_MARKERS) or not _contains(
        doc.verification_commands, AIRGAP_MARKERS
    ):
        raise MetadataMismatchError("offline bootstrap is missing package and air-gap verification commands")
    if doc.trusted_keys:
        declared = {k.key_id for k in doc.trusted_keys}
        signers = set(content.signers.get(CHECKSUMS, ()))
        if signers and not declared & signers:
            raise BindingMismatchError(
                "checksums.txt is signed by none of the keys declared in offline-trust-root-bootstrap.json"
            )
        for key in doc.trusted_keys:
            if content.trust_root.find(key.key_id) is None:
                c.warn(f"offline bootstrap declares key {key.key_id[:16]} which the pinned trust root does not list")
    elif not content.unsigned:
        c.warn("offline bootstrap carries no key fingerprints (reference-format package)")
    c.checked.extend(doc.required_files)


FAMILY_NAMES = (
    "release-evidence",
    "installers",
    "endpoint-deployment",
    "channels-and-updater-policy",
    "ci-runner-bundles",
    "provenance",
    "sbom",
    "offline-bootstrap",
)


def run_document_family(name: str, content: VerifiedContent, validate_spdx: SpdxValidator | None) -> FamilyResult:
    """Run one named document family (the flow runs each as its own task)."""
    checks: dict[str, Callable[[FamilyCollector], None]] = {
        "release-evidence": lambda c: check_release_evidence(content, c),
        "installers": lambda c: check_installers(content, c),
        "endpoint-deployment": lambda c: check_endpoint_deployment(content, c),
        "channels-and-updater-policy": lambda c: check_channels(content, c),
        "ci-runner-bundles": lambda c: check_ci_runner_bundles(content, c),
        "provenance": lambda c: check_provenance(content, c),
        "sbom": lambda c: check_sbom(content, c, validate_spdx),
        "offline-bootstrap": lambda c: check_bootstrap(content, c),
    }
    if name not in checks:
        raise ValueError(f"unknown check family {name!r}")
    return run_family(name, checks[name])


__all__ = ["FAMILY_NAMES", "SpdxValidator", "VerificationError", "VerifiedContent", "run_document_family"]
