"""Rollout operations: capture, verify, promotion request, execution, rollback request, rollback,
audit, and the auditor's views (show / list / search). What ``ringward rollout ...`` runs
in-process and what the Prefect tasks in ``tasks/promotion_rollout.py`` wrap.

Every step that decides something leaves (1) its output directory, assembled under a temporary
name and renamed into place, (2) an evidence bundle with copies of those files and (3) one
hash-chained evidence record, written in the same transaction as the step's row in the rollout
ledger (:mod:`ringward.store.promotion.executions_repo`). A refused step leaves no output and no
ledger row, only a ``rollout-refusal`` evidence record naming the check that refused it (bad
usage, exit 2, records nothing).

Approvals are only ever looked up in the store and consumed through it (compare-and-swap, once),
by the deciding steps (execution, rollback) in the same transaction as their evidence record and
ledger row (an execution's break-glass approval too): a refused decision consumes nothing. See
:mod:`ringward.core.promotion.rollout` for the rules (RO1-RO4).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core import errors as error_module
from ringward.core.approvals.rules import DEFAULT_TTL, Approval, ApprovalState, check_consume
from ringward.core.common.checksums import parse_checksums, render_checksums
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.paths import check_relative_name
from ringward.core.errors import (
    ApprovalBindingError,
    BindingMismatchError,
    DigestMismatchError,
    ExecutionReplayError,
    InputError,
    MalformedDocumentError,
    MissingFileError,
    NotFoundError,
    OutputExistsError,
    RingwardError,
    StateError,
    UnlistedFileError,
    UntrustedKeyError,
    VerificationError,
)
from ringward.core.evidence.records import EvidenceArtifact, EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.core.promotion import rollout as ro
from ringward.core.promotion.signed_payload import (
    RINGWARD_PAYLOAD_SIGNATURE,
    ROLLOUT_PROMOTION_SIGNATURE,
    sign_payload,
    verify_signed_payload,
)
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import Role, TrustRoot
from ringward.operations.common.files import read_capped, walk_regular_files
from ringward.settings import evidence_root
from ringward.store.promotion.executions_repo import ApprovalUse, RolloutLedger, RolloutStep, StepFilter

if TYPE_CHECKING:
    from ringward.store import Store

#: the environment variable holding the promotion signing key (PEM text), like the reference's
#: ``CAVRA_ROLLOUT_PROMOTION_SIGNING_KEY``
PROMOTION_KEY_ENV = "RINGWARD_PROMOTION_SIGNING_KEY"
REFERENCE_PROMOTION_KEY_ENV = "CAVRA_ROLLOUT_PROMOTION_SIGNING_KEY"
MAX_FILE_BYTES = ro.MAX_DOCUMENT_BYTES
REFUSAL_SCHEMA = "ringward.rollout-refusal.v1"
#: connector delivery sources (reference §7.5)
PROMOTION_DELIVERY_SOURCE = "release_governance_promotion"
ROLLBACK_DELIVERY_SOURCE = "release_governance_rollback"


def utc_now() -> datetime:
    return datetime.now(UTC)


def ledger(store: Store) -> RolloutLedger:
    return RolloutLedger(store)


# --- files -----------------------------------------------------------------------------------------


def _resolve(path: Path, filename: str) -> Path:
    """A document given as its file or as the directory holding it."""
    return path / filename if path.is_dir() else path


def _read(path: Path, *, what: str) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    return read_capped(path, MAX_FILE_BYTES, source=str(path))


def _check_output(output: Path) -> Path:
    output = output.absolute()
    if output.exists() or output.is_symlink():
        raise OutputExistsError(f"{output}: already exists; refusing to overwrite (choose another --output)")
    return output


def _stage(output: Path, files: Mapping[str, bytes], *, checksums: bool) -> Path:
    """Write ``files`` (+ ``checksums.txt``) into a temporary sibling of ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        digests = {}
        for name, data in files.items():
            check_relative_name(name, source="output file")
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
        if checksums:
            (staging / ro.CHECKSUMS_FILE).write_bytes(render_checksums(digests))
        os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp makes 0700; outputs are for readers
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _publish(staging: Path, output: Path) -> None:
    try:
        os.rename(staging, output)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputExistsError(f"{output}: cannot move the output into place ({exc.strerror})") from exc


@dataclass(frozen=True)
class _Bundle:
    relative: str
    path: Path
    artifacts: tuple[EvidenceArtifact, ...]


def _stage_bundle(kind: str, files: Mapping[str, bytes], now: datetime) -> _Bundle:
    """An evidence bundle (copies of the step's files + checksums.txt) under the evidence root."""
    moment = now.astimezone(UTC)
    relative = f"{kind}/{moment:%Y/%m/%d}/{moment:%H%M%S}-{uuid.uuid4().hex[:12]}"
    final = evidence_root() / relative
    staging = _stage(final, files, checksums=True)
    os.rename(staging, final)
    artifacts = tuple(
        EvidenceArtifact(name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
        for name, data in sorted(files.items())
    )
    return _Bundle(relative, final, artifacts)


def _record(
    store: Store,
    step: RolloutStep,
    *,
    kind: str,
    payload: dict[str, Any],
    subject: EvidenceSubject,
    files: Mapping[str, bytes],
    now: datetime,
    flow_run_id: str | None,
    replay_message: str | None = None,
) -> tuple[RolloutStep, EvidenceRecord]:
    """Bundle + evidence record + ledger row (the record and the row in one transaction)."""
    bundle = _stage_bundle(kind, files, now)
    draft = EvidenceDraft(
        kind=kind,
        actor=step.actor,
        subject=subject,
        flow_run_id=flow_run_id,
        payload=payload,
        bundle_dir=bundle.relative,
        artifacts=bundle.artifacts,
    )
    try:
        return ledger(store).record(step, draft, now=now, replay_message=replay_message)
    except BaseException:
        shutil.rmtree(bundle.path, ignore_errors=True)
        raise


@dataclass(frozen=True)
class _Made:
    """What a deciding step writes once its approvals are consumed: the document, its files (the
    output and the evidence bundle), the evidence payload and subject."""

    doc: dict[str, Any]
    files: Mapping[str, bytes]
    payload: dict[str, Any]
    subject: EvidenceSubject
    document_sha256: str


def _decide(
    store: Store,
    step: RolloutStep,
    *,
    kind: str,
    out: Path,
    consume: Sequence[ApprovalUse],
    make: Callable[[tuple[Approval, ...]], _Made],
    now: datetime,
    flow_run_id: str | None,
    replay_message: str,
) -> tuple[_Made, EvidenceRecord, tuple[Approval, ...]]:
    """A deciding step (execution, rollback) as one transaction: consume ``consume`` (compare-and-swap,
    once each), then ``make(consumed)`` the document, stage the output and the evidence bundle, and
    append the evidence record + ledger row -- all or nothing
    (:meth:`~ringward.store.promotion.executions_repo.RolloutLedger.decide`). If anything refuses,
    no approval is consumed, nothing is recorded and the staged files are removed; once committed,
    the output is renamed into place."""
    made: list[_Made] = []
    staged: list[Path] = []

    def build(consumed: tuple[Approval, ...]) -> tuple[RolloutStep, EvidenceDraft]:
        result = make(consumed)
        made.append(result)
        staged.append(_stage(out, result.files, checksums=True))
        bundle = _stage_bundle(kind, result.files, now)
        staged.append(bundle.path)
        draft = EvidenceDraft(kind=kind, actor=step.actor, subject=result.subject, flow_run_id=flow_run_id,
                              payload=result.payload, bundle_dir=bundle.relative, artifacts=bundle.artifacts)
        return replace(step, document_sha256=result.document_sha256), draft

    try:
        _, evidence, consumed = ledger(store).decide(step, build, now=now, consume=consume,
                                                     flow_run_id=flow_run_id, replay_message=replay_message)
    except BaseException:
        for path in staged:
            shutil.rmtree(path, ignore_errors=True)
        raise
    _publish(staged[0], out)
    return made[-1], evidence, consumed


def _evidence_ref(record: EvidenceRecord) -> dict[str, Any]:
    return {
        "evidence_id": str(record.id),
        "kind": record.kind,
        "record_hash": record.record_hash,
        "payload_sha256": record.payload_sha256,
        "bundle_dir": record.bundle_dir,
    }


# --- refusals ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def refusals(
    store: Store, step: str, *, actor: str, now: datetime, flow_run_id: str | None, context: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Record a refused step: a verification or state refusal becomes one ``rollout-refusal``
    evidence record (bad input does not: nothing was decided). ``context`` may be filled in by
    the step as it learns ids."""
    try:
        yield context
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            with contextlib.suppress(Exception):  # the refusal itself must reach the caller
                store.append(refusal_draft(step, exc, actor=actor, now=now, flow_run_id=flow_run_id, context=context),
                             now=now)
        raise


def refusal_draft(
    step: str, exc: RingwardError, *, actor: str, now: datetime, flow_run_id: str | None, context: dict[str, Any]
) -> EvidenceDraft:
    safe_actor = actor if actor and ro._LINE.match(actor) and len(actor) <= 256 else "unknown"
    payload = {
        "schema_version": REFUSAL_SCHEMA,
        "step": step,
        "code": exc.code,
        "error_type": type(exc).__name__,
        "message": exc.message[:4000],
        "actor": safe_actor,
        "at": ro.iso(now),
        **{k: v for k, v in context.items() if v is not None},
    }
    return EvidenceDraft(
        kind=ro.KIND_REFUSAL,
        actor=safe_actor,
        flow_run_id=flow_run_id,
        subject=EvidenceSubject(
            status="refused",
            execution_status=step,
            environment=_short(context.get("environment")),
            ring=_short(context.get("target_ring")),
            approval_id=_short(context.get("approval_id")),
            release_version=_short(context.get("release_version")),
            success=False,
        ),
        payload=payload,
    )


def _short(value: Any) -> str | None:
    if isinstance(value, str) and value and len(value) <= 256 and not any(ord(c) < 32 for c in value):
        return value
    return None


# --- trust and keys ----------------------------------------------------------------------------------


def _load_root(trust_root: Path | str) -> TrustRoot:
    from ringward.operations.trust.keys import load_trust_root

    return load_trust_root(Path(trust_root))


def load_promotion_key(path: Path | str | None, *, env: Mapping[str, str] | None = None) -> Ed25519PrivateKey:
    """The promotion signing key from ``path`` or ``$RINGWARD_PROMOTION_SIGNING_KEY`` (never the
    release key's variable: a release key must not sign promotions)."""
    from ringward.core.trust.keys import load_private_key_pem
    from ringward.operations.trust.keys import load_signing_key

    if path is not None:
        key = load_signing_key(Path(path))
        assert key is not None
        return key
    environ = os.environ if env is None else env
    for name in (PROMOTION_KEY_ENV, REFERENCE_PROMOTION_KEY_ENV):
        value = environ.get(name)
        if value:
            return load_private_key_pem(value.replace("\\n", "\n").encode("utf-8"), source=f"${name}")
    raise InputError(f"--signing-key: a promotion signing key is required (or set ${PROMOTION_KEY_ENV})")


def _check_promotion_key(key: Ed25519PrivateKey, root: TrustRoot, now: datetime) -> str:
    """Refuse to sign with anything but an active, in-window promotion-role key of the trust root."""
    key_id = public_key_of(key).key_id
    if key_id in root.trusted_keys(Role.PROMOTION, now):
        return key_id
    pinned = root.find(key_id)
    if pinned is None:
        raise UntrustedKeyError(f"--signing-key: key {key_id[:16]} is not pinned in the trust root")
    roles = ", ".join(sorted(r.value for r in pinned.roles))
    raise UntrustedKeyError(
        f"--signing-key: key {key_id[:16]} ({pinned.label}) has role(s) {roles} and status {pinned.status.value}, "
        "expected an active promotion-role key"
    )


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


def _current_state(store: Store, rollout_id: str) -> RolloutStep | None:
    steps = ledger(store).for_rollout(rollout_id)
    return steps[-1] if steps else None


def _state_after(store: Store, rollout_id: str, ring: str, status: str) -> tuple[str, str]:
    current = _current_state(store, rollout_id)
    if current is None or current.ring is None or current.status is None:
        return ring, status
    return current.ring, current.status


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


# --- approvals -------------------------------------------------------------------------------------------


def _live_approval(
    store: Store, *, action: str, subject_digest: str, target: str, requester: str, now: datetime
) -> Approval | None:
    """A pending, or approved and unused, approval with exactly this binding and requester."""
    from ringward.core.approvals.rules import same_actor

    offset = 0
    while True:
        items, total = store.approvals.list(now=now, target=target, limit=500, offset=offset)
        for approval in items:
            if (
                approval.action == action
                and approval.subject_digest == subject_digest
                and same_actor(approval.requester, requester)
                and approval.consumed_at is None
                and approval.effective_state(now) in (ApprovalState.PENDING, ApprovalState.APPROVED)
            ):
                return approval
        offset += len(items)
        if not items or offset >= total:
            return None


def _open_or_reuse(
    store: Store,
    *,
    action: str,
    subject_digest: str,
    target: str,
    requester: str,
    expires_in: timedelta,
    quorum: int,
    approver_group: str | None,
    note: str,
    now: datetime,
    flow_run_id: str | None,
) -> tuple[Approval, bool]:
    from ringward.operations.approvals.approval_ops import request_approval

    existing = _live_approval(store, action=action, subject_digest=subject_digest, target=target,
                              requester=requester, now=now)
    if existing is not None:
        return existing, True
    approval = request_approval(
        store, action=action, subject_digest=subject_digest, target=target, requester=requester,
        expires_in=expires_in, quorum=quorum, approver_group=approver_group, note=note[:4096], now=now,
        flow_run_id=flow_run_id,
    )
    return approval, False


def _approval_ref(approval: Approval, *, rule_id: str, reused: bool) -> dict[str, Any]:
    return {
        "approval_id": approval.approval_id,
        "action": approval.action,
        "subject_digest": approval.subject_digest,
        "target": approval.target,
        "requester": approval.requester,
        "approver_group": approval.approver_group,
        "quorum": approval.quorum,
        "state": approval.state.value,
        "requested_at": ro.iso(approval.created_at),
        "expires_at": ro.iso(approval.expires_at),
        "rule_id": rule_id,
        "reused": reused,
    }


# --- promotion request -----------------------------------------------------------------------------------


def request_promotion(
    store: Store,
    *,
    rollout_dir: Path,
    target_ring: str,
    requester: str,
    trust_root: Path,
    signing_key: Path | None = None,
    expires_in: timedelta = DEFAULT_TTL,
    quorum: int = 1,
    approver_group: str | None = ro.DEFAULT_APPROVER_GROUP,
    package_dir: Path | None = None,
    output: Path | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write a signed promotion request and open (or reuse) its approval (§4.11, RO2).

    Re-requesting the same ring for the same rollout while an approval with the same binding is
    pending, or approved and unused, returns that approval instead of opening a second one.
    """
    moment = now or utc_now()
    ro.check_id(target_ring, option="--target-ring")
    ro.check_line(requester, option="--requester")
    key = load_promotion_key(signing_key)
    root = _load_root(trust_root)
    context: dict[str, Any] = {"target_ring": target_ring, "rollout_dir": str(rollout_dir)}
    with refusals(store, "request", actor=requester, now=moment, flow_run_id=flow_run_id, context=context):
        _check_promotion_key(key, root, moment)
        checked = check_rollout(rollout_dir, root, now=moment, package_dir=package_dir)
        ev = checked.evidence
        context.update(rollout_id=ev.rollout_id, environment=ev.environment, release_version=ev.release.version)
        if ev.status not in ro.PROMOTABLE_STATUSES:
            raise StateError(
                f"{ro.ROLLOUT_EVIDENCE_FILE}: rollout promotion requires staged or succeeded rollout evidence, "
                f"found status {ev.status!r}"
            )
        _check_promotable_state(store, ev.rollout_id)
        if target_ring == ev.rollout_ring:
            raise InputError(f"--target-ring: rollout {ev.rollout_id} is already in ring {target_ring!r}")
        request_id = ro.promotion_request_id(ev.rollout_id, target_ring)
        context["request_id"] = request_id
        out = _check_output(output or Path.cwd() / f"{request_id}-{moment:%Y%m%d%H%M%S}")
        body: dict[str, Any] = {
            "schema_version": ro.PROMOTION_REQUEST_SCHEMA,
            "request_id": request_id,
            "created_at": ro.iso(moment),
            "rollout_id": ev.rollout_id,
            "environment": ev.environment,
            "current_ring": ev.rollout_ring,
            "target_ring": target_ring,
            "rollout_status": ev.status,
            "change_record": ev.change_record,
            "release": checked.raw["release"],
            "deployment_targets": checked.raw["deployment_targets"],
            "rollback_evidence_refs": ro.rollback_refs(ev.rollout_id, ev.deployment_targets),
            "verified_artifacts": checked.package.verified_artifacts,
            "requested_by": requester,
            "rollout_dir": str(checked.rollout_dir),
            "rollout_evidence_sha256": checked.evidence_sha256,
            "package_dir": str(checked.package.package_dir),
        }
        subject = ro.promotion_subject_digest(body)
        target = ro.promotion_target(ev.rollout_id, target_ring)
        approval, reused = _open_or_reuse(
            store, action=ro.ACTION_PROMOTE, subject_digest=subject, target=target, requester=requester,
            expires_in=expires_in, quorum=quorum, approver_group=approver_group,
            note=f"{request_id}: promote rollout {ev.rollout_id} {ev.rollout_ring} -> {target_ring} "
                 f"(change {ev.change_record})",
            now=moment, flow_run_id=flow_run_id,
        )
        context["approval_id"] = approval.approval_id
        body["approval"] = _approval_ref(approval, rule_id=ro.PROMOTION_RULE_ID, reused=reused)
        signed = sign_payload(body, private_key=key, signer=requester, schema_version=ROLLOUT_PROMOTION_SIGNATURE)
        ro.PromotionRequest.model_validate(signed)
        files = {ro.PROMOTION_REQUEST_FILE: dumps_document(signed),
                 ro.PROMOTION_REQUEST_MD: ro.request_markdown(signed)}
        _publish(_stage(out, files, checksums=False), out)
        try:
            request_sha = hashlib.sha256(files[ro.PROMOTION_REQUEST_FILE]).hexdigest()
            ring, status = _state_after(store, ev.rollout_id, ev.rollout_ring, ev.status)
            payload = ro.metadata_item(
                ro.KIND_REQUEST, request_id, body["created_at"], requester, approval_required_count=1,
                request_id=request_id, rollout_id=ev.rollout_id, environment=ev.environment,
                current_ring=ev.rollout_ring, target_ring=target_ring, rollout_status=ev.status,
                approval_id=approval.approval_id, approval_state=approval.state.value, approval_reused=reused,
                change_record=ev.change_record, release=body["release"], subject_digest=subject,
                request_sha256=request_sha, rollout_evidence_sha256=checked.evidence_sha256, request_path=str(out),
                signature_key_id=signed["signature"]["key_id"],
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=ev.rollout_id, step="request", ref_id=request_id, parent_ref=ev.rollout_id,
                            actor=requester, environment=ev.environment, ring=ring, status=status,
                            release_version=ev.release.version, approval_id=approval.approval_id,
                            document_sha256=request_sha, path=str(out)),
                kind=ro.KIND_REQUEST, payload=payload,
                subject=EvidenceSubject(release_version=ev.release.version, ring=target_ring,
                                        environment=ev.environment, status="requested",
                                        approval_id=approval.approval_id, approval_state=approval.state.value),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return {
        "valid": True,
        "request_id": request_id,
        "rollout_id": ev.rollout_id,
        "current_ring": ev.rollout_ring,
        "target_ring": target_ring,
        "approval_id": approval.approval_id,
        "approval_state": approval.effective_state(moment).value,
        "approval_reused": reused,
        "subject_digest": subject,
        "approval_target": target,
        "expires_at": ro.iso(approval.expires_at),
        "request_path": str(out / ro.PROMOTION_REQUEST_FILE),
        "output_dir": str(out),
        "files": sorted(files),
        "evidence": _evidence_ref(evidence),
    }


def _check_promotable_state(store: Store, rollout_id: str) -> None:
    """A rollout whose ledger says promoted or rolled back is not promoted again (capture a new one)."""
    current = _current_state(store, rollout_id)
    if current is not None and current.status in (ro.PROMOTED, ro.ROLLED_BACK):
        raise ExecutionReplayError(
            f"rollout {rollout_id}: already {current.status} (ring {current.ring}, {current.step} {current.ref_id}); "
            "capture a new rollout to promote further"
        )


# --- promotion execution ---------------------------------------------------------------------------------


def _load_request(path: Path) -> tuple[Path, bytes, dict[str, Any], ro.PromotionRequest]:
    file = _resolve(path, ro.PROMOTION_REQUEST_FILE)
    data = _read(file, what="promotion request")
    raw, request = ro.parse_document(data, ro.PromotionRequest, source=file.name)
    return file, data, raw, request


def _load_execution(path: Path) -> tuple[Path, bytes, dict[str, Any], ro.PromotionExecution]:
    file = _resolve(path, ro.PROMOTION_EXECUTION_FILE)
    data = _read(file, what="promotion execution")
    raw, execution = ro.parse_document(data, ro.PromotionExecution, source=file.name)
    return file, data, raw, execution


def _window_check(windows: Path | None, targets: list[str], at: datetime) -> tuple[Any, BaseException | None]:
    """Ask the promotion-window policy (``--windows`` or ``$RINGWARD_WINDOWS``; none = open):
    (the decision, the refusal when closed)."""
    from ringward.core.promotion.windows_policy import WindowClosedError
    from ringward.operations.promotion.windows import enforce_window, windows_policy_path

    try:
        return enforce_window(windows_policy_path(windows), targets, at, action="rollout promotion"), None
    except WindowClosedError as exc:
        return exc.decision, exc


def execute_promotion(
    store: Store,
    *,
    request_path: Path,
    approval_id: str,
    actor: str,
    trust_root: Path,
    windows: Path | None = None,
    break_glass_approval: str | None = None,
    output: Path | None = None,
    notes: str | None = None,
    execution_environment: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Execute an approved promotion request (§4.12 plus what the reference skips).

    Order: signature under a pinned promotion key; the approval from the store, bound to this
    request (action, subject digest, target) and usable now; no earlier execution; the rollout
    evidence and the package re-verified now and equal to what the request named; the promotion
    window (or an approved break-glass approval); then, in one transaction, the approval and the
    break-glass approval are consumed (compare-and-swap, once each) and the execution recorded with
    its evidence -- all or nothing; the output is renamed into place last.
    """
    from ringward.core.promotion.windows_policy import break_glass_binding
    from ringward.operations.promotion.windows import windows_policy_path

    moment = now or utc_now()
    ro.check_line(actor, option="--actor")
    if notes is not None:
        ro.check_text(notes, option="--notes")
    root = _load_root(trust_root)
    file, data, raw, request = _load_request(request_path)
    context: dict[str, Any] = {"request_id": request.request_id, "rollout_id": request.rollout_id,
                               "approval_id": approval_id, "environment": request.environment,
                               "target_ring": request.target_ring, "release_version": request.release.version}
    with refusals(store, "execution", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        verify_signed_payload(raw, trust_root=root, role=Role.PROMOTION, now=moment, label=str(file),
                              schema_version=ROLLOUT_PROMOTION_SIGNATURE)
        if approval_id != request.approval.approval_id:
            raise ApprovalBindingError(
                f"--approval: expected {request.approval.approval_id} (the approval the request opened), "
                f"found {approval_id}"
            )
        subject = ro.promotion_subject_digest(raw)
        target = ro.promotion_target(request.rollout_id, request.target_ring)
        execution_id = ro.promotion_execution_id(request.request_id, approval_id)
        context["execution_id"] = execution_id
        previous = ledger(store).by_unique_key(f"execution:{execution_id}")
        if previous is not None:
            raise ExecutionReplayError(
                f"approval {approval_id}: request {request.request_id} was already executed as {execution_id} "
                f"at {previous.created_at.isoformat() if previous.created_at else '?'}; approvals are single-use"
            )
        approval = store.approvals.get(approval_id)
        check_consume(approval, action=ro.ACTION_PROMOTE, subject_digest=subject, target=target, actor=actor,
                      now=moment)
        checked = check_rollout(Path(request.rollout_dir), root, now=moment, package_dir=Path(request.package_dir))
        if checked.evidence_sha256 != request.rollout_evidence_sha256:
            raise BindingMismatchError(
                f"{checked.rollout_dir / ro.ROLLOUT_EVIDENCE_FILE}: sha256 {checked.evidence_sha256}, the request "
                f"names {request.rollout_evidence_sha256} (rollout evidence changed since the request)"
            )
        ev = checked.evidence
        if ev.rollout_id != request.rollout_id or ev.rollout_ring != request.current_ring:
            raise BindingMismatchError(f"{file.name}: rollout {request.rollout_id}/{request.current_ring} does not "
                                       f"match the rollout evidence {ev.rollout_id}/{ev.rollout_ring}")
        if ev.status not in ro.PROMOTABLE_STATUSES:
            raise StateError(f"{ro.ROLLOUT_EVIDENCE_FILE}: rollout promotion requires staged or succeeded rollout "
                             f"evidence, found status {ev.status!r}")
        _check_promotable_state(store, ev.rollout_id)
        window_targets = [f"ring:{request.target_ring}", f"environment:{request.environment}"]
        decision, closed = _window_check(windows, window_targets, moment)
        window: dict[str, Any] = {"policy": str(windows_policy_path(windows) or "") or None,
                                  **decision.to_document()}
        # the approvals the decision consumes: the promotion's own, and outside its window the break glass
        uses = [ApprovalUse(approval_id, ro.ACTION_PROMOTE, subject, target)]
        if closed is not None:
            context["window"] = window
            if break_glass_approval is None:
                raise closed
            glass = break_glass_binding(decision, subject=request.request_id, overridden_action="rollout")
            check_consume(store.approvals.get(break_glass_approval), action=glass.action,
                          subject_digest=glass.subject_digest, target=glass.target, actor=actor, now=moment)
            uses.append(ApprovalUse(break_glass_approval, glass.action, glass.subject_digest, glass.target))
        break_glass = len(uses) > 1
        out = _check_output(output or Path.cwd() / execution_id)
        # --- the decision, one transaction: consume the approval and the break-glass approval (once
        # each) and record the execution; the output goes into place once committed ---

        def make(consumed_approvals: tuple[Approval, ...]) -> _Made:
            consumed = consumed_approvals[0]
            controls = list(ro.EXECUTION_CONTROLS) + (["break-glass-approval-consumed"] if break_glass else [])
            doc: dict[str, Any] = {
                "schema_version": ro.PROMOTION_EXECUTION_SCHEMA,
                "execution_id": execution_id,
                "request_id": request.request_id,
                "approval_id": approval_id,
                "rollout_id": request.rollout_id,
                "created_at": ro.iso(moment),
                "executed_by": actor,
                "execution_environment": execution_environment or request.environment,
                "execution_status": ro.EXECUTED,
                "change_record": request.change_record,
                "release": raw["release"],
                "deployment_targets": raw["deployment_targets"],
                "ring_advancement": {"from": request.current_ring, "to": request.target_ring,
                                     "previous_rollout_status": request.rollout_status,
                                     "new_rollout_status": ro.PROMOTED},
                "approval": ro.approval_summary(consumed),
                "controls": controls,
                "request_sha256": hashlib.sha256(data).hexdigest(),
                "evidence_refs": [
                    f"rollout://{request.rollout_id}",
                    f"promotion-request://{request.request_id}",
                    f"approval://{approval_id}",
                    f"change://{request.change_record}",
                ],
                "rollback_evidence_refs": raw["rollback_evidence_refs"],
                "environment": request.environment,
                "break_glass": break_glass,
                "break_glass_approval_id": break_glass_approval if break_glass else None,
                "window": window,
                "rollout_evidence_sha256": checked.evidence_sha256,
                "package_dir": str(checked.package.package_dir),
            }
            if notes:
                doc["notes"] = notes
            ro.PromotionExecution.model_validate(doc)
            files = {ro.PROMOTION_EXECUTION_FILE: dumps_document(doc),
                     ro.PROMOTION_EXECUTION_MD: ro.execution_markdown(doc)}
            record_sha = hashlib.sha256(files[ro.PROMOTION_EXECUTION_FILE]).hexdigest()
            payload = ro.metadata_item(
                ro.KIND_EXECUTION, execution_id, doc["created_at"], actor, rollout_id=request.rollout_id,
                rollout_status=ro.PROMOTED, promotion_execution_status=ro.EXECUTED,
                environment=request.environment, deployment_targets=[t["id"] for t in raw["deployment_targets"]],
                current_ring=request.current_ring, target_ring=request.target_ring, approval_id=approval_id,
                approval_state=consumed.state.value, request_id=request.request_id,
                change_record=request.change_record, release=raw["release"], evidence_refs=doc["evidence_refs"],
                rollback_evidence_refs=doc["rollback_evidence_refs"],
                audit_links={"rollout": f"rollout://{request.rollout_id}",
                             "promotion_request": f"promotion-request://{request.request_id}",
                             "approval": f"approval://{approval_id}",
                             "change": f"change://{request.change_record}"},
                execution=doc, execution_sha256=record_sha, break_glass=break_glass, output_dir=str(out),
            )
            subject_ = EvidenceSubject(release_version=request.release.version, ring=request.target_ring,
                                       environment=request.environment, status=ro.PROMOTED,
                                       approval_id=approval_id, approval_state=consumed.state.value,
                                       execution_status=ro.EXECUTED, success=True)
            return _Made(doc, files, payload, subject_, record_sha)

        made, evidence, _ = _decide(
            store,
            RolloutStep(rollout_id=request.rollout_id, step="execution", ref_id=execution_id,
                        parent_ref=request.request_id, unique_key=f"execution:{execution_id}", actor=actor,
                        environment=request.environment, ring=request.target_ring, status=ro.PROMOTED,
                        release_version=request.release.version, approval_id=approval_id, path=str(out)),
            kind=ro.KIND_EXECUTION, out=out, consume=uses, make=make, now=moment, flow_run_id=flow_run_id,
            replay_message=f"request {request.request_id} with approval {approval_id}: already executed",
        )
        doc, files, record_sha = made.doc, made.files, made.document_sha256
    return {
        "valid": True,
        "execution_id": execution_id,
        "request_id": request.request_id,
        "rollout_id": request.rollout_id,
        "approval_id": approval_id,
        "ring_advancement": doc["ring_advancement"],
        "executed_by": actor,
        "approval": doc["approval"],
        "break_glass": break_glass,
        "window": window,
        "execution_path": str(out / ro.PROMOTION_EXECUTION_FILE),
        "execution_sha256": record_sha,
        "output_dir": str(out),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }


# --- rollback request ------------------------------------------------------------------------------------


def _recorded_execution(store: Store, execution_id: str, data: bytes, file: Path) -> RolloutStep:
    """The execution must be one this store recorded, byte for byte (execution records are unsigned)."""
    rows = ledger(store).by_ref(execution_id, step="execution")
    if not rows:
        raise StateError(f"{file}: promotion execution {execution_id} is not recorded in this store")
    recorded = rows[0]
    found = hashlib.sha256(data).hexdigest()
    if recorded.document_sha256 != found:
        raise BindingMismatchError(
            f"{file}: sha256 {found}, but execution {execution_id} was recorded with {recorded.document_sha256} "
            "(the execution record was altered)"
        )
    return recorded


def _check_rollbackable(execution: ro.PromotionExecution, file: Path) -> None:
    if execution.execution_status != ro.EXECUTED:
        raise StateError(f"{file}: rollback execution requires an executed promotion record, "
                         f"found execution_status {execution.execution_status!r}")
    if not execution.rollback_evidence_refs:
        raise StateError(f"{file}: rollback execution requires rollback evidence references")


def _not_rolled_back(store: Store, execution_id: str) -> None:
    done = ledger(store).by_unique_key(f"rollback-of:{execution_id}")
    if done is not None:
        raise ExecutionReplayError(
            f"promotion execution {execution_id}: already rolled back by {done.ref_id} at "
            f"{done.created_at.isoformat() if done.created_at else '?'}; a promotion is rolled back once"
        )


def request_rollback(
    store: Store,
    *,
    execution_path: Path,
    requester: str,
    reason: str,
    trust_root: Path,
    signing_key: Path | None = None,
    expires_in: timedelta = DEFAULT_TTL,
    quorum: int = 1,
    approver_group: str | None = ro.DEFAULT_APPROVER_GROUP,
    output: Path | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write a signed rollback request for one recorded promotion execution and open (or reuse)
    its approval, bound to the execution record's exact bytes (RO4)."""
    moment = now or utc_now()
    ro.check_line(requester, option="--requester")
    ro.check_text(reason, option="--reason")
    key = load_promotion_key(signing_key)
    root = _load_root(trust_root)
    file, data, raw, execution = _load_execution(execution_path)
    ring = execution.ring_advancement
    context: dict[str, Any] = {"execution_id": execution.execution_id, "rollout_id": execution.rollout_id,
                               "environment": execution.environment, "target_ring": ring.from_,
                               "release_version": execution.release.version}
    with refusals(store, "rollback-request", actor=requester, now=moment, flow_run_id=flow_run_id,
                  context=context):
        _check_promotion_key(key, root, moment)
        _check_rollbackable(execution, file)
        _recorded_execution(store, execution.execution_id, data, file)
        _not_rolled_back(store, execution.execution_id)
        request_id = ro.rollback_request_id(execution.execution_id)
        context["request_id"] = request_id
        out = _check_output(output or Path.cwd() / f"{request_id}-{moment:%Y%m%d%H%M%S}")
        subject = ro.bytes_digest(data)
        target = ro.rollback_target(execution.execution_id, ring.to, ring.from_)
        environment = execution.environment or execution.execution_environment
        approval, reused = _open_or_reuse(
            store, action=ro.ACTION_ROLLBACK, subject_digest=subject, target=target, requester=requester,
            expires_in=expires_in, quorum=quorum, approver_group=approver_group,
            note=f"{request_id}: roll back {execution.execution_id} ({ring.to} -> {ring.from_}): {reason}",
            now=moment, flow_run_id=flow_run_id,
        )
        context["approval_id"] = approval.approval_id
        body: dict[str, Any] = {
            "schema_version": ro.ROLLBACK_REQUEST_SCHEMA,
            "request_id": request_id,
            "created_at": ro.iso(moment),
            "promotion_execution_id": execution.execution_id,
            "promotion_execution_sha256": hashlib.sha256(data).hexdigest(),
            "rollout_id": execution.rollout_id,
            "environment": environment,
            "promoted_ring": ring.to,
            "previous_ring": ring.from_,
            "change_record": execution.change_record,
            "release": raw["release"],
            "reason": reason,
            "requested_by": requester,
            "rollback_evidence_refs": raw["rollback_evidence_refs"],
            "approval": _approval_ref(approval, rule_id=ro.ROLLBACK_RULE_ID, reused=reused),
        }
        signed = sign_payload(body, private_key=key, signer=requester, schema_version=RINGWARD_PAYLOAD_SIGNATURE)
        ro.RollbackRequest.model_validate(signed)
        files = {ro.ROLLBACK_REQUEST_FILE: dumps_document(signed),
                 ro.ROLLBACK_REQUEST_MD: ro.rollback_request_markdown(signed)}
        _publish(_stage(out, files, checksums=False), out)
        try:
            request_sha = hashlib.sha256(files[ro.ROLLBACK_REQUEST_FILE]).hexdigest()
            cur_ring, cur_status = _state_after(store, execution.rollout_id, ring.to, ro.PROMOTED)
            payload = ro.metadata_item(
                ro.KIND_ROLLBACK_REQUEST, request_id, body["created_at"], requester, approval_required_count=1,
                request_id=request_id, promotion_execution_id=execution.execution_id, rollout_id=execution.rollout_id,
                environment=environment, current_ring=ring.to, target_ring=ring.from_, approval_id=approval.approval_id,
                approval_state=approval.state.value, approval_reused=reused, subject_digest=subject,
                request_sha256=request_sha, request=signed, request_path=str(out),
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=execution.rollout_id, step="rollback-request", ref_id=request_id,
                            parent_ref=execution.execution_id, actor=requester, environment=environment,
                            ring=cur_ring, status=cur_status, release_version=execution.release.version,
                            approval_id=approval.approval_id, document_sha256=request_sha, path=str(out)),
                kind=ro.KIND_ROLLBACK_REQUEST, payload=payload,
                subject=EvidenceSubject(release_version=execution.release.version, ring=ring.from_,
                                        environment=environment, status="rollback-requested",
                                        approval_id=approval.approval_id, approval_state=approval.state.value),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return {
        "valid": True,
        "request_id": request_id,
        "promotion_execution_id": execution.execution_id,
        "rollout_id": execution.rollout_id,
        "promoted_ring": ring.to,
        "previous_ring": ring.from_,
        "approval_id": approval.approval_id,
        "approval_state": approval.effective_state(moment).value,
        "approval_reused": reused,
        "subject_digest": subject,
        "approval_target": target,
        "expires_at": ro.iso(approval.expires_at),
        "request_path": str(out / ro.ROLLBACK_REQUEST_FILE),
        "output_dir": str(out),
        "files": sorted(files),
        "evidence": _evidence_ref(evidence),
    }


# --- rollback --------------------------------------------------------------------------------------------


def _signed_rollback_request(
    store: Store, *, execution_id: str, approval_id: str, root: TrustRoot, now: datetime
) -> dict[str, Any]:
    """The signed rollback request that opened ``approval_id`` for this execution, re-verified."""
    rows = [r for r in ledger(store).by_approval(approval_id)
            if r.step == "rollback-request" and r.parent_ref == execution_id]
    if not rows:
        others = [r for r in ledger(store).by_approval(approval_id) if r.step == "rollback-request"]
        if others:
            raise ApprovalBindingError(
                f"approval {approval_id}: opened for the rollback of {others[0].parent_ref}, not {execution_id}"
            )
        raise StateError(f"approval {approval_id}: no signed rollback request opened it "
                         "(use `ringward rollout request-rollback`)")
    record = store.get_evidence(rows[-1].evidence_id or 0)
    request = record.payload.get("request")
    if not isinstance(request, dict):
        raise StateError(f"evidence record {record.id}: the rollback request document is missing")
    verify_signed_payload(request, trust_root=root, role=Role.PROMOTION, now=now,
                          label=f"rollback request {request.get('request_id')}",
                          schema_version=RINGWARD_PAYLOAD_SIGNATURE)
    ro.RollbackRequest.model_validate(request)
    return request


def execute_rollback(
    store: Store,
    *,
    execution_path: Path,
    approval_id: str,
    actor: str,
    trust_root: Path,
    output: Path | None = None,
    notes: str | None = None,
    execution_environment: str | None = None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Roll back one recorded promotion execution (§4.13 plus decision binding, expiry,
    single-use approval and once-per-execution), then let channels at the rolled-back release go
    down to their previous version exactly once."""
    moment = now or utc_now()
    ro.check_line(actor, option="--actor")
    if notes is not None:
        ro.check_text(notes, option="--notes")
    root = _load_root(trust_root)
    file, data, raw, execution = _load_execution(execution_path)
    ring = execution.ring_advancement
    context: dict[str, Any] = {"execution_id": execution.execution_id, "rollout_id": execution.rollout_id,
                               "approval_id": approval_id, "environment": execution.environment,
                               "target_ring": ring.from_, "release_version": execution.release.version}
    with refusals(store, "rollback", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        _check_rollbackable(execution, file)
        _recorded_execution(store, execution.execution_id, data, file)
        _not_rolled_back(store, execution.execution_id)
        subject = ro.bytes_digest(data)
        target = ro.rollback_target(execution.execution_id, ring.to, ring.from_)
        approval = store.approvals.get(approval_id)
        check_consume(approval, action=ro.ACTION_ROLLBACK, subject_digest=subject, target=target, actor=actor,
                      now=moment)
        request = _signed_rollback_request(store, execution_id=execution.execution_id, approval_id=approval_id,
                                           root=root, now=moment)
        rid = ro.rollback_id(execution.execution_id, approval_id)
        context["rollback_id"] = rid
        out = _check_output(output or Path.cwd() / rid)
        environment = execution.environment or execution.execution_environment

        def make(consumed_approvals: tuple[Approval, ...]) -> _Made:
            (consumed,) = consumed_approvals
            doc: dict[str, Any] = {
                "schema_version": ro.ROLLBACK_EXECUTION_SCHEMA,
                "rollback_id": rid,
                "promotion_execution_id": execution.execution_id,
                "approval_id": approval_id,
                "rollout_id": execution.rollout_id,
                "created_at": ro.iso(moment),
                "executed_by": actor,
                "execution_environment": execution_environment or execution.execution_environment,
                "rollback_status": ro.EXECUTED,
                "rollback_reason": request["reason"],
                "change_record": execution.change_record,
                "release": raw["release"],
                "deployment_targets": raw["deployment_targets"],
                "ring_rollback": {"from": ring.to, "to": ring.from_, "previous_rollout_status": ro.PROMOTED,
                                  "new_rollout_status": ro.ROLLED_BACK},
                "approval": ro.approval_summary(consumed),
                "controls": list(ro.ROLLBACK_CONTROLS),
                "promotion_execution_sha256": hashlib.sha256(data).hexdigest(),
                "evidence_refs": [
                    f"rollout://{execution.rollout_id}",
                    f"promotion-execution://{execution.execution_id}",
                    f"approval://{approval_id}",
                    f"change://{execution.change_record}",
                ],
                "rollback_evidence_refs": raw["rollback_evidence_refs"],
                "environment": environment,
                "rollback_request_id": request["request_id"],
            }
            if notes:
                doc["notes"] = notes
            ro.RollbackExecution.model_validate(doc)
            files = {ro.ROLLBACK_EXECUTION_FILE: dumps_document(doc),
                     ro.ROLLBACK_EXECUTION_MD: ro.rollback_markdown(doc)}
            record_sha = hashlib.sha256(files[ro.ROLLBACK_EXECUTION_FILE]).hexdigest()
            payload = ro.metadata_item(
                ro.KIND_ROLLBACK, rid, doc["created_at"], actor, rollout_id=execution.rollout_id,
                rollout_status=ro.ROLLED_BACK, rollback_execution_status=ro.EXECUTED, environment=environment,
                deployment_targets=[t["id"] for t in raw["deployment_targets"]], current_ring=ring.to,
                target_ring=ring.from_, approval_id=approval_id, approval_state=consumed.state.value,
                promotion_execution_id=execution.execution_id, change_record=execution.change_record,
                release=raw["release"], evidence_refs=doc["evidence_refs"],
                rollback_evidence_refs=doc["rollback_evidence_refs"],
                audit_links={"rollout": f"rollout://{execution.rollout_id}",
                             "promotion_execution": f"promotion-execution://{execution.execution_id}",
                             "approval": f"approval://{approval_id}",
                             "change": f"change://{execution.change_record}"},
                rollback=doc, rollback_sha256=record_sha, output_dir=str(out),
            )
            subject_ = EvidenceSubject(release_version=execution.release.version, ring=ring.from_,
                                       environment=environment, status=ro.ROLLED_BACK, approval_id=approval_id,
                                       approval_state=consumed.state.value, execution_status=ro.EXECUTED,
                                       success=True)
            return _Made(doc, files, payload, subject_, record_sha)

        # --- the decision, one transaction: consume the approval (once) and record the rollback (once
        # per execution: a concurrent rollback with another approval leaves that approval unused) ---
        made, evidence, _ = _decide(
            store,
            RolloutStep(rollout_id=execution.rollout_id, step="rollback", ref_id=rid,
                        parent_ref=execution.execution_id, unique_key=f"rollback-of:{execution.execution_id}",
                        actor=actor, environment=environment, ring=ring.from_, status=ro.ROLLED_BACK,
                        release_version=execution.release.version, approval_id=approval_id, path=str(out)),
            kind=ro.KIND_ROLLBACK, out=out,
            consume=[ApprovalUse(approval_id, ro.ACTION_ROLLBACK, subject, target)], make=make, now=moment,
            flow_run_id=flow_run_id,
            replay_message=f"promotion execution {execution.execution_id}: already rolled back",
        )
        doc, files, record_sha = made.doc, made.files, made.document_sha256
    channels = allow_channel_rollbacks(store, execution=execution, rollback_id=rid, actor=actor, now=moment)
    return {
        "valid": True,
        "rollback_id": rid,
        "promotion_execution_id": execution.execution_id,
        "rollout_id": execution.rollout_id,
        "approval_id": approval_id,
        "ring_rollback": doc["ring_rollback"],
        "rollback_reason": doc["rollback_reason"],
        "executed_by": actor,
        "approval": doc["approval"],
        "channels": channels,
        "rollback_path": str(out / ro.ROLLBACK_EXECUTION_FILE),
        "rollback_sha256": record_sha,
        "output_dir": str(out),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }


def allow_channel_rollbacks(
    store: Store, *, execution: ro.PromotionExecution, rollback_id: str, actor: str, now: datetime
) -> list[dict[str, Any]]:
    """Tell the channel repository that each channel now at the rolled-back release may go down
    to its previous version once ("the only way down is the rollback flow")."""
    from ringward.store.promotion.channel_repo import ChannelRepository

    digest = _release_digest(execution)
    if digest is None:
        return []
    repo = ChannelRepository(store)
    version = execution.release.version
    allowed: list[dict[str, Any]] = []
    for channel in repo.channels_at(version, digest):
        entry: dict[str, Any] = {"channel": channel, "from_version": version, "from_digest": digest}
        try:
            repo.allow_rollback(channel, from_version=version, from_digest=digest, rollback_id=rollback_id,
                                actor=actor, now=now)
            entry["rollback_allowed"] = True
        except RingwardError as exc:  # the rollback stands; the channel says why it cannot go down
            entry.update(rollback_allowed=False, error=exc.message, code=exc.code)
        allowed.append(entry)
    return allowed


def _release_digest(execution: ro.PromotionExecution) -> str | None:
    """The digest that names the release in channel state: the package's signed ``checksums.txt``."""
    if not execution.package_dir:
        return None
    path = Path(execution.package_dir) / "checksums.txt"
    if not path.is_file():
        return None
    return "sha256:" + hashlib.sha256(read_capped(path, 4 * 1024 * 1024, source=str(path))).hexdigest()


# --- audit -----------------------------------------------------------------------------------------------


def _load_audited(path: Path) -> tuple[Path, bytes, dict[str, Any], bool]:
    """An execution or rollback record (file or its directory): (file, bytes, document, is_rollback)."""
    if path.is_dir():
        for name in (ro.ROLLBACK_EXECUTION_FILE, ro.PROMOTION_EXECUTION_FILE):
            if (path / name).is_file():
                path = path / name
                break
    data = _read(path, what="execution record")
    raw = loads_strict(data, source=path.name, max_bytes=MAX_FILE_BYTES)
    schema = raw.get("schema_version") if isinstance(raw, dict) else None
    if schema == ro.ROLLBACK_EXECUTION_SCHEMA:
        ro.parse_document(data, ro.RollbackExecution, source=path.name)
        return path, data, raw, True
    if schema == ro.PROMOTION_EXECUTION_SCHEMA:
        ro.parse_document(data, ro.PromotionExecution, source=path.name)
        return path, data, raw, False
    raise InputError(f"{path}: expected a {ro.PROMOTION_EXECUTION_SCHEMA} or {ro.ROLLBACK_EXECUTION_SCHEMA} "
                     f"record, found schema_version {schema!r}")


def audit_connector_event(event: dict[str, Any]) -> Any:
    """The audit event as a connector event; its id is the execution (or rollback) id, so the
    delivery log delivers each execution's audit once per destination."""
    from ringward.core.delivery.event import ConnectorEvent, Severity

    rollback = event["schema_version"] == ro.ROLLBACK_AUDIT_SCHEMA
    event_id = event["rollback_id"] if rollback else event["execution_id"]
    ring_text = f"{event['current_ring']} -> {event['target_ring']}"
    title = (f"Rollout {event['rollout_id']} rolled back {ring_text}" if rollback
             else f"Rollout {event['rollout_id']} promoted {ring_text}")
    summary = (
        f"{'Rollback' if rollback else 'Promotion'} {event_id} of release {event['release'].get('version')} "
        f"in {event.get('environment')} under change {event['change_record']}, approval {event['approval_id']}"
        + (f"; reason: {event.get('rollback_reason')}" if rollback else "")
        + ("; BREAK GLASS" if event.get("break_glass") else "")
    )
    return ConnectorEvent(
        event_id=event_id,
        event_type=event["event_type"],
        created_at=ro.parse_iso(event["timestamp"], where="audit event timestamp"),
        severity=Severity.CRITICAL if rollback else Severity.ERROR,
        title=title[:250],
        summary=summary[:8000],
        source="ringward",
        release_version=event["release"].get("version"),
        ring=event["target_ring"],
        environment=event.get("environment"),
        session_id=event_id,
        actor=(event.get("raw_rollback") or event.get("raw_execution") or {}).get("executed_by"),
        attributes=event,
    )


def audit(
    store: Store,
    *,
    record_path: Path,
    output: Path,
    actor: str,
    deliver_config: Path | None = None,
    provider: str = "all",
    splunk_index: str = "cavra",
    datadog_service: str = "cavra",
    itsm_project_key: str = "CAVRA",
    now: datetime | None = None,
    flow_run_id: str | None = None,
    hooks: Any = None,
) -> dict[str, Any]:
    """Export the audit event of a recorded execution or rollback with the per-provider payloads
    (checksummed), and with ``deliver_config`` deliver it through the connector platform."""
    moment = now or utc_now()
    config = None
    if deliver_config is not None:
        from ringward.operations.delivery import delivery_ops
        config = delivery_ops.load_connector_config(deliver_config)
        delivery_ops.select_destinations(config, provider)
    file, data, raw, rollback = _load_audited(record_path)
    out = _check_output(output)
    record_id = raw["rollback_id"] if rollback else raw["execution_id"]
    context: dict[str, Any] = {"record_id": record_id, "rollout_id": raw.get("rollout_id")}
    with refusals(store, "audit", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        rows = ledger(store).by_ref(record_id, step="rollback" if rollback else "execution")
        if not rows:
            raise StateError(f"{file}: {record_id} is not recorded in this store; only recorded executions are audited")
        found = hashlib.sha256(data).hexdigest()
        if rows[0].document_sha256 != found:
            raise BindingMismatchError(f"{file}: sha256 {found}, but {record_id} was recorded with "
                                       f"{rows[0].document_sha256} (the record was altered)")
        event = ro.rollback_audit_event(raw) if rollback else ro.promotion_audit_event(raw)
        audit_file = ro.ROLLBACK_AUDIT_FILE if rollback else ro.PROMOTION_AUDIT_FILE
        documents = {audit_file: event, **ro.audit_provider_files(
            event, splunk_index=splunk_index, datadog_service=datadog_service, itsm_project_key=itsm_project_key)}
        files = {name: dumps_document(doc) for name, doc in documents.items()}
        _publish(_stage(out, files, checksums=True), out)
        try:
            current = rows[0]
            latest = _current_state(store, current.rollout_id) or current
            payload = ro.metadata_item(
                ro.KIND_AUDIT, f"audit-{record_id}", ro.iso(moment), actor, audited_id=record_id,
                rollout_id=current.rollout_id, event_type=event["event_type"], output_dir=str(out),
                files={name: hashlib.sha256(body).hexdigest() for name, body in files.items()},
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=current.rollout_id, step="audit", ref_id=record_id, parent_ref=record_id,
                            actor=actor, environment=current.environment, ring=latest.ring, status=latest.status,
                            release_version=current.release_version, approval_id=None, path=str(out)),
                kind=ro.KIND_AUDIT, payload=payload,
                subject=EvidenceSubject(release_version=current.release_version, ring=current.ring,
                                        environment=current.environment, status="audit-exported"),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    result: dict[str, Any] = {
        "valid": True,
        "audited_id": record_id,
        "kind": "rollback" if rollback else "promotion",
        "event_type": event["event_type"],
        "output_dir": str(out),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }
    if config is not None:
        from ringward.operations.delivery import delivery_ops
        kwargs: dict[str, Any] = {"hooks": hooks} if hooks is not None else {}
        run = delivery_ops.deliver_event(
            audit_connector_event(event), config, store=store, providers=provider, actor=actor,
            flow_run_id=flow_run_id, source=ROLLBACK_DELIVERY_SOURCE if rollback else PROMOTION_DELIVERY_SOURCE,
            **kwargs,
        )
        result["delivery"] = {
            "event_id": run.event.event_id,
            "success": run.success,
            "evidence_id": run.evidence_id,
            "deliveries": run.summary_rows(),
        }
        result["valid"] = run.success
    return result


# --- the auditor's views ---------------------------------------------------------------------------------


def _step_view(store: Store, step: RolloutStep, cache: dict[int, EvidenceRecord]) -> dict[str, Any]:
    doc = step.to_document()
    if step.evidence_id is not None:
        record = cache.get(step.evidence_id) or store.get_evidence(step.evidence_id)
        cache[step.evidence_id] = record
        doc["evidence"] = _evidence_ref(record)
    return doc


def _approval_view(store: Store, approval_id: str, now: datetime) -> dict[str, Any]:
    try:
        approval = store.approvals.get(approval_id)
    except NotFoundError:
        return {"approval_id": approval_id, "missing": True}
    doc = approval.to_document(now)
    doc["votes"] = [
        {"actor": v.actor, "decision": v.decision.value, "reason": v.reason, "at": v.at.astimezone(UTC).isoformat(),
         "evidence_id": v.evidence_id}
        for v in approval.votes
    ]
    return doc


def _deliveries(store: Store, step: RolloutStep) -> list[dict[str, Any]]:
    """The delivery log's entries for this step's audit event (its id is the execution or rollback
    id), and the delivery evidence records (found by the event's ring, environment and release)."""
    from ringward.core.delivery.results import DELIVERY_EVIDENCE_KIND
    from ringward.core.evidence.query import EvidenceQuery
    from ringward.operations.delivery.delivery_ops import delivery_history

    event_id = step.ref_id
    history = delivery_history(store, event_id=event_id, limit=500)["items"]
    records = []
    before: int | None = None
    for _ in range(20):  # delivery evidence of this event: newest first, bounded
        page = store.search_evidence(EvidenceQuery(
            kind=DELIVERY_EVIDENCE_KIND, ring=step.ring, environment=step.environment,
            release_version=step.release_version, before_id=before, limit=500, with_total=False))
        records += [r for r in page.items if r.payload.get("event_id") == event_id]
        if page.next_before_id is None:
            break
        before = page.next_before_id
    return [
        {
            "destination": item.get("destination"),
            "provider": item.get("provider"),
            "state": item.get("state"),
            "attempt_count": item.get("attempt_count"),
            "status_code": item.get("status_code"),
            "succeeded_at": item.get("succeeded_at"),
            "error": item.get("error"),
        }
        for item in history
    ] + [{"evidence": _evidence_ref(r), "delivery_success": r.payload.get("delivery_success")} for r in records]


def _resolve_rollout_id(store: Store, ident: str) -> str:
    book = ledger(store)
    if ident.startswith("apr_"):
        rows = book.by_approval(ident)
    elif ident[:4] in ("rpr_", "rpe_", "rrq_", "rre_"):
        rows = book.by_ref(ident)
    else:
        rows = book.for_rollout(ident)
    if not rows:
        raise NotFoundError(f"rollout {ident!r}: no rollout, request, execution, rollback or approval with that id "
                            "is recorded")
    return rows[0].rollout_id


def show_rollout(store: Store, ident: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The drill-down: rollout -> requests -> approvals (votes: who, when, why) -> executions ->
    rollback requests -> rollbacks -> audits and deliveries, each with its evidence record."""
    moment = now or utc_now()
    rollout_id = _resolve_rollout_id(store, ident)
    steps = ledger(store).for_rollout(rollout_id)
    cache: dict[int, EvidenceRecord] = {}
    views = {s.id: _step_view(store, s, cache) for s in steps}
    approvals: dict[str, dict[str, Any]] = {}

    def approval(aid: str | None) -> dict[str, Any] | None:
        if aid is None:
            return None
        if aid not in approvals:
            approvals[aid] = _approval_view(store, aid, moment)
        return approvals[aid]

    def audits_of(ref: str) -> list[dict[str, Any]]:
        return [views[s.id] for s in steps if s.step == "audit" and s.ref_id == ref]

    promotions = []
    for req in (s for s in steps if s.step == "request"):
        executions = []
        for ex in (s for s in steps if s.step == "execution" and s.parent_ref == req.ref_id):
            rollback_requests = [
                {**views[rr.id], "approval": approval(rr.approval_id)}
                for rr in steps if rr.step == "rollback-request" and rr.parent_ref == ex.ref_id
            ]
            rollbacks = [
                {**views[rb.id], "approval": approval(rb.approval_id), "audits": audits_of(rb.ref_id),
                 "deliveries": _deliveries(store, rb)}
                for rb in steps if rb.step == "rollback" and rb.parent_ref == ex.ref_id
            ]
            executions.append({**views[ex.id], "approval": approval(ex.approval_id), "audits": audits_of(ex.ref_id),
                               "deliveries": _deliveries(store, ex), "rollback_requests": rollback_requests,
                               "rollbacks": rollbacks})
        promotions.append({"request": views[req.id], "approval": approval(req.approval_id), "executions": executions})
    latest = steps[-1]
    return {
        "schema_version": "ringward.rollout-drilldown.v1",
        "rollout_id": rollout_id,
        "environment": latest.environment,
        "release_version": latest.release_version,
        "current_ring": latest.ring,
        "current_status": latest.status,
        "rollout": [views[s.id] for s in steps if s.step in ("capture", "verify")],
        "promotions": promotions,
        "refusals": _refusals_of(store, rollout_id),
        "timeline": [views[s.id] for s in steps],
    }


def _refusals_of(store: Store, rollout_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    from ringward.core.evidence.query import EvidenceQuery

    page = store.search_evidence(EvidenceQuery(kind=ro.KIND_REFUSAL, limit=500, with_total=False))
    out = []
    for record in page.items:
        if record.payload.get("rollout_id") == rollout_id:
            out.append({"step": record.payload.get("step"), "code": record.payload.get("code"),
                        "message": record.payload.get("message"), "actor": record.actor,
                        "at": record.payload.get("at"), "evidence": _evidence_ref(record)})
            if len(out) >= limit:
                break
    return out


def list_rollouts(store: Store, filters: StepFilter, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Rollouts by their state after their latest step, newest first (filters apply to that state)."""
    rows, total = ledger(store).latest_per_rollout(filters, limit=limit, offset=offset)
    return {"items": [r.to_document() for r in rows], "total": total, "limit": limit, "offset": offset}


def search_rollouts(store: Store, filters: StepFilter, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Every rollout step (capture, verify, request, execution, rollback-request, rollback, audit)."""
    rows, total = ledger(store).search(filters, limit=limit, offset=offset)
    return {"items": [r.to_document() for r in rows], "total": total, "limit": limit, "offset": offset}


# --- one entry point per step (the CLI's in-process path and the Prefect tasks) ----------------------

_PATH_PARAMS = frozenset({
    "package_dir", "trust_root", "output", "rollout_dir", "signing_key", "request_path", "windows",
    "execution_path", "record_path", "deliver_config",
})

STEP_FUNCTIONS: dict[str, Any] = {
    "capture": capture_rollout,
    "verify": verify_rollout,
    "request_promotion": request_promotion,
    "execute": execute_promotion,
    "request_rollback": request_rollback,
    "rollback": execute_rollback,
    "audit": audit,
}


def step_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """Plain (JSON-able) step parameters -> the operation's arguments: paths become ``Path``,
    ``expires_in`` text (``24h``) a timedelta, ``now`` text an aware datetime."""
    from ringward.core.approvals.rules import parse_duration

    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _PATH_PARAMS:
            out[name] = Path(value)
        elif name == "expires_in" and isinstance(value, str):
            out[name] = parse_duration(value)
        elif name == "now" and isinstance(value, str):
            out[name] = ro.parse_iso(value, where="now")
        elif name == "deployment_ids":
            out[name] = list(value)
        else:
            out[name] = value
    return out


def run_step(step: str, params: Mapping[str, Any], *, flow_run_id: str | None = None,
             store: Store | None = None) -> dict[str, Any]:
    """Run one rollout step with plain parameters; opens (and closes) the store unless given one."""
    function = STEP_FUNCTIONS.get(step)
    if function is None:
        raise InputError(f"rollout step: expected one of {', '.join(STEP_FUNCTIONS)}, found {step!r}")
    arguments = step_arguments(params)
    if store is not None:
        return dict(function(store, **arguments, flow_run_id=flow_run_id))
    from ringward.store import open_store

    with open_store() as opened:
        return dict(function(opened, **arguments, flow_run_id=flow_run_id))
