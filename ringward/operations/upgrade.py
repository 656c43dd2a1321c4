"""`ringward release validate-upgrade`: verify both packages, then compare them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ringward.core.errors import VerificationError
from ringward.core.jsonio import loads_strict
from ringward.core.package_format import (
    CHECKSUMS,
    ChannelsDocument,
    EndpointDeploymentDocument,
    InstallersDocument,
    ReleaseEvidenceDocument,
    RuntimeFiles,
    UpdaterPolicyDocument,
)
from ringward.core.package_rules import VerifiedContent, runtime_of
from ringward.core.trust import TrustRoot
from ringward.core.upgrade import ReleaseFacts, UpgradeReport, compare_releases
from ringward.core.verification import Finding, PackageVerification
from ringward.operations.verify import verify_directory


@dataclass(frozen=True)
class UpgradeValidation:
    previous: PackageVerification
    candidate: PackageVerification
    comparison: UpgradeReport | None

    @property
    def valid(self) -> bool:
        return self.previous.valid and self.candidate.valid and self.comparison is not None and self.comparison.valid

    @property
    def errors(self) -> list[Finding]:
        out = [Finding(e.code, f"previous package: {e.message}", e.error_type) for e in self.previous.errors]
        out += [Finding(e.code, f"candidate package: {e.message}", e.error_type) for e in self.candidate.errors]
        if self.comparison is not None:
            out += list(self.comparison.errors)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "ringward.upgrade-validation.v1",
            "valid": self.valid,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": list(self.comparison.warnings) if self.comparison else [],
            "verified_previous": self.previous.valid,
            "verified_candidate": self.candidate.valid,
            "previous": self.previous.to_dict(),
            "candidate": self.candidate.to_dict(),
            "comparison": self.comparison.to_dict() if self.comparison else None,
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
    )


def validate_upgrade(previous_dir: Path, candidate_dir: Path, trust_root: TrustRoot, *, now: datetime,
                     allow_same_version: bool = False) -> UpgradeValidation:
    results = []
    facts = []
    for directory in (previous_dir, candidate_dir):
        integrity, verification = verify_directory(directory, trust_root, now=now)
        results.append(verification)
        facts.append(_facts(integrity.content) if verification.valid and integrity.content else None)
    comparison = None
    if facts[0] is not None and facts[1] is not None:
        try:
            comparison = compare_releases(facts[0], facts[1], allow_same_version=allow_same_version)
        except VerificationError:  # pragma: no cover - documents already validated above
            comparison = None
    return UpgradeValidation(results[0], results[1], comparison)
