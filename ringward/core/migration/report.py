"""The result of ``ringward migrate reference`` (its ``--json`` output)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ringward.core.migration.connectors import SecretReference
from ringward.core.migration.reference import RecordProblem, SourceFile

REPORT_SCHEMA = "ringward.reference-migration.v1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImportRecordResult(_Frozen):
    """The record that opens the imported history."""

    import_id: str
    #: recorded now, already recorded by an earlier run of the same files, or (dry run) would be
    status: Literal["recorded", "already-recorded", "would-record"]
    record_id: int | None = None


class StoreResult(_Frozen):
    """Evidence items or approvals: found in the sources, imported, already there, skipped."""

    found: int = 0
    imported: int = 0
    already_present: int = 0
    skipped: int = 0
    #: evidence record ids (evidence) or approval ids (approvals) added by this run
    ids: list[int | str] = Field(default_factory=list)


class ConnectorResult(_Frozen):
    source: str | None = None
    output: str | None = None
    status: Literal["none", "written", "unchanged", "exists-differs", "would-write", "nothing-to-write"] = "none"
    destinations: list[str] = Field(default_factory=list)
    references: list[SecretReference] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    evidence_id: int | None = None


class MigrationReport(_Frozen):
    schema_version: Literal["ringward.reference-migration.v1"] = "ringward.reference-migration.v1"
    source_dir: str
    dry_run: bool
    sources: list[SourceFile]
    #: files under .cavra/ that looked like stores but are not (path: reason)
    ignored: list[str] = Field(default_factory=list)
    import_record: ImportRecordResult
    evidence: StoreResult
    approvals: StoreResult
    connectors: ConnectorResult
    problems: list[RecordProblem]

    @property
    def exit_code(self) -> int:
        """0 everything importable was imported (or already was), 1 some records were skipped."""
        return 1 if self.problems else 0

    def to_document(self) -> dict[str, object]:
        doc = self.model_dump(mode="json")
        doc["problems"] = [{**p.model_dump(mode="json"), "line": p.line()} for p in self.problems]
        doc["exit_code"] = self.exit_code
        return doc
