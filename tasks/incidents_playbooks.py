"""Prefect tasks of the incident playbooks: start (or find) a run, advance one step, finish. Coarse: one
task per playbook step, each opening the store once; no retries -- a step is a decision, and a re-run
of the playbook resumes where it stopped (finished steps are never repeated)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.incidents import playbook_ops
from tasks.promotion_channel import refusals_as_state


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


@task(name="playbook-start", cache_policy=NO_CACHE)
@refusals_as_state
def start_playbook(playbook: str, params: dict[str, Any], now: datetime, flow_run_id: str | None
                   ) -> dict[str, Any] | State:
    """The run of (playbook, inputs): created the first time, found afterwards."""
    with _open_store() as store:
        return playbook_ops.start(store, playbook, params, now=now, flow_run_id=flow_run_id)


@task(name="playbook-step", cache_policy=NO_CACHE, task_run_name="{step}")
@refusals_as_state
def playbook_step(playbook: str, params: dict[str, Any], run_id: str, step: str, now: datetime,
                  flow_run_id: str | None) -> dict[str, Any] | State:
    """One step; ``stop`` when it awaits an approval."""
    with _open_store() as store:
        return playbook_ops.advance_step(store, playbook, params, run_id, step, now=now, flow_run_id=flow_run_id)


@task(name="playbook-finish", cache_policy=NO_CACHE)
@refusals_as_state
def finish_playbook(params: dict[str, Any], run_id: str, approval_used: bool, now: datetime,
                    flow_run_id: str | None) -> dict[str, Any] | State:
    """The run's result (a presented approval no step used is refused here)."""
    with _open_store() as store:
        return playbook_ops.finish_run(store, params, run_id, approval_used=approval_used, now=now,
                                       flow_run_id=flow_run_id)
