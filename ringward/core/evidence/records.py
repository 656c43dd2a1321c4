"""Evidence records: what every deciding operation leaves behind.

A record is appended to a hash chain. Its ``record_hash`` is the SHA-256 of the compact JSON
array (UTF-8, no spaces, the exact field order below; :func:`link_preimage`)::

    ["ringward.evidence-record.v1", id, kind, actor, created_at, flow_run_id,
     <the 12 subject fields in SUBJECT_FIELDS order>, payload_sha256, bundle_dir,
     [[artifact name, sha256, size_bytes], ...], previous_hash]

``created_at`` is written as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the payload is covered through
``payload_sha256`` (SHA-256 of its canonical JSON, :func:`ringward.core.jsonio.dumps_canonical`).
An array in a fixed order is as unambiguous as a sorted object and several times cheaper to
encode, which keeps verifying a million records well inside the 30-second budget. The core
defines the shape and the hashing; ``ringward.store`` persists it.

Invariants of a chain (checked by :class:`ChainVerifier`):

1. Record ids are 1, 2, 3, ... without gaps, in append order.
2. The first record's ``previous_hash`` is :data:`GENESIS_HASH`; every other record's
   ``previous_hash`` is its predecessor's ``record_hash``.
3. ``payload_sha256`` is the SHA-256 of the canonical payload bytes, and ``record_hash`` is
   :func:`link_hash` of the record's fields.
4. ``created_at`` never decreases along the chain (the store assigns it under the append lock).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ringward.core.common import paths
from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import UnsafePathError

EVIDENCE_RECORD_SCHEMA = "ringward.evidence-record.v1"

#: ``previous_hash`` of the first record of a chain
GENESIS_HASH = "0" * 64

#: longest payload (canonical JSON bytes) one record may carry; bundles hold the big files
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

#: evidence kinds: the reference's ``metadata_kind`` names and Ringward's own (lowercase, dashes)
KIND_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

#: one shared encoder: building a JSONEncoder per call costs more than the encoding itself
_LINK_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False)


def _link_encode_function() -> Callable[[list[Any]], str]:
    """``_LINK_ENCODER.encode``, minus the per-call set-up of the C encoder when it exists.

    The preimage holds only strings, ints, bools, None and lists, so both paths give the
    same text; the fallback keeps any Python without the C accelerator correct.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            c_encode = make(
                None, _LINK_ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
            )
            if "".join(c_encode(["probe", 1, None, True, [["x"]]], 0)) == '["probe",1,null,true,[["x"]]]':
                return lambda value: "".join(c_encode(value, 0))
        except TypeError:  # pragma: no cover - a future Python changed the private signature
            pass
    return _LINK_ENCODER.encode  # pragma: no cover


_link_encode = _link_encode_function()

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_relative_name(value: str, *, what: str) -> str:
    """Return ``value`` if it is a safe relative POSIX path (:mod:`ringward.core.common.paths` rules),
    else raise ``ValueError`` (so pydantic validators report it against the field)."""
    try:
        return paths.check_relative_name(value, source=what)
    except UnsafePathError as exc:
        raise ValueError(exc.message) from exc


def check_printable(value: str, *, what: str) -> str:
    """Return ``value`` if it has no control characters (NUL breaks PostgreSQL text)."""
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains a control character")
    return value


def format_timestamp(value: datetime) -> str:
    """The one text form of a record time: UTC, microseconds, ``Z`` (sorts as it orders)."""
    ensure_utc(value)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EvidenceSubject(BaseModel):
    """Fields that searches filter on. All optional; set what the operation is about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release_version: str | None = Field(default=None, max_length=256)
    runtime: str | None = Field(default=None, max_length=256)
    channel: str | None = Field(default=None, max_length=256)
    ring: str | None = Field(default=None, max_length=256)
    deployment_target: str | None = Field(default=None, max_length=256)
    environment: str | None = Field(default=None, max_length=256)
    status: str | None = Field(default=None, max_length=256)
    approval_id: str | None = Field(default=None, max_length=256)
    approval_state: str | None = Field(default=None, max_length=256)
    execution_status: str | None = Field(default=None, max_length=256)
    provider: str | None = Field(default=None, max_length=256)
    success: bool | None = None

    @field_validator(
        "release_version",
        "runtime",
        "channel",
        "ring",
        "deployment_target",
        "environment",
        "status",
        "approval_id",
        "approval_state",
        "execution_status",
        "provider",
    )
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else check_printable(value, what="subject field")


#: subject field names in their fixed order (column order in the store, hash order in the chain)
SUBJECT_FIELDS: tuple[str, ...] = tuple(EvidenceSubject.model_fields)


class EvidenceArtifact(BaseModel):
    """One file of an evidence bundle, as listed in the bundle's ``checksums.txt``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        check_relative_name(value, what="artifact name")
        if value == "checksums.txt":
            raise ValueError("artifact name 'checksums.txt' is reserved for the bundle's manifest")
        return value


class EvidenceDraft(BaseModel):
    """An evidence record before the store assigns id, time and chain hashes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(min_length=1, max_length=128, pattern=KIND_PATTERN)
    actor: str = Field(min_length=1, max_length=256)
    subject: EvidenceSubject = EvidenceSubject()
    flow_run_id: str | None = Field(default=None, max_length=128)
    payload: dict[str, Any]
    #: bundle directory relative to the evidence root (``RINGWARD_EVIDENCE_ROOT``), if any
    bundle_dir: str | None = Field(default=None, max_length=1024)
    #: files of the bundle (excluding its checksums.txt), each with its recorded digest
    artifacts: tuple[EvidenceArtifact, ...] = ()

    _payload_bytes: bytes = PrivateAttr(default=b"")

    @field_validator("actor", "flow_run_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else check_printable(value, what="actor / flow_run_id")

    @field_validator("bundle_dir")
    @classmethod
    def _safe_bundle_dir(cls, value: str | None) -> str | None:
        return None if value is None else check_relative_name(value, what="bundle_dir")

    @model_validator(mode="after")
    def _check(self) -> EvidenceDraft:
        # the payload must be plain JSON (no NaN, no objects) so its digest is reproducible
        try:
            encoded = dumps_canonical(self.payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"payload is not plain JSON: {exc}") from exc
        if len(encoded) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is {len(encoded)} bytes, expected at most {MAX_PAYLOAD_BYTES}")
        self._payload_bytes = encoded
        names = [a.name for a in self.artifacts]
        if len(set(names)) != len(names):
            raise ValueError("artifacts list a name more than once")
        if self.artifacts and self.bundle_dir is None:
            raise ValueError("artifacts are listed but bundle_dir is missing")
        return self

    def payload_bytes(self) -> bytes:
        """The canonical payload encoding the store keeps and the chain hashes."""
        return self._payload_bytes

    def payload_sha256(self) -> str:
        return hashlib.sha256(self._payload_bytes).hexdigest()


def record_hash(fields: dict[str, Any], previous_hash: str) -> str:
    """SHA-256 over the canonical (sorted-key) encoding of ``fields`` plus ``previous_hash``.

    A generic helper kept for callers that hash their own documents; the evidence chain itself
    uses :func:`link_hash`.
    """
    body = dict(fields)
    body["previous_hash"] = previous_hash
    return hashlib.sha256(dumps_canonical(body)).hexdigest()


def link_preimage(
    record_id: int,
    kind: str,
    actor: str,
    created_at: str,
    flow_run_id: str | None,
    subject: Sequence[Any],
    payload_sha256: str,
    bundle_dir: str | None,
    artifacts: Sequence[Sequence[Any]],
    previous_hash: str,
) -> bytes:
    """The exact bytes a record hash covers (see the module docstring).

    ``subject`` holds the values of :data:`SUBJECT_FIELDS` in that order; ``artifacts`` holds
    ``[name, sha256, size_bytes]`` triples in record order.
    """
    return _link_encode(
        [
            EVIDENCE_RECORD_SCHEMA,
            record_id,
            kind,
            actor,
            created_at,
            flow_run_id,
            *subject,
            payload_sha256,
            bundle_dir,
            artifacts,
            previous_hash,
        ]
    ).encode("utf-8")


def link_hash(
    record_id: int,
    kind: str,
    actor: str,
    created_at: str,
    flow_run_id: str | None,
    subject: Sequence[Any],
    payload_sha256: str,
    bundle_dir: str | None,
    artifacts: Sequence[Sequence[Any]],
    previous_hash: str,
) -> str:
    """``record_hash`` of one chain link: SHA-256 hex of :func:`link_preimage`."""
    return hashlib.sha256(
        link_preimage(
            record_id,
            kind,
            actor,
            created_at,
            flow_run_id,
            subject,
            payload_sha256,
            bundle_dir,
            artifacts,
            previous_hash,
        )
    ).hexdigest()


def artifact_triples(artifacts: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[a["name"], a["sha256"], a["size_bytes"]] for a in artifacts]


class EvidenceRecord(BaseModel):
    """One link of the evidence chain, as stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)
    kind: str
    actor: str
    created_at: datetime
    flow_run_id: str | None = None
    subject: EvidenceSubject = EvidenceSubject()
    payload: dict[str, Any]
    payload_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bundle_dir: str | None = None
    artifacts: tuple[EvidenceArtifact, ...] = ()
    previous_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    record_hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return ensure_utc(value).astimezone(UTC)

    def expected_hash(self) -> str:
        """The hash this record must carry given its fields and predecessor."""
        return link_hash(
            self.id,
            self.kind,
            self.actor,
            format_timestamp(self.created_at),
            self.flow_run_id,
            [getattr(self.subject, name) for name in SUBJECT_FIELDS],
            self.payload_sha256,
            self.bundle_dir,
            [[a.name, a.sha256, a.size_bytes] for a in self.artifacts],
            self.previous_hash,
        )

    def to_document(self) -> dict[str, Any]:
        """JSON form (``--json`` output, API bodies, exports)."""
        doc = self.model_dump(mode="json")
        doc["created_at"] = format_timestamp(self.created_at)
        doc["schema_version"] = EVIDENCE_RECORD_SCHEMA
        return doc


def ensure_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return value


# --- chain verification (pure; the store feeds rows, the files are checked elsewhere) -----------


class ChainBreak(BaseModel):
    """The first place a chain (or a bundle) does not hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: int | None
    check: str
    expected: str
    found: str

    def message(self) -> str:
        where = f"record {self.record_id}" if self.record_id is not None else "chain"
        return f"{where}: {self.check}: expected {self.expected}, found {self.found}"


class ChainRow(BaseModel):
    """The stored columns of one record that the chain covers (payload as stored bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    kind: str
    actor: str
    created_at: str
    flow_run_id: str | None
    subject: dict[str, Any]
    payload_text: str
    payload_sha256: str
    bundle_dir: str | None
    artifacts: list[dict[str, Any]]
    previous_hash: str
    record_hash: str


class ChainVerifier:
    """Walks a chain in id order and stops at the first break.

    Feed every row with :meth:`feed` (in ascending id order) and call :meth:`finish` with the
    head the store claims, so a truncated tail is noticed too. The verifier keeps O(1) state.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last_id = 0
        self.last_hash = GENESIS_HASH
        self.last_created_at = ""
        self.first_break: ChainBreak | None = None

    def feed(self, row: ChainRow) -> ChainBreak | None:
        """Check one row; returns (and remembers) the first break."""
        return self.feed_values(
            row.id,
            row.kind,
            row.actor,
            row.created_at,
            row.flow_run_id,
            [row.subject.get(name) for name in SUBJECT_FIELDS],
            row.payload_text,
            row.payload_sha256,
            row.bundle_dir,
            artifact_triples(row.artifacts),
            row.previous_hash,
            row.record_hash,
        )

    def feed_values(
        self,
        record_id: int,
        kind: str,
        actor: str,
        created_at: str,
        flow_run_id: str | None,
        subject: Sequence[Any],
        payload_text: str,
        payload_sha256: str,
        bundle_dir: str | None,
        artifacts: Sequence[Sequence[Any]],
        previous_hash: str,
        stored_hash: str,
    ) -> ChainBreak | None:
        """Positional twin of :meth:`feed` for the hot loop (no model per row): ``subject`` in
        :data:`SUBJECT_FIELDS` order, ``artifacts`` as ``[name, sha256, size_bytes]`` triples."""
        if self.first_break is not None:
            return self.first_break
        brk: ChainBreak | None = None
        # (1) ids are consecutive: a gap is a deleted record
        if record_id != self.last_id + 1:
            brk = ChainBreak(
                record_id=record_id, check="record id", expected=str(self.last_id + 1), found=str(record_id)
            )
        # (2) the link points at the predecessor
        elif previous_hash != self.last_hash:
            brk = ChainBreak(record_id=record_id, check="previous_hash", expected=self.last_hash, found=previous_hash)
        # (4) time never runs backwards along the chain
        elif created_at < self.last_created_at:
            brk = ChainBreak(
                record_id=record_id,
                check="created_at order",
                expected=f">= {self.last_created_at}",
                found=created_at,
            )
        else:
            # (3) the payload and the record are what was hashed at append time
            payload_digest = hashlib.sha256(payload_text.encode("utf-8")).hexdigest()
            if payload_digest != payload_sha256:
                brk = ChainBreak(
                    record_id=record_id, check="payload_sha256", expected=payload_sha256, found=payload_digest
                )
            else:
                computed = link_hash(
                    record_id,
                    kind,
                    actor,
                    created_at,
                    flow_run_id,
                    subject,
                    payload_sha256,
                    bundle_dir,
                    artifacts,
                    previous_hash,
                )
                if computed != stored_hash:
                    brk = ChainBreak(record_id=record_id, check="record_hash", expected=computed, found=stored_hash)
        if brk is not None:
            self.first_break = brk
            return brk
        self.count += 1
        self.last_id = record_id
        self.last_hash = stored_hash
        self.last_created_at = created_at
        return None

    def finish(self, *, head_id: int, head_hash: str) -> ChainBreak | None:
        """Compare the walked chain with the head the store recorded (detects a cut tail)."""
        if self.first_break is not None:
            return self.first_break
        if head_id != self.last_id or (head_id and head_hash != self.last_hash):
            self.first_break = ChainBreak(
                record_id=None,
                check="chain head",
                expected=f"record {head_id} with hash {head_hash}",
                found=f"last record {self.last_id} with hash {self.last_hash}",
            )
        return self.first_break


def is_sha256_hex(value: str) -> bool:
    return bool(_HEX64.match(value))


VERIFICATION_SCHEMA = "ringward.evidence-verification.v1"


class ChainReport(BaseModel):
    """Outcome of ``ringward evidence verify``: counts, the head, and the first break if any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    records_checked: int
    bundles_checked: int
    files_checked: int
    head_id: int
    head_hash: str
    first_break: ChainBreak | None = None
    checkpoint_head_id: int | None = None
    checkpoint_key_id: str | None = None
    database: str | None = None
    evidence_root: str | None = None
    elapsed_s: float | None = None

    def payload(self) -> dict[str, Any]:
        """The evidence payload of a verification run: what was proven, nothing host-specific
        (no timing, no database location), so the CLI and the flow record the same thing."""
        return {
            "schema_version": VERIFICATION_SCHEMA,
            "ok": self.ok,
            "records_checked": self.records_checked,
            "bundles_checked": self.bundles_checked,
            "files_checked": self.files_checked,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "first_break": None if self.first_break is None else self.first_break.model_dump(),
            "checkpoint_head_id": self.checkpoint_head_id,
            "checkpoint_key_id": self.checkpoint_key_id,
        }

    def summary(self) -> str:
        if self.ok:
            return (
                f"evidence chain intact: {self.records_checked} records, {self.bundles_checked} bundles, "
                f"{self.files_checked} files; head {self.head_id} {self.head_hash[:16]}…"
            )
        assert self.first_break is not None
        return f"evidence chain broken at {self.first_break.message()}"
