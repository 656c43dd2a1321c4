"""``ringward inventory reconcile``: a fleet's observations against the verified release (cavra-spec §8.4).

The package is verified first with the release verify operation against the pinned trust root --
always; there is no switch to skip it (the reference had one, and its automation skipped by
default). The desired state is the package's signed endpoint deployment manifest, read from the
package and checked against the signed ``checksums.txt`` digest the verification just accepted.
The observations are reconciled by :mod:`ringward.operations.inventory.engine` (columnar over
Ringward's line layout, a streaming loop otherwise), the report
``cavra.endpoint-reconciliation.v1`` is written atomically and recorded as evidence (report and
summary in a bundle). A refusal (the package does not verify, bad observations) is recorded
before it reaches the caller.

The report links the observations by file digest, endpoint count and ids rather than embedding
them (the reference embeds the whole inventory; a million endpoints would not fit).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import DigestMismatchError, InputError, MetadataMismatchError, RingwardError
from ringward.core.evidence.records import EvidenceSubject
from ringward.core.inventory.observations import format_timestamp, render_document
from ringward.core.inventory.reconcile import (
    DEFAULT_STALE_AFTER,
    KIND_RECONCILIATION,
    RECONCILIATION_CONTROLS,
    RECONCILIATION_FILE,
    RECONCILIATION_MD,
    RECONCILIATION_SCHEMA,
    RECONCILIATION_SIGNER,
    DesiredState,
    DesiredTarget,
    Reconciliation,
    check_stale_after,
)
from ringward.core.release.package_format import EndpointDeploymentDocument
from ringward.operations.common.files import check_input_path, read_capped
from ringward.operations.inventory.common import append_bundle, evidence_ref, hours, write_output_dir
from ringward.operations.inventory.engine import Engine, EngineResult, reconcile_file

if TYPE_CHECKING:
    from ringward.operations.promotion.channel_ops import VerifiedRelease
    from ringward.store import Store

RESULT_SCHEMA = "ringward.inventory-reconcile-result.v1"
DEFAULT_OUTPUT_DIR = "endpoint-reconciliation"
#: drift items copied into the evidence record's payload (all of them are in the bundled report)
PAYLOAD_DRIFT_ITEMS = 200


def desired_state(release: VerifiedRelease) -> tuple[DesiredState, dict[str, Any]]:
    """The signed endpoint deployment manifest of a verified package, as the desired state.

    Raises:
        DigestMismatchError: the manifest on disk is not the one the signed checksums list.
        MetadataMismatchError: it names another release, or has no deployment targets.
    """
    name = release.files.endpoint_deployment
    data = read_capped(release.package_dir / name, 16 * 1024 * 1024, source=name)
    expected = release.digests.get(name)
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise DigestMismatchError(f"{name}: not the endpoint deployment manifest the signed checksums.txt lists")
    document = loads_strict(data, source=name)
    try:
        manifest = EndpointDeploymentDocument.model_validate(document)
    except ValidationError as exc:
        raise MetadataMismatchError(f"{name}: endpoint deployment manifest has an invalid schema: "
                                    f"{exc.errors()[0]['msg']}") from exc
    if manifest.version != release.version or manifest.commit != release.evidence.commit:
        raise MetadataMismatchError(f"{name}: names {manifest.version}@{manifest.commit[:12]}, "
                                    f"expected {release.version}@{release.evidence.commit[:12]}")
    if not manifest.deployment_targets:
        raise MetadataMismatchError(f"{name}: endpoint deployment manifest has no deployment_targets")
    targets = tuple(sorted((DesiredTarget(t.id, t.binary_sha256) for t in manifest.deployment_targets if t.id),
                           key=lambda t: t.id))
    return DesiredState(manifest.version, manifest.commit, manifest.repository, targets), document


def render_markdown(report: dict[str, Any]) -> bytes:
    summary = report["summary"]
    lines = [
        f"# Managed endpoint reconciliation {report['reconciliation_id']}",
        "",
        f"- drift status: **{report['drift_status']}** (alert level {report['alert_level']})",
        f"- release: {report['release']['version']} ({report['release']['commit'][:12]})",
        f"- observed at: {report['observed_at']}; channel {report['channel'] or 'unassigned'}",
        f"- endpoints: {summary['observed_endpoint_count']} observed, {summary['compliant_endpoint_count']} compliant, "
        f"{summary['drifted_endpoint_count']} drifted, {summary['stale_endpoint_count']} stale",
        f"- targets: {summary['desired_target_count']} desired, {summary['missing_target_count']} missing, "
        f"{summary['unknown_target_count']} unknown",
        "",
        "| target | observed | compliant | version drift | binary drift | stale |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in summary["targets"]:
        lines.append(f"| {row['deployment_target']} | {row['observed_endpoint_count']} | "
                     f"{row['compliant_endpoint_count']} | {row['version_drift_count']} | "
                     f"{row['binary_drift_count']} | {row['stale_endpoint_count']} |")
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_report(result: EngineResult, desired: DesiredState, manifest: dict[str, Any], *, observations: Path,
                 now: datetime, stale_after: timedelta, verification: dict[str, Any]) -> dict[str, Any]:
    reconciliation: Reconciliation = result.reconciliation
    header = result.header
    return {
        "schema_version": RECONCILIATION_SCHEMA,
        "reconciliation_id": reconciliation.reconciliation_id,
        "created_at": format_timestamp(now),
        "observed_at": header.observed_at,
        "drift_status": reconciliation.drift_status(),
        "alert_level": reconciliation.alert_level(),
        "release": {"version": desired.version, "commit": desired.commit, "repository": desired.repository},
        "channel": header.channel,
        "deployment_targets": list(desired.target_ids),
        "stale_after_hours": hours(stale_after),
        "summary": reconciliation.summary(),
        "desired_manifest": manifest,
        "observed_inventory": {
            "file": observations.name,
            "sha256": result.file_sha256,
            "schema_version": header.schema_version,
            "provider": header.provider,
            "channel": header.channel,
            "observed_at": header.observed_at,
            "inventory_id": header.inventory_id,
            "endpoint_count": reconciliation.observed_endpoint_count,
        },
        "drift_items": list(reconciliation.drift_items),
        "controls": list(RECONCILIATION_CONTROLS),
        "package_verification": verification,
        "engine": result.engine,
    }


def _check_output(output: Path | None) -> None:
    if output is not None and (output.is_symlink() or (output.exists() and not (output.is_dir()
                                                                                and not any(output.iterdir())))):
        raise InputError(f"--output {output}: exists and is not an empty directory; refusing to overwrite")


@dataclass(frozen=True)
class Prepared:
    """A verified package's desired state, ready to reconcile observations against."""

    desired: DesiredState
    manifest: dict[str, Any]
    verification: dict[str, Any]
    subject: EvidenceSubject


def _refuse(store: Store, exc: RingwardError, *, subject: EvidenceSubject, actor: str, now: datetime,
            flow_run_id: str | None, package_dir: Path, observations: Path, stale_after: timedelta) -> None:
    from ringward.operations.promotion.channel_ops import record_refusal

    record_refusal(store, KIND_RECONCILIATION, exc, actor=actor, now=now, subject=subject, flow_run_id=flow_run_id,
                   payload={"package_dir": str(package_dir), "observations": str(observations),
                            "stale_after_hours": hours(stale_after)})


def prepare_reconciliation(store: Store, *, package_dir: Path, observations: Path, trust_root: Path, now: datetime,
                           actor: str, stale_after: timedelta = DEFAULT_STALE_AFTER,
                           flow_run_id: str | None = None) -> Prepared:
    """Check the options, verify the package (always) and read its signed desired state; a refusal
    is recorded before it is raised."""
    from ringward.operations.promotion.channel_ops import load_trust_root_file, load_verified_release

    check_stale_after(stale_after)
    check_input_path(observations, option="OBSERVATIONS")
    root = load_trust_root_file(trust_root)
    subject = EvidenceSubject()
    try:
        release = load_verified_release(package_dir, root, now=now)
        subject = EvidenceSubject(release_version=release.version, runtime=release.runtime)
        desired, manifest = desired_state(release)
    except RingwardError as exc:
        _refuse(store, exc, subject=subject, actor=actor, now=now, flow_run_id=flow_run_id, package_dir=package_dir,
                observations=observations, stale_after=stale_after)
        raise
    return Prepared(desired, manifest, release.verification_summary(), subject)


def reconcile_inventory(
    store: Store,
    *,
    package_dir: Path,
    observations: Path,
    trust_root: Path,
    now: datetime,
    actor: str,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    output: Path | None = None,
    engine: Engine = "auto",
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Verify the package, reconcile, write and record the report (see the module docstring).

    Raises:
        InputError: bad options, trust root or observations file.
        VerificationError: the package does not verify (nothing is reconciled).
    """
    _check_output(output)
    prepared = prepare_reconciliation(store, package_dir=package_dir, observations=observations,
                                      trust_root=trust_root, now=now, actor=actor, stale_after=stale_after,
                                      flow_run_id=flow_run_id)
    try:
        result = reconcile_file(observations, prepared.desired, now=now, stale_after=stale_after, engine=engine)
    except RingwardError as exc:
        _refuse(store, exc, subject=prepared.subject, actor=actor, now=now, flow_run_id=flow_run_id,
                package_dir=package_dir, observations=observations, stale_after=stale_after)
        raise
    return record_reconciliation(store, prepared, result, observations=observations, now=now, actor=actor,
                                 stale_after=stale_after, output=output, flow_run_id=flow_run_id)


def record_reconciliation(store: Store, prepared: Prepared, result: EngineResult, *, observations: Path,
                          now: datetime, actor: str, stale_after: timedelta, output: Path | None = None,
                          flow_run_id: str | None = None) -> dict[str, Any]:
    """Write the report atomically and record it (the last step of every path, the Dask one included)."""
    desired, manifest, subject = prepared.desired, prepared.manifest, prepared.subject
    report = build_report(result, desired, manifest, observations=observations, now=now, stale_after=stale_after,
                          verification=prepared.verification)
    summary = report["summary"]
    report_json = render_document(report, list_key="drift_items")
    files = {RECONCILIATION_FILE: report_json, RECONCILIATION_MD: render_markdown(report)}
    report_sha256 = hashlib.sha256(report_json).hexdigest()
    target_dir = output or Path(DEFAULT_OUTPUT_DIR) / f"{report['reconciliation_id']}-{report_sha256[:12]}"
    _check_output(output)
    write_output_dir(target_dir, files, identical=RECONCILIATION_FILE)
    items = report["drift_items"]
    payload = {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": KIND_RECONCILIATION,
        "session_id": report["reconciliation_id"],
        "created_at": report["created_at"],
        "signer": RECONCILIATION_SIGNER,
        "decision_count": 0,
        "blocked_count": summary["drifted_endpoint_count"] + summary["missing_target_count"],
        "approval_required_count": 0,
        **{k: report[k] for k in ("reconciliation_id", "drift_status", "alert_level", "release", "observed_at",
                                  "channel", "deployment_targets", "stale_after_hours", "observed_inventory",
                                  "engine")},
        **{k: v for k, v in summary.items() if k != "targets"},
        "targets": summary["targets"],
        "drift_items": items[:PAYLOAD_DRIFT_ITEMS],
        "drift_item_count": len(items),
        "report_sha256": report_sha256,
        "package_verification": report["package_verification"],
    }
    record = append_bundle(
        store, KIND_RECONCILIATION, actor=actor, payload=payload, files=files, flow_run_id=flow_run_id, now=now,
        subject=subject.model_copy(update={"channel": report["channel"], "provider": result.header.provider,
                                           "status": report["drift_status"],
                                           "success": report["drift_status"] == "aligned"}),
    )
    assert record is not None
    return {
        "schema_version": RESULT_SCHEMA,
        "reconciliation_id": report["reconciliation_id"],
        "drift_status": report["drift_status"],
        "alert_level": report["alert_level"],
        "release": report["release"],
        "channel": report["channel"],
        "observed_at": report["observed_at"],
        "summary": summary,
        "drift_item_count": len(items),
        "engine": result.engine,
        "output_dir": str(target_dir),
        "report": str(target_dir / RECONCILIATION_FILE),
        "evidence": evidence_ref(record),
    }
