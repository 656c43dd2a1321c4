"""Building a remediation handoff (``cavra.endpoint-remediation-handoff.v1``, reference §9.3) from an
*executed* request, without I/O.

Kept: the provider payloads ``cavra.endpoint-remediation-handoff.<provider>.v1`` (jira ``issue``,
servicenow ``change_request``, slack ``message``, teams ``message_card``, private_queue
``queue_event``), ``handoff_id`` (``erh_`` + sha256(json{request_id, sorted providers,
request_sha256})[:12]) and the record's fields. What differs (reference §11.8): a handoff is built only
from a request whose approval was consumed by an execution (``approval_required`` is therefore always
false and ``execution_id`` is recorded), and a ``webhook`` provider carries the same work items as the
private queue. The payloads go out through the connector platform (one event, id = handoff id, so a
re-run delivers nothing twice); they are recorded verbatim in the handoff.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ringward.core.errors import InputError
from ringward.core.remediation.handoff import (
    HANDOFF_CONTROLS,
    HANDOFF_SCHEMA,
    HandoffProvider,
    RemediationHandoff,
    handoff_id_for,
    normalise_provider,
)
from ringward.core.remediation.request import canonical_sha256

KIND_HANDOFF = "endpoint-remediation-handoff"
KIND_STATUS = "endpoint-remediation-handoff-status"
HANDOFF_FILE = "endpoint-remediation-handoff.json"
#: work items carried in the connector event (the full list is in the recorded handoff)
EVENT_WORK_ITEMS = 50


def parse_providers(value: str | Iterable[str]) -> tuple[HandoffProvider, ...]:
    """``jira,slack`` / ``all`` / repeated values -> distinct providers in the given order.

    Raises:
        InputError: an unknown provider, or none at all.
    """
    items = [value] if isinstance(value, str) else list(value)
    chosen: list[HandoffProvider] = []
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            if part.lower() == "all":
                candidates = list(HandoffProvider)
            else:
                try:
                    candidates = [normalise_provider(part)]
                except ValueError as exc:
                    raise InputError(f"--provider: {exc}, found {part!r}") from None
            chosen.extend(c for c in candidates if c not in chosen)
    if not chosen:
        raise InputError("--provider: expected at least one of jira, servicenow, slack, teams, private_queue, webhook")
    return tuple(chosen)


def work_items(actions: Sequence[Mapping[str, Any]], approval_id: str) -> list[dict[str, Any]]:
    return [
        {
            "action_id": a.get("action_id"),
            "action_type": a.get("action_type"),
            "provider": a.get("provider"),
            "deployment_target": a.get("deployment_target"),
            "endpoint_id": a.get("endpoint_id"),
            "requires_approval_id": approval_id,
        }
        for a in actions
    ]


def provider_payload(provider: HandoffProvider, *, handoff_id: str, request: Mapping[str, Any],
                     approval_id: str, approval_state: str) -> dict[str, Any]:
    """One provider's §9.3 payload."""
    request_id = str(request["request_id"])
    strategy = str(request["strategy"])
    actions = list(request["actions"])
    release = request.get("release") or {}
    text = (f"Endpoint remediation {request_id} ({strategy}, {len(actions)} actions) for release "
            f"{release.get('version')} on {request.get('channel') or 'no channel'}; approval {approval_id}.")
    base: dict[str, Any] = {
        "schema_version": f"cavra.endpoint-remediation-handoff.{provider.value}.v1",
        "handoff_id": handoff_id,
        "provider": provider.value,
        "request_id": request_id,
        "reconciliation_id": request["reconciliation_id"],
        "approval_id": approval_id,
        "approval_state": approval_state,
        "action_count": len(actions),
        "strategy": strategy,
        "release": release,
        "channel": request.get("channel"),
        "summary": request.get("summary") or {},
        "actions": actions,
        "execution_guard": {
            "requires_approved_approval": True,
            "approval_id": approval_id,
            "private_connector_must_recheck_approval": True,
        },
    }
    if provider is HandoffProvider.JIRA:
        base["issue"] = {
            "project": {"key": "CAVRA"},
            "issuetype": {"name": "Task"},
            "summary": f"CAVRA endpoint remediation {request_id}",
            "description": text,
            "labels": ["cavra", "endpoint-remediation", strategy],
        }
    elif provider is HandoffProvider.SERVICENOW:
        base["change_request"] = {
            "short_description": f"CAVRA endpoint remediation {request_id}",
            "description": text,
            "category": "software",
            "subcategory": "endpoint_runtime",
            "impact": "2" if request.get("alert_level") == "critical" else "3",
            "urgency": "2",
            "correlation_id": handoff_id,
            "u_cavra_request_id": request_id,
            "u_cavra_approval_id": approval_id,
        }
    elif provider is HandoffProvider.SLACK:
        base["message"] = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    elif provider is HandoffProvider.TEAMS:
        base["message_card"] = {"@type": "MessageCard", "@context": "https://schema.org/extensions",
                                "summary": f"CAVRA endpoint remediation {request_id}", "text": text}
    else:  # private_queue and webhook: machine work items
        base["queue_event"] = {
            "event_type": "cavra.endpoint_remediation_handoff",
            "dedupe_key": handoff_id,
            "status": "ready_for_private_connector",
            "work_items": work_items(actions, approval_id),
        }
    return base


def build_handoff(
    request: Mapping[str, Any],
    execution: Mapping[str, Any],
    *,
    providers: Sequence[HandoffProvider],
    requested_by: str,
    created_at: datetime,
    delivery_mode: str = "connector",
) -> RemediationHandoff:
    """The handoff record of an executed request (raises InputError when they do not belong together)."""
    if execution.get("request_id") != request.get("request_id"):
        raise InputError(f"execution: request_id expected {request.get('request_id')}, "
                         f"found {execution.get('request_id')}")
    approval = execution.get("approval") or {}
    approval_id = str(execution["approval_id"])
    approval_state = str(approval.get("state") or "approved")
    request_sha256 = canonical_sha256(dict(request))
    handoff_id = handoff_id_for(str(request["request_id"]), [p.value for p in providers], request_sha256)
    payloads = {
        p.value: provider_payload(p, handoff_id=handoff_id, request=request, approval_id=approval_id,
                                  approval_state=approval_state)
        for p in providers
    }
    return RemediationHandoff(
        schema_version=HANDOFF_SCHEMA,
        handoff_id=handoff_id,
        request_id=str(request["request_id"]),
        reconciliation_id=str(request["reconciliation_id"]),
        created_at=created_at.astimezone(UTC),
        requested_by=requested_by,
        delivery_mode=delivery_mode,
        providers=tuple(providers),
        provider_count=len(providers),
        action_count=len(request["actions"]),
        approval_id=approval_id,
        approval_state=approval_state,
        approval_required=False,
        release=str((request.get("release") or {}).get("version") or "") or None,
        channel=request.get("channel"),
        strategy=str(request["strategy"]),
        alert_level=str(request.get("alert_level") or "warning"),
        summary=dict(request.get("summary") or {}),
        payloads=payloads,
        controls=HANDOFF_CONTROLS,
        evidence_refs=(
            f"endpoint-remediation-request://{request['request_id']}",
            f"endpoint-remediation-execution://{execution['execution_id']}",
            f"endpoint-reconciliation://{request['reconciliation_id']}",
            f"approval://{approval_id}",
        ),
        request_sha256=request_sha256,
        remediation_request={k: v for k, v in request.items() if k != "reconciliation_report"},
    )
