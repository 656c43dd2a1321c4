"""Endpoint-management providers: Jamf Pro, Microsoft Intune (Graph) and a Linux fleet endpoint.

They publish the event (usually an endpoint-management export publication whose
``provider_payloads`` hold the Jamf policy / Intune win32LobApp / Linux manifest) to the
configured endpoint, authenticated the way each tool's API clients are:

- Jamf Pro: API client credentials at ``<server>/api/oauth/token`` (or ``token_url``), then Bearer.
- Intune: Microsoft Entra client credentials for ``https://graph.microsoft.com/.default``, then Bearer.
- Linux fleet: an optional bearer token.

Every request carries ``Idempotency-Key`` = the event id; importing into the tool stays a reviewed
step on the receiving side (reference control ``endpoint-tool-import-review-required``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from connectors.auth import TOKENS, entra_token_url
from connectors.interface import Provider, dumps_body, event_document
from connectors.providers._common import bearer_or_authorization
from connectors.secrets import ResolvedDestination
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent

FLEET_SCHEMA = "ringward.fleet-publication.v1"


class _FleetProvider(Provider):
    scope: ClassVar[str | None] = None

    def payload(self, event: ConnectorEvent) -> dict[str, Any]:
        return {
            "schema_version": FLEET_SCHEMA,
            "provider": self.kind.value,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "release_version": event.release_version,
            "channel": event.channel,
            "ring": event.ring,
            "payload": self.verbatim(event),
            "event": event_document(event),
        }

    def body(self, events: Sequence[ConnectorEvent], dest: ResolvedDestination) -> bytes:
        return dumps_body(self.payload(events[0]))

    def headers(
        self, events: Sequence[ConnectorEvent], dest: ResolvedDestination, body: bytes, now: datetime
    ) -> dict[str, str]:
        headers = super().headers(events, dest, body, now)
        headers["idempotency-key"] = events[0].webhook_id
        return headers

    def token_url(self, dest: ResolvedDestination) -> str:
        raise NotImplementedError

    def auth_headers(self, dest: ResolvedDestination, client: httpx.Client, timeout: float) -> dict[str, str]:
        if dest.config.client_id and "client_secret" in dest.secrets:
            token = TOKENS.get(
                client,
                dest,
                token_url=self.token_url(dest),
                scope=dest.config.scope or self.scope,
                timeout=timeout,
            )
            return {"authorization": f"Bearer {token}"}
        return bearer_or_authorization(dest)


class Jamf(_FleetProvider):
    kind = ProviderKind.JAMF

    def token_url(self, dest: ResolvedDestination) -> str:
        if dest.config.token_url:
            return dest.config.token_url
        parts = urlsplit(dest.url)
        return f"{parts.scheme}://{parts.netloc}/api/oauth/token"


class Intune(_FleetProvider):
    kind = ProviderKind.INTUNE
    scope = "https://graph.microsoft.com/.default"

    def token_url(self, dest: ResolvedDestination) -> str:
        return entra_token_url(dest)


class LinuxFleet(_FleetProvider):
    kind = ProviderKind.LINUX

    def token_url(self, dest: ResolvedDestination) -> str:
        if dest.config.token_url:
            return dest.config.token_url
        raise NotImplementedError("linux fleet client credentials need token_url")
