"""Prefect tasks around the release operations. Coarse on purpose: one task per check family,
never one per file (Prefect costs tens of milliseconds per task run)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from ringward.core.release.package_rules import VerifiedContent, run_document_family
from ringward.core.release.profiles import ProfileChoice
from ringward.core.release.verification import FamilyResult
from ringward.operations.release import release_ops
from ringward.operations.release.verify import (
    DirectorySource,
    IntegrityScan,
    resolve_profile,
    scan_integrity,
    skipped_family,
    spdx_validator,
)
from ringward.operations.trust.keys import load_trust_root


@task(name="integrity-and-signatures", cache_policy=NO_CACHE)
def verify_integrity(
    package_dir: str, trust_root: str, now: datetime, allow_unsigned: bool, profile: str = "ringward",
    keyless_bundles: bool = False,
) -> tuple[IntegrityScan, ProfileChoice] | State:
    """Choose the profile (ringward / reference / auto), then read, hash and signature-check every
    byte of the package against the pinned trust root: the same steps as the in-process path.
    A failing integrity family ends in a Failed state (red in the UI) that still carries the scan.
    ``keyless_bundles``: the keyless-attestation layer is on (unlisted binary bundles allowed)."""
    root = load_trust_root(Path(trust_root))
    source = DirectorySource(Path(package_dir))
    choice = resolve_profile(source, profile)
    integrity = scan_integrity(source, root, now=now, allow_unsigned=allow_unsigned, profile=choice.profile,
                               keyless_bundles=keyless_bundles)
    if integrity.result.status == "failed":
        return Failed(message=f"{integrity.result.family}: {integrity.result.errors[0].message}"[:500],
                      data=(integrity, choice))
    return integrity, choice


@task(name="check-family", cache_policy=NO_CACHE, task_run_name="check-{family}")
def check_family(family: str, content: VerifiedContent | None) -> FamilyResult | State:
    """One document check family over already-verified bytes. A failing family ends in a
    Failed state (red in the UI) that still carries its FamilyResult."""
    if content is None:
        return skipped_family(family, "integrity and signatures failed; documents not parsed")
    result = run_document_family(family, content, spdx_validator() if family == "sbom" else None)
    if result.status == "failed":
        return Failed(message=f"{family}: {result.errors[0].message}", data=result)
    return result


@task(name="record-verification-evidence", cache_policy=NO_CACHE)
def record_verification(verification: Any, package_dir: str, record: bool, flow_run_id: str | None,
                        extra: dict[str, Any] | None = None, extra_files: dict[str, bytes] | None = None) \
        -> dict[str, Any]:
    return release_ops.finish_verification(verification, package_dir=package_dir, record=record,
                                           flow_run_id=flow_run_id, extra=extra, extra_files=extra_files)


@task(name="package-release", cache_policy=NO_CACHE)
def package_release(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any]:
    return release_ops.run_package(**params, flow_run_id=flow_run_id)


def red_when_invalid(result: dict[str, Any], check: str) -> dict[str, Any] | State:
    """A verified-and-invalid result as a Failed task state (red in the UI) carrying the same data
    (the flow reads it with ``unwrap``); a valid one as is."""
    if result.get("valid", True):
        return result
    first = (result.get("errors") or [{"message": "invalid"}])[0]["message"]
    return Failed(message=f"{check}: {first}"[:500], data=result)


@task(name="verify-airgap-bundle", cache_policy=NO_CACHE)
def verify_airgap(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return red_when_invalid(release_ops.run_verify_airgap(**params, flow_run_id=flow_run_id), "verify-airgap-bundle")


@task(name="validate-upgrade", cache_policy=NO_CACHE)
def validate_upgrade(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return red_when_invalid(release_ops.run_validate_upgrade(**params, flow_run_id=flow_run_id), "validate-upgrade")


@task(name="smoke-installers", cache_policy=NO_CACHE)
def smoke_installers(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return red_when_invalid(release_ops.run_smoke_installers(**params, flow_run_id=flow_run_id), "smoke-installers")
