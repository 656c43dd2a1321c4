"""Release operations with their evidence: the functions both front doors call.

The CLI calls these in-process; the flows in ``flows/`` run the same steps as Prefect tasks and
finish with the same ``record_*`` call, so both paths write the same evidence for the same input.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ringward.core.common.jsonio import dumps_document
from ringward.core.evidence.records import EvidenceSubject
from ringward.operations.common.background import Background
from ringward.operations.release.progress import Progress
from ringward.settings import database_url

KIND_PACKAGE = "release-package"
KIND_VERIFY = "release-package-verification"
KIND_AIRGAP = "release-airgap-verification"
KIND_UPGRADE = "release-upgrade-validation"
KIND_SMOKE = "release-installer-smoke"


def default_actor() -> str:
    """Who is acting: ``$RINGWARD_ACTOR``, else the CI actor, else the OS user."""
    for name in ("RINGWARD_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


#: the store being opened on a background thread (importing SQLAlchemy and checking the schema
#: takes ~1 s) while the operation hashes and verifies bytes
_prefetched: tuple[str, Background[Any]] | None = None


def prefetch_store() -> None:
    """Start opening the store now; ``record_result`` picks it up."""
    global _prefetched
    if _prefetched is None:
        _prefetched = (database_url(), Background(_open_store, "ringward-store-open"))


def _take_store() -> Any:
    """The prefetched store, if it is still the configured one. An operation that failed after
    prefetching leaves its store behind; a later call under another ``RINGWARD_DATABASE_URL`` /
    ``RINGWARD_HOME`` (a long-lived worker, the test suite) must not write into that one."""
    global _prefetched
    if _prefetched is None:
        return None
    (url, pending), _prefetched = _prefetched, None
    try:
        store = pending.get()
    except Exception:
        return None  # opening failed in the background; record_result opens (and reports) it again
    if url != database_url():
        store.close()
        return None
    return store


def record_result(
    kind: str,
    result: Mapping[str, Any],
    *,
    valid: bool,
    version: str | None,
    runtime: str | None,
    extra_files: Mapping[str, bytes] | None = None,
    actor: str | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write the result as an evidence bundle + store record; returns a small reference."""
    from ringward.operations.evidence.bundle import write_evidence_bundle

    files = {"result.json": dumps_document(dict(result))}
    files.update(extra_files or {})
    store = _take_store()
    try:
        record = _write(write_evidence_bundle, kind, result, files, actor, version, runtime, valid, flow_run_id,
                        store)
    finally:
        if store is not None:
            store.close()
    return {"evidence_id": str(record.id), "bundle_dir": record.bundle_dir, "record_hash": record.record_hash}


def _write(write_evidence_bundle: Any, kind: str, result: Mapping[str, Any], files: dict[str, bytes],
           actor: str | None, version: str | None, runtime: str | None, valid: bool, flow_run_id: str | None,
           store: Any) -> Any:
    return write_evidence_bundle(
        kind=kind,
        actor=actor or default_actor(),
        payload=dict(result),
        files=files,
        subject=EvidenceSubject(
            release_version=version, runtime=runtime, status="passed" if valid else "failed", success=valid
        ),
        flow_run_id=flow_run_id,
        store=store,
    )


def package_dir_files(package_dir: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Copies of small package files kept with the evidence (what exactly was verified)."""
    out = {}
    for name in names:
        path = package_dir / name
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= 4 * 1024 * 1024:
            out[f"package/{name}"] = path.read_bytes()
    return out


def _maybe_record(kind: str, result: dict[str, Any], *, record: bool, valid: bool, version: str | None,
                  runtime: str | None, extra_files: Mapping[str, bytes] | None = None,
                  flow_run_id: str | None = None, actor: str | None = None) -> dict[str, Any]:
    if record:
        result["evidence"] = record_result(kind, {k: v for k, v in result.items() if k != "evidence"}, valid=valid,
                                           version=version, runtime=runtime, extra_files=extra_files,
                                           flow_run_id=flow_run_id, actor=actor)
    return result


def run_package(
    *,
    dist_dir: str,
    output: str,
    version: str,
    commit: str,
    ref: str,
    repository: str,
    signing_key: str | None,
    runtime_name: str | None = None,
    make_zip: bool = False,
    dry_run: bool = False,
    signer: str = "ringward",
    event: str | None = None,
    record: bool = True,
    flow_run_id: str | None = None,
    actor: str | None = None,
    layout: str = "ringward",
    ci_runner_script: str | None = None,
    github_action: str | None = None,
    progress: Progress | None = None,
    trust_root: str | None = None,
) -> dict[str, Any]:
    """``trust_root``: the pinned trust root whose version and root keys the offline bootstrap carries
    (so air-gapped endpoints can follow a signed rotation); without it the bootstrap has neither."""
    from ringward.operations.release.package import (
        package_release,
        read_ci_wrappers,
        release_info_from_environment,
        scan_dist,
    )
    from ringward.operations.trust.keys import load_signing_key

    key = load_signing_key(Path(signing_key) if signing_key else None)
    if key is None and not dry_run:
        from ringward.core.errors import InputError

        raise InputError("no signing key: pass --signing-key K.pem or set RINGWARD_SIGNING_KEY "
                         "(or --dry-run for an unsigned package)")
    runtime, _, _ = scan_dist(Path(dist_dir), version, runtime_name)
    wrappers = read_ci_wrappers(Path(ci_runner_script) if ci_runner_script else None,
                                Path(github_action) if github_action else None)
    info = release_info_from_environment(runtime=runtime, version=version, commit=commit, ref=ref,
                                         repository=repository, signer=signer, dry_run=key is None, event=event,
                                         layout=layout)
    root_section = None
    if trust_root is not None:
        from ringward.core.trust.rotation import bootstrap_root_section

        root_section = bootstrap_root_section(_load_root(trust_root))
    packaged = package_release(Path(dist_dir), Path(output), info, key, make_zip=make_zip, ci_wrappers=wrappers,
                               progress=progress, root_section=root_section)
    result = packaged.to_dict()
    result["valid"] = True
    return _maybe_record(KIND_PACKAGE, result, record=record, valid=True, version=version, runtime=runtime,
                         extra_files=package_dir_files(packaged.package_dir,
                                                       ("checksums.txt", "release-evidence.json")),
                         flow_run_id=flow_run_id, actor=actor)


def _load_root(trust_root: str) -> Any:
    from ringward.operations.trust.keys import load_trust_root

    return load_trust_root(Path(trust_root))


def run_verify_package(*, package_dir: str, trust_root: str, now: datetime, allow_unsigned: bool = False,
                       record: bool = True, flow_run_id: str | None = None, actor: str | None = None,
                       profile: str = "ringward", progress: Progress | None = None,
                       sigstore_trusted_root: str | None = None, sigstore_identity: str | None = None,
                       sigstore_issuer: str | None = None, require_sigstore: bool = False) -> dict[str, Any]:
    """``sigstore_*`` / ``require_sigstore``: the optional keyless-attestation layer (all three
    sigstore values or none; see ringward.operations.release.sigstore_attestation)."""
    from ringward.operations.release.sigstore_attestation import keyless_options
    from ringward.operations.release.verify import verify_package

    keyless = keyless_options(sigstore_trusted_root, sigstore_identity, sigstore_issuer, require_sigstore)
    if record:
        prefetch_store()
    root = _load_root(trust_root)
    if keyless is not None:
        from ringward.operations.release.sigstore_attestation import load_keyless_layer, verify_package_with_keyless

        layer = load_keyless_layer(keyless)
        verification, outcome = verify_package_with_keyless(Path(package_dir), root, layer, now=now,
                                                            allow_unsigned=allow_unsigned, profile=profile,
                                                            progress=progress)
        return finish_verification(verification, package_dir=package_dir, record=record, flow_run_id=flow_run_id,
                                   actor=actor, extra=outcome.extra, extra_files=outcome.evidence_files)
    verification = verify_package(Path(package_dir), root, now=now, allow_unsigned=allow_unsigned, profile=profile,
                                  progress=progress)
    return finish_verification(verification, package_dir=package_dir, record=record, flow_run_id=flow_run_id,
                               actor=actor)


def finish_verification(verification: Any, *, package_dir: str, record: bool, flow_run_id: str | None,
                        actor: str | None = None, extra: Mapping[str, Any] | None = None,
                        extra_files: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Shared tail of the CLI and flow paths: result dict + evidence. ``extra`` adds result sections
    and ``extra_files`` evidence files (the keyless-attestation layer's)."""
    result = verification.to_dict()
    result.update(extra or {})
    files = package_dir_files(Path(package_dir), ("checksums.txt", "release-evidence.json"))
    files.update(extra_files or {})
    return _maybe_record(KIND_VERIFY, result, record=record, valid=verification.valid,
                         version=verification.version, runtime=verification.runtime,
                         extra_files=files, flow_run_id=flow_run_id, actor=actor)


def run_verify_airgap(*, bundle: str, trust_root: str, now: datetime, extract_dir: str | None = None,
                      require_bootstrap: bool = True, record: bool = True, flow_run_id: str | None = None,
                      actor: str | None = None, profile: str = "ringward", progress: Progress | None = None) \
        -> dict[str, Any]:
    from ringward.operations.release.airgap import verify_airgap_bundle

    if record:
        prefetch_store()
    root = _load_root(trust_root)
    verification = verify_airgap_bundle(Path(bundle), root, now=now,
                                        extract_dir=Path(extract_dir) if extract_dir else None,
                                        require_bootstrap=require_bootstrap, profile=profile, progress=progress)
    result = verification.to_dict()
    return _maybe_record(KIND_AIRGAP, result, record=record, valid=verification.valid,
                         version=verification.package.version, runtime=verification.package.runtime,
                         flow_run_id=flow_run_id, actor=actor)


def run_validate_upgrade(*, previous_dir: str, candidate_dir: str, trust_root: str, now: datetime,
                         allow_same_version: bool = False, record: bool = True, flow_run_id: str | None = None,
                         actor: str | None = None, profile: str = "ringward") -> dict[str, Any]:
    from ringward.operations.release.upgrade import validate_upgrade

    if record:
        prefetch_store()
    root = _load_root(trust_root)
    validation = validate_upgrade(Path(previous_dir), Path(candidate_dir), root, now=now,
                                  allow_same_version=allow_same_version, profile=profile)
    result = validation.to_dict()
    version = validation.comparison.candidate_version if validation.comparison else validation.candidate.version
    return _maybe_record(KIND_UPGRADE, result, record=record, valid=validation.valid, version=version,
                         runtime=validation.candidate.runtime, flow_run_id=flow_run_id, actor=actor)


def run_smoke_installers(*, package_dir: str, trust_root: str, now: datetime, execute: bool = True,
                         timeout_seconds: float = 5.0, probe_args: list[str] | None = None,
                         expect_version: bool = True, record: bool = True, flow_run_id: str | None = None,
                         actor: str | None = None, profile: str = "ringward",
                         probe: str | None = None) -> dict[str, Any]:
    """``probe``: version, reference-json or None (the profile's); ``probe_args`` None is the
    version probe's default (--version)."""
    from ringward.operations.release.smoke import smoke_installers

    if record:
        prefetch_store()
    root = _load_root(trust_root)
    smoke = smoke_installers(Path(package_dir), root, now=now, execute=execute, timeout_seconds=timeout_seconds,
                             probe=probe, probe_args=tuple(probe_args) if probe_args is not None else None,
                             expect_version=expect_version, profile=profile)
    result = smoke.to_dict()
    return _maybe_record(KIND_SMOKE, result, record=record, valid=smoke.valid, version=smoke.package.version,
                         runtime=smoke.package.runtime, flow_run_id=flow_run_id, actor=actor)


def verified_view(package_dir: Path, trust_root: Any, *, now: datetime, profile: str = "ringward") -> Any:
    """Channel manifest and updater policy of a package, only after it verifies in full."""
    from dataclasses import dataclass

    from ringward.core.common.jsonio import loads_strict
    from ringward.core.errors import VerificationError
    from ringward.core.release.package_format import ChannelsDocument, RuntimeFiles, UpdaterPolicyDocument
    from ringward.core.release.package_rules import runtime_of
    from ringward.operations.release.verify import verify_directory

    integrity, verification = verify_directory(package_dir, trust_root, now=now, profile=profile)
    if not verification.valid or integrity.content is None:
        errors = verification.errors
        # every problem on the one line (the first ten; a package broken in more ways says how many)
        shown = "; ".join(f"[{e.code}] {e.message}" for e in errors[:10]) or "verification incomplete"
        more = f"; +{len(errors) - 10} more" if len(errors) > 10 else ""
        hint = f"; hint: {verification.hint}" if verification.hint else ""
        raise VerificationError(
            f"{package_dir}: package does not verify; refusing to display it "
            f"({len(errors)} problem{'s' if len(errors) != 1 else ''}: {shown}{more}){hint}")
    content = integrity.content
    files = RuntimeFiles(runtime_of(content))

    @dataclass(frozen=True)
    class View:
        runtime: str
        channels: ChannelsDocument
        updater: UpdaterPolicyDocument
        profile: str
        announcement: str
        warnings: tuple[str, ...]

    return View(
        profile=verification.profile_name,
        announcement=verification.profile.announcement() if verification.profile else "profile ringward",
        warnings=tuple(verification.warnings),
        runtime=files.runtime,
        channels=ChannelsDocument.model_validate(
            loads_strict(content.documents[files.channels], source=files.channels)),
        updater=UpdaterPolicyDocument.model_validate(
            loads_strict(content.documents[files.updater_policy], source=files.updater_policy)),
    )
