"""Following a trust-root rotation on disk: sign a version, verify a chain, replace CURRENT.

CURRENT is replaced only after the whole chain verified (temp file + rename); on any refusal it
is left byte-for-byte as it was. Every decision (accepted or refused) is recorded as evidence.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import InputError, RingwardError, RootForkError, StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.trust.root import MAX_TRUST_ROOT_BYTES, Role, TrustRoot
from ringward.core.trust.rotation import (
    MAX_ROOT_ROTATIONS,
    ChainResult,
    is_chained,
    root_body_sha256,
    sign_root,
    verify_chain,
)
from ringward.operations.common.files import atomic_write, read_capped
from ringward.operations.trust.keys import load_signing_key, load_trust_root, save_trust_root

KIND_ROTATION = "trust-root-rotation"


@dataclass(frozen=True)
class SignOutcome:
    root: TrustRoot
    key_id: str
    #: whether the key is an active root key of this version (else it can only count as a key of
    #: the previous version, e.g. an outgoing root key signing its successor)
    own_root_key: bool


def sign_trust_root_file(path: Path, signing_key: Path, *, signer: str, now: datetime) -> SignOutcome:
    """Add a root signature by ``signing_key`` to the trust root at ``path`` (atomically). Key holders sign
    the same file in turn: the file is locked while read, signed and replaced, so two holders signing at
    once both keep their signature (an unlocked read-modify-write would drop one)."""
    key = load_signing_key(signing_key)
    assert key is not None  # a path was given
    with _exclusive(path):
        root = load_trust_root(path)
        if not is_chained(root):
            raise InputError(
                f"{path}: pins no root-role key; add one first (trust add-key --key root=PUBLIC_KEY) so the "
                "signed trust root can sign its successor"
            )
        signed = sign_root(root, key, signer=signer)
        save_trust_root(path, signed, overwrite=True)
    key_id = signed.signatures[-1].key_id
    return SignOutcome(signed, key_id, key_id in root.trusted_keys(Role.ROOT, now))


def _candidate_files(paths: list[Path]) -> tuple[list[Path], bool]:
    """The files named by ``paths`` (a directory contributes its ``*.json`` files); the flag says
    whether a directory was given (older versions in it are history and are skipped)."""
    files: list[Path] = []
    from_directory = False
    for path in paths:
        if path.is_dir():
            from_directory = True
            files.extend(sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{path}: file not found")
    if not files:
        raise InputError(f"{', '.join(str(p) for p in paths)}: no trust-root files (*.json) found")
    if len(files) > MAX_ROOT_ROTATIONS + 1:
        raise InputError(f"{len(files)} trust-root files supplied, at most {MAX_ROOT_ROTATIONS} are followed at once")
    return files, from_directory


def plan_chain(current: TrustRoot, paths: list[Path]) -> list[TrustRoot]:
    """Parse every candidate and order them by version.

    Explicitly named files all take part (an older one is a rollback and refused); in a
    directory, versions older than CURRENT are history and skipped, and CURRENT's own version
    must have CURRENT's body. Two different bodies for one version are a fork.
    """
    files, from_directory = _candidate_files(paths)
    by_version: dict[int, tuple[TrustRoot, Path]] = {}
    current_digest = root_body_sha256(current)
    for file in files:
        root = load_trust_root(file)
        if from_directory and root.version < current.version:
            continue
        if from_directory and root.version == current.version:
            if root_body_sha256(root) != current_digest:
                raise RootForkError(f"{file}: trust root v{root.version} differs from the current v{current.version}"
                                    " with the same version; refusing a forked chain")
            continue
        seen = by_version.get(root.version)
        if seen is not None:
            if root_body_sha256(seen[0]) != root_body_sha256(root):
                raise RootForkError(f"{file} and {seen[1]}: two different trust roots claim v{root.version}; "
                                    "refusing a forked chain")
            continue
        by_version[root.version] = (root, file)
    return [by_version[v][0] for v in sorted(by_version)]


@dataclass(frozen=True)
class UpdateOutcome:
    chain: ChainResult
    written: Path


def update_trust_root(current_path: Path, new_paths: list[Path], *, now: datetime, actor: str,
                      record: bool = True, time_overridden: bool = False) -> UpdateOutcome:
    """Verify the chain CURRENT -> NEW... and atomically replace CURRENT with its newest version.

    Raises ``InputError`` (unreadable/invalid files) or a ``TrustRootRotationError`` (refused);
    CURRENT is untouched in both cases. Evidence is recorded for the acceptance and for a refusal,
    with the time verified for (``time_overridden``: an operator's ``--at``, which can make an
    expired version or key acceptable, so it must be visible afterwards).
    """
    when = {"verified_at": now.isoformat(), "time_overridden": time_overridden}
    with _exclusive(current_path):
        current = load_trust_root(current_path)
        loaded = _file_digest(current_path)
        try:
            chain = verify_chain(current, plan_chain(current, new_paths), now)
        except RingwardError as exc:
            if record and not isinstance(exc, InputError):
                _record({**_refusal_payload(current, current_path, new_paths, exc), **when}, actor, "refused")
            raise
        if _file_digest(current_path) != loaded:
            # a writer that does not take the lock (trust add-key) changed CURRENT meanwhile
            raise StoreConflictError(f"{current_path}: changed while the new trust root was verified; run again")
        final = chain.final
        # the evidence first: a store that cannot record the acceptance leaves CURRENT untouched (never a
        # trust root replaced without its record); a failed write after it is reported and re-run
        if record:
            _record({**_accept_payload(chain, current_path), **when}, actor, "accepted")
        atomic_write(current_path, dumps_document(final.model_dump(mode="json", exclude_none=True)), overwrite=True)
    return UpdateOutcome(chain, current_path)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(read_capped(path, MAX_TRUST_ROOT_BYTES, source=str(path))).hexdigest()


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on CURRENT's inode for the whole update, so two concurrent updates
    cannot interleave (A verified v3, B wrote v4, A writes v3 back: a rollback on disk). The lock
    is re-taken if CURRENT was replaced while waiting, since a rename swaps the inode."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the compare-before-rename check still catches the race
        yield
        return
    fd = _lock_inode(path, fcntl.flock, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _lock_inode(path: Path, flock: Callable[[int, int], None], mode: int) -> int | None:
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None  # load_trust_root reports the unreadable file as bad input
        try:
            flock(fd, mode)
        except OSError:
            return fd  # this filesystem cannot lock: the compare-before-rename check still guards
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            return fd
        os.close(fd)


def chain_summary(chain: ChainResult) -> dict[str, Any]:
    return {
        "previous_version": chain.previous_version,
        "version": chain.final.version,
        "body_sha256": root_body_sha256(chain.final),
        "expires": chain.final.expires.isoformat() if chain.final.expires else None,
        "steps": [
            {"version": s.version, "body_sha256": s.body_sha256,
             "signed_by_previous": list(s.signed_by_previous), "previous_threshold": s.previous_threshold,
             "signed_by_new": list(s.signed_by_new), "new_threshold": s.new_threshold}
            for s in chain.steps
        ],
    }


def _accept_payload(chain: ChainResult, current_path: Path) -> dict[str, Any]:
    return {"decision": "accepted", "trust_root": str(current_path), **chain_summary(chain)}


def _refusal_payload(current: TrustRoot, current_path: Path, new_paths: list[Path],
                     exc: RingwardError) -> dict[str, Any]:
    return {"decision": "refused", "trust_root": str(current_path), "current_version": current.version,
            "candidates": [str(p) for p in new_paths], "reason_code": exc.code, "reason": exc.message}


def _record(payload: dict[str, Any], actor: str, status: str) -> None:
    from ringward.operations.evidence.evidence_ops import append_evidence

    append_evidence([EvidenceDraft(kind=KIND_ROTATION, actor=actor, subject=EvidenceSubject(status=status),
                                   payload=payload)])
