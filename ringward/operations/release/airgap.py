"""`ringward release verify-airgap-bundle`: verify a package zip without ever `extractall`.

Order (supply-chain-anchors §6.3): cap the archive; parse the central directory before any
data; vet every member name, type, method, flag and size; read every local header and require
contiguous, non-overlapping member ranges with no prepended or trailing bytes; then run the
package verification over the members, streaming each through the hash with a hard cap at its
signed size; the member set must equal the signed list. Extraction (optional) happens only
after verification, into an empty directory, without following links, re-checking each
member's digest as it is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ringward.core.common.paths import check_relative_name
from ringward.core.errors import (
    ArchiveLimitError,
    InputError,
    MissingFileError,
    OutputExistsError,
    SizeMismatchError,
    UnsafeArchiveError,
    UnsafePathError,
    VerificationError,
)
from ringward.core.release.package_format import BOOTSTRAP
from ringward.core.release.verification import FamilyCollector, PackageVerification
from ringward.core.trust.root import TrustRoot
from ringward.operations.release.progress import Progress
from ringward.operations.release.verify import (
    DirectorySource,
    prefetch_spdx,
    resolve_profile,
    run_families,
    scan_integrity,
    skipped_family,
    summarize,
)

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_CHUNK = 1024 * 1024
#: general-purpose flags we accept: deflate options (0x2, 0x4), data descriptor (0x8), UTF-8 names (0x800)
_ALLOWED_FLAGS = 0x2 | 0x4 | 0x8 | 0x800
#: highest "version needed to extract" we accept (4.5 = zip64)
_MAX_EXTRACT_VERSION = 45


@dataclass(frozen=True)
class ZipLimits:
    max_archive_bytes: int = 32 * 1024**3
    max_entries: int = 10_000
    max_total_bytes: int = 32 * 1024**3
    #: uncompressed:compressed ratio allowed for members larger than ``ratio_floor`` bytes
    max_ratio: int = 200
    ratio_floor: int = 1024 * 1024


@dataclass(frozen=True)
class _Member:
    name: str
    info: zipfile.ZipInfo
    data_offset: int


class InspectedZip:
    """A zip whose structure passed every check; members keyed by package-relative name."""

    def __init__(self, path: Path, handle: BinaryIO, archive: zipfile.ZipFile, top: str,
                 members: dict[str, _Member]) -> None:
        self.path = path
        self.handle = handle
        self.archive = archive
        self.top = top
        self.members = members

    def close(self) -> None:
        self.archive.close()
        self.handle.close()


def inspect_zip(path: Path, limits: ZipLimits = ZipLimits()) -> InspectedZip:
    """Structural checks over the central directory and local headers (no member data read)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: air-gapped bundle does not exist") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file")
    if info.st_size > limits.max_archive_bytes:
        raise ArchiveLimitError(f"{path}: {info.st_size} bytes, cap is {limits.max_archive_bytes}")
    handle = open(path, "rb")  # noqa: SIM115 - owned by InspectedZip
    try:
        return _inspect(path, handle, info.st_size, limits)
    except BaseException:
        handle.close()
        raise


def _inspect(path: Path, handle: BinaryIO, size: int, limits: ZipLimits) -> InspectedZip:
    if handle.read(4) != b"PK\x03\x04":
        raise UnsafeArchiveError(f"{path}: does not start with a local file header (prepended data or not a zip)")
    handle.seek(max(0, size - 22))
    tail = handle.read(22)
    if len(tail) != 22 or tail[:4] != _EOCD_SIGNATURE or tail[20:22] != b"\x00\x00":
        raise UnsafeArchiveError(f"{path}: trailing data or an archive comment after the central directory")
    declared_entries = struct.unpack_from("<H", tail, 10)[0]
    if declared_entries != 0xFFFF and declared_entries > limits.max_entries:  # before parsing any entry
        raise ArchiveLimitError(f"{path}: {declared_entries} members, cap is {limits.max_entries}")
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise UnsafeArchiveError(f"{path}: not a valid zip archive ({exc})") from exc
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveLimitError(f"{path}: {len(infos)} members, cap is {limits.max_entries}")
    # where zipfile found the central directory (zip64-aware, includes any prepended bytes)
    cd_offset = int(getattr(archive, "start_dir", -1))
    seen: dict[str, str] = {}
    folded: dict[str, str] = {}
    tops: set[str] = set()
    files: dict[str, zipfile.ZipInfo] = {}
    directories: set[str] = set()
    total = 0
    for entry in infos:
        raw_name = entry.orig_filename
        if raw_name != entry.filename or "\x00" in raw_name:
            raise UnsafeArchiveError(f"unsafe archive member path: {raw_name!r} (NUL byte)")
        is_dir = raw_name.endswith("/")
        name = raw_name[:-1] if is_dir else raw_name
        try:
            check_relative_name(name, source="zip member")
        except UnsafePathError as exc:
            raise UnsafeArchiveError(f"unsafe archive member path: {raw_name!r} ({exc.message.split(': ', 2)[-1]})") \
                from exc
        if raw_name in seen:
            raise UnsafeArchiveError(f"duplicate archive member: {raw_name!r}")
        key = raw_name.casefold()
        if key in folded:
            raise UnsafeArchiveError(f"archive members collide when case is ignored: {folded[key]!r} and {raw_name!r}")
        seen[raw_name] = raw_name
        folded[key] = raw_name
        if entry.flag_bits & 0x1 or entry.flag_bits & 0x40:
            raise UnsafeArchiveError(f"encrypted archive member: {raw_name!r}")
        if entry.flag_bits & ~_ALLOWED_FLAGS:
            raise UnsafeArchiveError(f"archive member {raw_name!r} uses unsupported flags {entry.flag_bits:#06x}")
        if entry.extract_version > _MAX_EXTRACT_VERSION:
            raise UnsafeArchiveError(
                f"archive member {raw_name!r} needs zip version {entry.extract_version / 10:.1f}, "
                f"at most {_MAX_EXTRACT_VERSION / 10:.1f} is supported"
            )
        if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsafeArchiveError(
                f"archive member {raw_name!r} uses unsupported compression method {entry.compress_type}"
            )
        mode = entry.external_attr >> 16
        if entry.create_system == 3 and mode:
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise UnsafeArchiveError(f"symlink archive member: {raw_name!r}")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"special-file archive member (device/FIFO/socket): {raw_name!r}")
            if is_dir != (kind == stat.S_IFDIR) and kind != 0:
                raise UnsafeArchiveError(f"archive member {raw_name!r}: type bits disagree with its name")
        if is_dir:
            if entry.file_size or entry.compress_size:
                raise UnsafeArchiveError(f"directory archive member {raw_name!r} carries data")
        elif entry.compress_type == zipfile.ZIP_STORED and entry.compress_size != entry.file_size:
            # Info-ZIP would install compress_size bytes while we verify file_size bytes
            raise UnsafeArchiveError(
                f"stored archive member {raw_name!r}: {entry.compress_size} stored bytes for a "
                f"{entry.file_size}-byte file (hidden data)"
            )
        else:
            total += entry.file_size
            if total > limits.max_total_bytes:
                raise ArchiveLimitError(f"archive expands to more than {limits.max_total_bytes} bytes")
            if entry.file_size > limits.ratio_floor and (
                entry.compress_size == 0 or entry.file_size / entry.compress_size > limits.max_ratio
            ):
                raise ArchiveLimitError(
                    f"archive member {raw_name!r}: compression ratio "
                    f"{entry.file_size}/{entry.compress_size} exceeds {limits.max_ratio}:1"
                )
        tops.add(name.split("/", 1)[0])
        if is_dir:
            directories.add(name)
        else:
            if "/" not in name:
                raise UnsafeArchiveError(f"archive member {raw_name!r} is outside the single package folder")
            files[name] = entry
    if len(tops) != 1:
        raise UnsafeArchiveError(
            f"air-gapped bundle must contain exactly one top-level package folder, found {len(tops)}"
        )
    for name in files:  # a path cannot be both a file and a directory on any extractor
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                parent = "/".join(parts[:depth])
                raise UnsafeArchiveError(f"archive member {name!r} lies inside the file member {parent!r}")
        if name in directories:
            raise UnsafeArchiveError(f"archive member {name!r} is both a file and a directory entry")
    offsets = _check_layout(handle, infos, cd_offset)
    members = {name.split("/", 1)[1]: _Member(entry.orig_filename, entry, offsets[entry.orig_filename])
               for name, entry in files.items()}
    return InspectedZip(path, handle, archive, tops.pop(), members)


def _check_layout(handle: BinaryIO, infos: list[zipfile.ZipInfo], cd_offset: int) -> dict[str, int]:
    """Local headers must agree with the central directory, and member ranges must tile the file
    from offset 0 to the central directory: no overlaps (overlap bombs), no hidden gaps.
    Returns each member's data offset."""
    data_offsets: dict[str, int] = {}
    expected = 0
    for entry in sorted(infos, key=lambda i: i.header_offset):
        if entry.header_offset != expected:
            kind = "overlaps the previous member" if entry.header_offset < expected else "leaves a gap"
            raise UnsafeArchiveError(f"archive member {entry.orig_filename!r} {kind} (possible zip bomb)")
        handle.seek(entry.header_offset)
        header = handle.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise UnsafeArchiveError(f"archive member {entry.orig_filename!r}: truncated local header")
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != b"PK\x03\x04":
            raise UnsafeArchiveError(f"archive member {entry.orig_filename!r}: bad local header signature")
        _, _, flags, method, _, _, crc, compressed, size, name_len, extra_len = fields
        where = f"archive member {entry.orig_filename!r}"
        if flags != entry.flag_bits or method != entry.compress_type:
            raise UnsafeArchiveError(f"{where}: local header flags/method differ from the central directory")
        if not flags & 0x08:  # without a data descriptor the local header carries CRC and sizes
            if crc != entry.CRC:
                raise UnsafeArchiveError(f"{where}: local header CRC differs from the central directory")
            for local, central, label in ((compressed, entry.compress_size, "compressed size"),
                                          (size, entry.file_size, "size")):
                if local != 0xFFFFFFFF and local != central:
                    raise UnsafeArchiveError(f"{where}: local header {label} differs from the central directory")
        local_name = handle.read(name_len)
        central_name = entry.orig_filename.encode("utf-8" if entry.flag_bits & 0x800 else "cp437")
        if local_name != central_name:
            raise UnsafeArchiveError(
                f"archive member {entry.orig_filename!r}: local header name {local_name!r} differs from the "
                "central directory"
            )
        data_offsets[entry.orig_filename] = entry.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        end = data_offsets[entry.orig_filename] + entry.compress_size
        if entry.flag_bits & 0x08:  # data descriptor follows the data: 12/16 (or 20/24 for zip64) bytes
            handle.seek(end)
            probe = handle.read(4)
            descriptor = 16 if probe == b"PK\x07\x08" else 12
            if entry.compress_size >= 0xFFFFFFFF or entry.file_size >= 0xFFFFFFFF:
                descriptor += 8
            end += descriptor
        expected = end
    if expected != cd_offset:
        raise UnsafeArchiveError(
            f"archive data ends at {expected} but the central directory starts at {cd_offset} "
            "(hidden or overlapping data)"
        )
    return data_offsets


class ZipSource:
    """Package bytes streamed from a structurally-checked zip, capped at each signed size."""

    def __init__(self, inspected: InspectedZip) -> None:
        self.zip = inspected
        self.label = f"{inspected.path}!{inspected.top}"

    def listing(self) -> dict[str, int]:
        return {name: m.info.file_size for name, m in self.zip.members.items()}

    def _stream(self, name: str, cap: int) -> Iterator[bytes]:
        """The member's bytes, decoded here rather than by zipfile so that nothing is tolerated:
        output is capped at ``cap``, the DEFLATE stream must end exactly at the member's
        compressed size, and size and CRC must match the central directory."""
        member = self.zip.members.get(name)
        if member is None:
            raise MissingFileError(f"{name}: not in the archive")
        info = member.info
        handle = self.zip.handle
        position, remaining = member.data_offset, info.compress_size
        produced, crc = 0, 0

        def take(data: bytes) -> bytes:
            nonlocal produced, crc
            produced += len(data)
            if produced > cap or produced > info.file_size:
                raise ArchiveLimitError(f"{name}: expands beyond {min(cap, info.file_size)} bytes")
            crc = zlib.crc32(data, crc)
            return data

        def read_raw() -> bytes:
            nonlocal position, remaining
            handle.seek(position)
            raw = handle.read(min(_CHUNK, remaining))
            if not raw:
                raise UnsafeArchiveError(f"{name}: archive member data is truncated")
            position += len(raw)
            remaining -= len(raw)
            return raw

        try:
            if info.compress_type == zipfile.ZIP_STORED:
                while remaining:
                    yield take(read_raw())
            else:
                inflater = zlib.decompressobj(-15)
                pending = b""
                while not inflater.eof:
                    if not pending:
                        if not remaining:
                            raise UnsafeArchiveError(f"{name}: DEFLATE stream ends early")
                        pending = read_raw()
                    out = inflater.decompress(pending, _CHUNK)
                    pending = inflater.unconsumed_tail
                    if out:
                        yield take(out)
                if pending or inflater.unused_data or remaining:
                    raise UnsafeArchiveError(f"{name}: hidden data after the end of the DEFLATE stream")
        except zlib.error as exc:
            raise UnsafeArchiveError(f"{name}: corrupt DEFLATE data ({exc})") from exc
        if produced != info.file_size:
            raise SizeMismatchError(f"{name}: archive member decodes to {produced} bytes, declared {info.file_size}")
        if crc != info.CRC:
            raise UnsafeArchiveError(f"{name}: CRC-32 mismatch (corrupt or altered member)")

    def read_small(self, name: str, cap: int) -> bytes:
        member = self.zip.members.get(name)
        if member is not None and member.info.file_size > cap:
            raise ArchiveLimitError(f"{name}: {member.info.file_size} bytes, cap is {cap}")
        return b"".join(self._stream(name, cap))

    @contextmanager
    def whole(self, name: str, expected_size: int) -> Iterator[memoryview]:
        buffer = bytearray(expected_size)
        view = memoryview(buffer)
        position = 0
        for chunk in self._stream(name, expected_size):
            view[position:position + len(chunk)] = chunk
            position += len(chunk)
        if position != expected_size:
            raise SizeMismatchError(f"{name}: {position} bytes, expected {expected_size}")
        try:
            yield view
        finally:
            view.release()


@dataclass(frozen=True)
class AirgapVerification:
    bundle: str
    package: PackageVerification
    extracted_to: str | None = None

    @property
    def valid(self) -> bool:
        return self.package.valid

    def to_dict(self) -> dict[str, object]:
        body = self.package.to_dict()
        body["schema_version"] = "ringward.airgap-verification.v1"
        body["bundle"] = self.bundle
        body["extracted_to"] = self.extracted_to
        return body


def verify_airgap_bundle(
    bundle: Path,
    trust_root: TrustRoot,
    *,
    now: datetime,
    extract_dir: Path | None = None,
    require_bootstrap: bool = True,
    limits: ZipLimits = ZipLimits(),
    profile: str = "ringward",
    progress: Progress | None = None,
) -> AirgapVerification:
    prefetch_spdx()
    archive_family = FamilyCollector("archive")
    if extract_dir is not None and (extract_dir.is_symlink() or (extract_dir.exists() and (
        not extract_dir.is_dir() or any(extract_dir.iterdir())
    ))):
        raise OutputExistsError(f"{extract_dir}: --extract-dir must be an empty directory (or not exist)")
    try:
        inspected = inspect_zip(bundle, limits)
    except VerificationError as exc:
        archive_family.fail(exc)
        families = [archive_family.result(), skipped_family("integrity-and-signatures", "archive rejected")]
        result = PackageVerification(str(bundle), None, None, tuple(families))
        return AirgapVerification(str(bundle), result)
    try:
        archive_family.checked.extend(sorted(inspected.members))
        source = ZipSource(inspected)
        choice = resolve_profile(source, profile)
        integrity = scan_integrity(source, trust_root, now=now, profile=choice.profile, progress=progress)
        families = run_families(integrity.content)
        bootstrap = FamilyCollector("airgap-bootstrap")
        if require_bootstrap:
            content = integrity.content
            if content is None or BOOTSTRAP not in content.listed():
                bootstrap.fail(MissingFileError(f"{BOOTSTRAP} is missing from checksums.txt"))
        package = summarize(source.label, integrity, families, choice)
        package = replace(package, families=(archive_family.result(), *package.families, bootstrap.result()))
        extracted = None
        if extract_dir is not None and package.valid and integrity.content is not None:
            extracted = str(_extract(inspected, dict(integrity.content.digests), extract_dir))
        return AirgapVerification(str(bundle), package, extracted)
    finally:
        inspected.close()


def _extract(inspected: InspectedZip, digests: dict[str, str], extract_dir: Path) -> Path:
    """Extract verified members into ``extract_dir/<top>`` via a private staging directory,
    creating every file with O_EXCL|O_NOFOLLOW and re-checking its digest while writing."""
    extract_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ringward-extract-", dir=extract_dir))
    source = ZipSource(inspected)
    try:
        for name in sorted(inspected.members):
            target = staging / name
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            if parent.is_symlink() or not parent.resolve().is_relative_to(staging.resolve()):
                raise UnsafeArchiveError(f"{name}: extraction path escapes the staging directory")
            mode = 0o755 if name.startswith("bin/") and not name.endswith(".sig.json") else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in source._stream(name, inspected.members[name].info.file_size):
                    digest.update(chunk)
                    out.write(chunk)
            expected = digests.get(name)
            if expected is not None and digest.hexdigest() != expected:
                raise UnsafeArchiveError(f"{name}: changed between verification and extraction")
        final = extract_dir / inspected.top
        os.rename(staging, final)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def verify_extracted(package_dir: Path) -> DirectorySource:  # pragma: no cover - convenience
    return DirectorySource(package_dir)


__all__ = ["AirgapVerification", "ThreadPoolExecutor", "ZipLimits", "inspect_zip", "verify_airgap_bundle"]
