"""The provider interface: how a provider turns events into requests and reads the answer.

A provider is pure request building plus response reading; the engine (``connectors.engine``)
owns I/O, retries, budgets, idempotency and evidence. A provider that needs to look before it
creates (Jira, ServiceNow: no idempotency key on their create APIs) implements
:meth:`Provider.find_existing`; one that needs a token first implements :meth:`Provider.auth_headers`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import httpx

from connectors.secrets import ResolvedDestination
from ringward.core.connector_config import ProviderKind
from ringward.core.connector_event import ConnectorEvent
from ringward.core.delivery_policy import Outcome

USER_AGENT = "Ringward-Connectors/1"
JSON = "application/json"


@dataclass(frozen=True)
class PreparedRequest:
    """One HTTP request for a batch of one or more events."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    events: int = 1


@dataclass(frozen=True)
class Reply:
    """What a provider makes of a response (``outcome`` None: use the status classifier)."""

    outcome: Outcome | None = None
    external_ref: str | None = None
    error: str | None = None


@dataclass
class Lookup:
    """Result of a search-before-create: the existing record's reference, if any."""

    external_ref: str | None
    #: the response of the search when it failed (status, body excerpt) so the engine can classify it
    status_code: int | None = None
    error: str | None = None
    retry_after: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def dumps_body(value: Any) -> bytes:
    """Compact JSON body (stable key order so recorded bodies compare exactly)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def event_document(event: ConnectorEvent) -> dict[str, Any]:
    """The event as SIEMs receive it (without the per-provider verbatim bodies)."""
    doc = event.to_document()
    doc.pop("provider_payloads", None)
    return doc


class Provider(ABC):
    """Base class of every provider."""

    kind: ClassVar[ProviderKind]
    #: takes several events in one request (413 can then be split)
    batching: ClassVar[bool] = False
    #: batch limits when batching (events, bytes); destinations may lower them
    max_batch_events: ClassVar[int] = 1
    max_batch_bytes: ClassVar[int] = 1_000_000

    def batch_limits(self, dest: ResolvedDestination) -> tuple[int, int]:
        if not self.batching:
            return 1, self.max_batch_bytes
        events = min(dest.config.batch_max_events or self.max_batch_events, self.max_batch_events)
        size = min(dest.config.batch_max_bytes or self.max_batch_bytes, self.max_batch_bytes)
        return events, size

    def item_bytes(self, event: ConnectorEvent, dest: ResolvedDestination) -> bytes:
        """One event's record in a batch body (batching providers; serialised once per run)."""
        return self.body([event], dest)

    def batch_body(self, items: Sequence[bytes]) -> bytes:
        """A batch body from records made by :meth:`item_bytes` (default: a JSON array); equal to
        ``body(events)`` byte for byte."""
        return b"[" + b",".join(items) + b"]"

    @abstractmethod
    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        """The request body for ``events`` (exactly what is sent)."""

    def url(self, dest: ResolvedDestination) -> str:
        return dest.url

    def headers(
        self, events: Sequence[ConnectorEvent], dest: ResolvedDestination, body: bytes, now: datetime
    ) -> dict[str, str]:
        """Non-auth headers (content type, idempotency ids, signatures) for one attempt."""
        headers = {"content-type": JSON, "accept": JSON, "user-agent": USER_AGENT}
        headers.update(dest.headers)
        return headers

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        """Authentication headers (may fetch a token within ``timeout`` seconds)."""
        return {}

    def prepare(
        self,
        events: Sequence[ConnectorEvent],
        dest: ResolvedDestination,
        *,
        now: datetime,
        auth: dict[str, str],
        body: bytes | None = None,
    ) -> PreparedRequest:
        if body is None:
            body = self.body(events, dest)
        headers = self.headers(events, dest, body, now)
        headers.update(auth)
        return PreparedRequest(
            method=dest.config.method, url=self.url(dest), headers=headers, content=body, events=len(events)
        )

    def interpret(self, status: int, text: str) -> Reply:
        """Provider-specific reading of a response (default: the status classifier decides)."""
        return Reply()

    def find_existing(
        self,
        event: ConnectorEvent,
        dest: ResolvedDestination,
        client: httpx.Client,
        auth: dict[str, str],
        timeout: float,
    ) -> Lookup | None:
        """Search-before-create; None when the provider has no such step."""
        return None

    def verbatim(self, event: ConnectorEvent) -> dict[str, Any] | None:
        """The event's ``provider_payloads`` entry for this provider (reference behaviour)."""
        payload = event.provider_payloads.get(self.kind.value)
        return payload if isinstance(payload, dict) else None
