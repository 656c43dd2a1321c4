"""`ringward release validate-upgrade`: verify both packages, then compare them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import VerificationError
from ringward.core.release.package_format import (
    CHECKSUMS,
    ChannelsDocument,
    EndpointDeploymentDocument,
    InstallersDocument,
    ReleaseEvidenceDocument,
    RuntimeFiles,
    UpdaterPolicyDocument,
)
from ringward.core.release.package_rules import VerifiedContent, runtime_of
from ringward.core.release.upgrade import ReleaseFacts, UpgradeReport, compare_releases
from ringward.core.release.verification import Finding, PackageVerification
from ringward.core.trust.root import TrustRoot
from ringward.operations.release.verify import verify_directory


@dataclass(frozen=True)
class UpgradeValidation:
    previous: PackageVerification
    candidate: PackageVerification
    comparison: UpgradeReport | None
    #: sha256 hex of the candidate's checksums.txt (when it verified)
    candidate_checksums_sha256: str | None = None
    #: ``--channel``: the channel whose persisted high-water mark and hold the candidate was checked against
    channel: str | None = None
    channel_errors: tuple[Finding, ...] = ()

    @property
    def valid(self) -> bool:
        return (self.previous.valid and self.candidate.valid and self.comparison is not None
                and self.comparison.valid and not self.channel_errors)

    @property
    def errors(self) -> list[Finding]:
        out = [Finding(e.code, f"previous package: {e.message}", e.error_type) for e in self.previous.errors]
        out += [Finding(e.code, f"candidate package: {e.message}", e.error_type) for e in self.candidate.errors]
        if self.comparison is not None:
            out += list(self.comparison.errors)
        return out + list(self.channel_errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "ringward.upgrade-validation.v1",
            "valid": self.valid,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": list(self.comparison.warnings) if self.comparison else [],
            "verified_previous": self.previous.valid,
            "verified_candidate": self.candidate.valid,
            "previous_version": self.previous.version,
            "candidate_version": self.candidate.version,
            "profiles": {"previous": self.previous.profile_name, "candidate": self.candidate.profile_name},
            "previous": self.previous.to_dict(),
            "candidate": self.candidate.to_dict(),
            "comparison": self.comparison.to_dict() if self.comparison else None,
            **({} if self.channel is None else {
                "channel": self.channel,
                "channel_check": {"passed": not self.channel_errors,
                                  "errors": [e.to_dict() for e in self.channel_errors]},
            }),
        }


def _facts(content: VerifiedContent) -> ReleaseFacts:
    files = RuntimeFiles(runtime_of(content))

    def doc(name: str, model: Any) -> Any:
        return model.model_validate(loads_strict(content.documents[name], source=name))

    return ReleaseFacts(
        evidence=doc("release-evidence.json", ReleaseEvidenceDocument),
        installers=doc(files.installers, InstallersDocument),
        endpoint=doc(files.endpoint_deployment, EndpointDeploymentDocument),
        channels=doc(files.channels, ChannelsDocument),
        updater=doc(files.updater_policy, UpdaterPolicyDocument),
        checksums_sha256=hashlib.sha256(content.documents[CHECKSUMS]).hexdigest(),
        runtime=files.runtime,
        profile=content.profile.value,
    )


def validate_upgrade(previous_dir: Path, candidate_dir: Path, trust_root: TrustRoot, *, now: datetime,
                     allow_same_version: bool = False, profile: str = "ringward") -> UpgradeValidation:
    """``profile`` applies to both packages; ``auto`` detects each one's on its own (a reference
    package followed by a Ringward-built successor is the migration step)."""
    results = []
    facts = []
    for directory in (previous_dir, candidate_dir):
        integrity, verification = verify_directory(directory, trust_root, now=now, profile=profile)
        results.append(verification)
        facts.append(_facts(integrity.content) if verification.valid and integrity.content else None)
    comparison = None
    if facts[0] is not None and facts[1] is not None:
        try:
            comparison = compare_releases(facts[0], facts[1], allow_same_version=allow_same_version)
        except VerificationError:  # pragma: no cover - documents already validated above
            comparison = None
    return UpgradeValidation(results[0], results[1], comparison,
                             candidate_checksums_sha256=facts[1].checksums_sha256 if facts[1] else None)


def check_channel(validation: UpgradeValidation, channel: str, store: Any) -> UpgradeValidation:
    """``--channel``: the candidate against the channel's persisted state (ringward.core.promotion.channels
    CH2-CH4): a held channel, a version below the high-water mark, or the mark's version with other
    bytes is an error of the validation."""
    from ringward.core.errors import RingwardError
    from ringward.core.promotion.channels import check_candidate, check_channel_name, check_not_held
    from ringward.store.promotion.channel_repo import ChannelRepository

    check_channel_name(channel)
    state = ChannelRepository(store).get(channel)
    errors: list[Finding] = []
    try:
        digest = validation.candidate_checksums_sha256
        if validation.candidate.valid and validation.candidate.version and digest:
            check_candidate(state, version=validation.candidate.version, digest=f"sha256:{digest}")
        else:
            check_not_held(state)
    except RingwardError as exc:
        errors.append(Finding.of(exc))
    return replace(validation, channel=channel, channel_errors=tuple(errors))


def run_validate_upgrade_on_channel(*, previous_dir: str, candidate_dir: str, trust_root: str, channel: str,
                                    now: datetime, allow_same_version: bool = False, record: bool = True,
                                    flow_run_id: str | None = None, actor: str | None = None,
                                    profile: str = "ringward") -> dict[str, Any]:
    """``release validate-upgrade --channel C``: the comparison plus the channel's persisted rules,
    recorded as one ``release-upgrade-validation`` evidence record."""
    from ringward.core.promotion.channels import check_channel_name
    from ringward.operations.release import release_ops
    from ringward.operations.trust.keys import load_trust_root
    from ringward.store import open_store

    check_channel_name(channel)
    root = load_trust_root(Path(trust_root))
    validation = validate_upgrade(Path(previous_dir), Path(candidate_dir), root, now=now,
                                  allow_same_version=allow_same_version, profile=profile)
    with open_store() as store:
        validation = check_channel(validation, channel, store)
    result = validation.to_dict()
    if record:
        version = validation.comparison.candidate_version if validation.comparison else validation.candidate.version
        result["evidence"] = release_ops.record_result(
            release_ops.KIND_UPGRADE, result, valid=validation.valid, version=version,
            runtime=validation.candidate.runtime, flow_run_id=flow_run_id, actor=actor)
    return result
