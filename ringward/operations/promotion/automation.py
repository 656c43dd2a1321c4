"""Promotion automation: the Prefect events of the rollout steps and of approval decisions (one
payload builder each, shared by the flows and the CLI's in-process path), and the lookups the
event-triggered flows make (which signed request an approval belongs to, where an automatic audit
goes).

Every event payload carries all the parameters a triggered deployment needs (absolute paths, ids),
so deployment triggers template plain ``{{ event.payload.<field> }}`` values only. Nothing here
imports Prefect; sending is the caller's business (``flows.events.emit_if_configured`` or
``flows._common.emit``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.approvals.rules import ApprovalState
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import StateError
from ringward.core.promotion import rollout as ro
from ringward.store.promotion.executions_repo import RolloutLedger

if TYPE_CHECKING:
    from datetime import datetime

    from ringward.core.approvals.rules import Approval
    from ringward.store import Store

# event names (the contract with the deployment triggers in prefect.yaml and deployments/serve.py)
PROMOTION_REQUESTED = "ringward.promotion.requested"
APPROVAL_DECIDED = "ringward.approval.decided"
PROMOTION_EXECUTED = "ringward.promotion.executed"
ROLLBACK_EXECUTED = "ringward.rollback.executed"

#: who runs the automatic steps unless configured otherwise
AUTOMATION_ACTOR = "ringward-automation"
AUTOMATION_ACTOR_ENV = "RINGWARD_AUTOMATION_ACTOR"
TRUST_ROOT_ENV = "RINGWARD_TRUST_ROOT"
CONNECTORS_ENV = "RINGWARD_CONNECTORS"
#: the largest record an event builder reads back (execution and rollback records are a few KiB)
_MAX_RECORD_BYTES = 4 * 1024 * 1024

Event = tuple[str, str, dict[str, Any]]


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def _evidence_id(result: Mapping[str, Any]) -> str | None:
    evidence = result.get("evidence")
    return str(evidence["evidence_id"]) if evidence else None


def _release_version(record_path: str) -> str | None:
    """The release version named in a just-written execution or rollback record (None if unreadable:
    an event never fails a step that is already recorded)."""
    try:
        with open(record_path, "rb") as handle:
            data = handle.read(_MAX_RECORD_BYTES + 1)
        if len(data) > _MAX_RECORD_BYTES:
            return None
        release = loads_strict(data, source=os.path.basename(record_path), max_bytes=_MAX_RECORD_BYTES)["release"]
        version = release.get("version") if isinstance(release, dict) else None
        return version if isinstance(version, str) else None
    except Exception:
        return None


# --- event payloads -------------------------------------------------------------------------------------


def promotion_requested_event(result: Mapping[str, Any]) -> Event:
    """``ringward.promotion.requested`` of a rollout promotion request result."""
    return PROMOTION_REQUESTED, f"ringward.rollout.{result['rollout_id']}", {
        "kind": "rollout",
        "request_id": result["request_id"],
        "rollout_id": result["rollout_id"],
        "current_ring": result["current_ring"],
        "target_ring": result["target_ring"],
        "approval_id": result["approval_id"],
        "approval_state": result["approval_state"],
        "approval_reused": result["approval_reused"],
        "subject_digest": result["subject_digest"],
        "expires_at": result["expires_at"],
        "request_path": _absolute(result["request_path"]),
        "evidence_id": _evidence_id(result),
    }


def promotion_executed_event(result: Mapping[str, Any]) -> Event:
    """``ringward.promotion.executed`` of a promotion execution result."""
    path = _absolute(result["execution_path"])
    ring = result["ring_advancement"]
    return PROMOTION_EXECUTED, f"ringward.rollout.{result['rollout_id']}", {
        "execution_id": result["execution_id"],
        "request_id": result["request_id"],
        "rollout_id": result["rollout_id"],
        "approval_id": result["approval_id"],
        "from": ring["from"],
        "to": ring["to"],
        "target_ring": ring["to"],
        "release_version": _release_version(path) if path else None,
        "executed_by": result["executed_by"],
        "break_glass": result["break_glass"],
        "execution_path": path,
        "evidence_id": _evidence_id(result),
    }


def rollback_executed_event(result: Mapping[str, Any]) -> Event:
    """``ringward.rollback.executed`` of a rollback result."""
    path = _absolute(result["rollback_path"])
    ring = result["ring_rollback"]
    return ROLLBACK_EXECUTED, f"ringward.rollout.{result['rollout_id']}", {
        "rollback_id": result["rollback_id"],
        "promotion_execution_id": result["promotion_execution_id"],
        "rollout_id": result["rollout_id"],
        "approval_id": result["approval_id"],
        "from": ring["from"],
        "to": ring["to"],
        "target_ring": ring["to"],
        "release_version": _release_version(path) if path else None,
        "executed_by": result["executed_by"],
        "rollback_path": path,
        "evidence_id": _evidence_id(result),
    }


#: rollout step -> the builder of the event it emits (steps without one emit nothing)
STEP_EVENTS = {
    "request_promotion": promotion_requested_event,
    "execute": promotion_executed_event,
    "rollback": rollback_executed_event,
}


def approval_decided_event(approval: Approval, *, decided_by: str, decision: str) -> Event:
    """``ringward.approval.decided`` after one decision; ``state`` is the state after it (a first vote
    of a quorum of two leaves it pending)."""
    return APPROVAL_DECIDED, f"ringward.approval.{approval.approval_id}", {
        "approval_id": approval.approval_id,
        "action": approval.action,
        "target": approval.target,
        "decision": decision,
        "state": approval.state.value,
        "decided_by": decided_by,
        "subject_digest": approval.subject_digest,
        "quorum": approval.quorum,
        "approvers": approval.approvers(),
    }


# --- execute on approval --------------------------------------------------------------------------------


def promotion_for_approval(
    store: Store, approval_id: str, *, now: datetime, output_root: Path | None = None
) -> dict[str, Any]:
    """What an approval decision means for automatic execution:

    - ``{"decision": "execute", "request_path", "execution_id", "output", ...}``: an approved,
      unused rollout promotion approval and the signed request it was opened for (the newest
      ``request`` step recorded with it);
    - ``{"decision": "already-executed", ...}``: the approval was consumed or an execution is recorded;
    - ``{"decision": "skip", ...}``: another action, or not approved (pending quorum, denied, expired,
      revoked), or no request recorded with it.

    ``message`` says why in one line. The execution output defaults to a sibling of the request
    directory named after the execution id (``output_root`` overrides the parent).

    Raises:
        ApprovalNotFoundError: the approval is not in this store.
        StateError: the request recorded with the approval is no longer where it was written.
    """
    approval = store.approvals.get(approval_id)
    base: dict[str, Any] = {"approval_id": approval_id, "action": approval.action}
    if approval.action != ro.ACTION_PROMOTE:
        return {**base, "decision": "skip",
                "message": f"approval {approval_id}: action {approval.action!r} is not a rollout promotion"}
    steps = RolloutLedger(store).by_approval(approval_id)
    executions = [s for s in steps if s.step == "execution"]
    if executions or approval.consumed_at is not None:
        ref = executions[0].ref_id if executions else approval.execution_ref
        when = approval.consumed_at.isoformat() if approval.consumed_at else "?"
        return {**base, "decision": "already-executed", "execution_id": ref,
                "message": f"approval {approval_id}: already executed as {ref} (consumed {when} by "
                           f"{approval.consumed_by}); approvals are single-use"}
    state = approval.effective_state(now)
    if state is not ApprovalState.APPROVED:
        votes = f" ({len(approval.approvers())}/{approval.quorum} approvals)" if state is ApprovalState.PENDING else ""
        return {**base, "decision": "skip", "state": state.value,
                "message": f"approval {approval_id}: {state.value}{votes}; nothing to execute"}
    requests = [s for s in steps if s.step == "request"]
    if not requests:
        return {**base, "decision": "skip",
                "message": f"approval {approval_id}: no rollout promotion request is recorded with it"}
    request = requests[-1]
    request_dir = Path(request.path or "")
    request_file = request_dir / ro.PROMOTION_REQUEST_FILE
    if not request.path or not request_file.is_file():
        raise StateError(f"{request_file}: promotion request {request.ref_id} of approval {approval_id} not found "
                         "(moved or deleted since it was recorded)")
    execution_id = ro.promotion_execution_id(request.ref_id, approval_id)
    parent = output_root if output_root is not None else request_dir.parent
    return {**base, "decision": "execute", "request_id": request.ref_id, "rollout_id": request.rollout_id,
            "request_path": str(request_file), "execution_id": execution_id,
            "output": str((parent / execution_id).absolute()),
            "message": f"approval {approval_id}: approved; executing request {request.ref_id} as {execution_id}"}


# --- audit on execution ---------------------------------------------------------------------------------


def automation_actor(actor: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return actor or env.get(AUTOMATION_ACTOR_ENV, "").strip() or AUTOMATION_ACTOR


def default_trust_root(trust_root: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return trust_root or env.get(TRUST_ROOT_ENV, "").strip() or None


def audit_plan(
    record_path: str,
    *,
    output: str | None = None,
    deliver_config: str | None = None,
    provider: str = "all",
    actor: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The audit step's parameters for a recorded execution or rollback (file or directory).

    The output defaults to ``<record dir>-audit`` next to the record; ``deliver_config`` to
    ``$RINGWARD_CONNECTORS`` (no config: the audit files are written, nothing is delivered). When
    the default output already exists the audit was already exported (``already``: its path)."""
    env = os.environ if environ is None else environ
    record = Path(record_path).absolute()
    record_dir = record if record.is_dir() else record.parent
    out = Path(output).absolute() if output else record_dir.parent / f"{record_dir.name}-audit"
    config = deliver_config or env.get(CONNECTORS_ENV, "").strip() or None
    params = {"record_path": str(record), "output": str(out), "deliver_config": config, "provider": provider,
              "actor": automation_actor(actor, environ=env)}
    already = str(out) if output is None and out.exists() else None
    return {"params": params, "already": already}
