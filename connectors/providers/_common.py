"""Helpers shared by providers: the facts a person needs, severity maps, auth header builders."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from connectors.secrets import ResolvedDestination
from ringward.core.delivery.event import ConnectorEvent, Severity


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def facts(event: ConnectorEvent) -> list[tuple[str, str]]:
    """(label, value) pairs shown in chat cards and tickets, in a fixed order."""
    pairs = [
        ("Event", event.event_type),
        ("Event ID", event.event_id),
        ("Severity", event.severity.value),
        ("Release", event.release_version),
        ("Channel", event.channel),
        ("Ring", event.ring),
        ("Environment", event.environment),
        ("Target", event.deployment_target),
        ("Actor", event.actor),
        ("Source", event.source),
        ("Time", iso(event.created_at)),
    ]
    return [(label, value) for label, value in pairs if value]


def title_of(event: ConnectorEvent, dest: ResolvedDestination) -> str:
    prefix = dest.config.title
    return f"{prefix}: {event.title}" if prefix else event.title


def bearer_or_authorization(dest: ResolvedDestination, *, scheme: str | None = None) -> dict[str, str]:
    """``authorization`` from a full header value, or ``<scheme> <token>``; empty when neither."""
    if "authorization" in dest.secrets:
        return {"authorization": dest.secrets["authorization"]}
    if "token" in dest.secrets:
        return {"authorization": f"{scheme or dest.config.authorization_scheme} {dest.secrets['token']}"}
    return {}


def basic(user: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
    return {"authorization": f"Basic {encoded}"}


SEVERITY_RANK = {Severity.INFO: 3, Severity.WARNING: 2, Severity.ERROR: 2, Severity.CRITICAL: 1}
