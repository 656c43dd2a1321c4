"""`ringward release package`: build, sign and (optionally) zip a release package."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.common.jsonio import dumps_document
from ringward.core.common.versions import same_version
from ringward.core.errors import DigestMismatchError, InputError, OutputExistsError
from ringward.core.release.package_builder import (
    BinaryFact,
    Dependency,
    ReleaseInfo,
    build_release_evidence,
    parse_dependency_list,
    parse_go_modules,
    plan_documents,
    render_release_evidence_md,
    unsigned_notice,
)
from ringward.core.release.package_format import (
    BIN_DIR,
    DEPENDENCIES,
    EVIDENCE_JSON,
    EVIDENCE_MD,
    GO_MODULES,
    KIND_DEPENDENCIES,
    KIND_GO_MODULES,
    REFERENCE_RUNNER_SCRIPT,
    RUNTIME_NAME,
    UNSIGNED_NOTICE,
    BinaryName,
    binary_name_problem,
    parse_binary_name,
)
from ringward.core.release.streaming_signature import ed25519_sign_chunks, signature_document
from ringward.core.trust.keys import public_key_of
from ringward.core.trust.root import Role
from ringward.core.trust.signatures import cosignature_path_for, sign_bytes, signature_path_for
from ringward.operations.common.files import CHUNK, atomic_write, read_capped
from ringward.operations.release.progress import PHASE_HASH, PHASE_SIGN, PHASE_ZIP, ByteMeter, Progress

MAX_DEPENDENCY_FILE = 64 * 1024 * 1024
MAX_WRAPPER_BYTES = 1024 * 1024
#: fixed zip timestamp (the earliest DOS date) so archives are byte-for-byte reproducible
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _file_chunks(path: Path, meter: ByteMeter | None = None) -> Iterator[bytes]:
    """``path``'s bytes in CHUNK-sized pieces (never the whole file at once)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            if meter is not None:
                meter.add(len(chunk))
            yield chunk


def _sign_file(path: Path, subject: str, keys: Sequence[Ed25519PrivateKey], *, expected_sha256: str | None,
               meter: ByteMeter | None = None) -> tuple[str, list[bytes]]:
    """Sign ``path``'s exact bytes with every key from two streamed passes (pure Ed25519 reads
    the message twice), hashing SHA-256 on both: the file's digest and the signatures. Both
    passes, and ``expected_sha256`` when given (the digest recorded while copying), must agree,
    so a signature never covers bytes other than the digest it names."""
    passes: list[Any] = []

    def chunks() -> Iterator[bytes]:
        digest = hashlib.sha256()
        passes.append(digest)
        for chunk in _file_chunks(path, meter):
            digest.update(chunk)
            yield chunk

    try:
        signatures = ed25519_sign_chunks(keys, chunks)
    except ValueError as exc:  # the length changed between the passes
        raise DigestMismatchError(f"{subject}: changed while it was being signed ({exc})") from exc
    seen = {d.hexdigest() for d in passes} | ({expected_sha256} if expected_sha256 else set())
    if len(seen) != 1:
        raise DigestMismatchError(f"{subject}: changed while it was being packaged (sha256 {sorted(seen)})")
    return seen.pop(), signatures


def _copy_and_hash(source: Path, target: Path, *, mode: int, meter: ByteMeter) -> tuple[str, int]:
    """Copy ``source`` to a new ``target`` (never overwriting), hashing the bytes on the way."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as dst:
        for chunk in _file_chunks(source, meter):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    os.chmod(target, mode)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class PackageResult:
    package_dir: Path
    zip_path: Path | None
    version: str
    runtime: str
    signed: bool
    artifacts: tuple[dict[str, Any], ...]
    signature_files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "package_dir": str(self.package_dir),
            "zip_path": str(self.zip_path) if self.zip_path else None,
            "version": self.version,
            "runtime": self.runtime,
            "signed": self.signed,
            "artifacts": list(self.artifacts),
            "signature_files": list(self.signature_files),
        }


def scan_dist(dist_dir: Path, version: str, runtime: str | None) -> tuple[str, list[BinaryName], Path | None]:
    """Validate DIST_DIR: runtime binaries, optionally one dependency list, nothing else."""
    if not dist_dir.is_dir():
        raise InputError(f"{dist_dir}: DIST_DIR does not exist or is not a directory")
    binaries: list[BinaryName] = []
    dependency_file: Path | None = None
    source = binary_source_dir(dist_dir)
    entries = sorted(dist_dir.iterdir())
    if source != dist_dir:  # the reference's layout: binaries in DIST_DIR/bin/, go-modules.json beside it
        entries = [e for e in entries if e != source] + sorted(source.iterdir())
    for entry in entries:
        info = os.lstat(entry)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{entry}: unexpected directory in DIST_DIR (expected runtime binaries, optionally "
                             f"under {BIN_DIR}/)")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{entry}: not a regular file (symlinks and devices are refused)")
        if entry.parent == dist_dir and source != dist_dir and entry.name not in (GO_MODULES, DEPENDENCIES):
            raise InputError(f"{entry}: binaries go either in DIST_DIR or in DIST_DIR/{BIN_DIR}/, not both")
        if entry.name in (GO_MODULES, DEPENDENCIES) and entry.parent == dist_dir:
            if dependency_file is not None:
                raise InputError(f"{dist_dir}: both {GO_MODULES} and {DEPENDENCIES}; expected at most one")
            dependency_file = entry
            continue
        parsed = parse_binary_name(entry.name)
        if parsed is None:
            raise InputError(
                f"{entry}: unexpected file: {binary_name_problem(entry.name)}; expected "
                f"<runtime>_<version>_<GOOS>_<GOARCH>[.exe] (any pair of `go tool dist list`, .exe exactly for "
                f"windows), {GO_MODULES} or {DEPENDENCIES}"
            )
        if runtime is not None and parsed.runtime != runtime:
            raise InputError(f"{entry}: runtime name {parsed.runtime!r}, expected {runtime!r} (--runtime-name)")
        if parsed.version != version:
            same = same_version(parsed.version, version)
            raise InputError(
                f"{entry}: binary version {parsed.version!r}, expected {version!r} (--version)"
                + ("; binary names must spell the version exactly as --version does (with or without the "
                   "leading 'v')" if same else "")
            )
        binaries.append(parsed)
    if not binaries:
        raise InputError(f"{dist_dir}: no runtime binaries found")
    names = {b.runtime for b in binaries}
    if len(names) > 1:
        raise InputError(f"{dist_dir}: binaries of several runtimes {sorted(names)}; pick one with --runtime-name")
    chosen = runtime or binaries[0].runtime
    if not RUNTIME_NAME.match(chosen):
        raise InputError(f"--runtime-name: {chosen!r} is not a valid runtime name")
    return chosen, binaries, dependency_file


def binary_source_dir(dist_dir: Path) -> Path:
    """Where DIST_DIR keeps its binaries: ``DIST_DIR/bin/`` (the reference's layout) when that is a
    real directory, else DIST_DIR itself."""
    candidate = dist_dir / BIN_DIR
    return candidate if candidate.is_dir() and not candidate.is_symlink() else dist_dir


def read_ci_wrappers(runner_script: Path | None, github_action: Path | None) -> tuple[bytes, bytes] | None:
    """The CI-runner wrappers a release engineer supplies (both or neither)."""
    if runner_script is None and github_action is None:
        return None
    if runner_script is None or github_action is None:
        raise InputError("--ci-runner-script and --github-action go together (the CI-runner bundle names both)")
    out = []
    for path, option in ((runner_script, "--ci-runner-script"), (github_action, "--github-action")):
        try:
            info = os.lstat(path)
        except FileNotFoundError as exc:
            raise InputError(f"{option}: {path}: file not found") from exc
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{option}: {path}: not a regular file")
        data = read_capped(path, MAX_WRAPPER_BYTES, source=f"{option} {path}")
        if not data:
            raise InputError(f"{option}: {path}: empty file")
        out.append(data)
    return out[0], out[1]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_release(
    dist_dir: Path,
    output_dir: Path,
    info: ReleaseInfo,
    signing_key: Ed25519PrivateKey | None,
    *,
    make_zip: bool = False,
    extra_signing_keys: Sequence[Ed25519PrivateKey] = (),
    thresholds: dict[str, int] | None = None,
    ci_wrappers: tuple[bytes, bytes] | None = None,
    progress: Progress | None = None,
    root_section: dict[str, Any] | None = None,
) -> PackageResult:
    """Build the package directory ``output_dir/<runtime>-<version>`` (and zip) — with
    ``info.layout == "reference"`` ``go-runtime-<version>`` and ``cavra-go-runtime-<version>.zip``,
    which needs the CI-runner wrappers (``ci_wrappers``). The directory is assembled under a
    temporary name and renamed into place only when complete. Binaries are streamed (hashed,
    signed and zipped chunk by chunk), so memory stays flat whatever their size; ``progress``
    receives the byte counts of each phase; ``root_section`` (the pinned trust root's version and
    root keys) goes into the offline bootstrap."""
    info.validate()
    if info.layout == "reference" and ci_wrappers is None:
        raise InputError("--layout reference: the reference verifier requires a CI-runner bundle; pass "
                         "--ci-runner-script FILE and --github-action FILE (your wrappers)")
    runtime, names, dep_path = scan_dist(dist_dir, info.version, info.runtime or None)
    if runtime != info.runtime:
        raise InputError(f"--runtime-name: binaries are for {runtime!r}, not {info.runtime!r}")
    if signing_key is None and not info.dry_run:
        raise InputError(
            "no signing key: pass --signing-key K.pem or set RINGWARD_SIGNING_KEY (or --dry-run for an "
            "unsigned package)"
        )
    if output_dir.is_symlink() or (output_dir.exists() and not output_dir.is_dir()):
        raise OutputExistsError(f"--output {output_dir}: exists and is not a directory")
    final = output_dir / info.package_name
    zip_path = output_dir / info.zip_name
    for path in (final, *( [zip_path] if make_zip else [] )):
        if path.exists() or path.is_symlink():
            raise OutputExistsError(f"{path}: already exists; refusing to overwrite")
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{info.package_name}.partial-", dir=output_dir))
    try:
        result = _assemble(staging, dist_dir, names, dep_path, info, signing_key, extra_signing_keys,
                           thresholds or {}, ci_wrappers, progress, root_section)
        os.chmod(staging, 0o755)  # noqa: S103 - a package directory is world-readable by design
        try:
            os.rename(staging, final)  # atomic; fails if `final` appeared meanwhile
        except OSError as exc:
            raise OutputExistsError(f"{final}: already exists; refusing to overwrite") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written_zip = None
    if make_zip:
        write_reproducible_zip(final, zip_path, top=info.package_name, progress=progress)
        written_zip = zip_path
    return PackageResult(final, written_zip, info.version, runtime, signing_key is not None,
                         tuple(result[0]), tuple(result[1]))


def _assemble(
    root: Path,
    dist_dir: Path,
    names: list[BinaryName],
    dep_path: Path | None,
    info: ReleaseInfo,
    signing_key: Ed25519PrivateKey | None,
    extra_keys: Sequence[Ed25519PrivateKey],
    thresholds: dict[str, int],
    ci_wrappers: tuple[bytes, bytes] | None = None,
    progress: Progress | None = None,
    root_section: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    (root / BIN_DIR).mkdir()
    facts: list[BinaryFact] = []
    source = binary_source_dir(dist_dir)
    ordered = sorted(names, key=lambda n: n.filename)
    hashing = ByteMeter(progress, PHASE_HASH, sum(os.lstat(source / b.filename).st_size for b in ordered))
    for binary in ordered:
        digest, size = _copy_and_hash(source / binary.filename, root / BIN_DIR / binary.filename, mode=0o755,
                                      meter=hashing)
        facts.append(BinaryFact(binary, digest, size))
    hashing.finish()
    deps: list[Dependency] = []
    dep_file: tuple[str, str, bytes] | None = None
    if dep_path is not None:
        data = read_capped(dep_path, MAX_DEPENDENCY_FILE, source=str(dep_path))
        if dep_path.name == GO_MODULES:
            deps, kind = parse_go_modules(data, source=str(dep_path)), KIND_GO_MODULES
        else:
            deps, kind = parse_dependency_list(data, source=str(dep_path)), KIND_DEPENDENCIES
        dep_file = (dep_path.name, kind, data)
    keys = [signing_key, *extra_keys] if signing_key is not None else []
    key_entries = [
        {"key_id": p.key_id, "public_key_sha256": p.pem_sha256, "role": Role.RELEASE.value, "signer": info.signer}
        for p in (public_key_of(k) for k in keys)
    ]
    plan = plan_documents(info, facts, deps, dep_file, key_entries,
                          thresholds or {Role.RELEASE.value: max(1, len(keys))}, _sha256, ci_wrappers,
                          root_section)
    for name, body in plan.documents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    artifacts: list[dict[str, Any]] = []
    digests = {f.path: (f.sha256, f.size_bytes) for f in facts}
    digests.update({n: (_sha256(b), len(b)) for n, b in plan.documents.items()})
    for path, kind in plan.kinds.items():
        sha, size = digests[path]
        artifacts.append({"relative_path": path, "sha256": sha, "size_bytes": size, "kind": kind})
    signature_entries: list[dict[str, Any]] = []
    signature_files: list[str] = []
    subjects = list(plan.kinds)

    def sign_subject(subject: str, data: bytes | None, digest: str, meter: ByteMeter | None = None) -> None:
        # documents are small and signed from memory; binaries from two streamed passes over
        # the file (same signature bytes, flat memory)
        streamed = [] if data is not None else _sign_file(root / subject, subject, keys, expected_sha256=digest,
                                                          meter=meter)[1]
        for index, key in enumerate(keys):
            public = public_key_of(key)
            sig_name = signature_path_for(subject) if index == 0 else cosignature_path_for(subject, public.key_id)
            (root / sig_name).write_bytes(
                sign_bytes(data, subject=subject, private_key=key, signer=info.signer, subject_sha256=digest)
                if data is not None else
                signature_document(streamed[index], subject=subject, subject_sha256=digest, private_key=key,
                                   signer=info.signer)
            )
            signature_files.append(sig_name)
            signature_entries.append({"subject": subject, "signature": sig_name, "algorithm": "Ed25519",
                                      "key_id": public.key_id, "public_key_sha256": public.pem_sha256})

    if keys:
        # two passes over every binary (pure Ed25519 hashes the message twice)
        signing = ByteMeter(progress, PHASE_SIGN, 2 * sum(f.size_bytes for f in facts))
        for subject in subjects:
            if subject in plan.documents:
                sign_subject(subject, plan.documents[subject], digests[subject][0])
            else:
                sign_subject(subject, None, digests[subject][0], signing)
        signing.finish()
    else:
        (root / UNSIGNED_NOTICE).write_bytes(unsigned_notice())
    evidence = build_release_evidence(info, artifacts, signature_entries)
    evidence_bytes = dumps_document(evidence)
    (root / EVIDENCE_JSON).write_bytes(evidence_bytes)
    evidence_md = render_release_evidence_md(evidence)
    (root / EVIDENCE_MD).write_bytes(evidence_md)
    if keys:
        sign_subject(EVIDENCE_JSON, evidence_bytes, _sha256(evidence_bytes))
        sign_subject(EVIDENCE_MD, evidence_md, _sha256(evidence_md))
    for written in root.rglob("*"):
        if written.is_file() and not written.is_relative_to(root / BIN_DIR):
            written.chmod(0o755 if written == root / REFERENCE_RUNNER_SCRIPT else 0o644)
        elif written.is_dir():
            written.chmod(0o755)
    return artifacts, signature_files


def write_reproducible_zip(package_dir: Path, zip_path: Path, *, top: str, progress: Progress | None = None) -> None:
    """Zip ``package_dir`` under one top-level folder ``top/``: sorted members, fixed
    timestamps, fixed modes, fixed compression level, no directory entries. Members are
    streamed from their files chunk by chunk."""
    files = sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*") if p.is_file())
    zipping = ByteMeter(progress, PHASE_ZIP, sum((package_dir / rel).stat().st_size for rel in files))
    fd, tmp = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".tmp", dir=zip_path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
            for rel in files:
                source = package_dir / rel
                executable = rel.startswith(f"{BIN_DIR}/") and not rel.endswith(".sig.json")
                member = zipfile.ZipInfo(f"{top}/{rel}", date_time=ZIP_EPOCH)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.create_system = 3  # unix, so the mode bits below are meaningful
                member.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
                size = source.stat().st_size
                with archive.open(member, "w", force_zip64=size > 0x7FFFFFFF) as dst:
                    for chunk in _file_chunks(source, zipping):
                        dst.write(chunk)
        zipping.finish()
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, zip_path)
        except FileExistsError as exc:
            raise OutputExistsError(f"{zip_path}: already exists; refusing to overwrite") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cosign_package(package_dir: Path, key: Ed25519PrivateKey, signer: str) -> list[str]:
    """Add co-signatures ``<subject>.<key_id16>.sig.json`` by ``key`` over every subject that
    already carries a primary signature (raises the package's threshold-eligible signers)."""
    public = public_key_of(key)
    written: list[str] = []
    primaries = sorted(p for p in package_dir.rglob("*.sig.json") if p.is_file())
    for primary in primaries:
        rel = primary.relative_to(package_dir).as_posix()
        subject = rel[: -len(".sig.json")]
        if not (package_dir / subject).is_file():  # co-signature files name no existing subject
            continue
        target = package_dir / cosignature_path_for(subject, public.key_id)
        digest, [signature] = _sign_file(package_dir / subject, subject, [key], expected_sha256=None)
        body = signature_document(signature, subject=subject, subject_sha256=digest, private_key=key, signer=signer)
        atomic_write(target, body, overwrite=False)
        written.append(target.relative_to(package_dir).as_posix())
    if not written:
        raise InputError(f"{package_dir}: no signed files found to co-sign")
    return written


def release_info_from_environment(
    *,
    runtime: str,
    version: str,
    commit: str,
    ref: str,
    repository: str,
    signer: str,
    dry_run: bool,
    event: str | None = None,
    environ: dict[str, str] | None = None,
    layout: str = "ringward",
) -> ReleaseInfo:
    """Release facts, enriched from the GitHub Actions environment when present.

    ``SOURCE_DATE_EPOCH`` fixes every timestamp so packaging is reproducible."""
    from datetime import UTC, datetime

    env = dict(os.environ if environ is None else environ)
    epoch = env.get("SOURCE_DATE_EPOCH")
    if epoch:
        if not epoch.isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH: expected integer seconds, found {epoch!r}")
        created = datetime.fromtimestamp(int(epoch), UTC)
    else:
        created = datetime.now(UTC).replace(microsecond=0)
    on_github = env.get("GITHUB_ACTIONS") == "true"
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    invocation = "local"
    if on_github and env.get("GITHUB_RUN_ID"):
        invocation = (f"{server}/{env.get('GITHUB_REPOSITORY', repository)}/actions/runs/{env['GITHUB_RUN_ID']}"
                      f"/attempts/{env.get('GITHUB_RUN_ATTEMPT', '1')}")
    hosted = on_github and env.get("RUNNER_ENVIRONMENT", "github-hosted") == "github-hosted"
    from ringward.core.release.package_format import GITHUB_HOSTED_BUILDER, LOCAL_BUILDER

    return ReleaseInfo(
        runtime=runtime,
        version=version,
        commit=commit,
        ref=ref,
        repository=repository,
        created_at=created,
        event=event or env.get("GITHUB_EVENT_NAME") or "manual",
        signer=signer,
        builder_id=GITHUB_HOSTED_BUILDER if hosted else (
            f"{server}/{repository}/self-hosted-runner" if on_github else LOCAL_BUILDER),
        workflow_ref=env.get("GITHUB_WORKFLOW_REF") if on_github else None,
        invocation_id=invocation,
        dry_run=dry_run,
        signing_required=not dry_run,
        github_server_url=server,
        layout=layout,
    )
