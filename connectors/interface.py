"""The provider interface: how a provider turns events into requests and reads the answer.

A provider is pure request building plus response reading; the engine (``connectors.engine``)
owns I/O, retries, budgets, idempotency and evidence. A provider that needs to look before it
creates (Jira, ServiceNow: no idempotency key on their create APIs) implements
:meth:`Provider.find_existing`; one that needs a token first implements :meth:`Provider.auth_headers`.

A provider whose delivery is a conversation of several API calls (native Jamf Pro and Microsoft
Graph publication: look up, create, upload content, commit) implements :meth:`Provider.publish`
and makes its calls through :func:`exchange`. The engine still owns retries, budgets and the
idempotency claim; ``publish`` must be safe to run again after any failed call (look up what an
earlier attempt created and continue from there).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import httpx

from connectors.secrets import ResolvedDestination
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.policy import Outcome

USER_AGENT = "Ringward-Connectors/1"
JSON = "application/json"

#: bytes of a response body read (enough for every provider's answer; the rest is dropped)
RESPONSE_CAP_BYTES = 64 * 1024
#: bytes read of an answer in a multi-call conversation (searches and records can be large)
CONVERSATION_CAP_BYTES = 2 * 1024 * 1024

#: seconds left in the current attempt; raises :class:`DeadlineExceeded` once none are left
TimeLeft = Callable[[], float]


class DeadlineExceeded(Exception):
    """The attempt's whole-exchange deadline passed (slow body, slow token endpoint...)."""


@dataclass(frozen=True)
class StreamedBody:
    """A request body sent chunk by chunk as it is read (an installer upload), never held whole.

    ``chunks`` is called once per send and yields exactly ``length`` bytes; it may raise to abandon
    the request mid-way (the body then never completes on the wire). ``sha256`` is the digest of the
    whole body, known before sending, for the evidence summary.
    """

    chunks: Callable[[], Iterable[bytes]]
    length: int
    sha256: str


@dataclass(frozen=True)
class PreparedRequest:
    """One HTTP request for a batch of one or more events."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    events: int = 1
    #: a body streamed instead of ``content`` (which is then empty): large uploads
    stream: StreamedBody | None = None

    @property
    def body_sha256(self) -> str:
        """SHA-256 of the body sent (streamed or not)."""
        if self.stream is not None:
            return self.stream.sha256
        return hashlib.sha256(self.content).hexdigest()

    @property
    def body_bytes(self) -> int:
        """Length of the body sent (streamed or not)."""
        return self.stream.length if self.stream is not None else len(self.content)


@dataclass(frozen=True)
class Reply:
    """What a provider makes of a response (``outcome`` None: use the status classifier)."""

    outcome: Outcome | None = None
    external_ref: str | None = None
    #: the provider's reading of a refusal; may quote the whole answer: the engine scrubs every
    #: secret out of it first and only then cuts it to one line (a provider never cuts it itself)
    error: str | None = None


@dataclass(frozen=True)
class Exchange:
    """One HTTP exchange made by a multi-call provider: what was sent and what came back."""

    request: PreparedRequest
    status_code: int
    reason: str
    text: str
    headers: httpx.Headers
    #: the body was longer than the read cap and ``text`` holds only its start
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON or was cut at the read cap."""
        if self.truncated:
            return None
        try:
            return json.loads(self.text)
        except ValueError:
            return None


@dataclass(frozen=True)
class Publication:
    """What a multi-call provider made of its conversation (see :meth:`Provider.publish`).

    ``last`` is the exchange that decided the outcome: its request is the one recorded (redacted)
    in evidence, and its status is classified like a single request's unless ``outcome`` is set.
    ``last`` is None when the delivery failed before anything was sent (:meth:`not_sent`).
    ``step`` names the call in error messages ("create win32LobApp").
    """

    last: Exchange | None
    step: str
    outcome: Outcome | None = None
    external_ref: str | None = None
    error: str | None = None
    #: every call made, in order: (step, method, redacted-by-engine URL, status)
    calls: tuple[tuple[str, str, str, int], ...] = ()

    @classmethod
    def not_sent(
        cls,
        step: str,
        error: str,
        *,
        outcome: Outcome = Outcome.REJECTED,
        calls: tuple[tuple[str, str, str, int], ...] = (),
    ) -> Publication:
        """A failure found before sending (bad payload, bad artifact): final unless ``outcome`` says so."""
        return cls(last=None, step=step, outcome=outcome, error=error, calls=calls)


def _read_capped(response: httpx.Response, deadline: float, cap: int) -> tuple[bytes, bool]:
    """At most ``cap`` bytes of the body and whether there was more, giving up at ``deadline`` (a
    trickling body is a timeout)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            break
        if time.monotonic() > deadline:
            raise DeadlineExceeded
    body = b"".join(chunks)
    return body[:cap], len(body) > cap


def exchange(
    client: httpx.Client, request: PreparedRequest, left: TimeLeft, *, cap: int = CONVERSATION_CAP_BYTES
) -> Exchange:
    """Send ``request`` within the time ``left()`` gives this call; transport errors propagate to the
    engine. An answer longer than ``cap`` is marked ``truncated`` (its JSON is then unreadable)."""
    remaining = left()
    deadline = time.monotonic() + remaining
    content: bytes | Iterable[bytes] = request.content
    headers = request.headers
    if request.stream is not None:
        # a declared length: sent as it is read, never chunked, never buffered whole
        content = request.stream.chunks()
        headers = {**headers, "content-length": str(request.stream.length)}
    with client.stream(
        request.method,
        request.url,
        content=content,
        headers=headers,
        timeout=httpx.Timeout(remaining),
    ) as response:
        body, truncated = _read_capped(response, deadline, cap)
    text = body.decode("utf-8", "replace")
    return Exchange(request, response.status_code, response.reason_phrase, text, response.headers, truncated)


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
        if dest.config.compression == "gzip":
            # level 1: most of the size win for a fraction of the CPU (JSON compresses ~10x anyway);
            # mtime 0 keeps the bytes, and so the evidence digest, reproducible
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers["content-encoding"] = "gzip"
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

    def confirm(
        self,
        dest: ResolvedDestination,
        client: httpx.Client,
        auth: dict[str, str],
        reply: Reply,
        *,
        left: TimeLeft,
        sleep: Callable[[float], None],
    ) -> Reply | None:
        """After a successful send: wait for the receiver to confirm it (Splunk indexer acks).

        None (the default): the send's outcome stands. Otherwise the returned reply replaces it
        (``Outcome.RETRY`` resends the whole request).
        """
        return None

    def accepts(self, event: ConnectorEvent, dest: ResolvedDestination) -> bool:
        """Whether this provider can deliver ``event`` at all (native publishers need their payload);
        an event it cannot deliver is reported as filtered for the destination, never sent."""
        return True

    def publish(
        self,
        event: ConnectorEvent,
        dest: ResolvedDestination,
        client: httpx.Client,
        auth: dict[str, str],
        *,
        left: TimeLeft,
        now: datetime,
    ) -> Publication | None:
        """Deliver ``event`` as a conversation of calls made with :func:`exchange`.

        None (the default): the provider sends the single request of :meth:`prepare`.
        """
        return None

    def verbatim(self, event: ConnectorEvent) -> dict[str, Any] | None:
        """The event's ``provider_payloads`` entry for this provider (reference behaviour)."""
        payload = event.provider_payloads.get(self.kind.value)
        return payload if isinstance(payload, dict) else None
