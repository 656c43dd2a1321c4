"""SIEM providers: Splunk HEC, Microsoft Sentinel (Logs Ingestion API, DCR) and Datadog logs v2.

None of them has an idempotency key: every record carries ``event_id`` so the SOC can de-duplicate
at search time (delivery-escalation-anchors §0.5). All three take batches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from connectors.auth import TOKENS, TokenError, entra_token_url
from connectors.interface import (
    USER_AGENT,
    Exchange,
    PreparedRequest,
    Provider,
    Reply,
    TimeLeft,
    dumps_body,
    event_document,
    exchange,
)
from connectors.providers._common import bearer_or_authorization, iso
from connectors.secrets import ResolvedDestination
from ringward.core.common.redaction import excerpt
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent, Severity
from ringward.core.delivery.policy import Outcome

#: first wait between indexer-acknowledgement polls (doubles up to the cap)
ACK_POLL_INTERVAL_S = 0.5
ACK_POLL_MAX_INTERVAL_S = 5.0


class SplunkHec(Provider):
    """``POST /services/collector/event`` with ``Authorization: Splunk <token>``; body is one JSON
    object per event, concatenated (newline separated), never an array."""

    kind = ProviderKind.SPLUNK
    batching = True
    max_batch_events = 500
    #: Splunk's default max_content_length is 800 MB; stay far below proxies' 1 MB habits
    max_batch_bytes = 1_000_000

    def _record(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        record: dict[str, Any] = {
            "time": round(event.created_at.timestamp(), 3),
            "host": dest.config.host or "ringward",
            "source": dest.config.source or "ringward",
            "sourcetype": dest.config.sourcetype or "_json",
            "event": event_document(event),
            "fields": {"event_id": event.event_id, "event_type": event.event_type},
        }
        if dest.config.index:
            record["index"] = dest.config.index
        return record

    def item_bytes(self, event: ConnectorEvent, dest: ResolvedDestination) -> bytes:
        return dumps_body(self._record(event, dest)) + b"\n"

    def batch_body(self, items: Sequence[bytes]) -> bytes:
        return b"".join(items)

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return b"".join(self.item_bytes(e, dest) for e in events)

    def headers(
        self, events: Sequence[ConnectorEvent], dest: ResolvedDestination, body: bytes, now: datetime
    ) -> dict[str, str]:
        headers = super().headers(events, dest, body, now)
        if dest.config.request_channel:
            headers["x-splunk-request-channel"] = dest.config.request_channel
        return headers

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        return bearer_or_authorization(dest, scheme="Splunk")

    def interpret(self, status: int, text: str) -> Reply:
        # HEC answers {"text": "...", "code": n}; code 9 "Server is busy" (503) is retryable,
        # which the status classifier already says. A 200 with a non-zero code is not success.
        if 200 <= status < 300:
            try:
                answer = json.loads(text)
                code = answer.get("code", 0)
            except (ValueError, AttributeError):
                return Reply()
            if isinstance(code, int) and code != 0:
                # the whole answer: the engine scrubs it before cutting it to one line
                return Reply(outcome=Outcome.REJECTED, error=f"HEC code {code}: {text}")
            ack_id = answer.get("ackId")
            if isinstance(ack_id, int) and not isinstance(ack_id, bool):
                return Reply(external_ref=f"ackId={ack_id}")
        return Reply()

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
        """Poll ``/services/collector/ack`` until the indexer acknowledges the batch's ackId.

        A 200 from HEC with useACK only means "received": the events may still be lost before
        indexing. Splunk's guidance is to resend what is not acknowledged in time (every record
        carries ``event_id``, so a rare duplicate is found at search time). The wait is bounded by
        ``ack_timeout_seconds`` (and the delivery's budget), not by one request's timeout; a failed
        poll is polled again rather than resending a batch HEC already accepted.
        """
        if not dest.config.indexer_ack or not (reply.external_ref or "").startswith("ackId="):
            return None
        ack_id = int((reply.external_ref or "").removeprefix("ackId="))
        channel = dest.config.request_channel or ""
        parts = urlsplit(dest.url)
        # keep any path prefix a proxy adds in front of /services/collector
        prefix = parts.path[: parts.path.find("/services/collector")] if "/services/collector" in parts.path else ""
        url = f"{parts.scheme}://{parts.netloc}{prefix}/services/collector/ack?channel={quote(channel, safe='')}"
        request = PreparedRequest(
            method="POST",
            url=url,
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                "user-agent": USER_AGENT,
                "x-splunk-request-channel": channel,
                **auth,
            },
            content=dumps_body({"acks": [ack_id]}),
        )
        window = dest.config.ack_timeout_seconds
        deadline = time.monotonic() + window
        waited = 0.0
        interval = ACK_POLL_INTERVAL_S
        problem = "not indexed yet"
        while True:
            try:
                answer: Exchange | None = exchange(client, request, left)
            except httpx.TransportError as exc:
                answer, problem = None, f"ack poll failed ({type(exc).__name__})"
            if answer is not None:
                if answer.status_code == 400 and '"code":14' in answer.text.replace(" ", ""):
                    return None  # ACK is disabled for this token after all: the send's outcome stands
                if answer.ok:
                    acks = answer.json()
                    table = acks.get("acks") if isinstance(acks, dict) else None
                    if isinstance(table, dict) and table.get(str(ack_id)) is True:
                        return Reply(outcome=Outcome.DELIVERED, external_ref=f"ackId={ack_id} indexed")
                    problem = "not indexed yet"
                else:
                    problem = (
                        f"ack poll HTTP {answer.status_code} "
                        f"{excerpt(answer.text, limit=80, scrubber=dest.scrubber)}"
                    )
            remaining = min(window - waited, deadline - time.monotonic())
            if remaining <= 0:
                return Reply(
                    outcome=Outcome.RETRY,
                    error=f"indexer did not acknowledge ackId {ack_id} within {window:g}s ({problem}); "
                    f"resending the batch, ackId {ack_id} abandoned",
                )
            pause = min(interval, remaining)
            sleep(pause)
            waited += pause
            interval = min(interval * 2, ACK_POLL_MAX_INTERVAL_S)


class Sentinel(Provider):
    """Azure Monitor Logs Ingestion API (DCR-based; the HTTP Data Collector API is retired).

    ``POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`` with an
    Entra bearer token for ``https://monitor.azure.com/.default``; body is a JSON array of records
    with ``TimeGenerated``; 204 on success; 413 halves the batch (about 1 MB per call).
    """

    kind = ProviderKind.SENTINEL
    batching = True
    max_batch_events = 1000
    max_batch_bytes = 900_000
    api_version = "2023-01-01"
    scope = "https://monitor.azure.com/.default"

    def url(self, dest: ResolvedDestination) -> str:
        base = dest.url.rstrip("/")
        dcr = quote(dest.config.dcr_immutable_id or "", safe="")
        stream = quote(dest.config.stream_name or "", safe="")
        return f"{base}/dataCollectionRules/{dcr}/streams/{stream}?api-version={self.api_version}"

    def _record(self, event: ConnectorEvent) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        return {
            "TimeGenerated": iso(event.created_at),
            "EventId": event.event_id,
            "EventType": event.event_type,
            "Severity": event.severity.value,
            "Title": event.title,
            "Summary": event.summary,
            "Source": event.source,
            "ReleaseVersion": event.release_version,
            "Channel": event.channel,
            "Ring": event.ring,
            "Environment": event.environment,
            "DeploymentTarget": event.deployment_target,
            "Actor": event.actor,
            "Attributes": event.attributes,
        }

    def item_bytes(self, event: ConnectorEvent, dest: ResolvedDestination) -> bytes:
        return dumps_body(self._record(event))

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body([self._record(e) for e in events])

    def headers(
        self, events: Sequence[ConnectorEvent], dest: ResolvedDestination, body: bytes, now: datetime
    ) -> dict[str, str]:
        headers = super().headers(events, dest, body, now)
        headers["x-ms-client-request-id"] = (
            events[0].webhook_id if len(events) == 1 else f"batch-{len(events)}"
        )
        return headers

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        if "token" in dest.secrets or "authorization" in dest.secrets:
            return bearer_or_authorization(dest, scheme="Bearer")
        token = TOKENS.get(
            client,
            dest,
            token_url=entra_token_url(dest),
            scope=dest.config.scope or self.scope,
            timeout=timeout,
        )
        return {"authorization": f"Bearer {token}"}


_DATADOG_STATUS = {
    Severity.INFO: "info",
    Severity.WARNING: "warn",
    Severity.ERROR: "error",
    Severity.CRITICAL: "critical",
}


class Datadog(Provider):
    """Datadog logs intake v2: ``POST /api/v2/logs`` with ``DD-API-KEY``; a JSON array of log
    entries (at most 1000 entries and 5 MB); 202 means accepted (queued)."""

    kind = ProviderKind.DATADOG
    batching = True
    max_batch_events = 1000
    max_batch_bytes = 4_500_000

    def _record(self, event: ConnectorEvent, dest: ResolvedDestination) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        tags = [f"event_type:{event.event_type}", f"severity:{event.severity.value}", "source:ringward"]
        if event.channel:
            tags.append(f"channel:{event.channel}")
        if event.release_version:
            tags.append(f"release:{event.release_version}")
        if dest.config.ddtags:
            tags.append(dest.config.ddtags)
        return {
            "ddsource": dest.config.ddsource or "ringward",
            "ddtags": ",".join(tags),
            "hostname": dest.config.host or "ringward",
            "service": dest.config.service or "ringward",
            "status": _DATADOG_STATUS[event.severity],
            "message": event.title,
            "event_id": event.event_id,
            "ringward": event_document(event),
        }

    def item_bytes(self, event: ConnectorEvent, dest: ResolvedDestination) -> bytes:
        return dumps_body(self._record(event, dest))

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body([self._record(e, dest) for e in events])

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        header = dest.config.api_key_header or "dd-api-key"
        return {header.lower(): dest.secrets["api_key"]} if "api_key" in dest.secrets else {}


__all__ = ["Datadog", "Sentinel", "SplunkHec", "TokenError"]
