"""Event-triggered promotion flows (the deployments in ``prefect.yaml`` / ``deployments/serve.py``).

- ``rollout-audit-on-execution``: on ``ringward.promotion.executed`` / ``ringward.rollback.executed``,
  runs the rollout audit step for the recorded execution (or rollback) named in the event: the audit
  files next to the record and, with a connector configuration (``deliver_config`` or
  ``$RINGWARD_CONNECTORS`` on the worker), the delivery (once per destination). An audit already
  exported to the default place ends Completed with a note.
- ``rollout-execute-on-approval`` (opt-in, Kargo-style): on ``ringward.approval.decided``, when the
  approval is an approved rollout promotion approval, finds the signed request it was opened for in
  the store and runs the rollout execute step as ``ringward-automation`` (``actor`` /
  ``$RINGWARD_AUTOMATION_ACTOR``) with the trust root from ``trust_root`` / ``$RINGWARD_TRUST_ROOT``
  and windows from ``windows`` / ``$RINGWARD_WINDOWS``. Every check of a manual execution applies;
  the approval is still consumed exactly once: a second event, or a manual execution that won,
  ends Completed "already executed"; another action or an approval that is not (yet) approved is a
  Completed no-op.

Event payloads carry every parameter; the trigger templates are plain ``{{ event.payload.x }}``
and optional parameters default here from the worker's environment when None. A refusal (of the
rollout step, or of the automation's own checks) ends the run Failed with the refusal as data, as
the rollout flows do: no traceback in the run's logs.
"""

from __future__ import annotations

from typing import Any

from prefect import State, flow
from prefect.states import Completed, Failed

from flows._common import unwrap
from flows.promotion_rollout import audit_flow, execute_flow
from ringward.core.delivery.results import SUCCESS_STATUSES
from ringward.core.errors import ApprovalConsumedError, ExecutionReplayError, InputError, RingwardError
from ringward.core.promotion import rollout as ro
from ringward.operations.promotion.automation import audit_plan, automation_actor, default_trust_root
from tasks.promotion_automation import find_approved_promotion
from tasks.promotion_rollout import REFUSAL, refusal

__all__ = ["audit_on_execution_flow", "execute_on_approval_flow"]

AUTOMATIC_NOTES = "executed automatically after approval (execute-on-approval)"
DELIVERED = frozenset(status.value for status in SUCCESS_STATUSES)
#: refusals meaning another execution consumed the approval first
_ALREADY_EXECUTED = frozenset({ExecutionReplayError.code, ApprovalConsumedError.code})


def _refused(step: str, result: dict[str, Any]) -> State:
    """The Failed state ending this flow with a refused step's data (the rollout step's, or its own)."""
    return Failed(message=f"{step}: refused ({result['errors'][0]['message'][:300]})", data=result)


@flow(name="rollout-audit-on-execution", log_prints=True)
def audit_on_execution_flow(
    record_path: str,
    deliver_config: str | None = None,
    output: str | None = None,
    provider: str = "all",
    actor: str | None = None,
) -> State:
    """Audit one recorded promotion execution or rollback (``record_path``: its record or directory)."""
    try:
        return _audit_on_execution(record_path, deliver_config, output, provider, actor)
    except RingwardError as exc:
        return _refused("rollout-audit-on-execution", refusal(exc))


def _audit_on_execution(
    record_path: str, deliver_config: str | None, output: str | None, provider: str, actor: str | None
) -> State:
    plan = audit_plan(record_path, output=output, deliver_config=deliver_config, provider=provider, actor=actor)
    if plan["already"]:
        return Completed(message=f"audit of {record_path} already exported to {plan['already']}; nothing to do",
                         data={"record_path": record_path, "output_dir": plan["already"], "already": True})
    result = dict(unwrap(audit_flow(params=plan["params"], return_state=True)))
    if result.get(REFUSAL):
        return _refused("rollout-audit", result)
    delivery = result.get("delivery")
    what = f"{result['kind']} audit of {result['audited_id']} -> {result['output_dir']}"
    if delivery is None:
        return Completed(message=f"{what} (no connector configuration: not delivered)", data=result)
    if not delivery["success"]:
        failed = [row["destination"] for row in delivery["deliveries"] if row["status"] not in DELIVERED]
        return Failed(message=f"{what}; NOT delivered to: {', '.join(failed) or 'every destination'}", data=result)
    return Completed(message=f"{what}; delivered (event {delivery['event_id']})", data=result)


@flow(name="rollout-execute-on-approval", log_prints=True)
def execute_on_approval_flow(
    approval_id: str,
    action: str | None = None,
    state: str | None = None,
    actor: str | None = None,
    trust_root: str | None = None,
    windows: str | None = None,
    output_root: str | None = None,
) -> State:
    """Execute the rollout promotion an approval decision approved (``action``/``state`` from the
    event only short-cut the obvious no-ops; the store decides)."""
    try:
        return _execute_on_approval(approval_id, action, state, actor, trust_root, windows, output_root)
    except RingwardError as exc:
        return _refused("rollout-execute-on-approval", refusal(exc))


def _execute_on_approval(
    approval_id: str, action: str | None, state: str | None, actor: str | None, trust_root: str | None,
    windows: str | None, output_root: str | None,
) -> State:
    if action is not None and action != ro.ACTION_PROMOTE:
        return Completed(message=f"approval {approval_id}: action {action!r} is not a rollout promotion; "
                                 "nothing to do", data={"approval_id": approval_id, "decision": "skip"})
    if state is not None and state != "approved":
        return Completed(message=f"approval {approval_id}: {state}; nothing to execute",
                         data={"approval_id": approval_id, "decision": "skip"})
    plan = dict(unwrap(find_approved_promotion(approval_id, output_root, return_state=True)))
    if plan.get(REFUSAL):
        return _refused("find-approved-promotion", plan)
    if plan["decision"] != "execute":
        return Completed(message=plan["message"], data=plan)
    root = default_trust_root(trust_root)
    if root is None:
        raise InputError("trust_root: required (deployment parameter or RINGWARD_TRUST_ROOT on the worker)")
    params = {"request_path": plan["request_path"], "approval_id": approval_id, "actor": automation_actor(actor),
              "trust_root": root, "windows": windows, "output": plan["output"], "notes": AUTOMATIC_NOTES}
    result = dict(unwrap(execute_flow(params=params, return_state=True)))
    if result.get(REFUSAL):
        error = result["errors"][0]
        if error["code"] in _ALREADY_EXECUTED:
            # a concurrent execution (another event, or a person) consumed the approval first
            return Completed(message=f"already executed: {error['message']}",
                             data={**plan, "decision": "already-executed", "message": error["message"]})
        return _refused("rollout-execute-promotion", result)
    ring = result["ring_advancement"]
    return Completed(message=f"executed {result['execution_id']}: rollout {result['rollout_id']} {ring['from']} -> "
                             f"{ring['to']} as {result['executed_by']}", data=result)
