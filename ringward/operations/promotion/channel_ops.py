"""Channel operations: promotion requests, status, holds, and the high-water check other steps use.

``ringward channel request-promotion`` verifies the package against the pinned trust root, selects
the channel and its updater policy (approval required, no auto-update), refuses a held channel or
a candidate below the channel's high-water mark (or equal to it with other bytes), opens an
approval bound to ``release_promote_channel_manifest`` / ``sha256:<checksums.txt>`` /
``<channel>-><ring>`` and writes the request signed by a pinned **promotion**-role key (a
release-role key is refused), plus its summary, atomically into the output directory.

Every decision is an evidence record: the request (``release-channel-promotion-request``), each
hold / unhold (``release-channel-state``), and every refusal of a step after its input was
understood (same kind as the step, status ``refused``). No Prefect here; ``tasks/`` wraps these.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.approvals.rules import MAX_TTL
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.errors import InputError, OutputExistsError, RingwardError, VerificationError
from ringward.core.evidence.interop import approval_to_reference
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.promotion import channel_request as cr
from ringward.core.promotion.channels import (
    CandidateVerdict,
    ChannelState,
    check_actor,
    check_candidate,
    check_channel_name,
    check_reason,
)
from ringward.core.promotion.signed_payload import CHANNEL_PROMOTION_SIGNATURE, sign_payload, verify_signed_payload
from ringward.core.release.package_format import (
    CHECKSUMS,
    EVIDENCE_JSON,
    ChannelsDocument,
    InstallersDocument,
    ReleaseEvidenceDocument,
    RuntimeFiles,
    UpdaterPolicyDocument,
)
from ringward.core.release.package_rules import runtime_of
from ringward.core.release.verification import PackageVerification
from ringward.core.trust.root import Role, TrustRoot

if TYPE_CHECKING:
    from ringward.store import Store
    from ringward.store.promotion.channel_repo import ChannelRepository

RESULT_SCHEMA = "ringward.channel-promotion-request-result.v1"
#: default parent of request output directories (under the current directory)
DEFAULT_REQUEST_DIR = "channel-promotion"


def channels(store: Store) -> ChannelRepository:
    from ringward.store.promotion.channel_repo import ChannelRepository

    return ChannelRepository(store)


# --- the verified release ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedRelease:
    """A package that verified in full against the pinned trust root, with its parsed documents."""

    package_dir: Path
    runtime: str
    evidence: ReleaseEvidenceDocument
    installers: InstallersDocument
    channels: ChannelsDocument
    updater: UpdaterPolicyDocument
    checksums_digest: str
    document_sha256: Mapping[str, str]
    digests: Mapping[str, str]
    verification: PackageVerification

    @property
    def version(self) -> str:
        return self.evidence.version

    @property
    def files(self) -> RuntimeFiles:
        return RuntimeFiles(self.runtime)

    def release_ref(self) -> dict[str, Any]:
        return {
            "version": self.evidence.version,
            "commit": self.evidence.commit,
            "ref": self.evidence.ref,
            "repository": self.evidence.repository or self.installers.repository,
            "runtime": self.runtime,
        }

    def verification_summary(self) -> dict[str, Any]:
        return {
            "valid": self.verification.valid,
            "package": str(self.package_dir),
            "version": self.version,
            "signers": list(self.verification.signers),
            "verified_files": len(self.verification.verified_files),
            "checksums_digest": self.checksums_digest,
        }


def load_verified_release(package_dir: Path, trust_root: TrustRoot, *, now: datetime) -> VerifiedRelease:
    """Verify ``package_dir`` with the release verify operation; raise its first error if it fails.

    Raises:
        InputError: no such directory.
        VerificationError (a specific subclass): the package does not verify.
    """
    from ringward.operations.release.verify import verify_directory

    if package_dir.exists() and not package_dir.is_dir():
        raise InputError(f"{package_dir}: is a file, expected a package directory")
    integrity, verification = verify_directory(package_dir, trust_root, now=now)
    content = integrity.content
    if not verification.valid or content is None:
        verification.raise_first()
        raise VerificationError(f"{package_dir}: package does not verify")  # pragma: no cover
    files = RuntimeFiles(runtime_of(content))

    def doc(name: str, model: Any) -> Any:
        return model.model_validate(loads_strict(content.documents[name], source=name))

    names = (EVIDENCE_JSON, files.installers, files.channels, files.updater_policy)
    return VerifiedRelease(
        package_dir=package_dir,
        runtime=files.runtime,
        evidence=doc(EVIDENCE_JSON, ReleaseEvidenceDocument),
        installers=doc(files.installers, InstallersDocument),
        channels=doc(files.channels, ChannelsDocument),
        updater=doc(files.updater_policy, UpdaterPolicyDocument),
        checksums_digest=cr.checksums_digest(content.documents[CHECKSUMS]),
        document_sha256={n: hashlib.sha256(content.documents[n]).hexdigest() for n in names},
        digests=dict(content.digests),
        verification=verification,
    )


def load_trust_root_file(path: Path) -> TrustRoot:
    from ringward.operations.trust.keys import load_trust_root

    if path.is_dir():
        raise InputError(f"--trust-root {path}: is a directory, expected a trust root file")
    return load_trust_root(path)


# --- output directories (assembled under a temporary name, then renamed into place) ---------------


def check_output_free(output: Path, *, option: str = "--output") -> None:
    """Refuse an output that exists, unless it is an empty directory.

    Raises:
        OutputExistsError: a file, or a non-empty directory.
    """
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise OutputExistsError(f"{option} {output}: exists and is not a directory; refusing to overwrite")
    if output.is_dir() and any(output.iterdir()):
        raise OutputExistsError(f"{option} {output}: directory is not empty; refusing to overwrite")


def stage_directory(output: Path) -> Path:
    """A new private directory next to ``output`` to assemble it in."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".staging", dir=output.parent))


def write_files(staging: Path, files: Mapping[str, bytes], *, modes: Mapping[str, int] | None = None) -> None:
    for name, data in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, (modes or {}).get(name, 0o644))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def commit_directory(staging: Path, output: Path, *, option: str = "--output") -> None:
    """Rename the staged directory into place (an existing empty directory is replaced).

    Raises:
        OutputExistsError: ``output`` appeared (non-empty) meanwhile; the staged files are kept and named.
    """
    os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp's 0700 would hide the output from its readers
    try:
        os.rename(staging, output)
    except OSError as exc:
        raise OutputExistsError(
            f"{option} {output}: appeared while writing ({exc.strerror}); the complete output is in {staging}"
        ) from exc


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """Stage into a temporary directory; on any exception the staging directory is removed."""
    staging = stage_directory(output)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- evidence helpers -------------------------------------------------------------------------------------


def evidence_ref(record: Any) -> dict[str, Any]:
    return {"evidence_id": str(record.id), "bundle_dir": record.bundle_dir, "record_hash": record.record_hash}


def record_refusal(
    store: Store,
    kind: str,
    error: RingwardError,
    *,
    actor: str,
    now: datetime,
    subject: EvidenceSubject,
    payload: dict[str, Any],
    flow_run_id: str | None = None,
) -> int:
    """The refusal's own evidence record (status ``refused``); returns its id."""
    draft = EvidenceDraft(
        kind=kind,
        actor=actor,
        flow_run_id=flow_run_id,
        subject=subject.model_copy(update={"status": "refused", "success": False}),
        payload={
            "schema_version": "ringward.refusal.v1",
            "refused": True,
            "error": {"code": error.code, "type": type(error).__name__, "message": error.message},
            **payload,
        },
    )
    return store.append(draft, now=now).id


def bundle_draft(
    kind: str, *, actor: str, payload: dict[str, Any], files: Mapping[str, bytes], subject: EvidenceSubject,
    flow_run_id: str | None, now: datetime,
) -> tuple[EvidenceDraft, Path]:
    """Write an evidence bundle (files + checksums.txt under the evidence root) and return its record
    draft -- to be appended by the caller, inside its own transaction -- and the bundle's path."""
    from ringward.operations.evidence.bundle import write_evidence_bundle
    from ringward.settings import evidence_root

    class _Capture:
        """Stands in for the store: the bundle is written, the draft handed back instead of appended."""

        def append(self, draft: EvidenceDraft) -> EvidenceDraft:
            return draft

    draft: EvidenceDraft = write_evidence_bundle(  # type: ignore[assignment]
        kind=kind, actor=actor, payload=payload, files=files, subject=subject, flow_run_id=flow_run_id,
        store=_Capture(), now=now,
    )
    assert draft.bundle_dir is not None
    return draft, evidence_root() / draft.bundle_dir


# --- request ---------------------------------------------------------------------------------------------


def _check_expiry(expires_in: timedelta) -> timedelta:
    if not timedelta(0) < expires_in <= MAX_TTL:
        raise InputError(f"--expires-in: expected between 1s and {MAX_TTL}, found {expires_in}")
    return expires_in


def check_channel_candidate(store: Store, channel: str, *, version: str, digest: str) -> tuple[ChannelState,
                                                                                               CandidateVerdict]:
    """The persisted channel rules (CH2-CH4) for a candidate; raises ChannelHeldError,
    RollbackError or VersionConflictError."""
    state = channels(store).get(channel)
    return state, check_candidate(state, version=version, digest=digest)


def request_channel_promotion(
    store: Store,
    *,
    package_dir: Path,
    channel: str,
    target_ring: str,
    requester: str,
    signing_key: Path,
    trust_root: Path,
    now: datetime,
    expires_in: timedelta = timedelta(hours=24),
    quorum: int = 1,
    approver_group: str | None = None,
    output: Path | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Verify, check, open the approval, sign and write the request (see the module docstring)."""
    from ringward.operations.approvals.approval_ops import request_approval
    from ringward.operations.trust.keys import load_signing_key

    check_channel_name(channel)
    check_actor(requester, option="--requester")
    _check_expiry(expires_in)
    if signing_key.is_dir():
        raise InputError(f"--signing-key {signing_key}: is a directory, expected a PEM file")
    key = load_signing_key(signing_key)
    if key is None:  # pragma: no cover - a path is always given
        raise InputError("--signing-key: required")
    root = load_trust_root_file(trust_root)
    if output is not None:
        check_output_free(output)
    context: dict[str, Any] = {"channel": channel, "target_ring": target_ring, "package_dir": str(package_dir),
                               "requested_by": requester}
    subject = EvidenceSubject(channel=channel, ring=target_ring, deployment_target=cr.approval_target(channel,
                                                                                                      target_ring))
    try:
        release = load_verified_release(package_dir, root, now=now)
        subject = subject.model_copy(update={"release_version": release.version, "runtime": release.runtime})
        entry, policy = cr.select_channel(release.channels, release.updater, channel)
        cr.check_target_ring(entry, policy, target_ring)
        check_channel_candidate(store, channel, version=release.version, digest=release.checksums_digest)
        request_id = cr.request_id_for(channel, release.version, target_ring)
        # the key must be a pinned, active promotion-role key: prove it on a probe before opening anything
        probe = sign_payload({"probe": request_id}, private_key=key, signer=requester,
                             schema_version=CHANNEL_PROMOTION_SIGNATURE)
        verify_signed_payload(probe, trust_root=root, role=Role.PROMOTION, now=now, label=cr.LABEL,
                              schema_version=CHANNEL_PROMOTION_SIGNATURE)
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            record_refusal(store, cr.KIND_REQUEST, exc, actor=requester, now=now, subject=subject, payload=context,
                           flow_run_id=flow_run_id)
        raise
    target_dir = output if output is not None else Path.cwd() / DEFAULT_REQUEST_DIR / request_id
    check_output_free(target_dir)

    approval = request_approval(
        store,
        action=cr.ACTION,
        subject_digest=release.checksums_digest,
        target=cr.approval_target(channel, target_ring),
        requester=requester,
        expires_in=expires_in,
        quorum=quorum,
        approver_group=approver_group or cr.DEFAULT_APPROVER_GROUP,
        note=f"channel promotion request {request_id}: {release.runtime} {release.version} to {channel}->{target_ring}",
        now=now,
        flow_run_id=flow_run_id,
    )
    decision = cr.decision_for(
        request_id=request_id, channel=entry, policy=policy, ring=target_ring,
        repository=str(release.release_ref()["repository"]), requested_by=requester, runtime=release.runtime,
        verification=release.verification_summary(),
    )
    embedded = cr.embedded_approval(approval_to_reference(approval, now=now), decision)
    unsigned = cr.build_request(
        request_id=request_id, created_at=now, runtime=release.runtime, channel=entry, policy=policy,
        ring=target_ring, release=release.release_ref(), subject_digest=release.checksums_digest,
        requested_by=requester, channels_sha256=release.document_sha256[release.files.channels],
        updater_sha256=release.document_sha256[release.files.updater_policy], approval=embedded,
        expires_at=approval.expires_at,
    )
    signed = sign_payload(unsigned, private_key=key, signer=requester, schema_version=CHANNEL_PROMOTION_SIGNATURE)
    check = verify_signed_payload(signed, trust_root=root, role=Role.PROMOTION, now=now, label=cr.LABEL,
                                  schema_version=CHANNEL_PROMOTION_SIGNATURE)
    files = {
        cr.REQUEST_FILE: dumps_document(signed),
        cr.REQUEST_SUMMARY: cr.render_summary(signed, signer_key_id=check.key_id),
    }
    with staged_output(target_dir) as staging:
        write_files(staging, files)
        commit_directory(staging, target_dir)

    tools = sorted({t.management_tool for t in entry.workstation_targets})
    payload = {
        "schema_version": "ringward.channel-promotion-request-record.v1",
        "request_id": request_id,
        "channel": channel,
        "target_ring": target_ring,
        "approval_id": approval.approval_id,
        "approval_state": approval.state.value,
        "subject_digest": release.checksums_digest,
        "request_sha256": check.payload_sha256,
        "signer_key_id": check.key_id,
        "release": release.release_ref(),
        "deployment_targets": [t.id for t in entry.workstation_targets],
        "endpoint_management_tools": tools,
        "controls": list(cr.CONTROLS),
        "evidence_refs": [f"artifact://{release.files.channels}", f"artifact://{release.files.updater_policy}",
                          f"approval://{approval.approval_id}"],
        "audit_links": {"channel_manifest": release.files.channels, "updater_policy": release.files.updater_policy,
                        "approval": f"approval://{approval.approval_id}"},
        "package_dir": str(package_dir),
        "output_dir": str(target_dir),
        "request": signed,
    }
    draft, _ = bundle_draft(
        cr.KIND_REQUEST, actor=requester, payload=payload, files=files,
        subject=subject.model_copy(update={"status": "requested", "approval_id": approval.approval_id,
                                           "approval_state": approval.state.value, "success": True}),
        flow_run_id=flow_run_id, now=now,
    )
    record = store.append(draft, now=now)
    return {
        "schema_version": RESULT_SCHEMA,
        "valid": True,
        "request_id": request_id,
        "channel": channel,
        "target_ring": target_ring,
        "runtime": release.runtime,
        "version": release.version,
        "subject_digest": release.checksums_digest,
        "approval_id": approval.approval_id,
        "approval_state": approval.state.value,
        "approval_target": cr.approval_target(channel, target_ring),
        "action": cr.ACTION,
        "requested_by": requester,
        "quorum": approval.quorum,
        "expires_at": approval.expires_at.isoformat(),
        "signer_key_id": check.key_id,
        "request_sha256": check.payload_sha256,
        "output_dir": str(target_dir),
        "files": [str(target_dir / name) for name in files],
        "evidence": evidence_ref(record),
    }


def requested_event(result: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The ``ringward.promotion.requested`` Prefect event of a request result: (name, resource id, payload)."""
    return "ringward.promotion.requested", f"ringward.channel.{result['channel']}", {
        "request_id": result["request_id"], "channel": result["channel"], "target_ring": result["target_ring"],
        "version": result["version"], "approval_id": result["approval_id"], "requested_by": result["requested_by"],
        "subject_digest": result["subject_digest"], "evidence_id": result["evidence"]["evidence_id"],
    }


# --- status, hold, unhold --------------------------------------------------------------------------------


def hold_channel(store: Store, channel: str, *, reason: str, actor: str, now: datetime,
                 flow_run_id: str | None = None) -> dict[str, Any]:
    check_channel_name(channel)
    check_reason(reason)
    check_actor(actor)
    state, record = channels(store).hold(channel, actor=actor, reason=reason, now=now, flow_run_id=flow_run_id)
    return {"channel": state.to_document(), "evidence": evidence_ref(record)}


def unhold_channel(store: Store, channel: str, *, reason: str, actor: str, now: datetime,
                   flow_run_id: str | None = None) -> dict[str, Any]:
    check_channel_name(channel)
    check_reason(reason)
    check_actor(actor)
    state, record = channels(store).unhold(channel, actor=actor, reason=reason, now=now, flow_run_id=flow_run_id)
    return {"channel": state.to_document(), "evidence": evidence_ref(record)}


