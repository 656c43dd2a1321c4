"""Prefect task of the scheduled incident breach report: evaluate every open incident's response
clocks at ``now`` and (with a connector config) deliver each new breach notice once. Coarse, one
store opening, no retries (a re-run is idempotent: delivered notices are recorded and skipped)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.incidents import incident_ops
from tasks.promotion_channel import refusals_as_state


def _lookups(config: Any) -> Any:
    from ringward.core.delivery.config import config_to_json
    from tasks.delivery import prefect_secret_lookup

    return {"prefect-secret": prefect_secret_lookup} if '"prefect-secret:' in config_to_json(config) else None


@task(name="incident-breaches", cache_policy=NO_CACHE)
@refusals_as_state
def incident_breaches(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """``ringward incident breaches [--deliver CONFIG]``."""
    from ringward.store import open_store

    with open_store() as store:
        if not params.get("config_path"):
            return incident_ops.breach_report(store, now=now)
        config = incident_ops.load_config(Path(params["config_path"]))
        return incident_ops.deliver_breaches(store, config, now=now, actor=params.get("actor") or "incident-breaches",
                                             providers=params.get("providers") or "all", lookups=_lookups(config),
                                             flow_run_id=flow_run_id)
