"""Whole-store backup and restore (``ringward backup create DIR`` / ``ringward backup restore DIR``).

A backup is a directory::

    manifest.json     ringward.backup.v1: schema revision, source database kind, per-table row
                      counts, the evidence chain head, created_at
    tables/<t>.jsonl  one JSON object per row of every table that carries state, in primary-key
                      order, values exactly as stored (ringward.store.backup)
    bundles/<dir>/... with ``--with-bundles``: every evidence bundle the chain names, copied from
                      the evidence root (confined to it, no links) with its own checksums.txt
    checksums.txt     sha256 of every other file (the strict grammar of ringward.core.common.checksums)

It is written into a temporary directory beside ``DIR`` and renamed into place, so ``DIR`` either
does not exist or is complete; ``DIR`` is mode 0700 (it holds every record and the API token
hashes). All tables are read in one snapshot transaction.

Restore goes only into an empty store at the same schema revision: checksums first (exit 1 on a
mismatch, a missing or an unlisted file), then the manifest, then every row inserted with its own
id in ONE transaction (each file re-hashed while it is read, so a file changed after the first
check rolls the whole restore back), PostgreSQL sequences moved past the restored ids, and
finally the evidence chain re-verified. Bundles in the backup are copied (and re-hashed) into a
staging directory inside the evidence root before the database transaction and renamed into place
after it commits; the target root must not hold any of them yet. The chain is then verified with
every bundle's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import DataError, IntegrityError

from ringward.core.common.checksums import CHECKSUMS_FILE, parse_checksums, render_checksums
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.paths import check_relative_name
from ringward.core.errors import (
    DigestMismatchError,
    EvidenceNotFoundError,
    InputError,
    MalformedDocumentError,
    MissingFileError,
    OutputExistsError,
    UnlistedFileError,
    UnsafePathError,
)
from ringward.core.evidence.records import ChainReport
from ringward.operations.common.files import copy_and_hash, read_capped
from ringward.operations.evidence.evidence_ops import resolve_bundle_dir, verify_evidence
from ringward.settings import evidence_root
from ringward.store import Store
from ringward.store import backup as rows
from ringward.store.db import current_revision

BACKUP_SCHEMA = "ringward.backup.v1"
MANIFEST_NAME = "manifest.json"
TABLES_DIR = "tables"
BUNDLES_DIR = "bundles"
MAX_MANIFEST_BYTES = 1024 * 1024
#: longest single JSON Lines row accepted on restore (an evidence payload is the largest)
MAX_LINE_BYTES = 64 * 1024 * 1024
CHUNK = 1024 * 1024


class BackupTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z][a-z0-9_]*$")
    file: str
    rows: int = Field(ge=0)


class BackupChainHead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    last_id: int = Field(ge=0)
    last_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class BackupBundles(BaseModel):
    """The evidence bundle directories copied into ``bundles/`` (relative to the evidence root)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    directories: tuple[str, ...]
    files: int = Field(ge=0)

    @field_validator("directories")
    @classmethod
    def _safe(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            check_relative_name(name, source="bundles.directories")
        if len(set(value)) != len(value):
            raise ValueError("duplicate bundle directory")
        return value


class BackupManifest(BaseModel):
    """``manifest.json`` of a backup directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal["ringward.backup.v1"] = "ringward.backup.v1"
    schema_revision: str = Field(min_length=1, max_length=64)
    source_database: Literal["sqlite", "postgresql"]
    created_at: datetime
    tables: tuple[BackupTable, ...]
    evidence_head: BackupChainHead
    #: None: the backup holds the database only (bundles stay where they are)
    bundles: BackupBundles | None = None

    def counts(self) -> dict[str, int]:
        return {t.name: t.rows for t in self.tables}


@dataclass(frozen=True)
class BackupResult:
    directory: Path
    manifest: BackupManifest

    def to_document(self) -> dict[str, Any]:
        return {"directory": str(self.directory), **self.manifest.model_dump(mode="json")}


@dataclass(frozen=True)
class RestoreResult:
    manifest: BackupManifest
    database: str
    restored: dict[str, int]
    chain: ChainReport

    @property
    def ok(self) -> bool:
        return self.chain.ok

    def to_document(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": self.database,
            "schema_revision": self.manifest.schema_revision,
            "source_database": self.manifest.source_database,
            "restored": self.restored,
            "evidence_head": self.manifest.evidence_head.model_dump(),
            "chain": self.chain.model_dump(mode="json"),
        }


def _table_file(name: str) -> str:
    return f"{TABLES_DIR}/{name}.jsonl"


def _jsonl(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


# --- create --------------------------------------------------------------------------------------


def create_backup(
    store: Store, output: Path, *, now: datetime | None = None, bundles_root: Path | None = None
) -> BackupResult:
    """Write a backup of every state table to the new directory ``output`` (see the module docstring).

    With ``bundles_root`` every evidence bundle the chain names is copied from that evidence root.

    Raises:
        OutputExistsError: ``output`` already exists.
        InputError: its parent cannot be written.
        EvidenceNotFoundError / UnsafePathError: a bundle is missing, outside the root or a link.
    """
    moment = now or datetime.now(UTC)
    if moment.utcoffset() is None:
        raise InputError("now: naive datetime, expected a timezone-aware (UTC) time")
    if os.path.lexists(output):
        raise OutputExistsError(f"{output}: already exists; a backup goes into a new directory")
    parent = output.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise InputError(f"{output}: cannot write ({exc.strerror or type(exc).__name__})") from exc
    try:
        (staging / TABLES_DIR).mkdir()
        digests: dict[str, str] = {}
        tables: list[BackupTable] = []
        with rows.snapshot(store.engine) as conn:
            revision = current_revision(conn)
            if revision is None:
                raise InputError(f"{store.label}: the store has no schema; nothing to back up")
            head = rows.chain_head(conn)
            directories = rows.bundle_dirs(conn) if bundles_root is not None else []
            for table in rows.state_tables():
                name = _table_file(table.name)
                count, digest = _write_jsonl(staging / name, rows.stream_rows(conn, table))
                digests[name] = digest
                tables.append(BackupTable(name=table.name, file=name, rows=count))
        bundles = None
        if bundles_root is not None:
            bundles = BackupBundles(
                directories=tuple(directories),
                files=_copy_bundles(bundles_root, directories, staging / BUNDLES_DIR, digests),
            )
        manifest = BackupManifest(
            schema_revision=revision,
            source_database="postgresql" if store.dialect == "postgresql" else "sqlite",
            created_at=moment.astimezone(UTC),
            tables=tuple(tables),
            evidence_head=BackupChainHead(last_id=head.last_id, last_hash=head.last_hash),
            bundles=bundles,
        )
        manifest_bytes = dumps_document(manifest.model_dump(mode="json"))
        _write_file(staging / MANIFEST_NAME, manifest_bytes)
        digests[MANIFEST_NAME] = hashlib.sha256(manifest_bytes).hexdigest()
        _write_file(staging / CHECKSUMS_FILE, render_checksums(digests))
        _fsync_dir(staging / TABLES_DIR)
        _fsync_dir(staging)
        if os.path.lexists(output):
            raise OutputExistsError(f"{output}: appeared while the backup was written; refusing to replace it")
        os.rename(staging, output)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupResult(directory=output, manifest=manifest)


def _copy_bundles(root: Path, directories: list[str], target: Path, digests: dict[str, str]) -> int:
    """Copy each bundle directory (regular files only, confined to ``root``) under ``target``;
    adds ``bundles/<dir>/<file>`` digests. Returns the number of files."""
    files = 0
    for directory in directories:
        try:
            source = resolve_bundle_dir(root, directory)
        except EvidenceNotFoundError as exc:
            raise EvidenceNotFoundError(
                f"{exc.message}; back up without --with-bundles, or restore the bundle first"
            ) from exc
        for rel in sorted(_regular_files(source)):
            destination = target / directory / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            digest, _ = copy_and_hash(source / rel, destination, mode=0o644)
            digests[f"{BUNDLES_DIR}/{directory}/{rel}"] = digest
            files += 1
    return files


def _write_jsonl(path: Path, documents: Iterator[dict[str, Any]]) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    with open(path, "xb") as handle:
        for document in documents:
            line = _jsonl(document)
            digest.update(line)
            handle.write(line)
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count, digest.hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- read and check ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedBackup:
    """A backup directory whose every file matched ``checksums.txt`` and whose manifest parsed."""

    directory: Path
    manifest: BackupManifest
    digests: dict[str, str]


def check_backup(directory: Path) -> CheckedBackup:
    """Verify ``checksums.txt`` against the directory, then parse the manifest.

    Raises:
        InputError: ``directory`` is not a directory.
        MissingFileError / UnlistedFileError / DigestMismatchError / UnsafePathError: exit 1.
        MalformedDocumentError: checksums.txt or manifest.json is malformed (exit 1).
    """
    if not directory.is_dir():
        raise InputError(f"{directory}: backup directory not found")
    if not os.path.lexists(directory / CHECKSUMS_FILE):
        raise MissingFileError(f"{directory}/{CHECKSUMS_FILE}: missing (is this a ringward backup directory?)")
    listed = parse_checksums(
        read_capped(directory / CHECKSUMS_FILE, 4 * 1024 * 1024, source=f"{directory}/{CHECKSUMS_FILE}"),
        source=f"{directory}/{CHECKSUMS_FILE}",
    ).as_dict()
    present = _regular_files(directory)
    present.discard(CHECKSUMS_FILE)
    for name in sorted(set(listed) - present):
        raise MissingFileError(f"{directory}/{name}: listed in {CHECKSUMS_FILE} but missing")
    for name in sorted(present - set(listed)):
        raise UnlistedFileError(f"{directory}/{name}: not listed in {CHECKSUMS_FILE}")
    for name, expected in sorted(listed.items()):
        found = _sha256(directory / name)
        if found != expected:
            raise DigestMismatchError(
                f"{directory}/{name}: sha256 {found}, expected {expected} (from {CHECKSUMS_FILE})"
            )
    if MANIFEST_NAME not in listed:
        raise MissingFileError(f"{directory}/{MANIFEST_NAME}: missing")
    source = f"{directory}/{MANIFEST_NAME}"
    document = loads_strict(read_capped(directory / MANIFEST_NAME, MAX_MANIFEST_BYTES, source=source), source=source)
    if isinstance(document, dict) and document.get("schema_version") != BACKUP_SCHEMA:
        raise MalformedDocumentError(
            f"{source}: schema_version {document.get('schema_version')!r}, expected {BACKUP_SCHEMA!r}"
        )
    try:
        manifest = BackupManifest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise MalformedDocumentError(f"{source}: {where}: {first['msg']}") from exc
    for table in manifest.tables:
        if table.file != _table_file(table.name) or table.file not in listed:
            raise MalformedDocumentError(
                f"{source}: table {table.name}: file {table.file!r}, expected {_table_file(table.name)!r} "
                f"listed in {CHECKSUMS_FILE}"
            )
    bundle_dirs = manifest.bundles.directories if manifest.bundles is not None else ()
    for name in listed:
        if name.startswith(f"{BUNDLES_DIR}/") and not any(name.startswith(f"{BUNDLES_DIR}/{d}/") for d in bundle_dirs):
            raise MalformedDocumentError(f"{directory}/{name}: not inside a bundle directory the manifest lists")
    return CheckedBackup(directory=directory, manifest=manifest, digests=listed)


def _regular_files(directory: Path) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=False):
        base = Path(dirpath)
        for name in dirnames + filenames:
            full = base / name
            rel = full.relative_to(directory).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise UnsafePathError(f"{directory}/{rel}: not a regular file (links are not allowed in a backup)")
            found.add(rel)
    return found


def _sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --- restore -------------------------------------------------------------------------------------


def restore_backup(
    store: Store, directory: Path, *, root: Path | None = None, check_files: bool | None = None
) -> RestoreResult:
    """Restore the backup in ``directory`` into the empty ``store`` and re-verify the chain.

    Bundles in the backup go into ``root`` (default: the evidence root setting). ``check_files``
    re-hashes every bundle during the final verification; None means "when the backup carried
    the bundles".

    Raises:
        InputError: the target is not empty, or is at another schema revision (exit 2).
        VerificationError family: the backup failed its checks (exit 1); nothing was written.
    """
    checked = check_backup(directory)
    manifest = checked.manifest
    known = {t.name: t for t in rows.state_tables()}
    in_backup = [t.name for t in manifest.tables]
    if set(in_backup) != set(known) or len(in_backup) != len(set(in_backup)):
        missing = sorted(set(known) - set(in_backup))
        extra = sorted(set(in_backup) - set(known))
        raise MalformedDocumentError(
            f"{directory}/{MANIFEST_NAME}: tables differ from this Ringward's store "
            f"(missing {missing or 'none'}, unknown {extra or 'none'})"
        )
    base = root or evidence_root()
    staging = _stage_bundles(checked, base) if manifest.bundles is not None else None
    restored: dict[str, int] = {}
    try:
        _restore_rows(store, checked, restored)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if staging is not None and manifest.bundles is not None:
        for name in manifest.bundles.directories:
            final = base / name
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging / name, final)
        shutil.rmtree(staging, ignore_errors=True)
    if check_files is None:
        check_files = manifest.bundles is not None
    chain = verify_evidence(store, root=base, check_files=check_files)
    return RestoreResult(manifest=manifest, database=store.label, restored=restored, chain=chain)


def _stage_bundles(checked: CheckedBackup, base: Path) -> Path:
    """Copy the backup's bundles into a staging directory inside ``base``, re-hashing each file."""
    assert checked.manifest.bundles is not None
    for name in checked.manifest.bundles.directories:
        if os.path.lexists(base / name):
            raise InputError(
                f"{base / name}: the evidence root already holds this bundle; restore into an empty evidence root"
            )
    try:
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".ringward-restore-", dir=base))
    except OSError as exc:
        raise InputError(f"{base}: cannot write ({exc.strerror or type(exc).__name__})") from exc
    try:
        prefix = f"{BUNDLES_DIR}/"
        for name, expected in sorted(checked.digests.items()):
            if not name.startswith(prefix):
                continue
            destination = staging / name[len(prefix) :]
            destination.parent.mkdir(parents=True, exist_ok=True)
            digest, _ = copy_and_hash(checked.directory / name, destination, mode=0o644)
            if digest != expected:
                raise DigestMismatchError(f"{checked.directory}/{name}: changed while it was restored")
        for name in checked.manifest.bundles.directories:
            (staging / name).mkdir(parents=True, exist_ok=True)  # a bundle may hold no file at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _restore_rows(store: Store, checked: CheckedBackup, restored: dict[str, int]) -> None:
    directory, manifest = checked.directory, checked.manifest
    with store.writing() as conn:
        rows.lock_chain(conn)  # appenders queue behind the restore instead of racing its emptiness check
        revision = current_revision(conn)
        if revision != manifest.schema_revision:
            raise InputError(
                f"{directory}: backup is at schema revision {manifest.schema_revision!r}, the target store at "
                f"{revision!r}; restore with the Ringward version that wrote the backup (then `ringward db upgrade`)"
            )
        occupied = rows.occupied_tables(conn)
        if occupied:
            listing = ", ".join(f"{name} {count}" for name, count in sorted(occupied.items()))
            raise InputError(
                f"{store.label}: target store is not empty ({listing} rows); restore only into an empty store"
            )
        rows.clear_genesis_head(conn)
        for table in rows.state_tables():  # foreign-key order, not the manifest's
            entry = next(t for t in manifest.tables if t.name == table.name)
            source = f"{directory}/{entry.file}"
            decoded = (
                rows.decode_row(table, document, source=where)
                for where, document in _read_jsonl(directory / entry.file, source, checked.digests[entry.file])
            )
            try:
                count = rows.insert_rows(conn, table, decoded)
            except (IntegrityError, DataError) as exc:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
                raise MalformedDocumentError(f"{source}: rows the {table.name} table refuses ({reason})") from exc
            if count != entry.rows:
                raise MalformedDocumentError(f"{source}: {count} rows, expected {entry.rows} (manifest.json)")
            restored[table.name] = count
        rows.reset_sequences(conn, rows.state_tables())
        head = rows.chain_head(conn)
        if (head.last_id, head.last_hash) != (manifest.evidence_head.last_id, manifest.evidence_head.last_hash):
            raise MalformedDocumentError(
                f"{directory}/{rows.HEAD_TABLE}: restored head {head.last_id} {head.last_hash}, expected "
                f"{manifest.evidence_head.last_id} {manifest.evidence_head.last_hash} (manifest.json)"
            )


def _read_jsonl(path: Path, source: str, expected_sha256: str) -> Iterator[tuple[str, Any]]:
    """(``file line N``, parsed object) per line; the file is re-hashed as it is read and must
    still match ``checksums.txt`` at its end (the caller's transaction then rolls back)."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise MissingFileError(f"{source}: cannot open ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as handle:
        number = 0
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            number += 1
            digest.update(line)
            where = f"{source} line {number}"
            if len(line) > MAX_LINE_BYTES:
                raise MalformedDocumentError(f"{where}: longer than {MAX_LINE_BYTES} bytes")
            if not line.endswith(b"\n"):
                raise MalformedDocumentError(f"{where}: truncated (no final newline)")
            yield where, loads_strict(line[:-1], source=where, max_bytes=MAX_LINE_BYTES)
    if digest.hexdigest() != expected_sha256:
        raise DigestMismatchError(
            f"{source}: changed while it was restored (sha256 no longer matches {CHECKSUMS_FILE})"
        )
