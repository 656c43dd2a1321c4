"""Prefect task of the scheduled KEV re-check: ``kev_ops.recheck_channels`` (every channel's current
release against the stored catalog; holds and incidents on a match, releases on VEX)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.advisories import kev_ops
from tasks.promotion_channel import refusals_as_state


@task(name="kev-recheck", cache_policy=NO_CACHE)
@refusals_as_state
def kev_recheck(params: dict[str, Any], now: datetime) -> dict[str, Any] | State:
    """``ringward kev recheck``."""
    from ringward.store import open_store

    with open_store() as store:
        return kev_ops.recheck_channels(
            store, packages=Path(params["packages"]), trust_root=Path(params["trust_root"]),
            actor=params.get("actor") or "kev-recheck", now=now,
            product_map=Path(params["product_map"]) if params.get("product_map") else None)
