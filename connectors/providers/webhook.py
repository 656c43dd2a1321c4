"""Generic webhook (Standard Webhooks 1.0.0 signing) and the private queue (a directory or an HTTP
endpoint that receives the event for in-house tools).

Standard Webhooks: ``webhook-id`` is the same on every retry (the consumer's idempotency key);
``webhook-timestamp`` is this attempt's Unix time; ``webhook-signature`` is
``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`` where a ``whsec_`` secret is base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from connectors.interface import Provider, Reply, dumps_body, event_document
from connectors.providers._common import bearer_or_authorization, iso
from connectors.secrets import ResolvedDestination
from ringward.core.connector_config import ProviderKind
from ringward.core.connector_event import ConnectorEvent
from ringward.core.delivery_policy import Outcome


def signing_key(secret: str) -> bytes:
    """Key bytes of a Standard Webhooks secret (``whsec_<base64>``; other values are used as UTF-8)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class Webhook(Provider):
    """``{"type", "timestamp", "data"}`` signed per attempt; 410 disables the destination."""

    kind = ProviderKind.WEBHOOK

    def payload(self, event: ConnectorEvent) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        return {"type": event.event_type, "timestamp": iso(event.created_at), "data": event_document(event)}

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0]))

    def headers(
        self, events: Sequence[ConnectorEvent], dest: ResolvedDestination, body: bytes, now: datetime
    ) -> dict[str, str]:
        headers = super().headers(events, dest, body, now)
        msg_id = events[0].webhook_id
        timestamp = int(now.timestamp())
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        if "signing_secret" in dest.secrets:
            headers["webhook-signature"] = sign(dest.secrets["signing_secret"], msg_id, timestamp, body)
        return headers

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        return bearer_or_authorization(dest)


class PrivateQueue(Provider):
    """A directory (one ``<event id>.json`` file per event, written once) or an HTTP endpoint
    (``Idempotency-Key`` header = event id, optional bearer token)."""

    kind = ProviderKind.PRIVATE_QUEUE

    def payload(self, event: ConnectorEvent) -> dict[str, Any]:
        verbatim = self.verbatim(event)
        if verbatim is not None:
            return verbatim
        return {"schema_version": "ringward.private-queue.v1", "event": event_document(event)}

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0]))

    def headers(
        self, events: Sequence[ConnectorEvent], dest: ResolvedDestination, body: bytes, now: datetime
    ) -> dict[str, str]:
        headers = super().headers(events, dest, body, now)
        headers["idempotency-key"] = events[0].webhook_id
        return headers

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        return bearer_or_authorization(dest)

    def is_local(self, dest: ResolvedDestination) -> bool:
        return dest.url.startswith("file://")

    def write_local(self, event: ConnectorEvent, dest: ResolvedDestination) -> Reply:
        """Write the event file once: an existing file for this id means it was delivered before."""
        directory = Path(dest.url.removeprefix("file://"))
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{event.webhook_id}.json"
        body = self.body([event], dest) + b"\n"
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp_name, target)  # atomic, fails if the file exists: written exactly once
            except FileExistsError:
                return Reply(outcome=Outcome.EXISTS, external_ref=target.name)
        finally:
            os.unlink(tmp_name)
        return Reply(outcome=Outcome.DELIVERED, external_ref=target.name)
