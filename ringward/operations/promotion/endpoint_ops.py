"""Endpoint-management exports and their publication: the channel promotion's execution.

``ringward endpoint export`` is where a channel promotion happens. It refuses unless the package
verifies against the pinned trust root; the promotion request's signature verifies under a
pinned promotion-role key; the request names this channel, this package's version and digest;
its approval -- looked up in the store by the id inside the signed request, never taken from a
document handed in -- is approved, unexpired, bound to ``sha256:<checksums.txt>`` and
``<channel>-><ring>`` and not yet consumed; the channel is not held; the version passes the
high-water mark (or is the rollback the channel allows once); and the promotion window (if a
window policy is given) is open. The export is assembled in a temporary directory, then one
store transaction consumes the approval and raises the channel's high-water mark (plus the
evidence records), then the directory is renamed into place; if the transaction loses (a
concurrent export consumed the approval first) the temporary directory and bundle are removed.

Break glass: outside its window an export runs only with ``break_glass_approval`` -- an approved,
unexpired, unconsumed approval of action ``break_glass`` bound (like a rollout's) by
:func:`~ringward.core.promotion.windows_policy.break_glass_binding` to action ``export``, the
subject = the signed request's ``request_id`` and the window targets ``channel:<C>`` +
``ring:<R>`` (``ringward window break-glass --action export --subject <request_id> -t
channel:<C> -t ring:<R>`` prints it). It is consumed in the same transaction as the export's own
approval, and the manifest and export record carry ``break_glass: true``, its approval id, the
``break-glass-approval-consumed`` control and the closed window decision. An open window leaves
it unused.

``ringward endpoint deliver`` re-checks an export (schema, strict checksums, confinement, every
expected file, the recorded export's checksums digest), refuses one whose approval was not
consumed by exactly that export, and publishes it through the connector delivery operations
(native Jamf Pro and Intune publishers, the Linux fleet endpoint); installers are read from the
verified export directory. A ``endpoint-management-publication-delivery`` record is written for
every delivery, failed or not.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.approvals.rules import ApprovalState, check_consume
from ringward.core.common.checksums import parse_checksums, render_checksums
from ringward.core.common.jsonio import MAX_DOCUMENT_BYTES, dumps_document, loads_strict
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalStateError,
    BindingMismatchError,
    DigestMismatchError,
    InputError,
    MetadataMismatchError,
    MissingFileError,
    RingwardError,
    UnlistedFileError,
    VerificationError,
)
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.promotion import channel_request as cr
from ringward.core.promotion import endpoint_export as ee
from ringward.core.promotion.channels import (
    CandidateVerdict,
    PromotedRelease,
    check_actor,
    check_candidate,
    check_channel_name,
    check_not_held,
    check_not_yanked,
)
from ringward.core.promotion.signed_payload import CHANNEL_PROMOTION_SIGNATURE, verify_signed_payload
from ringward.core.release.package_format import WorkstationTarget
from ringward.core.trust.root import Role
from ringward.operations.common.files import read_capped, walk_regular_files
from ringward.operations.promotion.channel_ops import (
    VerifiedRelease,
    bundle_draft,
    channels,
    check_output_free,
    commit_directory,
    evidence_ref,
    load_trust_root_file,
    load_verified_release,
    record_refusal,
    stage_directory,
    write_files,
)

if TYPE_CHECKING:
    from ringward.store import Store
    from ringward.store.promotion.channel_repo import ApprovalUse

EXPORT_RESULT_SCHEMA = "ringward.endpoint-export-result.v1"
PUBLICATION_RESULT_SCHEMA = "ringward.endpoint-publication-result.v1"
PUBLICATION_SIGNER = "endpoint-management-publication"
#: largest binary copied into an export for a publisher
MAX_INSTALLER_BYTES = 2 * 1024 * 1024 * 1024


# --- export -------------------------------------------------------------------------------------------


def _input_file(path: Path, option: str, cap: int = MAX_DOCUMENT_BYTES) -> bytes:
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory, expected a file")
    return read_capped(path, cap, source=f"{option} {path}")


def _windows_path(windows: Path | None) -> Path | None:
    """``--windows``, else ``$RINGWARD_WINDOWS``, else None (no windows configured: everything open)."""
    from ringward.operations.promotion.windows import windows_policy_path

    path = windows_policy_path(windows)
    if path is not None and path.is_dir():
        raise InputError(f"--windows {path}: is a directory, expected a window policy file")
    return path


#: the action a break-glass approval lets through for an export (its target is ``export:<request_id>``)
BREAK_GLASS_EXPORT = "export"


def _window_decision(windows: Path | None, channel: str, ring: str, now: datetime) -> tuple[Any, Any]:
    """The promotion window decision for ``channel:<C>`` and ``ring:<R>``, and the refusal
    (a ``PromotionWindowError``) when it is closed, else None."""
    from ringward.core.promotion.windows_policy import WindowClosedError
    from ringward.operations.promotion.windows import enforce_window

    try:
        return enforce_window(windows, [f"channel:{channel}", f"ring:{ring}"], now, action="endpoint export"), None
    except WindowClosedError as exc:
        return exc.decision, exc


def _break_glass_use(store: Store, approval_id: str, decision: Any, *, request_id: str, actor: str,
                     now: datetime) -> ApprovalUse:
    """The break-glass approval that lets this export run in a closed window, checked now (the
    export's transaction checks and consumes it again under the lock).

    Raises:
        ApprovalNotFoundError, ApprovalBindingError, ApprovalConsumedError, ApprovalExpiredError,
        ApprovalStateError: as for every approval.
    """
    from ringward.core.promotion.windows_policy import break_glass_binding
    from ringward.store.promotion.channel_repo import ApprovalUse

    binding = break_glass_binding(decision, subject=request_id, overridden_action=BREAK_GLASS_EXPORT)
    check_consume(store.approvals.get(approval_id), action=binding.action, subject_digest=binding.subject_digest,
                  target=binding.target, actor=actor, now=now)
    return ApprovalUse(approval_id=approval_id, action=binding.action, subject_digest=binding.subject_digest,
                       target=binding.target)


def _verified_request(data: bytes, source: str, root: Any, *, now: datetime) -> tuple[cr.ChannelPromotionRequest,
                                                                                      Any]:
    document = loads_strict(data, source=source)
    if not isinstance(document, dict):
        raise MetadataMismatchError(f"{source}: expected a JSON object, found {type(document).__name__}")
    check = verify_signed_payload(document, trust_root=root, role=Role.PROMOTION, now=now, label=cr.LABEL,
                                  schema_version=CHANNEL_PROMOTION_SIGNATURE)
    return cr.parse_request(document, source=source), check


def _check_request_binding(request: cr.ChannelPromotionRequest, release: VerifiedRelease, channel: str) -> None:
    if request.channel != channel:
        raise BindingMismatchError(
            f"promotion request channel does not match export channel: request {request.channel!r}, "
            f"--channel {channel!r}"
        )
    if request.release.version != release.version:
        raise BindingMismatchError(
            f"promotion request release.version {request.release.version!r} does not match the package "
            f"version {release.version!r}"
        )
    if request.subject_digest is not None and request.subject_digest != release.checksums_digest:
        raise BindingMismatchError(
            f"promotion request subject_digest {request.subject_digest} does not match the package's "
            f"checksums.txt digest {release.checksums_digest}"
        )
    expected = cr.request_id_for(channel, release.version, request.target_ring)
    if request.request_id != expected:
        raise BindingMismatchError(f"promotion request request_id expected {expected}, found {request.request_id}")


def _targets_by_provider(targets: list[WorkstationTarget], wanted: tuple[str, ...], option: str,
                         channel: str) -> dict[str, list[WorkstationTarget]]:
    if not targets:
        raise MetadataMismatchError(f"release channel {channel} has no workstation targets")
    grouped: dict[str, list[WorkstationTarget]] = {}
    for target in sorted(targets, key=lambda t: t.id):
        name = ee.provider_of(target)
        if name in wanted:
            grouped.setdefault(name, []).append(target)
    if option.strip() != "all":
        missing = [p for p in wanted if p not in grouped]
        if missing:
            raise InputError(f"--provider: release channel {channel} has no workstation targets for "
                             f"{', '.join(missing)}")
    if not grouped:
        raise MetadataMismatchError(f"release channel {channel} has no workstation targets for jamf, intune or linux")
    return {p: grouped[p] for p in ee.PROVIDERS if p in grouped}


def _binary(release: VerifiedRelease, name: str) -> bytes:
    """A package binary's bytes, re-checked against the digest verification established."""
    expected = release.digests.get(name)
    if expected is None:
        raise MissingFileError(f"{name}: not a verified file of the package")
    data = read_capped(release.package_dir / name, MAX_INSTALLER_BYTES, source=name)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DigestMismatchError(f"{name}: changed after verification (expected {expected}, found {actual})")
    return data


def _provider_files(release: VerifiedRelease, entry: Any, policy: Any,
                    grouped: dict[str, list[WorkstationTarget]]) -> tuple[dict[str, bytes], dict[str, int],
                                                                          list[dict[str, Any]]]:
    """Every provider file (name -> bytes), file modes, and the manifest's provider entries."""
    runtime, version = release.runtime, release.version
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    entries: list[dict[str, Any]] = []
    for name, targets in grouped.items():
        extra: list[str] = []
        if name == "jamf":
            package_name = f"{runtime}-{version}-macos.zip"
            package = ee.jamf_package_zip([(t.binary.rsplit("/", 1)[-1], _binary(release, t.binary)) for t in targets])
            document = ee.jamf_policy(runtime=runtime, version=version, channel=entry, policy=policy, targets=targets,
                                      installers=release.installers, package_name=package_name, package=package)
            files[ee.JAMF_FILE] = dumps_document(document)
            files[f"{ee.JAMF_DIR}/{package_name}"] = package
            extra.append(f"{ee.JAMF_DIR}/{package_name}")
            main = ee.JAMF_FILE
        elif name == "intune":
            paths = {t.target: t.install_path for t in release.installers.targets}
            install_path = paths.get(targets[0].installer_target, f"%ProgramFiles%\\Ringward\\{runtime}.exe")
            content: list[tuple[str, bytes]] = [
                (f"install-{runtime}.ps1",
                 ee.intune_install_script(targets[0].binary.rsplit("/", 1)[-1], targets[0].binary_sha256,
                                          install_path)),
                (f"rollback-{runtime}.ps1", ee.intune_rollback_script(install_path)),
            ]
            content += [(t.binary.rsplit("/", 1)[-1], _binary(release, t.binary)) for t in targets]
            document = ee.intune_app(runtime=runtime, version=version, channel=entry, targets=targets,
                                     installers=release.installers, content=content)
            files[ee.INTUNE_FILE] = dumps_document(document)
            for item, data in content:
                files[f"{ee.INTUNE_DIR}/{item}"] = data
                extra.append(f"{ee.INTUNE_DIR}/{item}")
            main = ee.INTUNE_FILE
        else:
            paths = {t.target: t.install_path for t in release.installers.targets}
            install_path = paths.get(targets[0].installer_target, f"/usr/local/bin/{runtime}")
            script_name = ee.linux_script_name(runtime)
            script = ee.linux_install_script(runtime, version, entry.channel, targets, install_path)
            document = ee.linux_manifest(runtime=runtime, version=version, commit=release.evidence.commit,
                                         channel=entry, policy=policy, targets=targets, script_name=script_name,
                                         script=script)
            files[ee.LINUX_FILE] = dumps_document(document)
            files[script_name] = script
            modes[script_name] = 0o755
            extra.append(script_name)
            main = ee.LINUX_FILE
        entries.append({"provider": name, "file": main, "files": extra,
                        "targets": [ee.export_target(t) for t in targets]})
    return files, modes, entries


def export_endpoint(
    store: Store,
    *,
    package_dir: Path,
    channel: str,
    provider: str,
    promotion_request: Path,
    trust_root: Path,
    actor: str,
    output: Path,
    now: datetime,
    windows: Path | None = None,
    break_glass_approval: str | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Export the approved channel promotion for the endpoint tools (see the module docstring).

    ``break_glass_approval``: the id of a ``break_glass`` approval that lets the export run
    outside its promotion window (unused when the window is open).
    """
    check_channel_name(channel)
    wanted = ee.parse_provider_option(provider)
    check_actor(actor)
    if break_glass_approval is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", break_glass_approval):
        raise InputError(f"--break-glass-approval: expected an approval id such as apr_0123456789ab, "
                         f"found {break_glass_approval[:80]!r}")
    request_bytes = _input_file(promotion_request, "--promotion-request", cr.MAX_REQUEST_BYTES)
    root = load_trust_root_file(trust_root)
    check_output_free(output)
    window_path = _windows_path(windows)
    subject = EvidenceSubject(channel=channel, provider=provider if len(wanted) == 1 else None)
    context: dict[str, Any] = {"channel": channel, "provider": provider, "package_dir": str(package_dir),
                               "promotion_request": str(promotion_request), "output_dir": str(output)}
    if break_glass_approval is not None:
        context["break_glass_approval_id"] = break_glass_approval
    staging: Path | None = None
    bundle: Path | None = None
    try:
        release = load_verified_release(package_dir, root, now=now)
        subject = subject.model_copy(update={"release_version": release.version, "runtime": release.runtime})
        entry, policy = cr.select_channel(release.channels, release.updater, channel)
        request, check = _verified_request(request_bytes, str(promotion_request), root, now=now)
        ring = request.target_ring
        target = cr.approval_target(channel, ring)
        approval_id = request.approval.approval_id
        subject = subject.model_copy(update={"ring": ring, "deployment_target": target, "approval_id": approval_id})
        context.update(request_id=request.request_id, approval_id=approval_id, target_ring=ring)
        _check_request_binding(request, release, channel)
        if ring not in cr.allowed_rings(entry, policy):
            raise MetadataMismatchError(
                f"promotion request target_ring {ring!r} is not a ring of channel {channel} "
                f"({', '.join(cr.allowed_rings(entry, policy))})"
            )
        # the approval is the store's, found by the id the signed request carries
        approval = store.approvals.get(approval_id)
        check_consume(approval, action=cr.ACTION, subject_digest=release.checksums_digest, target=target,
                      actor=actor, now=now)
        verdict = check_candidate(channels(store).get(channel), version=release.version,
                                  digest=release.checksums_digest)
        grouped = _targets_by_provider(list(entry.workstation_targets), wanted, provider, channel)
        decision, closed = _window_decision(window_path, channel, ring, now)
        window = dict(decision.model_dump(mode="json"))
        glass: list[ApprovalUse] = []
        if closed is not None:
            context["window"] = window
            if break_glass_approval is None:
                raise closed
            glass.append(_break_glass_use(store, break_glass_approval, decision, request_id=request.request_id,
                                          actor=actor, now=now))
        break_glass = bool(glass)
        glass_id = break_glass_approval if break_glass else None
        controls = list(ee.EXPORT_CONTROLS) + (["break-glass-approval-consumed"] if break_glass else [])

        names = list(grouped)
        export_id = ee.export_id_for(channel, release.version, names, approval_id)
        context["export_id"] = export_id
        files, modes, provider_entries = _provider_files(release, entry, policy, grouped)
        manifest: dict[str, Any] = {
            "schema_version": ee.EXPORT_MANIFEST_SCHEMA,
            "export_id": export_id,
            "created_at": now.isoformat(),
            "exported_by": actor,
            "channel": channel,
            "target_ring": ring,
            "provider": provider,
            "providers": provider_entries,
            "package_dir": str(package_dir),
            "release": release.release_ref(),
            "approval": {
                "required": True,
                "request_id": request.request_id,
                "approval_id": approval_id,
                "action": cr.ACTION,
                "target": target,
                "subject_digest": release.checksums_digest,
            },
            "request": {"request_id": request.request_id, "payload_sha256": check.payload_sha256,
                        "signer_key_id": check.key_id, "signer": check.signer},
            "controls": controls,
            "package_verification": release.verification_summary(),
            "rollback": verdict is CandidateVerdict.ROLLBACK,
            "break_glass": break_glass,
            "break_glass_approval_id": glass_id,
            "window": window,
            "files": sorted([*files, ee.EXPORT_MANIFEST, ee.EXPORT_SUMMARY]),
        }
        files[ee.EXPORT_MANIFEST] = dumps_document(manifest)
        files[ee.EXPORT_SUMMARY] = ee.render_export_summary(manifest)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        checksums = render_checksums(digests)
        files[ee.CHECKSUMS] = checksums
        checksums_sha256 = hashlib.sha256(checksums).hexdigest()

        staging = stage_directory(output)
        write_files(staging, files, modes=modes)

        installers = {f"{ee.JAMF_DIR}/", f"{ee.INTUNE_DIR}/"}
        bundle_files = {n: d for n, d in files.items() if not any(n.startswith(p) for p in installers)
                        and n != ee.CHECKSUMS}
        bundle_files["export-checksums.txt"] = checksums
        record_payload = {
            "schema_version": "ringward.endpoint-export-record.v1",
            "metadata_kind": ee.KIND_EXPORT,
            "export_id": export_id,
            "session_id": export_id,
            "signer": actor,
            "approval_required_count": 1,
            "channel": channel,
            "target_ring": ring,
            "provider": provider,
            "providers": names,
            "approval_id": approval_id,
            "approval_state": ApprovalState.APPROVED.value,
            "approval_consumed": True,
            "request_id": request.request_id,
            "release": release.release_ref(),
            "subject_digest": release.checksums_digest,
            "files": sorted(files),
            "file_sha256": digests,
            "checksums_sha256": checksums_sha256,
            "controls": controls,
            "package_dir": str(package_dir),
            "output_dir": str(output),
            "rollback": manifest["rollback"],
            "break_glass": break_glass,
            "break_glass_approval_id": glass_id,
            "window": window,
            "evidence_refs": [f"release-channel-promotion://{request.request_id}", f"approval://{approval_id}"]
            + ([f"approval://{glass_id}"] if glass_id else []),
            "audit_links": {"promotion_request": str(promotion_request), "approval": f"approval://{approval_id}",
                            "export_manifest": str(output / ee.EXPORT_MANIFEST)}
            | ({"break_glass_approval": f"approval://{glass_id}"} if glass_id else {}),
            "manifest": manifest,
        }
        export_draft, bundle = bundle_draft(
            ee.KIND_EXPORT, actor=actor, payload=record_payload, files=bundle_files,
            subject=subject.model_copy(update={"status": "exported", "approval_state": "approved",
                                               "execution_status": "consumed", "success": True}),
            flow_run_id=flow_run_id, now=now,
        )
        promoted = PromotedRelease(
            version=release.version, digest=release.checksums_digest, promoted_at=now, actor=actor,
            export_id=export_id, approval_id=approval_id, request_id=request.request_id, target_ring=ring,
        )
        outcome = channels(store).execute_promotion(
            channel, release=promoted, approval_id=approval_id, action=cr.ACTION,
            subject_digest=release.checksums_digest, target=target, actor=actor, now=now,
            drafts=lambda before, after, approval: [export_draft], flow_run_id=flow_run_id, also_consume=glass,
        )
    except RingwardError as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if bundle is not None:
            shutil.rmtree(bundle, ignore_errors=True)
        if not isinstance(exc, InputError):
            decision = getattr(exc, "decision", None)  # a closed promotion window says why and until when
            if decision is not None and hasattr(decision, "model_dump"):
                context["window"] = decision.model_dump(mode="json")
            record_refusal(store, ee.KIND_EXPORT, exc, actor=actor, now=now, subject=subject, payload=context,
                           flow_run_id=flow_run_id)
        raise
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if bundle is not None:
            shutil.rmtree(bundle, ignore_errors=True)
        raise
    # the decision is committed: the export goes into place
    commit_directory(staging, output)
    export_record = outcome.records[-1]
    mark = outcome.state.high_water
    return {
        "schema_version": EXPORT_RESULT_SCHEMA,
        "valid": True,
        "export_id": export_id,
        "channel": channel,
        "target_ring": ring,
        "provider": provider,
        "providers": names,
        "runtime": release.runtime,
        "version": release.version,
        "subject_digest": release.checksums_digest,
        "request_id": request.request_id,
        "approval_id": approval_id,
        "approval_consumed_at": None if outcome.approval.consumed_at is None
        else outcome.approval.consumed_at.isoformat(),
        "rollback": outcome.rollback,
        "high_water_mark": None if mark is None else {"version": mark.version, "digest": mark.digest},
        "break_glass": break_glass,
        "break_glass_approval_id": glass_id,
        "window": window,
        "output_dir": str(output),
        "manifest": str(output / ee.EXPORT_MANIFEST),
        "files": sorted(files),
        "evidence": evidence_ref(export_record),
        "evidence_ids": [r.id for r in outcome.records],
    }


# --- deliver ------------------------------------------------------------------------------------------


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "event"


def verify_export_directory(export_dir: Path, manifest: ee.ExportManifest, providers: list[str]) -> bytes:
    """The export is exactly what its checksums.txt lists, and holds every file the providers need.

    Returns the checksums.txt bytes.

    Raises:
        MissingFileError, UnlistedFileError, DigestMismatchError, MalformedManifestError, UnsafePathError.
    """
    listing = walk_regular_files(export_dir)
    if ee.CHECKSUMS not in listing:
        raise MissingFileError("endpoint-management export checksums.txt is missing")
    checksums = read_capped(export_dir / ee.CHECKSUMS, 4 * 1024 * 1024, source=ee.CHECKSUMS)
    listed = parse_checksums(checksums, source=f"{export_dir / ee.CHECKSUMS}").as_dict()
    for name in sorted(listing):
        if name != ee.CHECKSUMS and name not in listed:
            raise UnlistedFileError(f"endpoint export artifact is not listed in checksums.txt: {name}")
    for name in manifest.expected_files(providers):
        if name != ee.CHECKSUMS and name not in listed:
            raise MissingFileError(f"endpoint export artifact missing from checksums.txt: {name}")
    for name, expected in listed.items():
        if name not in listing:
            raise MissingFileError(f"endpoint export artifact is missing: {name}")
        with open(export_dir / name, "rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if actual != expected:
            raise DigestMismatchError(f"endpoint export artifact checksum mismatch: {name}")
    return checksums


def _check_consumed_by_export(store: Store, manifest: ee.ExportManifest, checksums: bytes) -> None:
    providers = manifest.provider_names
    expected_id = ee.export_id_for(manifest.channel, manifest.release.version, providers,
                                   manifest.approval.approval_id)
    if manifest.export_id != expected_id:
        raise BindingMismatchError(f"export manifest export_id expected {expected_id}, found {manifest.export_id}")
    approval = store.approvals.get(manifest.approval.approval_id)
    aid = approval.approval_id
    if approval.consumed_at is None:
        raise ApprovalStateError(
            f"approval {aid}: not consumed by an export (state {approval.state.value}); "
            "only an export made by `ringward endpoint export` can be published"
        )
    if approval.execution_ref != manifest.export_id:
        raise ApprovalBindingError(
            f"approval {aid}: consumed by {approval.execution_ref!r}, not by export {manifest.export_id}"
        )
    target = cr.approval_target(manifest.channel, manifest.target_ring)
    for field, stored, found in (
        ("action", approval.action, cr.ACTION),
        ("target", approval.target, target),
        ("subject_digest", approval.subject_digest, manifest.approval.subject_digest),
    ):
        if stored != found:
            raise ApprovalBindingError(f"approval {aid}: {field} expected {stored!r}, export manifest has {found!r}")
    page = store.search_evidence(EvidenceQuery(kind=ee.KIND_EXPORT, approval_id=aid, status="exported", limit=5))
    recorded = [r for r in page.items if r.payload.get("export_id") == manifest.export_id]
    if not recorded:
        raise BindingMismatchError(f"export {manifest.export_id}: no export record in the evidence chain")
    digest = hashlib.sha256(checksums).hexdigest()
    if recorded[0].payload.get("checksums_sha256") != digest:
        raise BindingMismatchError(
            f"export {manifest.export_id}: checksums.txt digest {digest} differs from the exported "
            f"{recorded[0].payload.get('checksums_sha256')} (evidence record {recorded[0].id}); the export was changed"
        )


def _selected_providers(manifest: ee.ExportManifest, provider: str) -> list[str]:
    present = manifest.provider_names
    if provider.strip() == "all":
        return [p for p in ee.PROVIDERS if p in present]
    names = [p.strip() for p in provider.split(",") if p.strip()]
    bad = [p for p in names if p not in ee.PROVIDERS]
    if bad or not names:
        raise InputError(f"--provider: unsupported endpoint-management publication provider: {', '.join(bad) or '-'}")
    missing = [p for p in names if p not in present]
    if missing:
        raise InputError(f"--provider: provider not present in endpoint export: {', '.join(missing)}")
    return [p for p in ee.PROVIDERS if p in names]


def deliver_endpoint_export(
    store: Store,
    *,
    manifest_path: Path,
    config_path: Path,
    actor: str,
    now: datetime,
    provider: str = "all",
    flow_run_id: str | None = None,
    lookups: Mapping[str, Any] | None = None,
    hooks: Any = None,
) -> dict[str, Any]:
    """Publish an export (see the module docstring). Returns the result; ``success`` says whether
    every selected destination took it."""
    from ringward.core.delivery.event import ConnectorEvent, Severity
    from ringward.operations.delivery import delivery_ops as ops
    check_actor(actor)
    raw = _input_file(manifest_path, "EXPORT_MANIFEST")
    config = ops.load_connector_config(config_path) if not config_path.is_dir() else None
    if config is None:
        raise InputError(f"--config {config_path}: is a directory, expected a connector file")
    export_dir = manifest_path.resolve().parent
    subject = EvidenceSubject()
    context: dict[str, Any] = {"export_manifest": str(manifest_path), "provider": provider}
    try:
        manifest = ee.parse_export_manifest(loads_strict(raw, source=str(manifest_path)), source=str(manifest_path))
        subject = EvidenceSubject(channel=manifest.channel, ring=manifest.target_ring,
                                  release_version=manifest.release.version, runtime=manifest.release.runtime,
                                  approval_id=manifest.approval.approval_id,
                                  deployment_target=cr.approval_target(manifest.channel, manifest.target_ring))
        context.update(export_id=manifest.export_id, channel=manifest.channel)
        providers = _selected_providers(manifest, provider)
        checksums = verify_export_directory(export_dir, manifest, providers)
        _check_consumed_by_export(store, manifest, checksums)
        state = channels(store).get(manifest.channel)
        check_not_held(state)
        check_not_yanked(state, manifest.release.version)
        provider_files: dict[str, dict[str, Any]] = {}
        linux_script: str | None = None
        by_name: dict[str, ee.ExportProvider] = {p.provider: p for p in manifest.providers}
        for name in providers:
            entry = by_name[name]
            data = read_capped(export_dir / entry.file, MAX_DOCUMENT_BYTES, source=entry.file)
            document = loads_strict(data, source=entry.file)
            if not isinstance(document, dict):
                raise VerificationError(f"{entry.file}: expected a JSON object")
            provider_files[name] = document
            if name == "linux":
                script = entry.files[0] if entry.files else None
                if script is not None:
                    linux_script = (export_dir / script).read_bytes().decode("utf-8", "replace")
        listed = parse_checksums(checksums).as_dict()
        artifacts = [{"artifact": n, "sha256": d, "bytes": (export_dir / n).stat().st_size}
                     for n, d in sorted(listed.items())]
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            record_refusal(store, ee.KIND_PUBLICATION, exc, actor=actor, now=now, subject=subject, payload=context,
                           flow_run_id=flow_run_id)
        raise

    document = ee.publication_document(
        manifest, raw_manifest=loads_strict(raw, source=str(manifest_path)), providers=providers,
        provider_files=provider_files, artifacts=artifacts, requested_by=actor, created_at=now,
        linux_script=linux_script,
    )
    publication_id = document["publication_id"]
    event = ConnectorEvent(
        event_id=publication_id,
        event_type=ee.PUBLICATION_EVENT_TYPE,
        created_at=now,
        severity=Severity.INFO,
        title=f"{manifest.release.runtime or 'runtime'} {manifest.release.version} published to "
              f"{', '.join(providers)} for channel {manifest.channel}",
        summary=f"Export {manifest.export_id} (approval {manifest.approval.approval_id}, request "
                f"{manifest.approval.request_id}) published to {', '.join(providers)}.",
        source="ringward",
        release_version=manifest.release.version,
        channel=manifest.channel,
        ring=manifest.target_ring,
        session_id=manifest.export_id,
        actor=actor,
        attributes={k: v for k, v in document.items() if k != "provider_payloads"},
        provider_payloads=document["provider_payloads"],
    )
    roots = {"jamf": str(export_dir / ee.JAMF_DIR), "intune": str(export_dir / ee.INTUNE_DIR)}
    destinations = tuple(
        d.model_copy(update={"artifact_root": roots[d.provider.value]})
        if d.provider.value in roots and d.artifact_root is None else d
        for d in config.providers
    )
    config = config.model_copy(update={"providers": destinations})
    configured = {d.provider.value for d in config.providers if d.enabled}
    kinds = [p for p in providers if p in configured]
    if provider.strip() != "all":
        missing = [p for p in providers if p not in configured]
        if missing:
            from ringward.core.errors import ConnectorConfigError

            raise ConnectorConfigError(f"--provider: no enabled {', '.join(missing)} destination in {config_path}")
    if not kinds:
        from ringward.core.errors import ConnectorConfigError

        raise ConnectorConfigError(
            f"{config_path}: no enabled destination of the export's providers ({', '.join(providers)})"
        )
    extra: dict[str, Any] = {} if hooks is None else {"hooks": hooks}
    run = ops.deliver_event(event, config, store=store, providers=",".join(kinds), lookups=lookups, actor=actor,
                            flow_run_id=flow_run_id, source="endpoint_management_publication", **extra)
    delivery = run.payload["delivery"]
    deliveries = delivery["deliveries"]
    failed = [d["destination"] for d in deliveries if not d["success"]]
    names = [d["destination"] for d in deliveries]
    attempts = [d["attempt_count"] for d in deliveries]
    generated_at = str(delivery.get("generated_at") or now.isoformat())
    session = hashlib.sha256(f"{publication_id}|{generated_at}|{','.join(names)}".encode()).hexdigest()[:12]
    payload = {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": ee.KIND_PUBLICATION,
        "session_id": f"epd-{_slug(publication_id)}-{session}",
        "created_at": generated_at,
        "signer": PUBLICATION_SIGNER,
        "decision_count": 0,
        "blocked_count": len(failed),
        "approval_required_count": 0,
        "event_id": publication_id,
        "event_type": ee.PUBLICATION_EVENT_TYPE,
        "publication_id": publication_id,
        "export_id": manifest.export_id,
        "channel": manifest.channel,
        "target_ring": manifest.target_ring,
        "release": manifest.release.model_dump(mode="json"),
        "approval_id": manifest.approval.approval_id,
        "request_id": manifest.approval.request_id,
        "delivery_success": run.success,
        "providers": providers,
        "destinations": names,
        "failed_providers": failed,
        "attempt_count": sum(attempts),
        "max_attempt_count": max(attempts, default=0),
        "status_codes": {d["destination"]: d["status_code"] for d in deliveries},
        "artifacts": artifacts,
        "delivery": delivery,
        "delivery_evidence": run.evidence_id,
        "event": {k: v for k, v in document.items() if k != "manifest"},
    }
    record = store.append(
        EvidenceDraft(
            kind=ee.KIND_PUBLICATION,
            actor=actor,
            flow_run_id=flow_run_id,
            subject=subject.model_copy(update={
                "status": "delivered" if run.success else "failed", "success": run.success,
                "provider": providers[0] if len(providers) == 1 else None,
                "approval_state": "approved", "execution_status": "consumed"}),
            payload=payload,
        ),
        now=now,
    )
    return {
        "schema_version": PUBLICATION_RESULT_SCHEMA,
        "success": run.success,
        "valid": run.success,
        "publication_id": publication_id,
        "event_id": publication_id,
        "export_id": manifest.export_id,
        "channel": manifest.channel,
        "target_ring": manifest.target_ring,
        "version": manifest.release.version,
        "approval_id": manifest.approval.approval_id,
        "providers": providers,
        "deliveries": run.summary_rows(),
        "failed": failed,
        "delivery_evidence_id": run.evidence_id,
        "evidence": evidence_ref(record),
    }
