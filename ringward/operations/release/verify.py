"""`ringward release verify-package`: read, hash and signature-check every byte, then run the
document check families.

Cost model (see docs/benchmarks.md): verification is bound by SHA-256 and Ed25519 over the
binaries. Each file is mapped once; its SHA-256 runs on a worker thread while the Ed25519 check
over the same mapped bytes runs on the calling thread (both release the GIL), so two cores
work on one file at a time and peak memory stays near the largest file.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ringward.core.common.checksums import CHECKSUMS_FILE, MAX_CHECKSUMS_BYTES, parse_checksums
from ringward.core.common.jsonio import MAX_DOCUMENT_BYTES, loads_strict
from ringward.core.errors import (
    ConfigError,
    DigestMismatchError,
    InputError,
    MissingFileError,
    SignatureError,
    SizeMismatchError,
    UnlistedFileError,
    UnsignedPackageError,
    VerificationError,
)
from ringward.core.release.package_format import BIN_DIR, EVIDENCE_JSON, EVIDENCE_MD, UNSIGNED_NOTICE
from ringward.core.release.package_rules import FAMILY_NAMES, SpdxValidator, VerifiedContent, run_document_family
from ringward.core.release.profiles import (
    IGNORED_NOTE,
    Profile,
    ProfileChoice,
    choose_profile,
    is_reference_unsigned_file,
    reference_hint,
)
from ringward.core.release.verification import FamilyCollector, FamilyResult, PackageVerification
from ringward.core.trust.root import Role, TrustRoot
from ringward.core.trust.signatures import (
    MAX_SIGNATURE_BYTES,
    SignatureCheck,
    is_signature_path,
    prepare_signature,
    subject_of_signature_path,
    verify_subject_signatures,
)
from ringward.operations.common.background import Background
from ringward.operations.common.files import mapped, read_capped, walk_regular_files
from ringward.operations.release.progress import PHASE_VERIFY, ByteMeter, Progress

INTEGRITY_FAMILY = "integrity-and-signatures"
#: files up to this size are read into memory (documents); larger ones are mapped
SMALL_FILE = 4 * 1024 * 1024


class PackageSource(Protocol):
    """Where package bytes come from: a directory, or a verified-as-we-go zip."""

    label: str

    def listing(self) -> dict[str, int]: ...

    def read_small(self, name: str, cap: int) -> bytes: ...

    @contextmanager
    def whole(self, name: str, expected_size: int) -> Iterator[memoryview]: ...


class DirectorySource:
    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            if root.is_file() and root.suffix.lower() == ".zip":
                raise InputError(f"{root}: is a zip archive, not a package directory; verify it with "
                                 "`ringward release verify-airgap-bundle`")
            if root.exists():
                raise InputError(f"{root}: is a file, not a package directory")
            if root.is_symlink():
                try:
                    root.stat()
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise InputError(f"{root}: a symbolic link loop (it never resolves to a package "
                                         "directory)") from None
                raise InputError(f"{root}: a symbolic link to nothing (package directory does not exist)")
            raise InputError(f"{root}: package directory does not exist")
        self.root = root
        self.label = str(root)
        self._listing: dict[str, int] | None = None

    def listing(self) -> dict[str, int]:
        if self._listing is None:
            self._listing = walk_regular_files(self.root)
        return self._listing

    def read_small(self, name: str, cap: int) -> bytes:
        try:
            return read_capped(self.root / name, cap, source=name)
        except InputError as exc:
            raise VerificationError(str(exc)) from exc

    @contextmanager
    def whole(self, name: str, expected_size: int) -> Iterator[memoryview]:
        with mapped(self.root / name) as view:
            if len(view) != expected_size:
                raise SizeMismatchError(f"{name}: {len(view)} bytes, expected {expected_size}")
            yield view


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class IntegrityScan:
    result: FamilyResult
    content: VerifiedContent | None


@dataclass(frozen=True)
class _SignatureFile:
    path: str
    subject: str
    cosigner: str | None


def _signature_index(listing: dict[str, int]) -> dict[str, list[_SignatureFile]]:
    """Signature files by subject. A name is a primary signature when ``<name minus
    .sig.json>`` is a file of the package; only otherwise is it read as a co-signature
    ``<subject>.<key_id16>.sig.json``."""
    index: dict[str, list[_SignatureFile]] = {}
    for path in sorted(listing):
        if not is_signature_path(path):
            continue
        primary = path[: -len(".sig.json")]
        if primary in listing and not is_signature_path(primary):
            index.setdefault(primary, []).append(_SignatureFile(path, primary, None))
            continue
        subject, kid = subject_of_signature_path(path)
        index.setdefault(subject, []).append(_SignatureFile(path, subject, kid))
    return index


def scan_integrity(
    source: PackageSource,
    trust_root: TrustRoot,
    *,
    now: datetime,
    allow_unsigned: bool = False,
    pool: ThreadPoolExecutor | None = None,
    profile: Profile = Profile.RINGWARD,
    progress: Progress | None = None,
    keyless_bundles: bool = False,
) -> IntegrityScan:
    """Integrity and signatures: the signed manifest, every listed file's size and digest,
    every signature against the pinned trust root and its threshold, unlisted files.

    Under the reference profile, files the reference leaves outside every signature
    (release-evidence.md, keyless-attestation JSON) are reported as present and ignored: never
    read, never used. With ``keyless_bundles`` (the keyless-attestation layer is on), each listed
    binary's Sigstore bundle may be present unlisted: that layer authenticates it under the Sigstore
    trusted root (see ringward.operations.release.sigstore_attestation)."""
    c = FamilyCollector(INTEGRITY_FAMILY)
    reference = profile is Profile.REFERENCE
    ignored_files: list[str] = []
    listing = source.listing()
    failed: set[str] = set()
    documents: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    signers: dict[str, tuple[str, ...]] = {}
    unsigned = UNSIGNED_NOTICE in listing
    sig_index = _signature_index(listing)
    signed_mode = not unsigned
    if unsigned:
        if not allow_unsigned:
            c.fail(UnsignedPackageError(
                f"{source.label}: unsigned dry-run package ({UNSIGNED_NOTICE} present); it cannot be trusted"
            ))
            return IntegrityScan(c.result(), None)
        c.warn("UNSIGNED DRY-RUN PACKAGE: signatures were NOT checked (--allow-unsigned); never deploy it")
        if sig_index:
            c.fail(UnsignedPackageError(f"{UNSIGNED_NOTICE} present but the package also carries signatures"))
    trusted = trust_root.trusted_keys(Role.RELEASE, now)
    ignored: list[str] = []
    if signed_mode and not trusted:
        raise ConfigError("trust root has no active, in-window release key; nothing can verify")

    def checks_for(subject: str) -> list[SignatureCheck]:
        out = []
        for sig in sig_index.get(subject, []):
            if sig.cosigner is not None and not any(kid.startswith(sig.cosigner) for kid in trusted):
                # a co-signature by a pinned but retired/revoked/expired key can never count:
                # skip it rather than spend Ed25519 passes on it (unknown keys fail as unlisted)
                if sig.path not in ignored:
                    ignored.append(sig.path)
                continue
            out.append(prepare_signature(sig.path, source.read_small(sig.path, MAX_SIGNATURE_BYTES),
                                         expected_subject=subject, cosigner=sig.cosigner))
        return out

    def verify_signatures(subject: str, data: bytes | memoryview, digest: str) -> None:
        if not signed_mode:
            return
        outcome = verify_subject_signatures(subject, data, digest, checks_for(subject), trust_root,
                                            now=now, trusted=trusted)
        signers[subject] = outcome.signed_by

    def verified_small(name: str, cap: int) -> bytes | None:
        if name not in listing:
            c.fail(MissingFileError(f"missing {name}"))
            failed.add(name)
            return None
        try:
            data = source.read_small(name, cap)
            digest = _sha256(data)
            verify_signatures(name, data, digest)
        except VerificationError as exc:
            c.fail(exc)
            failed.add(name)
            return None
        digests[name] = digest
        return data

    # (1) the signed manifest: verify its exact bytes, then parse
    manifest_bytes = verified_small(CHECKSUMS_FILE, MAX_CHECKSUMS_BYTES)
    if manifest_bytes is None:
        return IntegrityScan(c.result(), None)
    try:
        manifest = parse_checksums(manifest_bytes)
    except VerificationError as exc:
        c.fail(exc)
        return IntegrityScan(c.result(), None)
    listed = manifest.as_dict()
    documents[CHECKSUMS_FILE] = manifest_bytes

    # (2) release evidence: signed sizes let us reject truncation/extension before hashing
    expected_sizes: dict[str, int] = {}
    for name in (EVIDENCE_JSON, EVIDENCE_MD):
        if reference and name == EVIDENCE_MD and name not in listed and not sig_index.get(name):
            if name in listing:  # the reference neither checksums nor signs its markdown summary
                c.warn(f"{name}: {IGNORED_NOTE}")
                ignored_files.append(name)
            continue
        data = verified_small(name, MAX_DOCUMENT_BYTES)
        if data is not None:
            documents[name] = data
    if EVIDENCE_JSON in documents:
        try:
            evidence = loads_strict(documents[EVIDENCE_JSON], source=EVIDENCE_JSON)
        except VerificationError:
            evidence = None  # reported by the release-evidence family
        artifacts = evidence.get("artifacts") if isinstance(evidence, dict) else None
        for artifact in artifacts if isinstance(artifacts, list) else []:
            if isinstance(artifact, dict) and type(artifact.get("size_bytes")) is int:
                expected_sizes[str(artifact.get("relative_path"))] = artifact["size_bytes"]

    # (3) the package is exactly what the manifest lists; a signature file is allowed only
    # for a subject that is itself signed and present
    signed_subjects = (set(listed) | {CHECKSUMS_FILE, EVIDENCE_JSON, EVIDENCE_MD}) & set(listing)
    signed_subjects -= set(ignored_files)
    allowed = signed_subjects | set(ignored_files) | ({UNSIGNED_NOTICE} if unsigned else set())
    if keyless_bundles:
        from ringward.operations.release.sigstore_attestation import keyless_bundle_names

        allowed |= keyless_bundle_names(listed) & set(listing)
    if reference:
        for path in sorted(listing):
            if path not in listed and path not in allowed and is_reference_unsigned_file(path) \
                    and not sig_index.get(path):
                c.warn(f"{path}: {IGNORED_NOTE}")
                ignored_files.append(path)
                allowed.add(path)
    sig_subject = {sig.path: sig.subject for sigs in sig_index.values() for sig in sigs}
    sig_cosigner = {sig.path: sig.cosigner for sigs in sig_index.values() for sig in sigs}
    for path in sorted(listing):
        if path in allowed:
            continue
        if path in sig_subject:
            cosigner = sig_cosigner[path]
            if cosigner is not None and not any(k.key_id.startswith(cosigner) for k in trust_root.keys):
                c.fail(UnlistedFileError(
                    f"{path}: co-signature by key {cosigner}, which the trust root does not know"
                ))
                continue
            if sig_subject[path] in signed_subjects:
                continue
            c.fail(UnlistedFileError(
                f"{path}: signature for {sig_subject[path]!r}, which is not a signed file of the package"
            ))
            continue
        c.fail(UnlistedFileError(f"{path}: present in the package but not listed in checksums.txt"))
    for name in listed:
        if name not in listing:
            c.fail(MissingFileError(f"checksum artifact is missing: {name}"))
            failed.add(name)

    # (4) every listed file: size, digest, signatures (each byte hashed once)
    own_pool = pool is None
    workers = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="ringward-hash")
    pending = [n for n in sorted(listed, key=lambda n: (n.startswith(f"{BIN_DIR}/"), n))
               if n in listing and n not in digests]
    meter = ByteMeter(progress, PHASE_VERIFY, sum(listing[n] for n in pending))
    try:
        for name in pending:
            size = listing[name]
            is_document = not name.startswith(f"{BIN_DIR}/") and size <= MAX_DOCUMENT_BYTES
            if size > SMALL_FILE and not is_document and name not in expected_sizes:
                # never buffer or map a large file whose size nothing signed vouches for
                c.fail(SizeMismatchError(f"{name}: {size} bytes, but release-evidence.json records no size"))
                failed.add(name)
                continue
            if name in expected_sizes and expected_sizes[name] != size:
                c.fail(SizeMismatchError(
                    f"{name}: {size} bytes, release-evidence.json records {expected_sizes[name]}"
                ))
                failed.add(name)
                continue
            try:
                if size <= SMALL_FILE or is_document:
                    data = source.read_small(name, max(SMALL_FILE, MAX_DOCUMENT_BYTES))
                    digest = _sha256(data)
                    meter.add(size)
                    _compare(name, digest, listed[name])
                    verify_signatures(name, data, listed[name])
                    if not name.startswith(f"{BIN_DIR}/"):
                        documents[name] = data
                else:
                    digest = _verify_large(source, name, size, listed[name], verify_signatures, workers, meter)
                digests[name] = digest
            except VerificationError as exc:
                c.fail(exc)
                failed.add(name)
            else:
                c.checked.append(name)
    finally:
        if own_pool:
            workers.shutdown()
    meter.finish()
    if ignored:
        c.warn(f"ignored {len(ignored)} co-signature file(s) by pinned keys that are not active")
    content = VerifiedContent(
        label=source.label,
        manifest=manifest,
        digests=digests,
        sizes={n: listing[n] for n in listed if n in listing},
        documents=documents,
        failed=frozenset(failed),
        trust_root=trust_root,
        signers=signers,
        allow_unsigned=allow_unsigned,
        unsigned=unsigned,
        profile=profile,
        ignored=frozenset(ignored_files),
    )
    return IntegrityScan(c.result(), content)


def _compare(name: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise DigestMismatchError(f"checksum mismatch for {name}: checksums.txt has {expected}, file has {actual}")


def _verify_large(
    source: PackageSource,
    name: str,
    size: int,
    expected: str,
    verify_signatures: Callable[[str, bytes | memoryview, str], None],
    workers: ThreadPoolExecutor,
    meter: ByteMeter | None = None,
) -> str:
    # SHA-256 on the worker and Ed25519 on this thread, over the same mapped bytes. The
    # signature check is bound to the *signed* digest; the hash comparison below decides
    # whether those bytes are the signed ones, so the two can run concurrently.
    with source.whole(name, size) as view:
        future = workers.submit(_sha256_metered, view, meter) if meter is not None else workers.submit(_sha256, view)
        signature_error: SignatureError | None = None
        try:
            verify_signatures(name, view, expected)
        except SignatureError as exc:
            signature_error = exc
        finally:
            actual = future.result()
    _compare(name, actual, expected)
    if signature_error is not None:
        raise signature_error
    return actual


#: slice size for metered hashing (large enough that per-slice overhead is negligible)
_METER_SLICE = 8 * 1024 * 1024


def _sha256_metered(view: memoryview, meter: ByteMeter) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(view), _METER_SLICE):
        piece = view[start:start + _METER_SLICE]
        digest.update(piece)
        meter.add(len(piece))
    return digest.hexdigest()


def _load_spdx_validator() -> SpdxValidator:
    """Import the SPDX library (≈0.4 s) and return a validator over SPDX 2.3 document dicts."""
    from spdx_tools.spdx.parser.error import SPDXParsingError
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    def validate(document: dict[str, Any]) -> list[str]:
        try:
            parsed = JsonLikeDictParser().parse(document)  # type: ignore[no-untyped-call]
        except SPDXParsingError as exc:
            messages = exc.get_messages()  # type: ignore[no-untyped-call]
            return [str(m) for m in messages] or ["unparseable SPDX document"]
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return [f"unparseable SPDX document: {exc}"]
        return [m.validation_message for m in validate_full_spdx_document(parsed, "SPDX-2.3")]

    return validate


_spdx_loader: Background[SpdxValidator] | None = None


def prefetch_spdx() -> None:
    """Start importing the SPDX library on a background thread while bytes are being hashed."""
    global _spdx_loader
    if _spdx_loader is None:
        _spdx_loader = Background(_load_spdx_validator, "ringward-spdx-import")


def spdx_validator() -> SpdxValidator:
    prefetch_spdx()
    assert _spdx_loader is not None
    return _spdx_loader.get()


def skipped_family(name: str, reason: str) -> FamilyResult:
    return FamilyResult(name, "skipped", (), (), (), reason)


def resolve_profile(source: PackageSource, requested: str) -> ProfileChoice:
    """``--profile`` against the package: reads (without trusting) release-evidence.json and the
    installers document to detect which system wrote it. Detection only picks the rule set; both
    profiles require every signature to chain to the pinned trust root."""
    listing = source.listing()
    names = [EVIDENCE_JSON, *sorted(n for n in listing if "/" not in n and n.endswith(".installers.json"))[:1]]
    documents: dict[str, Any] = {}
    for name in names:
        if name in listing and listing[name] <= MAX_DOCUMENT_BYTES:
            try:
                documents[name] = loads_strict(source.read_small(name, MAX_DOCUMENT_BYTES), source=name)
            except (VerificationError, InputError):
                continue
    return choose_profile(requested, documents)


def summarize(label: str, integrity: IntegrityScan, families: list[FamilyResult],
              profile: ProfileChoice | None = None) -> PackageVerification:
    content = integrity.content
    version = runtime = None
    if content is not None and EVIDENCE_JSON in content.documents:
        try:
            raw = loads_strict(content.documents[EVIDENCE_JSON], source=EVIDENCE_JSON)
            if isinstance(raw, dict):
                version = raw.get("version") if isinstance(raw.get("version"), str) else None
                runtime = raw.get("runtime") if isinstance(raw.get("runtime"), str) else None
        except VerificationError:
            pass
    signers = sorted({k for keys in (content.signers.values() if content else []) for k in keys})
    failed = any(f.status == "failed" for f in (integrity.result, *families))
    hint = None
    if failed and profile is not None and profile.profile is Profile.RINGWARD \
            and profile.looks_like is Profile.REFERENCE:
        hint = reference_hint()
    return PackageVerification(
        package=label,
        version=version,
        runtime=runtime,
        families=(integrity.result, *families),
        unsigned=bool(content and content.unsigned),
        verified_files=tuple(integrity.result.checked),
        signers=tuple(signers),
        profile=profile,
        hint=hint,
    )


def run_families(content: VerifiedContent | None, names: tuple[str, ...] = FAMILY_NAMES) -> list[FamilyResult]:
    if content is None:
        return [skipped_family(n, "integrity and signatures failed; documents not parsed") for n in names]
    return [run_document_family(n, content, spdx_validator() if n == "sbom" else None) for n in names]


def verify_directory(
    package_dir: Path,
    trust_root: TrustRoot,
    *,
    now: datetime,
    allow_unsigned: bool = False,
    profile: str = Profile.RINGWARD.value,
    progress: Progress | None = None,
) -> tuple[IntegrityScan, PackageVerification]:
    """Verify a package directory (all check families); also returns the verified content for
    callers that go on to use the documents (upgrade, smoke, views). ``profile`` is ``ringward``,
    ``reference`` or ``auto`` (see ringward.core.release.profiles)."""
    prefetch_spdx()
    source = DirectorySource(package_dir)
    choice = resolve_profile(source, profile)
    integrity = scan_integrity(source, trust_root, now=now, allow_unsigned=allow_unsigned, profile=choice.profile,
                               progress=progress)
    return integrity, summarize(str(package_dir), integrity, run_families(integrity.content), choice)


def verify_package(
    package_dir: Path,
    trust_root: TrustRoot,
    *,
    now: datetime,
    allow_unsigned: bool = False,
    profile: str = Profile.RINGWARD.value,
    progress: Progress | None = None,
) -> PackageVerification:
    """Verify a package directory against the pinned trust root (all check families);
    ``progress`` receives the bytes verified."""
    return verify_directory(package_dir, trust_root, now=now, allow_unsigned=allow_unsigned, profile=profile,
                            progress=progress)[1]
