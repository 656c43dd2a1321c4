"""What a paged inventory read yields, and what every vendor pager shares.

A pager reads one page per :meth:`Pager.fetch` from a JSON continuation (``{"page": 3}``, or a Graph
``@odata.nextLink``) and says where the next page starts (None: done), so a pull can be cut into
batches of pages anywhere and resumed in another task. :meth:`Pager.combine` puts the records of
every page back into the vendor's own document shape (``{"totalCount", "results"}`` for Jamf Pro,
``{"value"}`` for Graph, ``{"hosts"}`` for Fleet): that document is what ingestion normalises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.inventory_pull.http import Answer, PullHttp
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import MalformedDocumentError, TransportError


@dataclass(frozen=True)
class Page:
    """One page of a paged inventory read."""

    #: the URL asked, query included, scrubbed
    url: str
    #: the answer's bytes as received (scrubbed when the vendor echoed a secret of this run)
    raw: bytes
    #: the page's host records (for Graph with each device's ``detectedApps``)
    records: list[dict[str, Any]]
    #: where the next page starts; None when this was the last
    next: dict[str, Any] | None
    attempts: int = 1
    #: the vendor's total, when it says one
    total: int | None = None
    #: extra calls made for this page (Graph: one per device for its detected apps)
    detail_calls: int = 0
    scrubbed: bool = False
    warnings: tuple[str, ...] = ()


def parse_document(http: PullHttp, answer: Answer, *, step: str, key: str) -> tuple[bytes, dict[str, Any], bool]:
    """The answer as (raw bytes, JSON object, scrubbed?), its ``key`` a list of objects.

    A vendor answer echoing a secret of this run is scrubbed before anything keeps it.

    Raises:
        TransportError: not JSON, not an object, or ``key`` is not a list of objects.
    """
    raw = answer.body
    scrubbed = False
    text = raw.decode("utf-8", "replace")
    if len(http.scrubber) and http.scrubber.found_in(text):
        raw = http.scrubber.scrub(text).encode("utf-8")
        scrubbed = True
    where = f"{http.label}: {step} ({answer.url})"
    try:
        document = loads_strict(raw, source=where, max_bytes=max(len(raw), 1))
    except MalformedDocumentError as exc:
        raise TransportError(http.scrubber.scrub(exc.message)) from None
    if not isinstance(document, dict):
        raise TransportError(f"{where}: expected a JSON object, found {type(document).__name__}")
    records = document.get(key)
    if not isinstance(records, list):
        raise TransportError(f"{where}: expected a list under {key!r}, found {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TransportError(f"{where}: {key}[{index}]: expected an object, found {type(record).__name__}")
    return raw, document, scrubbed


def parse_time(value: Any) -> datetime | None:
    """A vendor timestamp (ISO 8601 with a zone, or Fleet/MySQL ``YYYY-MM-DD HH:MM:SS`` in UTC)."""
    if not isinstance(value, str) or not value.strip() or value.startswith("0001-01-01"):
        return None
    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _sort_key(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.isdigit() and len(key) < 19 else (1, 0, key)


class Pager:
    """Base of the vendor pagers."""

    provider: ClassVar[str]
    #: the record key holding the vendor id (Jamf ``id``, Graph ``id``, Fleet ``id``)
    id_field: ClassVar[str] = "id"
    #: where the combined document keeps its records
    records_key: ClassVar[str]
    #: dotted path of the clock the incremental filter compares
    clock_field: ClassVar[str]

    def first(self) -> dict[str, Any]:
        raise NotImplementedError

    def fetch(self, continuation: dict[str, Any]) -> Page:
        raise NotImplementedError

    @classmethod
    def record_key(cls, record: dict[str, Any]) -> str | None:
        value = record.get(cls.id_field)
        if isinstance(value, bool) or value is None or value == "":
            return None
        return str(value) if isinstance(value, str | int) else None

    @classmethod
    def clock_of(cls, record: dict[str, Any]) -> datetime | None:
        value: Any = record
        for part in cls.clock_field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return parse_time(value)

    @classmethod
    def records_of(cls, document: Any) -> list[dict[str, Any]] | None:
        """The records of a combined document (None when it is not one)."""
        records = document.get(cls.records_key) if isinstance(document, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            return None
        return records

    @classmethod
    def combine(cls, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """The vendor document of ``records``, ordered by vendor id (so equal fleets give equal bytes)."""
        ordered = sorted(records, key=lambda r: _sort_key(cls.record_key(r) or ""))
        return {cls.records_key: ordered}
