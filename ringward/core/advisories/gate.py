"""The completeness gate's report: one named item per seed requirement, each ok, missing,
failing, not linked (recommended items) or not checked (with the reason).

The checks that need files and the store run in ``ringward.operations.advisories``; the content
checks (fields the advisory itself must carry) are here. ``passed`` is false when any required
item is missing or any item (required or not) is failing: a broken link is never ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from ringward.core.advisories.identity import in_range, parse_range, parse_version, product_purl
from ringward.core.advisories.record import GATE_NOT_CHECKED, AdvisoryRecord
from ringward.core.advisories.severity import SeverityAssessment, assess_severity
from ringward.core.errors import InputError, VerificationError

GATE_SCHEMA: Final = "ringward.advisory-gate.v1"


class ItemStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"
    FAILING = "failing"
    NOT_LINKED = "not-linked"
    NOT_CHECKED = "not-checked"


class GateItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    status: ItemStatus
    required: bool
    detail: str = ""

    @property
    def blocks(self) -> bool:
        return self.status is ItemStatus.FAILING or (self.required and self.status is ItemStatus.MISSING)


class GateReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = GATE_SCHEMA
    advisory_id: str
    severity: str
    items: tuple[GateItem, ...]

    @property
    def passed(self) -> bool:
        return not any(item.blocks for item in self.items)

    @property
    def problems(self) -> list[GateItem]:
        return [item for item in self.items if item.blocks]

    def document(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "advisory_id": self.advisory_id,
            "severity": self.severity,
            "passed": self.passed,
            "problems": [f"{i.name}: {i.status.value}{' - ' + i.detail if i.detail else ''}" for i in self.problems],
            "items": [i.model_dump(mode="json") for i in self.items],
        }


def _text(name: str, *values: str | tuple[str, ...] | None) -> GateItem:
    present = all(bool(v) for v in values)
    return GateItem(name=name, status=ItemStatus.OK if present else ItemStatus.MISSING, required=True,
                    detail="" if present else "not set in the advisory")


def content_items(record: AdvisoryRecord) -> list[GateItem]:
    """Items the advisory proves by its own fields (no file or store needed)."""
    items = [
        GateItem(name="advisory id or release tag", status=ItemStatus.OK, required=True,
                 detail=record.release_tag or record.advisory_id),
        _severity_item(record),
        _affected_versions(record),
        _text("customer impact and exploitation prerequisites", record.customer_impact,
              record.exploitation_prerequisites),
        _text("mitigation before upgrade", record.mitigation_before_upgrade),
        _text("fixed commit, pull request and release asset links", record.fix.commit, record.fix.pull_request,
              record.fix.release_assets),
        _text("verification steps", record.verification_steps),
    ]
    items.extend(GateItem(name=name, status=ItemStatus.NOT_CHECKED, required=False, detail=why)
                 for name, why in GATE_NOT_CHECKED.items())
    return items


def recomputed_severity(record: AdvisoryRecord) -> SeverityAssessment:
    """The assessment recomputed from the record's declared severity, vector and user-safety
    classes: the recorded score and outcome are never trusted as written (an edited file could
    lower them to slip past the gate).

    Raises:
        InputError: the recorded vector is not a valid CVSS v4.0 vector.
    """
    return assess_severity(record.severity.declared, record.severity.cvss.vector,
                           record.severity.user_safety_classes, option="severity.cvss.vector")


def _severity_item(record: AdvisoryRecord) -> GateItem:
    name = "severity and affected components"
    try:
        expected = recomputed_severity(record)
    except InputError as exc:
        return GateItem(name=name, status=ItemStatus.FAILING, required=True, detail=exc.message)
    recorded = record.severity
    if (expected.effective, expected.cvss.base_score, expected.rule) != (recorded.effective, recorded.cvss.base_score,
                                                                         recorded.rule):
        return GateItem(name=name, status=ItemStatus.FAILING, required=True,
                        detail=f"recorded {recorded.effective.value} / CVSS {recorded.cvss.base_score} does not follow "
                               f"from the vector and classes: expected {expected.effective.value} / CVSS "
                               f"{expected.cvss.base_score} ({expected.rule})")
    return GateItem(name=name, status=ItemStatus.OK, required=True,
                    detail=f"{expected.effective.value} ({expected.rule}); CVSS {expected.cvss.base_score}; "
                           f"{record.affected.purl}: {', '.join(record.affected.components)}")


def _affected_versions(record: AdvisoryRecord) -> GateItem:
    name = "affected and fixed versions"
    try:
        purl = product_purl(record.affected.purl, option="affected.purl")
        affected = parse_range(record.affected.range, purl, option="affected.range")
        for fixed in record.affected.fixed:
            if in_range(parse_version(fixed, affected, option="affected.fixed"), affected):
                return GateItem(name=name, status=ItemStatus.FAILING, required=True,
                                detail=f"fixed version {fixed} is inside the affected range {affected}")
    except InputError as exc:
        return GateItem(name=name, status=ItemStatus.FAILING, required=True, detail=exc.message)
    return GateItem(name=name, status=ItemStatus.OK, required=True,
                    detail=f"affected {affected}; fixed {', '.join(record.affected.fixed)}")


def report(record: AdvisoryRecord, items: Iterable[GateItem]) -> GateReport:
    return GateReport(advisory_id=record.advisory_id, severity=record.severity.effective.value, items=tuple(items))


class AdvisoryGateError(VerificationError):
    """The completeness gate failed where it must pass (publishing a high or critical advisory)."""

    code = "advisory-gate-failed"

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)
