"""Prefect task around the ingestion -> reconciliation -> remediation automation: one coarse task (the
package verification, the reconciliation and the request are one recorded decision each inside it),
no retries -- a re-run of the same ingestion is answered from its automation record."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.inventory.common import parse_age
from ringward.operations.remediation import automation
from tasks.promotion_channel import refusals_as_state


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


def _path(value: Any) -> Path | None:
    return Path(str(value)) if value else None


@task(name="automate-reconciliation", cache_policy=NO_CACHE)
@refusals_as_state
def automate_reconciliation(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """Reconcile the ingestion against its channel's current release; on drift open or attach to the
    remediation request. Unset paths come from this worker's settings."""
    from ringward import settings

    with _open_store() as store:
        return automation.automate_reconciliation(
            store, inventory_id=str(params["inventory_id"]), channel=params.get("channel"), now=now,
            trust_root=_path(params.get("trust_root")) or settings.trust_root_path(),
            signing_key=_path(params.get("signing_key")) or automation.remediation_key_path(),
            packages=_path(params.get("packages")) or settings.packages_path(),
            channel_releases=_path(params.get("channel_releases")),
            strategy=params.get("strategy") or "mixed",
            stale_after=parse_age(params.get("stale_after") or "24h", option="--stale-after"),
            actor=params.get("actor"), flow_run_id=flow_run_id)
