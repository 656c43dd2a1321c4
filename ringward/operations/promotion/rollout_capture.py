"""Rollout capture and verification (reference §4.9/§4.10), and the checks of a release package
and a rollout directory the later steps repeat (package-internal; see
:mod:`ringward.operations.promotion.rollout_ops`)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core import errors as error_module
from ringward.core.common.checksums import parse_checksums
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.paths import check_relative_name
from ringward.core.errors import (
    BindingMismatchError,
    DigestMismatchError,
    InputError,
    MalformedDocumentError,
    MissingFileError,
    StateError,
    UnlistedFileError,
    VerificationError,
)
from ringward.core.evidence.records import EvidenceSubject
from ringward.core.promotion import rollout as ro
from ringward.core.trust.root import TrustRoot
from ringward.operations.common.files import read_capped, walk_regular_files
from ringward.operations.promotion.rollout_base import (
    MAX_FILE_BYTES,
    _check_output,
    _evidence_ref,
    _load_root,
    _publish,
    _record,
    _stage,
    _state_after,
    ledger,
    refusals,
    utc_now,
)
from ringward.store.promotion.executions_repo import RolloutStep

if TYPE_CHECKING:
    from ringward.store import Store


# --- release package -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedPackage:
    package_dir: Path
    content: Any
    verification: Any

    @property
    def verified_artifacts(self) -> list[str]:
        return list(self.verification.verified_files)


def verify_release_package(package_dir: Path, root: TrustRoot, *, now: datetime) -> VerifiedPackage:
    """The release package must verify in full against the pinned trust root, now."""
    from ringward.operations.release.verify import verify_directory

    if not package_dir.is_dir():
        raise MissingFileError(f"rollout evidence package_dir is missing or invalid: {package_dir}")
    integrity, verification = verify_directory(package_dir, root, now=now)
    if not verification.valid or integrity.content is None:
        for finding in verification.errors:
            cls = getattr(error_module, finding.error_type, VerificationError)
            if not (isinstance(cls, type) and issubclass(cls, VerificationError)):
                cls = VerificationError
            raise cls(f"release package {package_dir}: {finding.message}")
        raise VerificationError(f"release package {package_dir}: verification incomplete (a check family was skipped)")
    return VerifiedPackage(package_dir, integrity.content, verification)


def _package_documents(package: VerifiedPackage) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(endpoint deployment file name, its document, release evidence) of a verified package."""
    from ringward.core.release.package_format import EVIDENCE_JSON, RuntimeFiles
    from ringward.core.release.package_rules import runtime_of

    content = package.content
    name = RuntimeFiles(runtime_of(content)).endpoint_deployment
    if name not in content.documents:
        raise MissingFileError(f"release package {package.package_dir}: missing {name}")
    deployment = loads_strict(content.documents[name], source=name)
    evidence = loads_strict(content.documents[EVIDENCE_JSON], source=EVIDENCE_JSON)
    return name, deployment, evidence


# --- rollout directories -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedRollout:
    rollout_dir: Path
    raw: dict[str, Any]
    evidence: ro.RolloutEvidence
    evidence_sha256: str
    package: VerifiedPackage


def check_rollout(
    rollout_dir: Path, root: TrustRoot, *, now: datetime, package_dir: Path | None = None
) -> CheckedRollout:
    """Every check of ``verify-rollout`` (§4.10), stricter: the directory is exactly its
    ``checksums.txt``, the change record is real (RO1), the source artifacts match the package's
    bytes, the package verifies against the pinned trust root now, and the rollout's release and
    targets are the package's."""
    if not rollout_dir.is_dir():
        raise InputError(f"{rollout_dir}: rollout directory does not exist")
    label = str(rollout_dir)
    listing = walk_regular_files(rollout_dir)
    if ro.CHECKSUMS_FILE not in listing:
        raise MissingFileError(f"{label}: missing {ro.CHECKSUMS_FILE}")
    manifest = parse_checksums(read_capped(rollout_dir / ro.CHECKSUMS_FILE, 1024 * 1024, source=ro.CHECKSUMS_FILE))
    listed = manifest.as_dict()
    for name in sorted(listing):
        if name != ro.CHECKSUMS_FILE and name not in listed:
            raise UnlistedFileError(f"{label}: {name} is present but not listed in {ro.CHECKSUMS_FILE}")
    data: dict[str, bytes] = {}
    for name, digest in listed.items():
        if name not in listing:
            raise MissingFileError(f"{label}: rollout checksum artifact is missing: {name}")
        data[name] = read_capped(rollout_dir / name, MAX_FILE_BYTES, source=name)
        found = hashlib.sha256(data[name]).hexdigest()
        if found != digest:
            raise DigestMismatchError(f"{label}: rollout checksum mismatch for {name}: checksums.txt has {digest}, "
                                      f"file has {found}")
    if ro.ROLLOUT_EVIDENCE_FILE not in data:
        raise MissingFileError(f"{label}: {ro.CHECKSUMS_FILE} does not list {ro.ROLLOUT_EVIDENCE_FILE}")
    raw, evidence = ro.parse_document(data[ro.ROLLOUT_EVIDENCE_FILE], ro.RolloutEvidence,
                                      source=ro.ROLLOUT_EVIDENCE_FILE)
    problem = ro.change_record_problem(evidence.change_record)
    if problem is not None:
        raise MalformedDocumentError(f"{ro.ROLLOUT_EVIDENCE_FILE}: change_record: {problem}")
    if not evidence.deployment_targets:
        raise MalformedDocumentError(f"{ro.ROLLOUT_EVIDENCE_FILE}: deployment_targets is empty")
    if "rollout-evidence-checksummed" not in evidence.controls:
        raise MalformedDocumentError(f"{ro.ROLLOUT_EVIDENCE_FILE}: controls lack rollout-evidence-checksummed")
    package_path = (package_dir or Path(evidence.package_dir)).absolute()
    if not package_path.is_dir():
        raise MissingFileError(f"rollout evidence package_dir is missing or invalid: {package_path}")
    for label_, artifact in (("endpoint_deployment", evidence.source_artifacts.endpoint_deployment),
                             ("release_evidence", evidence.source_artifacts.release_evidence)):
        check_relative_name(artifact.path, source=f"source_artifacts.{label_}.path")
        path = package_path / artifact.path
        if not path.is_file() or path.is_symlink():
            raise MissingFileError(f"rollout source artifact is missing: {artifact.path} (in {package_path})")
        found = hashlib.sha256(read_capped(path, MAX_FILE_BYTES, source=artifact.path)).hexdigest()
        if found != artifact.sha256:
            raise DigestMismatchError(
                f"rollout source artifact checksum mismatch: {artifact.path}: rollout evidence has {artifact.sha256}, "
                f"package has {found}"
            )
    package = verify_release_package(package_path, root, now=now)
    ed_name, deployment, release_evidence = _package_documents(package)
    if evidence.source_artifacts.endpoint_deployment.path != ed_name:
        raise BindingMismatchError(f"source_artifacts.endpoint_deployment.path: expected {ed_name!r}, "
                                   f"found {evidence.source_artifacts.endpoint_deployment.path!r}")
    for field in ("version", "commit"):
        if getattr(evidence.release, field) != release_evidence.get(field):
            raise BindingMismatchError(
                f"{ro.ROLLOUT_EVIDENCE_FILE}: release.{field} {getattr(evidence.release, field)!r} does not match the "
                f"package's release-evidence.json {release_evidence.get(field)!r}"
            )
    known = {t.get("id"): t for t in deployment.get("deployment_targets", []) if isinstance(t, dict)}
    for target in evidence.deployment_targets:
        source = known.get(target.id)
        if source is None:
            raise BindingMismatchError(
                f"{ro.ROLLOUT_EVIDENCE_FILE}: deployment target {target.id!r} is not in {ed_name}"
            )
        if source.get("binary_sha256") != target.binary_sha256 or source.get("binary") != target.binary:
            raise BindingMismatchError(
                f"{ro.ROLLOUT_EVIDENCE_FILE}: deployment target {target.id!r} binary does not match {ed_name}"
            )
    digest = hashlib.sha256(data[ro.ROLLOUT_EVIDENCE_FILE]).hexdigest()
    return CheckedRollout(rollout_dir.absolute(), raw, evidence, digest, package)


# --- capture ---------------------------------------------------------------------------------------------


def capture_rollout(
    store: Store,
    *,
    package_dir: Path,
    environment: str,
    ring: str,
    status: str,
    trust_root: Path,
    output: Path,
    change_record: str | None = None,
    deployment_ids: Sequence[str] = (),
    actor: str,
    rollout_id: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Capture a rollout of a verified package to ``ring`` in ``environment`` (§4.9)."""
    moment = now or utc_now()
    ro.check_id(environment, option="--environment")
    ro.check_id(ring, option="--ring")
    rollout_status = ro.check_status(status)
    record = ro.check_change_record(change_record)
    ro.check_line(actor, option="--actor")
    if rollout_id is not None:
        ro.check_id(rollout_id, option="--rollout-id")
    output = _check_output(output)
    root = _load_root(trust_root)
    context: dict[str, Any] = {"environment": environment, "target_ring": ring, "rollout_id": rollout_id}
    with refusals(store, "capture", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        package = verify_release_package(package_dir.absolute(), root, now=moment)
        ed_name, deployment, release = _package_documents(package)
        targets = ro.rollout_targets(list(deployment.get("deployment_targets") or []), list(deployment_ids))
        version = str(release["version"])
        rid = rollout_id or ro.default_rollout_id(environment, version, moment)
        ro.check_id(rid, option="rollout id")
        context.update(rollout_id=rid, release_version=version)
        if ledger(store).for_rollout(rid):
            raise StateError(f"rollout {rid}: already captured; pass another --rollout-id")
        evidence_name = "release-evidence.json"
        doc: dict[str, Any] = {
            "schema_version": ro.ROLLOUT_EVIDENCE_SCHEMA,
            "rollout_id": rid,
            "environment": environment,
            "rollout_ring": ring,
            "status": rollout_status,
            "actor": actor,
            "change_record": record,
            "created_at": ro.iso(moment),
            "package_dir": str(package.package_dir),
            "release": {k: release.get(k) for k in ("version", "commit", "ref", "repository")},
            "source_artifacts": {
                "endpoint_deployment": {"path": ed_name, "sha256": package.content.digests[ed_name]},
                "release_evidence": {"path": evidence_name, "sha256": package.content.digests[evidence_name]},
            },
            "deployment_targets": targets,
            "controls": list(ro.ROLLOUT_CONTROLS),
            "package_verification": {
                "valid": True,
                "verified_at": ro.iso(moment),
                "verified_files": len(package.verification.verified_files),
                "signers": list(package.verification.signers),
                "runtime": package.verification.runtime,
            },
        }
        ro.RolloutEvidence.model_validate(doc)
        files = {ro.ROLLOUT_EVIDENCE_FILE: dumps_document(doc), ro.ROLLOUT_EVIDENCE_MD: ro.rollout_markdown(doc)}
        staging = _stage(output, files, checksums=True)
        _publish(staging, output)
        try:
            payload = ro.metadata_item(
                ro.KIND_CAPTURE, rid, doc["created_at"], actor, rollout_id=rid, environment=environment,
                rollout_ring=ring, rollout_status=rollout_status, change_record=record, release=doc["release"],
                deployment_targets=[t["id"] for t in targets], deployment_target_count=len(targets),
                artifact_sha256=hashlib.sha256(files[ro.ROLLOUT_EVIDENCE_FILE]).hexdigest(), rollout_dir=str(output),
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=rid, step="capture", ref_id=rid, actor=actor, environment=environment,
                            ring=ring, status=rollout_status, release_version=version,
                            document_sha256=payload["artifact_sha256"], path=str(output)),
                kind=ro.KIND_CAPTURE, payload=payload,
                subject=EvidenceSubject(release_version=version, runtime=package.verification.runtime, ring=ring,
                                        environment=environment, status=rollout_status, success=True),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(output, ignore_errors=True)
            raise
    return {
        "valid": True,
        "rollout_id": rid,
        "environment": environment,
        "rollout_ring": ring,
        "status": rollout_status,
        "change_record": record,
        "release": doc["release"],
        "deployment_targets": [t["id"] for t in targets],
        "output_dir": str(output),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }


# --- verify ----------------------------------------------------------------------------------------------


def verify_rollout(
    store: Store,
    *,
    rollout_dir: Path,
    trust_root: Path,
    package_dir: Path | None = None,
    actor: str,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Verify a rollout directory (§4.10); on success, record ``managed-endpoint-rollout``."""
    moment = now or utc_now()
    root = _load_root(trust_root)
    context: dict[str, Any] = {"rollout_dir": str(rollout_dir)}
    with refusals(store, "verify", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        checked = check_rollout(rollout_dir, root, now=moment, package_dir=package_dir)
        ev = checked.evidence
        context.update(rollout_id=ev.rollout_id, environment=ev.environment, target_ring=ev.rollout_ring)
        ring, status = _state_after(store, ev.rollout_id, ev.rollout_ring, ev.status)
        payload = ro.metadata_item(
            ro.KIND_ROLLOUT, ev.rollout_id, ev.created_at, ev.actor, rollout_id=ev.rollout_id,
            environment=ev.environment, rollout_ring=ev.rollout_ring, rollout_status=ev.status,
            change_record=ev.change_record, release=checked.raw["release"],
            deployment_target_count=len(ev.deployment_targets),
            deployment_targets=[t.id for t in ev.deployment_targets], artifact_sha256=checked.evidence_sha256,
            bundle_dir=str(checked.rollout_dir), verified_by=actor, verified_at=ro.iso(moment),
            package_dir=str(checked.package.package_dir),
        )
        files = {name: (checked.rollout_dir / name).read_bytes()
                 for name in (ro.ROLLOUT_EVIDENCE_FILE, ro.ROLLOUT_EVIDENCE_MD, ro.CHECKSUMS_FILE)
                 if (checked.rollout_dir / name).is_file()}
        files = {f"rollout/{name}": data for name, data in files.items()}
        _, evidence = _record(
            store,
            RolloutStep(rollout_id=ev.rollout_id, step="verify", ref_id=ev.rollout_id, actor=actor,
                        environment=ev.environment, ring=ring, status=status, release_version=ev.release.version,
                        document_sha256=checked.evidence_sha256, path=str(checked.rollout_dir)),
            kind=ro.KIND_ROLLOUT, payload=payload,
            subject=EvidenceSubject(release_version=ev.release.version, ring=ev.rollout_ring,
                                    environment=ev.environment, status=ev.status, success=True),
            files=files, now=moment, flow_run_id=flow_run_id,
        )
    return {
        "valid": True,
        "rollout_id": ev.rollout_id,
        "environment": ev.environment,
        "rollout_ring": ev.rollout_ring,
        "status": ev.status,
        "change_record": ev.change_record,
        "release": checked.raw["release"],
        "deployment_targets": [t.id for t in ev.deployment_targets],
        "package_dir": str(checked.package.package_dir),
        "verified_artifacts": checked.package.verified_artifacts,
        "artifact_sha256": checked.evidence_sha256,
        "evidence": _evidence_ref(evidence),
    }
