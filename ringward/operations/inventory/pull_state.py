"""What a scheduled inventory pull remembers between runs, per source.

- The **cursor** (versioned key/value state, namespace ``inventory-pull``, key ``<provider>/<source>``):
  the high-water mark of the vendor's inventory clock seen so far (Jamf ``general.reportDate``, Graph
  ``lastSyncDateTime``, Fleet ``detail_updated_at``), when the last full read happened, which
  snapshot holds the fleet as last read, and the ingestion it became. It is written by
  compare-and-set together with the pull's evidence record in one transaction: of two pulls of one
  source started from the same state, one keeps its cursor, the other is told so and changes nothing.
- The **snapshot**: the fleet as last read, in the vendor's own document shape, in
  ``<home>/inventory-pull/snapshots/`` (content-addressed file name, digest in the cursor, checked
  before use). An incremental read fetches only the hosts whose clock moved and replaces them in the
  snapshot by vendor id, so ingestion always sees the whole fleet; deleted devices leave it at the
  next full read (``--full``, or every ``full_every``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.errors import StoreConflictError
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord

if TYPE_CHECKING:
    from ringward.store import Store
    from ringward.store.state_repo import StateEntry

PULL_NAMESPACE = "inventory-pull"


def state_key(provider: str, source: str) -> str:
    return f"{provider}/{source}"


def pull_root() -> Path:
    """``<home>/inventory-pull``: snapshots, observations of pulls, spool of runs in progress."""
    from ringward.settings import ringward_home

    return ringward_home() / "inventory-pull"


def snapshots_dir() -> Path:
    return pull_root() / "snapshots"


@dataclass(frozen=True)
class Cursor:
    """The stored state of one source (absent: never pulled)."""

    version: int
    value: dict[str, Any]

    @property
    def cursor(self) -> str | None:
        found = self.value.get("cursor")
        return found if isinstance(found, str) else None

    @property
    def last_full_at(self) -> str | None:
        found = self.value.get("last_full_at")
        return found if isinstance(found, str) else None

    @property
    def snapshot(self) -> dict[str, Any] | None:
        found = self.value.get("snapshot")
        return found if isinstance(found, dict) else None


def read_cursor(store: Store, provider: str, source: str) -> Cursor | None:
    entry: StateEntry | None = store.state.get(PULL_NAMESPACE, state_key(provider, source))
    if entry is None:
        return None
    return Cursor(entry.version, entry.value if isinstance(entry.value, dict) else {})


def snapshot_path(snapshot: dict[str, Any]) -> Path | None:
    name = snapshot.get("file")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        return None
    return snapshots_dir() / name


def snapshot_problem(snapshot: dict[str, Any] | None) -> str | None:
    """Why the stored snapshot cannot be used (None: usable)."""
    if snapshot is None:
        return "no snapshot of the last read"
    path = snapshot_path(snapshot)
    if path is None:
        return "the stored snapshot reference is invalid"
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        return f"snapshot {path.name} unreadable ({exc.strerror})"
    if digest != snapshot.get("sha256"):
        return f"snapshot {path.name} does not match its recorded digest"
    return None


def read_snapshot(snapshot: dict[str, Any], *, cap: int) -> bytes:
    """The snapshot's bytes, checked against its digest.

    Raises:
        StoreConflictError: missing, altered or larger than ``cap`` (re-run with ``--full``).
    """
    path = snapshot_path(snapshot)
    problem = snapshot_problem(snapshot)
    if problem is not None or path is None:
        raise StoreConflictError(f"inventory pull: {problem}; re-run with --full")
    if path.stat().st_size > cap:
        raise StoreConflictError(f"inventory pull: snapshot {path.name} is larger than {cap} bytes; re-run with --full")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != snapshot.get("sha256"):
        raise StoreConflictError(f"inventory pull: snapshot {path.name} changed while read; re-run with --full")
    return data


def write_snapshot(provider: str, source: str, data: bytes) -> dict[str, Any]:
    """Store ``data`` as a content-addressed snapshot (kept if already there); its reference."""
    from ringward.operations.common.files import atomic_write

    digest = hashlib.sha256(data).hexdigest()
    name = f"{provider}-{source}-{digest[:24]}.json"
    directory = snapshots_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest):
        atomic_write(path, data, mode=0o600)
    return {"file": name, "sha256": digest, "bytes": len(data)}


def remove_snapshot(snapshot: dict[str, Any] | None, *, keep: dict[str, Any] | None = None) -> None:
    """Delete a snapshot file no state refers to any more (never the one ``keep`` names)."""
    if snapshot is None or (keep is not None and snapshot.get("file") == keep.get("file")):
        return
    path = snapshot_path(snapshot)
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def record(store: Store, provider: str, source: str, value: dict[str, Any], *, expected_version: int,
           drafts: Sequence[EvidenceDraft], actor: str, now: datetime) -> list[EvidenceRecord]:
    """Set the source's state to ``value`` if its version is still ``expected_version`` (0: absent) and
    append ``drafts``, all or nothing.

    Raises:
        StoreConflictError: another pull of the source recorded its state first.
    """
    from sqlalchemy.exc import IntegrityError

    from ringward.store.evidence.repo import append_locked
    from ringward.store.state_repo import compare_and_set

    when = now.astimezone(UTC)
    key = state_key(provider, source)
    try:
        with store.writing() as conn:
            compare_and_set(conn, PULL_NAMESPACE, key, value, expected_version, actor=actor, when=when)
            return append_locked(conn, list(drafts), when) if drafts else []
    except StoreConflictError:
        raise StoreConflictError(f"inventory pull {key}: another pull of this source recorded its cursor first; "
                                 "this run's cursor is not kept (its inventory was ingested: ingestion is "
                                 "content-addressed); the next run continues from the recorded one") from None
    except IntegrityError as exc:
        raise StoreConflictError(f"inventory pull {key}: the first cursor was recorded concurrently by another "
                                 "pull; the next run continues from it") from exc
