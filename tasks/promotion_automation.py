"""Prefect tasks of the event-triggered promotion flows: what an approval decision means for
automatic execution (a store lookup; the execution itself is the rollout execute step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.promotion.automation import promotion_for_approval
from ringward.operations.release.release_ops import utc_now
from tasks.promotion_channel import refusals_as_state


@task(name="find-approved-promotion", cache_policy=NO_CACHE)
@refusals_as_state
def find_approved_promotion(approval_id: str, output_root: str | None) -> dict[str, Any] | State:
    """The signed request an approval was opened for, or why there is nothing to execute (a refusal,
    e.g. an unknown approval, ends the task Failed with it as data)."""
    from ringward.store import open_store

    with open_store() as store:
        return promotion_for_approval(store, approval_id, now=utc_now(),
                                      output_root=Path(output_root) if output_root else None)
