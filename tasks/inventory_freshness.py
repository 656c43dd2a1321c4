"""Prefect task of the freshness cron's notification step: one connector notification per freshness
state change not yet notified (coarse: one task for every pending change, one store opening; no
Prefect retries -- a delivery that failed is retried by the next evaluation under the same event id)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.inventory import freshness as freshness_ops
from tasks.delivery import LOOKUPS
from tasks.promotion_channel import refusals_as_state


@task(name="notify-freshness-changes", cache_policy=NO_CACHE)
@refusals_as_state
def notify_freshness_changes(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    from ringward.operations.delivery.delivery_ops import load_connector_config
    from ringward.store import open_store

    config = load_connector_config(Path(params["config_path"]))
    with open_store() as store:
        return freshness_ops.notify_freshness_changes(
            store, config, now=now, actor=params.get("actor") or "inventory-freshness",
            providers=params.get("providers") or "all", lookups=LOOKUPS, flow_run_id=flow_run_id)
