"""Flows: one per rollout step (capture, verify, request_promotion, execute, request_rollback,
rollback, audit). Each returns the CLI's result dict, publishes it as an artifact under a stable
key; the request emits ``ringward.promotion.requested`` and the executing steps emit
``ringward.promotion.executed`` / ``ringward.rollback.executed`` (the audit deployments trigger on
them). The payloads come from ``ringward.operations.promotion.automation``, the same builders the
CLI's in-process path uses.

A refused step ends its flow run Failed carrying the refusal (``{"refused": true, "errors": [{code,
message, error_type, exit_code}]}``; its refusal evidence record is already written), with no
traceback in the run's logs and no artifact or event; front doors re-raise it as the same one-line
error (:func:`flows._common.run_flow` does, or :func:`raise_refusal`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed

from flows._common import current_flow_run_id, emit, unwrap
from ringward.operations.promotion.automation import PROMOTION_EXECUTED as PROMOTION_EVENT
from ringward.operations.promotion.automation import ROLLBACK_EXECUTED as ROLLBACK_EVENT
from ringward.operations.promotion.automation import (
    promotion_executed_event,
    promotion_requested_event,
    rollback_executed_event,
)
from tasks import promotion_rollout as steps
from tasks.promotion_rollout import REFUSAL, raise_refusal

__all__ = ["FLOWS", "PROMOTION_EVENT", "ROLLBACK_EVENT", "audit_flow", "capture_flow", "execute_flow",
           "raise_refusal", "request_promotion_flow", "request_rollback_flow", "rollback_flow", "verify_flow"]

#: result fields shown in a step's artifact
_SUMMARY_FIELDS = (
    "rollout_id", "request_id", "execution_id", "rollback_id", "promotion_execution_id", "approval_id",
    "approval_state", "approval_reused", "environment", "rollout_ring", "current_ring", "target_ring", "status",
    "break_glass", "audited_id", "output_dir",
)


def _publish(step: str, result: dict[str, Any]) -> None:
    lines = [f"# rollout {step.replace('_', ' ')}", ""]
    for key in _SUMMARY_FIELDS:
        if result.get(key) is not None:
            lines.append(f"- **{key}**: `{result[key]}`")
    for key in ("ring_advancement", "ring_rollback"):
        if result.get(key):
            lines.append(f"- **{key}**: {result[key]['from']} -> {result[key]['to']}")
    delivery = result.get("delivery")
    if delivery:
        lines.append(f"- **delivery**: {'delivered' if delivery['success'] else 'FAILED'} "
                     f"(evidence {delivery['evidence_id']})")
    evidence = result.get("evidence")
    if evidence:
        lines += ["", f"Evidence record `{evidence['evidence_id']}` ({evidence['kind']}) in `{evidence['bundle_dir']}`"]
    create_markdown_artifact(markdown="\n".join(lines), key=f"rollout-{step.replace('_', '-')}",
                             description=f"rollout {step}")


#: the id a step's Completed message names, first found
_IDS = ("execution_id", "rollback_id", "request_id", "audited_id", "rollout_id")


def _run(step: str, params: dict[str, Any],
         event: Callable[[dict[str, Any]], tuple[str, str, dict[str, Any]]] | None = None) -> State:
    """Run the step's task; a refusal ends the flow Failed with it (no artifact, no event)."""
    task = steps.TASKS[step]
    result = dict(unwrap(task(params, current_flow_run_id(), return_state=True)))
    if result.get(REFUSAL):
        return Failed(message=f"{task.name}: refused ({result['errors'][0]['message'][:300]})", data=result)
    _publish(step, result)
    if event is not None:
        emit(*event(result))
    ident = next((result[key] for key in _IDS if result.get(key)), "")
    return Completed(message=f"{task.name}: {ident}" if ident else task.name, data=result)


@flow(name="rollout-capture", log_prints=True)
def capture_flow(params: dict[str, Any]) -> State:
    return _run("capture", params)


@flow(name="rollout-verify", log_prints=True)
def verify_flow(params: dict[str, Any]) -> State:
    return _run("verify", params)


@flow(name="rollout-request-promotion", log_prints=True)
def request_promotion_flow(params: dict[str, Any]) -> State:
    return _run("request_promotion", params, promotion_requested_event)


@flow(name="rollout-execute-promotion", log_prints=True)
def execute_flow(params: dict[str, Any]) -> State:
    return _run("execute", params, promotion_executed_event)


@flow(name="rollout-request-rollback", log_prints=True)
def request_rollback_flow(params: dict[str, Any]) -> State:
    return _run("request_rollback", params)


@flow(name="rollout-rollback", log_prints=True)
def rollback_flow(params: dict[str, Any]) -> State:
    return _run("rollback", params, rollback_executed_event)


@flow(name="rollout-audit", log_prints=True)
def audit_flow(params: dict[str, Any]) -> State:
    return _run("audit", params)


FLOWS = {
    "capture": capture_flow,
    "verify": verify_flow,
    "request_promotion": request_promotion_flow,
    "execute": execute_flow,
    "request_rollback": request_rollback_flow,
    "rollback": rollback_flow,
    "audit": audit_flow,
}
