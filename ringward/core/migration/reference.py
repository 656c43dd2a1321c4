"""What a reference (CAVRA) installation holds, and how each of its records is checked and mapped.

The layout comes from cavra-spec §5.4, §6 and §7.2: under ``<project>/.cavra/``

- evidence metadata, JSON ``{"items": [...]}``: ``evidence/metadata.json`` (CLI) and
  ``api/evidence-metadata.json`` (API);
- evidence metadata, SQLite: table ``evidence_metadata`` (CLI default ``evidence/metadata.db``);
- approvals, JSON ``{"items": [...]}``: ``api/approvals.json``;
- approvals, SQLite: table ``approvals`` (``CAVRA_APPROVAL_DB``, no default path: any SQLite file
  under ``.cavra/`` holding the table is one);
- connectors: ``connectors.json`` or ``connectors.yaml``/``.yml``.

Every record is validated on its own, field by field, against what the reference's own stores
write; a record that fails is reported (file, record, field, expected vs found) and skipped whole.
Records that pass keep their reference ids (``session_id``, ``approval_id``) and are marked as
imported: Ringward did not produce or verify them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.errors import InputError
from ringward.core.evidence.interop import (
    IMPORT_MARKER,
    approval_from_reference_item,
    metadata_import_key,
    metadata_item_draft,
)
from ringward.core.evidence.records import KIND_PATTERN, EvidenceDraft, EvidenceSubject

REFERENCE_DIR = ".cavra"
#: relative to the installation root (the directory holding ``.cavra/``)
EVIDENCE_JSON_PATHS = (".cavra/evidence/metadata.json", ".cavra/api/evidence-metadata.json")
APPROVALS_JSON_PATHS = (".cavra/api/approvals.json",)
CONNECTOR_PATHS = (".cavra/connectors.json", ".cavra/connectors.yaml", ".cavra/connectors.yml")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_MAGIC = b"SQLite format 3\x00"

#: the reference's SQLite tables (cavra-spec §6, §5.4): column -> (declared type, NOT NULL, primary key)
EVIDENCE_TABLE = "evidence_metadata"
EVIDENCE_COLUMNS: dict[str, tuple[str, bool, bool]] = {
    "session_id": ("TEXT", False, True),
    "created_at": ("TEXT", False, False),
    "signer": ("TEXT", False, False),
    "decision_count": ("INTEGER", True, False),
    "blocked_count": ("INTEGER", True, False),
    "approval_required_count": ("INTEGER", True, False),
    "payload": ("TEXT", True, False),
}
APPROVALS_TABLE = "approvals"
APPROVAL_COLUMNS: dict[str, tuple[str, bool, bool]] = {
    "approval_id": ("TEXT", False, True),
    "decision_id": ("TEXT", True, False),
    "session_id": ("TEXT", False, False),
    "state": ("TEXT", True, False),
    "approver_group": ("TEXT", True, False),
    "requested_by": ("TEXT", False, False),
    "requested_at": ("TEXT", True, False),
    "expires_at": ("TEXT", True, False),
    "decided_by": ("TEXT", False, False),
    "decided_at": ("TEXT", False, False),
    "external_ref": ("TEXT", False, False),
    "break_glass": ("INTEGER", True, False),
    "payload": ("TEXT", True, False),
}

IMPORT_KIND = "reference-import"
IMPORT_SCHEMA = "ringward.reference-import.v1"
ORIGIN = "cavra"
REFERENCE_STATES = ("pending", "approved", "denied", "expired", "break_glass")

_APPROVAL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FOUND_MAX = 80


class SourceKind(StrEnum):
    EVIDENCE_JSON = "evidence-json"
    EVIDENCE_SQLITE = "evidence-sqlite"
    APPROVALS_JSON = "approvals-json"
    APPROVALS_SQLITE = "approvals-sqlite"
    CONNECTORS = "connectors"


class SourceFile(BaseModel):
    """One file of the installation that was read, with the digest of the exact bytes read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    kinds: tuple[SourceKind, ...]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)


class RecordProblem(BaseModel):
    """Why one source record (or a whole source file, ``record`` None) was not imported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    #: ``items[3]`` (JSON), ``evidence_metadata[3]`` (SQLite row in rowid order), ``connectors.splunk``
    record: str | None = None
    index: int | None = None
    field: str | None = None
    expected: str
    found: str

    def line(self) -> str:
        where = self.source if self.record is None else f"{self.source} {self.record}"
        if self.field:
            where = f"{where}.{self.field}" if self.record is not None else f"{where}: {self.field}"
        return f"{where}: expected {self.expected}, found {self.found}"


def found_text(value: Any) -> str:
    """A short, printable rendering of a found value (never more than ~80 characters)."""
    if value is _MISSING:
        return "nothing (field missing)"
    text = repr(value)
    if len(text) > _FOUND_MAX:
        text = text[: _FOUND_MAX - 1] + "…"
    return _CONTROL.sub("?", text)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def parse_reference_time(value: str) -> datetime:
    """An ISO 8601 time with a UTC offset (``Z`` or ``+00:00``), as the reference writes them.

    Raises:
        ValueError: not such a time.
    """
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    if parsed.utcoffset() is None:
        raise ValueError("no UTC offset")
    return parsed


def _time_field(value: str | None) -> str | None:
    if value is not None:
        parse_reference_time(value)
    return value


def _printable(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("contains a control character")
    return value


#: field -> what the reference writes there (the "expected" of a problem line)
_EXPECTED: dict[str, str] = {
    "session_id": "a non-empty string of at most 256 characters without control characters (the record key)",
    "created_at": "an ISO 8601 time with a UTC offset, or null",
    "signer": "a string or null",
    "decision_count": "an integer >= 0",
    "blocked_count": "an integer >= 0",
    "approval_required_count": "an integer >= 0",
    "metadata_kind": "a kind name ([A-Za-z0-9][A-Za-z0-9._:-]*, at most 128 characters)",
    "bundle_dir": "a string or null",
    "schema_version": "a string",
    "product": "a string",
    IMPORT_MARKER: "no such field (Ringward reserves it for imported records)",
    "approval_id": "an approval id (letters, digits, _.:-; at most 64 characters)",
    "decision_id": "a non-empty string",
    "state": "one of " + ", ".join(REFERENCE_STATES),
    "approver_group": "a non-empty string of at most 256 characters",
    "requested_at": "an ISO 8601 time with a UTC offset",
    "expires_at": "an ISO 8601 time with a UTC offset",
    "decided_at": "an ISO 8601 time with a UTC offset, or null",
    "break_glass": "true or false",
    "decision": "an object (the decision the approval binds)",
    "history": "a list of objects",
    "evidence_refs": "a list of strings",
}


class ReferenceMetadataItem(BaseModel):
    """A ``cavra.evidence.metadata.v1`` item as the reference's stores write it (§4 envelope, §6).

    Kind-specific fields are kept as they are (``extra="allow"``); the envelope is checked.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    session_id: str = Field(min_length=1, max_length=256)
    created_at: str | None = None
    signer: str | None = None
    decision_count: int = Field(default=0, ge=0)
    blocked_count: int = Field(default=0, ge=0)
    approval_required_count: int = Field(default=0, ge=0)
    metadata_kind: str | None = Field(default=None, max_length=128, pattern=KIND_PATTERN)
    bundle_dir: str | None = None
    schema_version: str | None = None
    product: str | None = None

    @field_validator("session_id")
    @classmethod
    def _session(cls, value: str) -> str:
        _printable(value)
        return value

    @field_validator("created_at")
    @classmethod
    def _created(cls, value: str | None) -> str | None:
        return _time_field(value)


class ReferenceApprovalItem(BaseModel):
    """A ``cavra.approval.v1`` record (§5.1) as the reference's stores write it."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    approval_id: str = Field(pattern=_APPROVAL_ID)
    decision_id: str = Field(min_length=1, max_length=1024)
    session_id: str | None = None
    correlation_id: str | None = None
    state: Literal["pending", "approved", "denied", "expired", "break_glass"]
    approver_group: str = Field(min_length=1, max_length=256)
    requested_by: str | None = None
    requested_at: str
    expires_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None
    external_ref: str | None = None
    break_glass: bool = False
    break_glass_reason: str | None = None
    decision: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    evidence_refs: list[str] | None = None

    @field_validator("requested_at", "expires_at", "decided_at")
    @classmethod
    def _times(cls, value: str | None) -> str | None:
        return _time_field(value)

    @field_validator("approver_group")
    @classmethod
    def _group(cls, value: str) -> str:
        _printable(value)
        return value


def _check_approval_consistency(item: ReferenceApprovalItem) -> list[tuple[str, str, Any]]:
    """(field, expected, found) for fields that contradict each other in one approval record."""
    out: list[tuple[str, str, Any]] = []
    decision = item.decision or {}
    if "decision_id" in decision and decision["decision_id"] != item.decision_id:
        out.append(
            ("decision.decision_id", f"the record's decision_id {item.decision_id!r}", decision["decision_id"])
        )
    if (item.state == "break_glass") != item.break_glass:
        out.append(
            (
                "break_glass",
                "true exactly when state is break_glass" + f" (state is {item.state!r})",
                item.break_glass,
            )
        )
    return out


def _problems_from_validation(
    exc: ValidationError, item: dict[str, Any], *, source: str, record: str, index: int
) -> list[RecordProblem]:
    problems: list[RecordProblem] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]] or ["?"]
        found = _MISSING if error["type"] == "missing" else error.get("input")
        field = ".".join(loc)
        expected = _EXPECTED.get(loc[0]) or error["msg"]
        problems.append(
            RecordProblem(
                source=source, record=record, index=index, field=field, expected=expected, found=found_text(found)
            )
        )
    return problems


def _not_an_object(item: Any, *, source: str, record: str, index: int) -> RecordProblem:
    return RecordProblem(
        source=source, record=record, index=index, expected="an object", found=type(item).__name__
    )


def check_metadata_item(item: Any, *, source: str, record: str, index: int) -> list[RecordProblem]:
    """Every problem of one reference evidence metadata item (empty: importable)."""
    if not isinstance(item, dict):
        return [_not_an_object(item, source=source, record=record, index=index)]
    problems: list[RecordProblem] = []
    if IMPORT_MARKER in item:
        problems.append(
            RecordProblem(
                source=source,
                record=record,
                index=index,
                field=IMPORT_MARKER,
                expected=_EXPECTED[IMPORT_MARKER],
                found=found_text(item[IMPORT_MARKER]),
            )
        )
    try:
        ReferenceMetadataItem.model_validate(item)
    except ValidationError as exc:
        problems.extend(_problems_from_validation(exc, item, source=source, record=record, index=index))
    return problems


def check_approval_item(item: Any, *, source: str, record: str, index: int) -> list[RecordProblem]:
    """Every problem of one reference approval record (empty: importable)."""
    if not isinstance(item, dict):
        return [_not_an_object(item, source=source, record=record, index=index)]
    try:
        parsed = ReferenceApprovalItem.model_validate(item)
    except ValidationError as exc:
        return _problems_from_validation(exc, item, source=source, record=record, index=index)
    return [
        RecordProblem(
            source=source, record=record, index=index, field=field, expected=expected, found=found_text(found)
        )
        for field, expected, found in _check_approval_consistency(parsed)
    ]


def check_row_against_payload(
    row: dict[str, Any], payload: dict[str, Any], *, source: str, record: str, index: int
) -> list[RecordProblem]:
    """A reference SQLite row's columns must say what its ``payload`` says (the store writes both
    from one dict; a difference means the row was edited or corrupted after the fact)."""
    problems: list[RecordProblem] = []
    for column, value in row.items():
        if column == "payload":
            continue
        if column in ("decision_count", "blocked_count", "approval_required_count"):
            wanted: Any = payload.get(column, 0)
        elif column == "break_glass":
            wanted = 1 if payload.get("break_glass") is True else 0
        else:
            wanted = payload.get(column)
        if value != wanted:
            problems.append(
                RecordProblem(
                    source=source,
                    record=record,
                    index=index,
                    field=column,
                    expected=f"the payload's value {found_text(wanted)} (column and payload disagree)",
                    found=found_text(value),
                )
            )
    return problems


# --- mapping to Ringward records -------------------------------------------------------------------


class ImportOrigin(BaseModel):
    """Where one imported record came from (kept in its payload under :data:`IMPORT_MARKER`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    source_sha256: str
    record: str
    import_id: str

    def marker(self) -> dict[str, Any]:
        return {
            "origin": ORIGIN,
            "verified": False,
            "note": "imported from the reference system; Ringward did not produce or verify this record",
            "source": self.source,
            "source_sha256": self.source_sha256,
            "record": self.record,
            "import_id": self.import_id,
        }


def migrated_metadata_draft(item: dict[str, Any], *, actor: str, origin: ImportOrigin) -> tuple[str, EvidenceDraft]:
    """(import key, draft) for one checked metadata item.

    The key is the one ``ringward evidence import`` gives the same item (the verbatim item's
    digest), so an item imported either way is recorded once. The payload is the item plus the
    :data:`IMPORT_MARKER` object saying it was imported, from where, and not verified.

    Raises:
        InputError: the item is not importable (call :func:`check_metadata_item` first).
    """
    verbatim = metadata_item_draft(item, where=f"{origin.source} {origin.record}", actor=actor)
    key = metadata_import_key(verbatim)
    marked = EvidenceDraft(
        kind=verbatim.kind,
        actor=actor,
        subject=verbatim.subject,
        payload={**item, IMPORT_MARKER: origin.marker()},
    )
    return key, marked


def migrated_approval(item: dict[str, Any], *, origin: ImportOrigin) -> Any:
    """The Ringward approval (origin ``import``, never able to authorise) for one checked record.

    Raises:
        InputError: the record is not importable (call :func:`check_approval_item` first).
    """
    approval = approval_from_reference_item(item, where=f"{origin.source} {origin.record}")
    note = (
        f"imported from cavra.approval.v1 by `ringward migrate reference` ({origin.source} {origin.record}, "
        f"sha256 {origin.source_sha256[:16]}…); not verified by Ringward"
        + (" (break_glass)" if item.get("state") == "break_glass" else "")
    )
    return approval.model_copy(update={"note": note})


def sources_digest(sources: list[SourceFile]) -> str:
    """SHA-256 of the canonical list of (path, sha256) of every source file: the import's identity."""
    listing = sorted([s.path, s.sha256] for s in sources)
    return hashlib.sha256(dumps_canonical(listing)).hexdigest()


def import_record_draft(
    *,
    source_dir: str,
    sources: list[SourceFile],
    counts: dict[str, int],
    problems: list[RecordProblem],
    actor: str,
) -> tuple[str, EvidenceDraft]:
    """(import key, draft) of the record that opens an imported history.

    It names every source file with the SHA-256 of the bytes read and says the records after it
    are imported, not verified. The key is the digest of the sources: re-running the import of
    unchanged files finds it recorded and adds nothing.
    """
    digest = sources_digest(sources)
    payload = {
        "schema_version": IMPORT_SCHEMA,
        "origin": ORIGIN,
        "verified": False,
        "note": (
            "the records imported with this id (payload key "
            f"{IMPORT_MARKER}.import_id) were produced by the reference system; Ringward did not verify them"
        ),
        "import_id": digest,
        "source_dir": source_dir,
        "source_files": [s.model_dump(mode="json") for s in sorted(sources, key=lambda s: s.path)],
        "records_found": dict(sorted(counts.items())),
        "problems": [p.line() for p in problems],
    }
    draft = EvidenceDraft(
        kind=IMPORT_KIND,
        actor=actor,
        subject=EvidenceSubject(status="imported", provider=ORIGIN, success=not problems),
        payload=payload,
    )
    return f"{IMPORT_KIND}:{digest}", draft


def parse_row_payload(text: Any, *, source: str, record: str, index: int) -> tuple[Any, list[RecordProblem]]:
    """The JSON object in a SQLite row's ``payload`` column, or the problem with it."""
    from ringward.core.common.jsonio import loads_strict

    if not isinstance(text, str):
        return None, [
            RecordProblem(
                source=source,
                record=record,
                index=index,
                field="payload",
                expected="JSON text",
                found=type(text).__name__,
            )
        ]
    try:
        data = loads_strict(text.encode("utf-8"), source=f"{source} {record}.payload", max_bytes=16 * 1024 * 1024)
    except Exception as exc:
        detail = str(exc).split(": ", 1)[-1]
        return None, [
            RecordProblem(
                source=source,
                record=record,
                index=index,
                field="payload",
                expected="strict JSON of one object",
                found=found_text(detail),
            )
        ]
    if not isinstance(data, dict):
        return None, [
            RecordProblem(
                source=source,
                record=record,
                index=index,
                field="payload",
                expected="a JSON object",
                found=type(data).__name__,
            )
        ]
    return data, []


def items_of(document: Any, *, source: str) -> list[Any]:
    """The ``items`` list of a reference JSON store.

    Raises:
        InputError: the document is not ``{"items": [...]}``.
    """
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        found = "an object without an items list" if isinstance(document, dict) else type(document).__name__
        raise InputError(f'{source}: expected {{"items": [...]}}, found {found}')
    return items
