"""Upgrade validation: is the candidate a legitimate successor of the previous release?

Rules: the candidate's version must be strictly greater under SemVer precedence
(``ringward.core.common.versions``); an equal version is accepted only with identical bytes and an
explicit ``allow_same_version``; the same version with different bytes is a conflict (a
re-published release is an attack signal). Removed artifact kinds, binary targets and controls
are errors; changed install paths are reported as warnings for the change record.

The migration step: from a package verified under the reference profile to one verified under the
Ringward profile, the kinds and controls the reference has and Ringward replaces
(:data:`MIGRATION_KINDS`, :data:`MIGRATION_CONTROLS`) are reported as migration notes, not
removals. Everything else (targets, other kinds and controls, versions, repository) is checked as
for any upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ringward.core.common.versions import ReleaseVersion
from ringward.core.errors import BindingMismatchError, RollbackError, VerificationError, VersionConflictError
from ringward.core.release.package_format import (
    ChannelsDocument,
    EndpointDeploymentDocument,
    InstallersDocument,
    ReleaseEvidenceDocument,
    UpdaterPolicyDocument,
)
from ringward.core.release.verification import Finding

#: artifact kinds a reference package has and a Ringward package replaces, with the replacement
MIGRATION_KINDS = {
    "ci-runner-bundles": "CI-runner bundles are optional in Ringward packages (written by "
                         "`release package --layout reference` with the wrappers you supply)",
    "ci-runner-wrapper": "CI-runner wrappers ship with the CI-runner bundle document, which Ringward makes optional",
    "go-modules": "Ringward keeps the dependency list as go-modules.json or dependencies.json (dependency-list) "
                  "and in the SBOM",
}
#: controls a reference package asserts and Ringward replaces, with the replacement
MIGRATION_CONTROLS = {
    "reproducible-go-build-flags": "Ringward does not assert build flags; the SLSA provenance names the builder, "
                                   "which must be trusted by the trust root",
    "signed-ci-runner-bundles": "CI-runner bundles are optional in Ringward packages; when present they are signed "
                                "and verified like every file",
}

@dataclass(frozen=True)
class ReleaseFacts:
    """The parsed, already-verified documents of one package that upgrades compare."""

    evidence: ReleaseEvidenceDocument
    installers: InstallersDocument
    endpoint: EndpointDeploymentDocument
    channels: ChannelsDocument
    updater: UpdaterPolicyDocument
    checksums_sha256: str
    runtime: str
    #: the profile the package verified under (``ringward`` or ``reference``)
    profile: str = "ringward"

    @property
    def repository(self) -> str:
        return self.evidence.repository or self.installers.repository

    def controls(self) -> set[str]:
        found = set(self.evidence.controls) | set(self.endpoint.controls) | set(self.updater.controls)
        for channel in self.channels.channels:
            found |= set(channel.controls)
        return found

    def kinds(self) -> set[str]:
        return {a.kind for a in self.evidence.artifacts}

    def targets(self) -> dict[str, str]:
        return {t.target: t.install_path for t in self.installers.targets}


@dataclass(frozen=True)
class UpgradeReport:
    previous_version: str
    candidate_version: str
    errors: tuple[Finding, ...]
    warnings: tuple[str, ...]
    artifact_changes: dict[str, list[str]] = field(default_factory=dict)
    control_changes: dict[str, list[str]] = field(default_factory=dict)
    install_path_changes: list[dict[str, str]] = field(default_factory=list)
    #: reference -> Ringward: known format differences, reported instead of removals
    migration: bool = False
    migration_notes: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "previous_version": self.previous_version,
            "candidate_version": self.candidate_version,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": list(self.warnings),
            "artifact_changes": self.artifact_changes,
            "control_changes": self.control_changes,
            "install_path_changes": self.install_path_changes,
            "migration": self.migration,
            "migration_notes": list(self.migration_notes),
        }


def compare_releases(previous: ReleaseFacts, candidate: ReleaseFacts, *, allow_same_version: bool) -> UpgradeReport:
    errors: list[Finding] = []
    warnings: list[str] = []

    def fail(error: VerificationError) -> None:
        errors.append(Finding.of(error))

    prev_v = previous.evidence.version
    cand_v = candidate.evidence.version
    if previous.runtime != candidate.runtime:
        fail(BindingMismatchError(
            f"candidate is runtime {candidate.runtime!r}, previous is {previous.runtime!r}; not an upgrade"
        ))
    if previous.repository != candidate.repository:
        fail(BindingMismatchError(
            f"candidate comes from repository {candidate.repository!r}, previous from {previous.repository!r}"
        ))
    try:
        p = ReleaseVersion.parse(prev_v, field="previous version")
        c = ReleaseVersion.parse(cand_v, field="candidate version")
    except VersionConflictError as exc:
        fail(exc)
    else:
        if c < p:
            fail(RollbackError(f"candidate version {cand_v} is older than previous version {prev_v} (rollback)"))
        elif c == p:
            same_bytes = previous.checksums_sha256 == candidate.checksums_sha256
            if not same_bytes:
                fail(VersionConflictError(
                    f"candidate version {cand_v} equals previous version {prev_v} but its bytes differ "
                    "(same version re-published with other content)"
                ))
            elif not allow_same_version:
                fail(VersionConflictError(f"candidate version {cand_v} must be newer than previous version {prev_v}"))
            else:
                warnings.append(f"candidate is the same release as previous ({cand_v}, identical checksums.txt)")
    if previous.evidence.commit == candidate.evidence.commit and prev_v != cand_v:
        warnings.append("candidate package uses the same commit as the previous package")
    migration = previous.profile == "reference" and candidate.profile == "ringward"
    notes: list[str] = []
    removed_kinds = sorted(previous.kinds() - candidate.kinds())
    for kind in removed_kinds:
        if migration and kind in MIGRATION_KINDS:
            notes.append(f"artifact kind {kind} (reference) is not in the Ringward package: {MIGRATION_KINDS[kind]}")
            continue
        fail(VerificationError(f"candidate removed release artifact kind: {kind}"))
    prev_targets, cand_targets = previous.targets(), candidate.targets()
    removed_targets = sorted(set(prev_targets) - set(cand_targets))
    for target in removed_targets:
        fail(VerificationError(f"candidate removed runtime binary target: {target}"))
    removed_controls = sorted(previous.controls() - candidate.controls())
    for control in removed_controls:
        if migration and control in MIGRATION_CONTROLS:
            notes.append(f"control {control} (reference) is replaced: {MIGRATION_CONTROLS[control]}")
            continue
        fail(VerificationError(f"candidate removed release control: {control}"))
    path_changes = []
    for target in sorted(set(prev_targets) & set(cand_targets)):
        if prev_targets[target] != cand_targets[target]:
            path_changes.append({"target": target, "previous": prev_targets[target], "candidate": cand_targets[target]})
            warnings.append(f"install path for {target} changed: {prev_targets[target]} -> {cand_targets[target]}")
    return UpgradeReport(
        previous_version=prev_v,
        candidate_version=cand_v,
        errors=tuple(errors),
        warnings=tuple(warnings),
        artifact_changes={
            "added_kinds": sorted(candidate.kinds() - previous.kinds()),
            "removed_kinds": removed_kinds,
            "added_targets": sorted(set(cand_targets) - set(prev_targets)),
            "removed_targets": removed_targets,
        },
        control_changes={"added": sorted(candidate.controls() - previous.controls()), "removed": removed_controls},
        install_path_changes=path_changes,
        migration=migration,
        migration_notes=tuple(notes),
    )
