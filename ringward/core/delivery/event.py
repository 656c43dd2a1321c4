"""The one normalised event every connector builds its payload from: ``ringward.connector.event.v1``.

Rules this module keeps:

- An event is identified by ``event_id``; every provider payload carries it so a receiver (SIEM
  search, ticket label, webhook consumer) can de-duplicate, and the delivery log keys on it.
- Reference events (``cavra.*`` documents such as promotion-audit or rollback events) are accepted
  and normalised with the reference system's id rule (first non-empty of ``session_id``,
  ``execution_id``, ``rollback_id``, ``publication_id``, ``export_id``, ``approval_id``,
  ``request_id``, ``event_id``), keeping the whole document as attributes and any
  ``provider_payloads`` verbatim. A reference event without any of those ids gets a
  content-addressed id (``sha256:`` + the digest of its canonical JSON), never its event type:
  two different id-less events must never share an id (the second would be skipped as already
  delivered). A document that is not an event at all (no ``cavra.*`` schema_version, no
  ``event_type``, no id field: ``{}``, ``{"foo": 1}``) is refused.
- Time is a parameter: a reference event without a timestamp takes ``now`` from the caller.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.common.jsonio import dumps_canonical, loads_strict
from ringward.core.errors import ConnectorEventError, MalformedDocumentError

CONNECTOR_EVENT_SCHEMA = "ringward.connector.event.v1"

#: the reference system's order of id fields (cavra-spec §7.4)
REFERENCE_ID_FIELDS = (
    "session_id",
    "execution_id",
    "rollback_id",
    "publication_id",
    "export_id",
    "approval_id",
    "request_id",
    "event_id",
)

#: ids are printable and short enough for every receiver's dedup field (PagerDuty dedup_key <= 255,
#: ServiceNow correlation_id <= 100 is handled by the provider with a digest)
_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: Standard Webhooks: the id must not contain "." (it separates the signed content)
_WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_:-]{1,200}$")


class Severity(StrEnum):
    """How urgent the event is; providers map it to their own scale."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


_SEVERITY_ALIASES: dict[str, Severity] = {
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "low": Severity.INFO,
    "none": Severity.INFO,
    "healthy": Severity.INFO,
    "ok": Severity.INFO,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "medium": Severity.WARNING,
    "error": Severity.ERROR,
    "high": Severity.ERROR,
    "critical": Severity.CRITICAL,
}


class EventLink(BaseModel):
    """A link a person may follow from a notification (evidence page, run, release)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=2048)


class ConnectorEvent(BaseModel):
    """One audit, promotion or notification event to deliver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.connector.event.v1"] = "ringward.connector.event.v1"
    #: stable id of the event; the idempotency key is (event_id, provider, destination)
    event_id: str
    #: dotted type, e.g. ``ringward.promotion.executed``
    event_type: str
    #: when the event happened (UTC-aware)
    created_at: datetime
    severity: Severity = Severity.INFO
    #: one-line headline used as notification title / ticket summary
    title: str = Field(min_length=1, max_length=250)
    #: longer human text (ticket description, card body)
    summary: str = Field(default="", max_length=8000)
    #: producer of the event
    source: str = Field(default="ringward", min_length=1, max_length=128)
    release_version: str | None = Field(default=None, max_length=128)
    channel: str | None = Field(default=None, max_length=128)
    ring: str | None = Field(default=None, max_length=128)
    environment: str | None = Field(default=None, max_length=128)
    deployment_target: str | None = Field(default=None, max_length=256)
    session_id: str | None = Field(default=None, max_length=256)
    actor: str | None = Field(default=None, max_length=256)
    #: free structured detail (the reference document for normalised cavra events)
    attributes: dict[str, Any] = Field(default_factory=dict)
    links: tuple[EventLink, ...] = ()
    #: provider name -> body sent verbatim instead of the built payload (reference behaviour)
    provider_payloads: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("event_id")
    @classmethod
    def _check_event_id(cls, value: str) -> str:
        if not _EVENT_ID.match(value):
            raise ValueError("must be 1-200 printable characters [A-Za-z0-9._:@/+=-] starting alphanumeric")
        return value

    @field_validator("event_type")
    @classmethod
    def _check_event_type(cls, value: str) -> str:
        if not _EVENT_TYPE.match(value):
            raise ValueError("must be 1-128 characters [A-Za-z0-9_.:-] starting alphanumeric")
        return value

    @field_validator("created_at")
    @classmethod
    def _check_created_at(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a UTC offset")
        return value.astimezone(UTC)

    @field_validator("attributes", "provider_payloads")
    @classmethod
    def _check_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            dumps_canonical(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be plain JSON ({exc})") from exc
        return value

    def to_document(self) -> dict[str, Any]:
        """The JSON form (what event files and the delivery log hold)."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """sha256 of the canonical JSON form; two deliveries of one id must agree on it."""
        return hashlib.sha256(dumps_canonical(self.to_document())).hexdigest()

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header value: the event id, or a digest of it when it has a ``.``."""
        return webhook_message_id(self.event_id)


def webhook_message_id(event_id: str) -> str:
    """Standard Webhooks message id for ``event_id`` (stable across retries, no ``.``)."""
    if _WEBHOOK_ID.match(event_id):
        return event_id
    return "evt_" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:32]


def format_validation_error(exc: ValidationError, *, prefix: str = "") -> tuple[str, ...]:
    """Each pydantic error as ``path: message`` with list indexes as ``[n]``."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        path = prefix
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else str(part)
        message = str(error["msg"])
        message = message.removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        problems.append(f"{path or '<root>'}: {message}")
    return tuple(problems)


def parse_event(data: bytes, *, source: str, now: datetime) -> ConnectorEvent:
    """Parse an event file: a ``ringward.connector.event.v1`` document or a reference event.

    Args:
        data: the file's bytes (strict JSON).
        source: file name used in error messages.
        now: timestamp for reference events that carry none.

    Raises:
        ConnectorEventError: not strict JSON, not an object, or invalid (every problem listed).
    """
    try:
        document = loads_strict(data, source=source)
    except MalformedDocumentError as exc:
        raise ConnectorEventError(str(exc)) from exc
    if not isinstance(document, dict):
        raise ConnectorEventError(f"{source}: an event must be a JSON object")
    return event_from_document(document, source=source, now=now)


def event_from_document(document: dict[str, Any], *, source: str, now: datetime) -> ConnectorEvent:
    """Validate a parsed event document (either shape); see :func:`parse_event`."""
    if document.get("schema_version") == CONNECTOR_EVENT_SCHEMA:
        try:
            return ConnectorEvent.model_validate(document)
        except ValidationError as exc:
            problems = format_validation_error(exc)
            raise ConnectorEventError(f"{source}: " + "; ".join(problems)) from exc
    schema = document.get("schema_version")
    if schema is not None and not (isinstance(schema, str) and schema.startswith("cavra.")):
        raise ConnectorEventError(
            f"{source}: schema_version {schema!r} is not {CONNECTOR_EVENT_SCHEMA} or a cavra.* event"
        )
    return from_reference_event(document, source=source, now=now)


def _first_text(document: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = document.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _reference_time(document: dict[str, Any], now: datetime) -> datetime:
    for key in ("created_at", "generated_at", "timestamp", "executed_at"):
        value = document.get(key)
        if isinstance(value, str) and value:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
    return now.astimezone(UTC)


def _reference_severity(document: dict[str, Any]) -> Severity:
    for key in ("severity", "max_severity", "alert_level"):
        value = document.get(key)
        if isinstance(value, str) and value.lower() in _SEVERITY_ALIASES:
            return _SEVERITY_ALIASES[value.lower()]
    blocked = document.get("blocked_count")
    if isinstance(blocked, int) and not isinstance(blocked, bool) and blocked > 0:
        return Severity.WARNING
    return Severity.INFO


def content_event_id(document: dict[str, Any]) -> str:
    """The id of an id-less reference event: ``sha256:`` + the digest of its canonical JSON."""
    return "sha256:" + hashlib.sha256(dumps_canonical(document)).hexdigest()


def from_reference_event(document: dict[str, Any], *, source: str, now: datetime) -> ConnectorEvent:
    """Normalise a reference (``cavra.*``) event document.

    Raises:
        ConnectorEventError: not an event, the derived id or type is unusable, or payloads are not
            objects.
    """
    schema = document.get("schema_version")
    declared_type = _first_text(document, ("event_type",))
    declared_id = _first_text(document, REFERENCE_ID_FIELDS)
    if not (isinstance(schema, str) and schema.startswith("cavra.")) and declared_type is None \
            and declared_id is None:
        raise ConnectorEventError(
            f"{source}: not an event: expected schema_version {CONNECTOR_EVENT_SCHEMA!r} or a reference event "
            f"(a cavra.* schema_version, an event_type or one of {', '.join(REFERENCE_ID_FIELDS)})"
        )
    event_type = declared_type or "cavra.connector.event"
    try:
        event_id = declared_id or content_event_id(document)
    except (TypeError, ValueError) as exc:
        raise ConnectorEventError(f"{source}: reference event is not plain JSON ({exc})") from exc
    payloads_raw = document.get("provider_payloads") or {}
    if not isinstance(payloads_raw, dict) or not all(isinstance(v, dict) for v in payloads_raw.values()):
        raise ConnectorEventError(f"{source}: provider_payloads must map provider names to objects")
    attributes = {k: v for k, v in document.items() if k != "provider_payloads"}
    product = _first_text(document, ("product",)) or "CAVRA"
    title = _first_text(document, ("title", "summary")) or f"{product} {event_type}"
    release = document.get("release")
    release_version = release.get("version") if isinstance(release, dict) else None
    candidate = {
        "event_id": event_id,
        "event_type": event_type,
        "created_at": _reference_time(document, now),
        "severity": _reference_severity(document),
        "title": title[:250],
        "summary": (_first_text(document, ("description", "message")) or "")[:8000],
        "source": product[:128],
        "release_version": release_version if isinstance(release_version, str) else None,
        "channel": _first_text(document, ("channel",)),
        "ring": _first_text(document, ("target_ring", "rollout_ring", "ring")),
        "environment": _first_text(document, ("environment",)),
        "session_id": _first_text(document, ("session_id",)),
        "actor": _first_text(document, ("executed_by", "requested_by", "actor")),
        "attributes": attributes,
        "provider_payloads": payloads_raw,
    }
    try:
        return ConnectorEvent.model_validate(candidate)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        raise ConnectorEventError(f"{source}: reference event: " + "; ".join(problems)) from exc


#: the event type of ``ringward connectors test`` (native publishers answer it with a read-only check)
TEST_EVENT_TYPE = "ringward.connector.test"


def make_test_event(*, destination: str, now: datetime) -> ConnectorEvent:
    """A harmless, clearly labelled event for ``ringward connectors test``.

    Each call has a fresh id (derived from ``now``) so a test is never suppressed as a duplicate.
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return ConnectorEvent(
        event_id=f"ringward-test-{stamp}",
        event_type=TEST_EVENT_TYPE,
        created_at=now,
        severity=Severity.INFO,
        title=f"Ringward connector test for {destination}",
        summary="This is a connectivity test from Ringward. No action is needed.",
        attributes={"test": True, "destination": destination},
    )
