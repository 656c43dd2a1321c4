"""Prefect tasks around the rollout operations: one coarse task per step (the step verifies,
decides and records in one go; splitting it would only add task-run overhead).

A refused step (a :class:`~ringward.core.errors.RingwardError`; its refusal evidence record is
already written) ends the task run Failed with the refusal as data -- code, message, error type and
exit code, no traceback in the run's logs -- and the flow ends Failed with the same data
(``flows.promotion_rollout``); front doors re-raise it with :func:`raise_refusal`."""

from __future__ import annotations

from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.operations.promotion import rollout_ops
from tasks.promotion_channel import REFUSAL, raise_refusal, refusal, refusals_as_state

__all__ = ["REFUSAL", "TASKS", "raise_refusal", "refusal"]


def _step(step: str, params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any]:
    return rollout_ops.run_step(step, params, flow_run_id=flow_run_id)


@task(name="rollout-capture", cache_policy=NO_CACHE)
@refusals_as_state
def capture(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    """Verify the package, select targets and write the rollout directory + evidence."""
    return _step("capture", params, flow_run_id)


@task(name="rollout-verify", cache_policy=NO_CACHE)
@refusals_as_state
def verify(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return _step("verify", params, flow_run_id)


@task(name="rollout-request-promotion", cache_policy=NO_CACHE)
@refusals_as_state
def request_promotion(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return _step("request_promotion", params, flow_run_id)


# no retries on the deciding steps: a retried execution would only be refused as a replay
@task(name="rollout-execute-promotion", cache_policy=NO_CACHE)
@refusals_as_state
def execute(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return _step("execute", params, flow_run_id)


@task(name="rollout-request-rollback", cache_policy=NO_CACHE)
@refusals_as_state
def request_rollback(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return _step("request_rollback", params, flow_run_id)


@task(name="rollout-rollback", cache_policy=NO_CACHE)
@refusals_as_state
def rollback(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    return _step("rollback", params, flow_run_id)


@task(name="rollout-audit", cache_policy=NO_CACHE)
@refusals_as_state
def audit(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    """Export the audit files and, with a connector config, deliver (idempotent by event id)."""
    return _step("audit", params, flow_run_id)


TASKS = {
    "capture": capture,
    "verify": verify,
    "request_promotion": request_promotion,
    "execute": execute,
    "request_rollback": request_rollback,
    "rollback": rollback,
    "audit": audit,
}
