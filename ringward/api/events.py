"""Prefect events from the API's decisions (names and resources: :mod:`flows.events`).

Each builder turns an operation's result into ``(event name, resource id, payload)``; :func:`emit`
sends it only when a Prefect API is configured and returns the warnings list the response
carries (empty when the event was sent or events are off). A decision is recorded before its
event is sent, so an unsent event never undoes or fails it.
"""

from __future__ import annotations

from typing import Any

Event = tuple[str, str, dict[str, Any]]


def _evidence_id(result: dict[str, Any]) -> str | None:
    evidence = result.get("evidence") or {}
    value = evidence.get("evidence_id")
    return None if value is None else str(value)


def approval_decided(approval: Any, decision: str) -> Event:
    """``ringward.approval.decided`` for an approve / deny / revoke."""
    from flows.events import APPROVAL_DECIDED

    return (
        APPROVAL_DECIDED,
        f"ringward.approval.{approval.approval_id}",
        {
            "approval_id": approval.approval_id,
            "decision": decision,
            "action": approval.action,
            "target": approval.target,
            "state": approval.state.value,
            "decided_by": approval.decided_by,
            "subject_digest": approval.subject_digest,
            "quorum": approval.quorum,
            "approvals": len(approval.approvers()),
        },
    )


def channel_requested(result: dict[str, Any]) -> Event:
    """``ringward.promotion.requested`` of a channel promotion request (the CLI's payload)."""
    from ringward.operations.promotion.channel_ops import requested_event

    return requested_event(result)


def channel_exported(result: dict[str, Any], actor: str) -> Event:
    """``ringward.promotion.executed`` of an endpoint export (the channel promotion's execution)."""
    from flows.events import PROMOTION_EXECUTED

    return (
        PROMOTION_EXECUTED,
        f"ringward.channel.{result['channel']}",
        {
            "export_id": result["export_id"],
            "channel": result["channel"],
            "target_ring": result["target_ring"],
            "version": result["version"],
            "request_id": result["request_id"],
            "approval_id": result["approval_id"],
            "rollback": result["rollback"],
            "providers": list(result["providers"]),
            "executed_by": actor,
            "subject_digest": result["subject_digest"],
            "evidence_id": _evidence_id(result),
        },
    )


def rollout_requested(result: dict[str, Any], requester: str) -> Event:
    """``ringward.promotion.requested`` of a rollout promotion request."""
    from flows.events import PROMOTION_REQUESTED

    return (
        PROMOTION_REQUESTED,
        f"ringward.rollout.{result['rollout_id']}",
        {
            "request_id": result["request_id"],
            "rollout_id": result["rollout_id"],
            "current_ring": result["current_ring"],
            "target_ring": result["target_ring"],
            "approval_id": result["approval_id"],
            "approval_reused": result["approval_reused"],
            "requested_by": requester,
            "subject_digest": result["subject_digest"],
            "evidence_id": _evidence_id(result),
        },
    )


def rollout_executed(result: dict[str, Any]) -> Event:
    """``ringward.promotion.executed`` of a rollout promotion execution."""
    from flows.events import PROMOTION_EXECUTED

    ring = result.get("ring_advancement") or {}
    return (
        PROMOTION_EXECUTED,
        f"ringward.rollout.{result['rollout_id']}",
        {
            "execution_id": result["execution_id"],
            "request_id": result["request_id"],
            "rollout_id": result["rollout_id"],
            "from_ring": ring.get("from"),
            "to_ring": ring.get("to"),
            "approval_id": result["approval_id"],
            "executed_by": result["executed_by"],
            "break_glass": result["break_glass"],
            "evidence_id": _evidence_id(result),
        },
    )


def rollback_executed(result: dict[str, Any]) -> Event:
    """``ringward.rollback.executed`` of a rollout rollback."""
    from flows.events import ROLLBACK_EXECUTED

    ring = result.get("ring_rollback") or {}
    return (
        ROLLBACK_EXECUTED,
        f"ringward.rollout.{result['rollout_id']}",
        {
            "rollback_id": result["rollback_id"],
            "promotion_execution_id": result["promotion_execution_id"],
            "rollout_id": result["rollout_id"],
            "from_ring": ring.get("from"),
            "to_ring": ring.get("to"),
            "approval_id": result["approval_id"],
            "executed_by": result["executed_by"],
            "channels": [c.get("channel") for c in result.get("channels", [])],
            "evidence_id": _evidence_id(result),
        },
    )


def emit(event: Event) -> list[str]:
    """Send ``event`` when a Prefect API is configured; the response's ``warnings``."""
    from flows.events import emit_if_configured

    warning = emit_if_configured(*event)
    return [] if warning is None else [warning]
