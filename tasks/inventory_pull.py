"""Prefect tasks of a scheduled inventory pull: coarse -- one to plan, one per batch of pages (never one
per host or per page), one to merge, ingest and record. No Prefect retries: the HTTP client retries
what retrying fixes (network errors, 408, 429, 5xx) inside a batch, and a refused pull is a recorded
decision (401 is a configuration error). Secrets are resolved inside each task from the connector
file (``env:`` from the worker's environment, ``prefect-secret:`` from Secret blocks) and never
passed between tasks."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.inventory import pull_ops
from ringward.operations.inventory.common import parse_age
from ringward.operations.inventory.ingest import DEFAULT_SOFTWARE
from tasks.delivery import LOOKUPS
from tasks.promotion_channel import refusals_as_state


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


@task(name="plan-inventory-pull", cache_policy=NO_CACHE)
@refusals_as_state
def plan_inventory_pull(params: dict[str, Any], now: datetime) -> dict[str, Any] | State:
    """Resolve the source, read its cursor, choose a full or incremental read."""
    with _open_store() as store:
        plan = pull_ops.plan_pull(
            store, config_path=Path(params["config_path"]), provider=params["provider"], now=now,
            actor=params.get("actor") or "inventory-pull", source=params.get("source"), channel=params.get("channel"),
            software=tuple(params.get("software") or DEFAULT_SOFTWARE), full=bool(params.get("full")),
            full_every=parse_age(params.get("full_every") or "24h", option="--full-every"),
            page_size=params.get("page_size"),
            batch_pages=int(params.get("batch_pages") or pull_ops.DEFAULT_BATCH_PAGES),
            max_hosts=int(params.get("max_hosts") or pull_ops.DEFAULT_MAX_HOSTS), lookups=LOOKUPS)
    return plan.model_dump(mode="json")


@task(name="pull-inventory-pages", cache_policy=NO_CACHE)
@refusals_as_state
def pull_inventory_pages(plan: dict[str, Any], continuation: dict[str, Any], now: datetime,
                         flow_run_id: str | None) -> dict[str, Any] | State:
    """Read one batch of pages into the run's spool; the next batch starts at the returned ``next``."""
    with _open_store() as store:
        return pull_ops.fetch_batch(store, pull_ops.PullPlan.model_validate(plan), continuation, now=now,
                                    lookups=LOOKUPS, flow_run_id=flow_run_id)


@task(name="ingest-pulled-inventory", cache_policy=NO_CACHE)
@refusals_as_state
def ingest_pulled_inventory(plan: dict[str, Any], batches: list[dict[str, Any]], now: datetime,
                            flow_run_id: str | None) -> dict[str, Any] | State:
    """Merge the pages into the fleet, ingest it, record the pull and its cursor (compare-and-set)."""
    with _open_store() as store:
        return pull_ops.finish_pull(store, pull_ops.PullPlan.model_validate(plan), batches, now=now,
                                    flow_run_id=flow_run_id, lookups=LOOKUPS)
