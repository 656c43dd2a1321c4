"""``cavra.endpoint-observations.v1``: what endpoints report, in one schema for every provider.

Field names, file names, the ``schema_version`` strings and the ``inventory_id`` formula are the
reference's (cavra-spec §8.1). Ringward adds two clocks per endpoint (``last_checkin_at``,
``last_inventory_at``) because every fleet tool keeps them apart and staleness must use the
inventory clock; ``last_seen_at`` carries the inventory clock when there is one, else the check-in.

On disk (:func:`render_observations`) the document is ordinary JSON with the header fields first
and ``endpoints`` last, one endpoint per line, each line exactly ``json.dumps(endpoint,
sort_keys=True)``: any JSON reader reads it, and a reader that knows the layout streams a million
endpoints without building them as Python objects (the reconcile engine does).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OBSERVATIONS_SCHEMA = "cavra.endpoint-observations.v1"
INGESTION_SCHEMA = "cavra.endpoint-inventory-ingestion.v1"
OBSERVATIONS_FILE = "endpoint-inventory.json"
INGESTION_FILE = "endpoint-inventory-ingestion.json"
INGESTION_MD = "endpoint-inventory-ingestion.md"
#: evidence kind of an ingestion (the reference's ``metadata_kind``)
KIND_INGESTION = "endpoint-inventory-ingestion"
INGESTION_SIGNER = "endpoint-inventory-ingestion"
#: deployment target of an endpoint that reported none (reference value)
UNKNOWN_TARGET = "unknown-target"
PRODUCT = "Ringward"

INGESTION_CONTROLS = (
    "provider-export-normalized",
    "no-connector-credentials-stored",
    "canonical-endpoint-observation-schema-emitted",
    "reconciliation-ready-inventory-generated",
)

#: endpoint fields in the reference's order, then Ringward's additions
ENDPOINT_FIELDS = (
    "endpoint_id",
    "deployment_target",
    "installed_version",
    "binary_sha256",
    "last_seen_at",
    "provider",
    "hostname",
    "serial_number",
    "os",
    "management_state",
    "last_checkin_at",
    "last_inventory_at",
)


class Provider(StrEnum):
    JAMF = "jamf"
    INTUNE = "intune"
    FLEET = "fleet"
    LINUX = "linux"
    EDR = "edr"


PROVIDERS = tuple(p.value for p in Provider)


class Endpoint(BaseModel):
    """One observed endpoint. Unknown fields a producer adds are kept (read side is lenient on extras)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    endpoint_id: str = Field(min_length=1, max_length=512)
    #: blank or absent in a file someone else wrote: reconciliation then reads ``target_id`` (reference rule);
    #: Ringward's normalisers always set it (``unknown-target`` when the provider names none)
    deployment_target: str | None = Field(default=None, max_length=256)
    installed_version: str | None = Field(default=None, max_length=256)
    binary_sha256: str | None = Field(default=None, max_length=128)
    last_seen_at: str | None = Field(default=None, max_length=64)
    provider: str | None = Field(default=None, max_length=64)
    hostname: str | None = Field(default=None, max_length=512)
    serial_number: str | None = Field(default=None, max_length=256)
    os: str | None = Field(default=None, max_length=256)
    management_state: str | None = Field(default=None, max_length=128)
    last_checkin_at: str | None = Field(default=None, max_length=64)
    last_inventory_at: str | None = Field(default=None, max_length=64)

    def document(self) -> dict[str, Any]:
        """The on-disk form: keys with null values dropped (reference rule)."""
        return self.model_dump(mode="json", exclude_none=True)


class ObservationsHeader(BaseModel):
    """Everything of an observations document except its endpoints."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal["cavra.endpoint-observations.v1"]
    product: str = PRODUCT
    provider: str = Field(min_length=1, max_length=64)
    channel: str | None = Field(default=None, max_length=256)
    observed_at: str = Field(min_length=1, max_length=64)
    source: str | None = Field(default=None, max_length=4096)
    inventory_id: str | None = Field(default=None, max_length=64)


class ObservationsDocument(ObservationsHeader):
    endpoints: list[Endpoint]


# --- time ------------------------------------------------------------------------------------------

#: RFC 3339 with a zone: the one timestamp grammar reconciliation and freshness accept, in both
#: engines (the columnar engine applies the same pattern before parsing)
RFC3339_PATTERN = (
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)


def parse_timestamp(text: str | None) -> datetime | None:
    """``text`` as an aware UTC datetime, or None if it is not an RFC 3339 timestamp with a zone."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micro = int((fraction or "0").ljust(6, "0"))
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):  # not a calendar time, or outside years 1..9999 once in UTC
        return None


def format_timestamp(value: datetime) -> str:
    """UTC, ``Z``, microseconds only when present: ``2026-11-22T12:00:00Z``."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- content ids --------------------------------------------------------------------------------------


def endpoint_json(endpoint: Mapping[str, Any]) -> str:
    """One endpoint exactly as the reference's id formulas serialise it (and as the file holds it)."""
    return json.dumps(endpoint, sort_keys=True)


def streamed_id(prefix: str, fields: Mapping[str, Any], endpoint_lines: Iterable[str | bytes]) -> str:
    """``prefix + sha256(json.dumps({**fields, "endpoints": [...]}, sort_keys=True))[:12]`` without
    holding the endpoints: ``endpoint_lines`` are the endpoints already serialised by
    :func:`endpoint_json` (or the file's lines, which are the same bytes)."""
    digest = hashlib.sha256()
    keys = sorted([*fields, "endpoints"])
    digest.update(b"{")
    for position, key in enumerate(keys):
        if position:
            digest.update(b", ")
        digest.update(json.dumps(key).encode() + b": ")
        if key != "endpoints":
            digest.update(json.dumps(fields[key], sort_keys=True).encode())
            continue
        digest.update(b"[")
        first = True
        for line in endpoint_lines:
            if not first:
                digest.update(b", ")
            digest.update(line.encode() if isinstance(line, str) else line)
            first = False
        digest.update(b"]")
    digest.update(b"}")
    return prefix + digest.hexdigest()[:12]


def inventory_id(provider: str, channel: str | None, observed_at: str, endpoints: Iterable[Mapping[str, Any]]) -> str:
    """``eii_`` + sha256(json{provider, channel, observed_at, endpoints}, sorted)[:12] (reference §8.1):
    identical content is one ingestion, however often it is ingested."""
    return streamed_id("eii_", {"provider": provider, "channel": channel, "observed_at": observed_at},
                       (endpoint_json(e) for e in endpoints))


# --- the on-disk layout ----------------------------------------------------------------------------------

#: the line that opens the endpoint list, and the one that closes it
ENDPOINTS_OPEN = '  "endpoints": ['
ENDPOINTS_CLOSE = "  ]"
ENDPOINT_INDENT = "    "


def render_observations(header: Mapping[str, Any], endpoints: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """The document in chunks: header fields (sorted), then ``endpoints``, one per line."""
    lines = ["{"]
    for key in sorted(header):
        if key == "endpoints":
            continue
        lines.append(f"  {json.dumps(key)}: {json.dumps(header[key], sort_keys=True, ensure_ascii=False)},")
    lines.append(ENDPOINTS_OPEN)
    yield ("\n".join(lines) + "\n").encode("utf-8")
    previous: str | None = None
    batch: list[str] = []
    for endpoint in endpoints:
        if previous is not None:
            batch.append(f"{ENDPOINT_INDENT}{previous},\n")
            if len(batch) >= 4096:
                yield "".join(batch).encode("utf-8")
                batch = []
        previous = endpoint_json(endpoint)
    if previous is not None:
        batch.append(f"{ENDPOINT_INDENT}{previous}\n")
    batch.append(ENDPOINTS_CLOSE + "\n}\n")
    yield "".join(batch).encode("utf-8")


_DOCUMENT_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def render_document(document: Mapping[str, Any], *, list_key: str) -> bytes:
    """A JSON document with its keys sorted, every value on one line, and ``list_key``'s items one per
    line: what a reader diffs comfortably, produced by the C encoder (``indent`` would force the pure
    Python one, seconds for a report with tens of thousands of drift items)."""
    encode = _DOCUMENT_ENCODER.encode  # json.dumps(..., sort_keys=True, ensure_ascii=False), set up once
    lines = ["{"]
    keys = sorted(document)
    for position, key in enumerate(keys):
        comma = "," if position < len(keys) - 1 else ""
        value = document[key]
        if key == list_key and isinstance(value, list) and value:
            items = [f"    {encode(item)}" for item in value]
            lines.append(f"  {json.dumps(key)}: [\n" + ",\n".join(items) + f"\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True, ensure_ascii=False)}{comma}")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")
