"""Evidence searches: the filters of the reference's ``cavra evidence search`` plus paging.

The reference caps every history view at the newest 500 records and filters payloads in
Python after loading every row (cavra-spec §6, §11.11). Here every filter is an indexed column,
results are ordered newest first by chain position (which is also time order), and paging is
``limit``/``offset`` or the keyset cursor ``before_id`` for deep pages -- never a fixed cap.

``total`` is bounded by default: counting stops at ``total_limit`` matches (the page then says
``total_is_lower_bound``), so a broad filter costs one page plus at most ``total_limit`` index
entries instead of a count of the whole table. ``total_limit=None`` asks for the exact count,
``with_total=False`` for none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ringward.core.evidence.records import EvidenceRecord, check_printable, ensure_utc

#: the largest page one search returns (the page size itself is a parameter)
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
#: a deep offset costs a scan; past this, page with ``before_id`` instead
MAX_OFFSET = 1_000_000
#: matches counted for ``total`` by default; past this the page reports a lower bound
DEFAULT_TOTAL_LIMIT = 1000
#: milliseconds a bounded count may take before the page reports a lower bound instead
DEFAULT_TOTAL_BUDGET_MS = 15
#: the largest bound a caller may ask for (``total_limit=None`` counts exactly)
MAX_TOTAL_LIMIT = 1_000_000

#: the reference's filter names -> ours (``cavra evidence search`` flags, ``GET /evidence``)
REFERENCE_FILTERS: dict[str, str] = {
    "metadata_kind": "kind",
    "rollout_status": "status",
    "target_ring": "ring",
    "promotion_execution_status": "execution_status",
    "rollback_execution_status": "execution_status",
}

#: filters that compare one column for equality
EQUALITY_FILTERS: tuple[str, ...] = (
    "kind",
    "actor",
    "flow_run_id",
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
    "success",
)


class EvidenceQuery(BaseModel):
    """One evidence search. Unset filters match everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | None = Field(default=None, max_length=128)
    actor: str | None = Field(default=None, max_length=256)
    flow_run_id: str | None = Field(default=None, max_length=128)
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
    #: inclusive lower bound on created_at
    created_from: datetime | None = None
    #: exclusive upper bound on created_at
    created_to: datetime | None = None
    #: keyset cursor: only records with a smaller id (newest-first paging)
    before_id: int | None = Field(default=None, ge=1)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    order: Literal["newest", "oldest"] = "newest"
    #: count the matches (``total``); costs a second indexed query
    with_total: bool = True
    #: stop counting after this many matches (``total_is_lower_bound``); None counts exactly
    total_limit: int | None = Field(default=DEFAULT_TOTAL_LIMIT, ge=1, le=MAX_TOTAL_LIMIT)
    #: milliseconds the bounded count may run; past it ``total`` is what the page proved (a lower
    #: bound). Combinations no single index covers read a row per candidate. None: no budget.
    total_budget_ms: int | None = Field(default=DEFAULT_TOTAL_BUDGET_MS, ge=1, le=600_000)

    @field_validator(*[name for name in EQUALITY_FILTERS if name != "success"])
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else check_printable(value, what="filter")

    @field_validator("created_from", "created_to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else ensure_utc(value)

    @model_validator(mode="after")
    def _range(self) -> EvidenceQuery:
        # an empty date range simply matches nothing; before_id bounds ids in either order
        return self

    def equality_filters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EQUALITY_FILTERS if getattr(self, name) is not None}


class EvidencePage(BaseModel):
    """One page of search results (``{items, total, limit, offset}`` like the reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: tuple[EvidenceRecord, ...]
    #: the number of matches (None when not asked for); see ``total_is_lower_bound``
    total: int | None
    limit: int
    offset: int
    #: pass as ``before_id`` for the next (older) page; None when this page is the last
    next_before_id: int | None = None
    #: True when counting stopped at the query's ``total_limit``: at least ``total`` records match
    total_is_lower_bound: bool = False

    def to_document(self) -> dict[str, Any]:
        return {
            "items": [item.to_document() for item in self.items],
            "total": self.total,
            "total_is_lower_bound": self.total_is_lower_bound,
            "limit": self.limit,
            "offset": self.offset,
            "next_before_id": self.next_before_id,
        }

    def total_text(self) -> str:
        """``total`` for people: ``1,000+`` when it is a lower bound, ``?`` when not counted."""
        if self.total is None:
            return "?"
        return f"{self.total:,}+" if self.total_is_lower_bound else f"{self.total:,}"
