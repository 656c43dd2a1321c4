"""The Prefect events inventory decisions emit, as data (the flows emit them; the CLI's in-process path
emits them when a Prefect API is configured). Automations key on these: the
``inventory-automation-on-ingest`` deployment trigger on ``ringward.inventory.ingested`` reconciles the
channel's current release and opens (or attaches to) a remediation request on drift
(:mod:`ringward.operations.remediation.automation`); ``ringward.inventory.drift-detected`` announces
each drift found.

The ingested event carries ids only (``inventory_id``, ``channel``): whoever can post events to
Prefect can at most ask for a recorded ingestion to be reconciled; the automation looks the
observations, provider and channel up in the store."""

from __future__ import annotations

from typing import Any

INGESTED = "ringward.inventory.ingested"
DRIFT_DETECTED = "ringward.inventory.drift-detected"
FRESHNESS_CHANGED = "ringward.inventory.freshness-changed"

Event = tuple[str, str, dict[str, Any]]


def ingested_event(result: dict[str, Any]) -> Event | None:
    """Only a new ingestion (a duplicate changes nothing downstream); ids only."""
    if result.get("status") != "ingested":
        return None
    return (INGESTED, f"ringward.inventory.{result['provider']}",
            {"inventory_id": result["inventory_id"], "channel": result.get("channel")})


def drift_event(result: dict[str, Any]) -> Event | None:
    if result.get("drift_status") == "aligned":
        return None
    return (DRIFT_DETECTED, f"ringward.channel.{result.get('channel') or 'unassigned'}",
            {k: result[k] for k in ("reconciliation_id", "drift_status", "alert_level", "release", "channel",
                                    "report")})


def freshness_events(result: dict[str, Any]) -> list[Event]:
    return [(FRESHNESS_CHANGED, "ringward.inventory." + change["state"].replace(":", ".").replace("/", "."), change)
            for change in result.get("changes", [])]
