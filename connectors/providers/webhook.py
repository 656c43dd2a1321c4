"""Generic webhook (Standard Webhooks 1.0.0 signing) and the private queue (a directory or an HTTP
endpoint that receives the event for in-house tools).

Standard Webhooks: ``webhook-id`` is the same on every retry (the consumer's idempotency key);
``webhook-timestamp`` is this attempt's Unix time; ``webhook-signature`` carries
``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`` per configured secret (two during a
rotation) and ``v1a,<base64 Ed25519>`` when a ``whsk_`` signing key is configured
(``ringward.core.delivery.webhook_signing``).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.interface import Provider, Reply, dumps_body, event_document
from connectors.providers._common import bearer_or_authorization, iso
from connectors.secrets import ResolvedDestination
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.webhook_signing import load_signing_key, signature_header


@functools.lru_cache(maxsize=16)
def _parsed_key(text: str) -> Ed25519PrivateKey:
    return load_signing_key(text, source="signing_key")


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
        secrets = [dest.secrets[n] for n in ("signing_secret", "signing_secret_previous") if n in dest.secrets]
        keys = [self._key(dest)] if "signing_key" in dest.secrets else []
        if secrets or keys:
            headers["webhook-signature"] = signature_header(
                msg_id, timestamp, body, secrets=secrets, signing_keys=keys
            )
        return headers

    @staticmethod
    def _key(dest: ResolvedDestination) -> Ed25519PrivateKey:
        # checked when the destination was resolved, so this cannot fail here; parsed once per key
        return _parsed_key(dest.secrets["signing_key"])

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
