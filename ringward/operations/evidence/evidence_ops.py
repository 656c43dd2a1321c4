"""Evidence operations: verify the chain and its files, checkpoint the head, search, and
import/export the reference system's ``metadata.json``.

Everything here is plain Python over a :class:`~ringward.store.Store`; the CLI calls it in
process and ``tasks/evidence.py`` wraps it for flows.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ringward.core.common.jsonio import dumps_document
from ringward.core.delivery.event import ConnectorEvent, Severity
from ringward.core.errors import EvidenceIntegrityError, EvidenceNotFoundError, InputError, UnsafePathError
from ringward.core.evidence.checkpoint import (
    Checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from ringward.core.evidence.files import CHECKSUMS_NAME, ObservedFile, check_bundle
from ringward.core.evidence.interop import (
    METADATA_SCHEMA,
    metadata_import_key,
    parse_metadata_document,
    record_to_metadata,
)
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import (
    ChainBreak,
    ChainReport,
    ChainVerifier,
    EvidenceArtifact,
    EvidenceDraft,
    EvidenceRecord,
    artifact_triples,
)
from ringward.operations.common.files import atomic_write, read_capped
from ringward.settings import evidence_root
from ringward.store import Store
from ringward.store.evidence.repo import REST_OFFSET, SUBJECT_SLICE

CHUNK = 1024 * 1024
#: kind of the record a verification run may leave behind (``--record`` / the daily flow)
VERIFICATION_KIND = "evidence-chain-verification"
#: largest single artifact the API serves from memory (it is hashed before a byte is sent)
MAX_SERVED_ARTIFACT_BYTES = 256 * 1024 * 1024
MAX_IMPORT_BYTES = 256 * 1024 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- files of a bundle ---------------------------------------------------------------------------


def sha256_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a regular file, refusing links (``O_NOFOLLOW``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnsafePathError(f"{path.name}: not a regular file")
        digest = hashlib.sha256()
        size = 0
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def resolve_bundle_dir(root: Path, bundle_dir: str) -> Path:
    """The bundle directory, which must lie inside ``root`` with no link on the way (EB1).

    Raises:
        UnsafePathError: the path escapes the root or passes through a link.
        EvidenceNotFoundError: the directory does not exist.
    """
    base = root.resolve()
    candidate = base / bundle_dir
    resolved = candidate.resolve()
    if resolved != candidate:
        raise UnsafePathError(f"bundle {bundle_dir!r}: resolves to {resolved}, expected {candidate} (no links)")
    if not resolved.is_relative_to(base):
        raise UnsafePathError(f"bundle {bundle_dir!r}: outside the evidence root {base}")
    if not resolved.is_dir():
        raise EvidenceNotFoundError(f"bundle {bundle_dir!r}: directory not found under {base}")
    return resolved


def observe_bundle(directory: Path) -> tuple[bytes | None, dict[str, ObservedFile], list[str]]:
    """(checksums.txt bytes or None, regular files hashed, links / special files) of a bundle."""
    checksums: bytes | None = None
    observed: dict[str, ObservedFile] = {}
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = base / name
            rel = full.relative_to(directory).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                links.append(rel)
                continue
            if rel == CHECKSUMS_NAME:
                checksums = read_capped(full, 4 * 1024 * 1024, source=f"{directory.name}/{CHECKSUMS_NAME}")
                continue
            digest, size = sha256_file(full)
            observed[rel] = ObservedFile(sha256=digest, size_bytes=size)
    return checksums, observed, links


def check_record_bundle(
    root: Path, record_id: int, bundle_dir: str, artifacts: list[EvidenceArtifact]
) -> ChainBreak | None:
    """EB1-EB4 for one record; a break describes the first problem."""
    try:
        directory = resolve_bundle_dir(root, bundle_dir)
    except (UnsafePathError, EvidenceNotFoundError) as exc:
        return ChainBreak(
            record_id=record_id,
            check="bundle directory",
            expected=f"{bundle_dir} inside {root}",
            found=exc.message,
        )
    checksums, observed, links = observe_bundle(directory)
    return check_bundle(record_id=record_id, artifacts=artifacts, checksums=checksums, observed=observed, links=links)


# --- verification --------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> Checkpoint:
    return parse_checkpoint(read_capped(path, 64 * 1024, source=str(path)), source=str(path))


#: below this many records one process verifies faster than starting workers
PARALLEL_MIN_RECORDS = 200_000
MAX_JOBS = 8


def _walk(
    rows: Iterator[tuple[Any, ...]],
    verifier: ChainVerifier,
    *,
    root: Path,
    check_files: bool,
    seed_from_first_row: bool = False,
) -> tuple[ChainBreak | None, int, int, tuple[int, str, str] | None]:
    """Feed rows to ``verifier`` (and check bundles); returns (break, bundles, files, the first
    row's (id, previous_hash, created_at)). With ``seed_from_first_row`` the link into the first row is taken on trust
    (a parallel segment: the caller checks the segment boundary)."""
    bundles = files = 0
    first: tuple[int, str, str] | None = None
    for row in rows:
        rest = row[REST_OFFSET:]
        payload_text, payload_sha256, bundle_dir, artifacts_text, previous_hash, stored_hash = rest
        if first is None:
            first = (row[0], previous_hash, row[3])
            if seed_from_first_row:
                verifier.last_hash = previous_hash
        artifacts = json.loads(artifacts_text) if artifacts_text != "[]" else []
        brk = verifier.feed_values(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[SUBJECT_SLICE],
            payload_text,
            payload_sha256,
            bundle_dir,
            artifact_triples(artifacts),
            previous_hash,
            stored_hash,
        )
        if brk is not None:
            return brk, bundles, files, first
        if check_files and bundle_dir is not None:
            bundles += 1
            files += len(artifacts)
            brk = check_record_bundle(root, row[0], bundle_dir, [EvidenceArtifact.model_validate(a) for a in artifacts])
            if brk is not None:
                verifier.first_break = brk
                return brk, bundles, files, first
    return None, bundles, files, first


def verify_segment(url: str, start_id: int, end_id: int, root: str, check_files: bool) -> dict[str, Any]:
    """Verify records ``start_id..end_id`` in a worker process (see :func:`verify_evidence`)."""
    from ringward.store import open_store

    verifier = ChainVerifier()
    verifier.last_id = start_id - 1
    with open_store(url) as store, store.chain_segment(start_id, end_id) as rows:
        brk, bundles, files, first = _walk(
            rows, verifier, root=Path(root), check_files=check_files, seed_from_first_row=start_id > 1
        )
    if brk is None and verifier.last_id != end_id:
        brk = ChainBreak(
            record_id=verifier.last_id + 1,
            check="record id",
            expected=str(verifier.last_id + 1),
            found="missing (chain ends early)",
        )
    return {
        "start": start_id,
        "count": verifier.count,
        "bundles": bundles,
        "files": files,
        "first_id": None if first is None else first[0],
        "first_previous": None if first is None else first[1],
        "first_created": None if first is None else first[2],
        "last_id": verifier.last_id,
        "last_hash": verifier.last_hash,
        "last_created": verifier.last_created_at,
        "break": None if brk is None else brk.model_dump(),
    }


def _verify_parallel(
    store: Store, head_id: int, jobs: int, root: Path, check_files: bool
) -> tuple[ChainVerifier, ChainBreak | None, int, int]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-head_id // jobs)
    bounds = [(start, min(start + size - 1, head_id)) for start in range(1, head_id + 1, size)]
    url = store.engine.url.render_as_string(hide_password=False)
    # spawn, not fork: callers (Prefect tasks, the API) may run threads
    with ProcessPoolExecutor(max_workers=len(bounds), mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(
            pool.map(verify_segment, *zip(*[(url, a, b, str(root), check_files) for a, b in bounds], strict=True))
        )
    merged = ChainVerifier()
    bundles = files = 0
    for part in parts:
        boundary: ChainBreak | None = None
        # the segment boundary: the link into this segment's first record, then time order
        if part["first_id"] is not None and part["first_id"] != merged.last_id + 1:
            boundary = ChainBreak(
                record_id=part["first_id"],
                check="record id",
                expected=str(merged.last_id + 1),
                found=str(part["first_id"]),
            )
        elif part["first_previous"] is not None and part["first_previous"] != merged.last_hash:
            boundary = ChainBreak(
                record_id=part["first_id"],
                check="previous_hash",
                expected=merged.last_hash,
                found=part["first_previous"],
            )
        elif part["first_created"] is not None and part["first_created"] < merged.last_created_at:
            boundary = ChainBreak(
                record_id=part["first_id"],
                check="created_at order",
                expected=f">= {merged.last_created_at}",
                found=part["first_created"],
            )
        if boundary is not None:
            return merged, boundary, bundles, files
        bundles += part["bundles"]
        files += part["files"]
        merged.count += part["count"]
        if part["break"] is not None:
            return merged, ChainBreak.model_validate(part["break"]), bundles, files
        merged.last_id, merged.last_hash, merged.last_created_at = (
            part["last_id"],
            part["last_hash"],
            part["last_created"],
        )
    return merged, None, bundles, files


def verify_evidence(
    store: Store,
    *,
    root: Path | None = None,
    check_files: bool = True,
    checkpoint: Checkpoint | None = None,
    checkpoint_source: str = "checkpoint",
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    jobs: int | None = 1,
) -> ChainReport:
    """Re-walk the chain (and, with ``check_files``, every bundle) and report the first break.

    With a ``checkpoint`` its signature must verify under ``trusted_keys`` and the chain must
    still hold the checkpointed record with the checkpointed hash. ``jobs`` > 1 splits the chain
    into that many segments verified by worker processes (every record's hash depends only on
    its own row, so segments are independent; the boundaries are checked here); ``None`` picks
    one process per CPU (up to :data:`MAX_JOBS`) for chains of :data:`PARALLEL_MIN_RECORDS` or
    more (see :func:`_auto_jobs`).
    """
    started = time.monotonic()
    base = root or evidence_root()
    checkpoint_key: str | None = None
    if checkpoint is not None:
        checkpoint_key = verify_checkpoint_signature(checkpoint, trusted_keys or {}, source=checkpoint_source)
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise InputError(f"--jobs: expected 1..{MAX_JOBS}, found {jobs}")
    head = store.head()
    if jobs is None:
        jobs = _auto_jobs(store, head.last_id)
    if jobs > 1 and head.last_id >= jobs:
        verifier, first_break, bundles, files = _verify_parallel(store, head.last_id, jobs, base, check_files)
    else:
        verifier = ChainVerifier()
        with store.chain_snapshot() as (head, rows):
            first_break, bundles, files, _ = _walk(rows, verifier, root=base, check_files=check_files)
    if first_break is None:
        first_break = verifier.finish(head_id=head.last_id, head_hash=head.last_hash)
    if first_break is None and checkpoint is not None and checkpoint.head_id > 0:
        first_break = _check_against_checkpoint(store, checkpoint, verifier.last_id)
    return ChainReport(
        ok=first_break is None,
        records_checked=verifier.count,
        bundles_checked=bundles,
        files_checked=files,
        head_id=head.last_id,
        head_hash=head.last_hash,
        first_break=first_break,
        checkpoint_head_id=None if checkpoint is None else checkpoint.head_id,
        checkpoint_key_id=checkpoint_key,
        database=store.label,
        evidence_root=str(base) if check_files else None,
        elapsed_s=round(time.monotonic() - started, 3),
    )


def _auto_jobs(store: Store, records: int) -> int:
    """One worker per CPU for long chains -- except PostgreSQL on a small host, where the server
    needs those CPUs itself (measured: 2 workers on 2 cores were slower than one)."""
    cpus = min(os.cpu_count() or 1, MAX_JOBS)
    if records < PARALLEL_MIN_RECORDS or (store.dialect == "postgresql" and cpus < 4):
        return 1
    return cpus


def _check_against_checkpoint(store: Store, checkpoint: Checkpoint, last_id: int) -> ChainBreak | None:
    """The verified chain must still hold the checkpointed record with the checkpointed hash."""
    if checkpoint.head_id > last_id:
        return ChainBreak(
            record_id=checkpoint.head_id,
            check="checkpoint head",
            expected=f"record {checkpoint.head_id} present",
            found=f"chain ends at record {last_id}",
        )
    stored = store.get_evidence(checkpoint.head_id).record_hash
    if stored != checkpoint.head_hash:
        return ChainBreak(
            record_id=checkpoint.head_id, check="checkpoint head hash", expected=checkpoint.head_hash, found=stored
        )
    return None


def verification_draft(report: ChainReport, *, actor: str, flow_run_id: str | None = None) -> EvidenceDraft:
    """The evidence record of one verification run (same payload from the CLI and the flow)."""
    from ringward.core.evidence.records import EvidenceSubject

    return EvidenceDraft(
        kind=VERIFICATION_KIND,
        actor=actor,
        flow_run_id=flow_run_id,
        subject=EvidenceSubject(status="verified" if report.ok else "broken", success=report.ok),
        payload=report.payload(),
    )


def record_verification(
    store: Store,
    report: ChainReport,
    *,
    actor: str,
    flow_run_id: str | None = None,
    now: datetime | None = None,
) -> EvidenceRecord:
    return store.append(verification_draft(report, actor=actor, flow_run_id=flow_run_id), now=now)


def create_checkpoint(
    store: Store,
    *,
    private_key: Ed25519PrivateKey,
    actor: str,
    output: Path,
    now: datetime | None = None,
    overwrite: bool = False,
    verified: ChainReport | None = None,
) -> Checkpoint:
    """Sign a VERIFIED head and write the checkpoint file (refuses to overwrite by default).

    A checkpoint vouches for everything up to its head, so only a head whose chain was just walked
    is signed: ``verified`` (a report the caller made) or, without one, a walk of the chain links
    made here. Records appended after that walk are not covered (the next checkpoint covers them).

    Raises:
        EvidenceIntegrityError: the chain is broken, or the verified head record no longer has the
            hash it had when it was verified.
    """
    report = verified if verified is not None else verify_evidence(store, check_files=False)
    if not report.ok:
        raise EvidenceIntegrityError(f"refusing to sign a checkpoint of a broken chain: {report.summary()}")
    if report.head_id > 0:
        current = store.get_evidence(report.head_id)
        if current.record_hash != report.head_hash:
            raise EvidenceIntegrityError(
                f"record {report.head_id}: hash {current.record_hash[:16]}… since verification, "
                f"expected {report.head_hash[:16]}…; refusing to sign"
            )
    checkpoint = sign_checkpoint(
        head_id=report.head_id,
        head_hash=report.head_hash,
        record_count=report.head_id,
        created_by=actor,
        now=now or _utcnow(),
        private_key=private_key,
        database=store.label,
    )
    atomic_write(output, dumps_document(checkpoint.to_document()), overwrite=overwrite)
    return checkpoint


CHECKPOINT_EVENT_TYPE = "ringward.evidence.checkpoint"


def checkpoint_event(checkpoint: Checkpoint) -> ConnectorEvent:
    """The connector event that carries a signed checkpoint to a SIEM.

    A checkpoint kept only next to the database proves nothing against whoever controls both; a
    copy in an append-only system someone else runs (the SOC's SIEM) does. The event id is derived
    from the head, so re-sending the same checkpoint is de-duplicated by the delivery log.
    """
    signature = checkpoint.signature
    key = signature.key_id[:16] if signature else "unsigned"
    return ConnectorEvent(
        event_id=f"checkpoint-{checkpoint.head_id}-{checkpoint.head_hash[:16]}",
        event_type=CHECKPOINT_EVENT_TYPE,
        created_at=datetime.fromisoformat(checkpoint.created_at.replace("Z", "+00:00")),
        severity=Severity.INFO,
        title=f"Evidence chain checkpoint at record {checkpoint.head_id}",
        summary=(
            f"Ringward evidence chain head {checkpoint.head_id} ({checkpoint.record_count} records) "
            f"hash {checkpoint.head_hash}, signed by key {key} for {checkpoint.created_by}. Keep this "
            "event: `ringward evidence verify --checkpoint` proves the chain still extends it."
        ),
        actor=checkpoint.created_by,
        attributes={"checkpoint": checkpoint.to_document()},
    )


# --- search and detail -----------------------------------------------------------------------------


def search_evidence(store: Store, query: EvidenceQuery) -> dict[str, Any]:
    return store.search_evidence(query).to_document()


# --- reference interop: metadata.json ---------------------------------------------------------------


def export_metadata_json(
    store: Store, output: Path, *, query: EvidenceQuery | None = None, overwrite: bool = False
) -> int:
    """Write a reference ``metadata.json`` (``{"items": [...]}``, one item per session_id,
    newest record wins, sorted by session_id). Returns the item count."""
    items: dict[str, dict[str, Any]] = {}
    base = query or EvidenceQuery(limit=500, with_total=False)
    before: int | None = None
    while True:
        page = store.search_evidence(base.model_copy(update={"before_id": before, "offset": 0, "with_total": False}))
        for record in page.items:
            item = record_to_metadata(record)
            items.setdefault(item["session_id"], item)
        if page.next_before_id is None:
            break
        before = page.next_before_id
    document = {"items": [items[key] for key in sorted(items)]}
    atomic_write(output, dumps_document(document), overwrite=overwrite)
    return len(items)


def import_metadata_json(store: Store, source: Path, *, actor: str, now: datetime | None = None) -> dict[str, Any]:
    """Append one evidence record per item of a reference ``metadata.json``; an item whose
    exact payload is already recorded under the same kind is skipped (idempotent re-import).

    "Already recorded" is decided by the store inside each append transaction, under the chain
    lock and backed by the unique import key (:func:`metadata_import_key`), so any number of
    concurrent or repeated imports of a file leave each item in the chain exactly once.
    """
    data = read_capped(source, MAX_IMPORT_BYTES, source=str(source))
    drafts = parse_metadata_document(data, source=str(source), actor=actor)
    results = store.append_absent(((metadata_import_key(d), d) for d in drafts), now=now)
    imported = [record.id for record in results if record is not None]
    return {
        "schema_version": METADATA_SCHEMA,
        "imported": len(imported),
        "skipped": len(results) - len(imported),
        "record_ids": imported,
    }


def get_evidence(store: Store, record_id: int) -> EvidenceRecord:
    if record_id < 1:
        raise InputError(f"record id: expected a positive integer, found {record_id}")
    return store.get_evidence(record_id)


# --- checkpoint trust ------------------------------------------------------------------------------

#: trust-root role whose keys sign checkpoints unless told otherwise
DEFAULT_CHECKPOINT_ROLE = "release"


def checkpoint_trusted_keys(
    *,
    trust_root: Path | None,
    public_keys: list[Path] | None = None,
    role: str = DEFAULT_CHECKPOINT_ROLE,
    now: datetime | None = None,
) -> dict[str, Ed25519PublicKey]:
    """Keys a checkpoint may be signed with: active, in-window keys of ``role`` in the pinned
    trust root, and/or explicitly pinned public key files. Never the key the checkpoint names."""
    from ringward.core.trust.root import Role
    from ringward.operations.trust.keys import load_public_key_file, load_trust_root

    keys: dict[str, Ed25519PublicKey] = {}
    if trust_root is not None:
        try:
            wanted = Role(role)
        except ValueError:
            raise InputError(f"--role: expected one of {', '.join(r.value for r in Role)}, found {role!r}") from None
        root = load_trust_root(trust_root)
        keys.update({key_id: key.key for key_id, key in root.trusted_keys(wanted, now or _utcnow()).items()})
    for path in public_keys or []:
        public = load_public_key_file(path)
        keys[public.key_id] = public.key
    if not keys:
        if trust_root is not None:
            raise InputError(f"--trust-root: {trust_root} has no active {role} key to check a checkpoint with")
        raise InputError("--checkpoint needs --trust-root or --public-key (the keys allowed to sign it)")
    return keys


def check_signing_key_trusted(
    private_key: Ed25519PrivateKey,
    *,
    trust_root: Path,
    role: str = DEFAULT_CHECKPOINT_ROLE,
    now: datetime | None = None,
) -> None:
    """Refuse to sign a checkpoint that a verifier pinned to ``trust_root`` would reject."""
    from ringward.core.errors import UntrustedKeyError
    from ringward.core.evidence.checkpoint import key_id_of

    keys = checkpoint_trusted_keys(trust_root=trust_root, role=role, now=now)
    key_id = key_id_of(private_key.public_key())
    if key_id not in keys:
        raise UntrustedKeyError(
            f"--signing-key: key {key_id[:16]}… is not an active {role} key of {trust_root}; "
            "a verifier pinned to that trust root would reject the checkpoint"
        )


# --- governed artifact access (the API's download routes) -----------------------------------------


def artifact_root() -> Path:
    """``$RINGWARD_EVIDENCE_ARTIFACT_ROOT`` or the evidence root: the only place files are served from."""
    value = os.environ.get("RINGWARD_EVIDENCE_ARTIFACT_ROOT")
    return Path(value) if value else evidence_root()


class ArtifactProblem(Exception):
    """Why one artifact cannot be served: ``status`` is missing | unsafe | mismatch."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _artifact_path(root: Path, record: EvidenceRecord, name: str) -> Path:
    if record.bundle_dir is None:
        raise ArtifactProblem("missing", f"evidence record {record.id} has no bundle")
    try:
        directory = resolve_bundle_dir(root, record.bundle_dir)
    except UnsafePathError as exc:
        raise ArtifactProblem("unsafe", exc.message) from exc
    except EvidenceNotFoundError as exc:
        raise ArtifactProblem("missing", exc.message) from exc
    candidate = directory / name
    # after resolving links the file must be exactly where the record says, inside the bundle
    resolved = candidate.resolve()
    if resolved != candidate or not resolved.is_relative_to(directory):
        raise ArtifactProblem("unsafe", f"artifact {name!r} of record {record.id} escapes its bundle directory")
    return candidate


def _read_regular(path: Path, cap: int, name: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise ArtifactProblem("missing", f"artifact {name!r} is missing from its bundle") from exc
    except OSError as exc:
        raise ArtifactProblem("unsafe", f"artifact {name!r} cannot be opened safely ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactProblem("unsafe", f"artifact {name!r} is not a regular file")
        if info.st_size > cap:
            raise ArtifactProblem("unsafe", f"artifact {name!r} is {info.st_size} bytes, larger than {cap}")
        return handle.read(cap + 1)


def read_verified_artifact(
    root: Path, record: EvidenceRecord, name: str, *, cap: int = MAX_SERVED_ARTIFACT_BYTES
) -> bytes:
    """The bytes of one listed artifact, re-hashed against the record before anything is served.

    ``checksums.txt`` is served too, after checking it lists exactly the record's artifacts.

    Raises:
        EvidenceNotFoundError: ``name`` is not an artifact of the record.
        ArtifactProblem: the file is missing, unsafe (link, escape, special) or does not match.
    """
    from ringward.core.evidence.files import check_bundle

    if name == CHECKSUMS_NAME:
        data = _read_regular(_artifact_path(root, record, name), cap, name)
        brk = check_bundle(
            record_id=record.id,
            artifacts=record.artifacts,
            checksums=data,
            observed={a.name: ObservedFile(a.sha256, a.size_bytes) for a in record.artifacts},
        )
        if brk is not None:
            raise ArtifactProblem("mismatch", brk.message())
        return data
    listed = {a.name: a for a in record.artifacts}
    artifact = listed.get(name)
    if artifact is None:
        raise EvidenceNotFoundError(f"{name!r} is not an artifact of evidence record {record.id}")
    data = _read_regular(_artifact_path(root, record, name), cap, name)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != artifact.size_bytes or digest != artifact.sha256:
        raise ArtifactProblem(
            "mismatch",
            f"artifact {name!r} of record {record.id}: expected sha256 {artifact.sha256} "
            f"({artifact.size_bytes} bytes), found {digest} ({len(data)} bytes)",
        )
    return data


def artifact_listing(root: Path, record: EvidenceRecord, *, base_url: str = "") -> dict[str, Any]:
    """Every artifact of a record with its integrity status, plus the bundle's readiness."""
    import mimetypes

    entries: list[dict[str, Any]] = []
    statuses: list[str] = []
    for artifact in record.artifacts:
        try:
            read_verified_artifact(root, record, artifact.name)
            status, problem = "verified", None
        except ArtifactProblem as exc:
            status, problem = exc.status, exc.message
        statuses.append(status)
        entries.append(
            {
                "artifact": artifact.name,
                "media_type": mimetypes.guess_type(artifact.name)[0] or "application/octet-stream",
                "bytes": artifact.size_bytes,
                "sha256": artifact.sha256,
                "status": status,
                "problem": problem,
                "download_url": f"{base_url}/evidence/{record.id}/artifacts/{artifact.name}",
            }
        )
    bundle_problem: str | None = None
    if record.bundle_dir is not None:
        brk = check_record_bundle(root, record.id, record.bundle_dir, list(record.artifacts))
        bundle_problem = None if brk is None else brk.message()
    if not record.artifacts and record.bundle_dir is None:
        integrity = "none"
    elif any(s in ("mismatch", "unsafe") for s in statuses) or (bundle_problem and "missing" not in statuses):
        integrity = "failed"
    elif "missing" in statuses:
        integrity = "incomplete"
    else:
        integrity = "verified"
    return {
        "schema_version": "ringward.evidence.artifacts.v1",
        "evidence_id": record.id,
        "metadata_kind": record.kind,
        "artifact_root_configured": root.is_dir(),
        "artifact_count": len(entries),
        "artifacts": entries,
        "bundle_download_url": f"{base_url}/evidence/{record.id}/artifact-bundle" if entries else None,
        "integrity": integrity,
        "integrity_problem": bundle_problem,
        "download_readiness": "ready" if integrity == "verified" else "blocked",
    }


def build_artifact_bundle(root: Path, record: EvidenceRecord) -> bytes:
    """A zip of every artifact plus checksums.txt, each verified first (fixed timestamps)."""
    import io
    import zipfile

    if not record.artifacts:
        raise EvidenceNotFoundError(f"evidence record {record.id} has no artifacts")
    members = [(a.name, read_verified_artifact(root, record, a.name)) for a in record.artifacts]
    members.append((CHECKSUMS_NAME, read_verified_artifact(root, record, CHECKSUMS_NAME)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(members):
            info = zipfile.ZipInfo(f"evidence-{record.id}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def append_evidence(drafts: list[EvidenceDraft], *, flow_run_id: str | None = None) -> list[EvidenceRecord]:
    """Append drafts in one batch, stamping ``flow_run_id`` on those without one (flows' path)."""
    from ringward.store import open_store

    stamped = [
        d if d.flow_run_id or not flow_run_id else d.model_copy(update={"flow_run_id": flow_run_id}) for d in drafts
    ]
    with open_store() as store:
        return store.append_many(stamped)
