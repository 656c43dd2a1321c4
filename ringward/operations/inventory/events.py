"""The Prefect events inventory decisions emit, as data (the flows emit them; the CLI's in-process path
emits them when a Prefect API is configured). Automations key on these: a deployment trigger on
``ringward.inventory.ingested`` starts reconciliation of the channel's release, and
``ringward.inventory.drift-detected`` is where remediation will hook in."""

from __future__ import annotations

from typing import Any

INGESTED = "ringward.inventory.ingested"
DRIFT_DETECTED = "ringward.inventory.drift-detected"
FRESHNESS_CHANGED = "ringward.inventory.freshness-changed"

Event = tuple[str, str, dict[str, Any]]


def ingested_event(result: dict[str, Any]) -> Event | None:
    """Only a new ingestion (a duplicate changes nothing downstream)."""
    if result.get("status") != "ingested":
        return None
    return (INGESTED, f"ringward.inventory.{result['provider']}",
            {k: result[k] for k in ("inventory_id", "provider", "channel", "observed_at", "endpoint_count",
                                    "observations")})


def drift_event(result: dict[str, Any]) -> Event | None:
    if result.get("drift_status") == "aligned":
        return None
    return (DRIFT_DETECTED, f"ringward.channel.{result.get('channel') or 'unassigned'}",
            {k: result[k] for k in ("reconciliation_id", "drift_status", "alert_level", "release", "channel",
                                    "report")})


def freshness_events(result: dict[str, Any]) -> list[Event]:
    return [(FRESHNESS_CHANGED, "ringward.inventory." + change["state"].replace(":", ".").replace("/", "."), change)
            for change in result.get("changes", [])]
