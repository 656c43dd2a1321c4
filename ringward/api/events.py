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


def approval_decided(approval: Any, decision: str, decided_by: str) -> Event:
    """``ringward.approval.decided`` for an approve / deny / revoke (the CLI's payload, so the
    ``execute-on-approval`` trigger reads the same fields whichever front door decided)."""
    from ringward.operations.promotion.automation import approval_decided_event

    return approval_decided_event(approval, decided_by=decided_by, decision=decision)


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
    """``ringward.promotion.requested`` of a rollout promotion request (the CLI's payload plus who asked)."""
    from ringward.operations.promotion.automation import promotion_requested_event

    name, resource, payload = promotion_requested_event(result)
    return name, resource, {**payload, "requested_by": requester}


def rollout_executed(result: dict[str, Any]) -> Event:
    """``ringward.promotion.executed`` of a rollout promotion execution (the CLI's payload: it carries
    the absolute ``execution_path`` the ``audit-on-promotion-executed`` trigger needs)."""
    from ringward.operations.promotion.automation import promotion_executed_event

    return promotion_executed_event(result)


def rollback_executed(result: dict[str, Any]) -> Event:
    """``ringward.rollback.executed`` of a rollout rollback (the CLI's payload, with ``rollback_path``)."""
    from ringward.operations.promotion.automation import rollback_executed_event

    return rollback_executed_event(result)


def emit(event: Event) -> list[str]:
    """Send ``event`` when a Prefect API is configured; the response's ``warnings``."""
    from flows.events import emit_if_configured

    warning = emit_if_configured(*event)
    return [] if warning is None else [warning]
