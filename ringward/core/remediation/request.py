"""Endpoint drift remediation requests (``cavra.endpoint-drift-remediation-request.v1``, reference
§9.1) and executions (``cavra.endpoint-drift-remediation-execution.v1``, §9.2), built and checked
without I/O.

Kept from the reference: the action rules (one action per drift item), ``action_id`` (``era_`` +
sha256("<reconciliation_id>:<i>:<type>:<target>:<endpoint_id>")[:12]), ``request_id`` (``err_`` +
sha256(json{reconciliation_id, strategy, actions})[:12]), ``execution_id`` (``ere_`` +
sha256("<request_id>:<approval_id>")[:12]), the decision binding (``<request_id>:decision``,
session = reconciliation id, action ``endpoint_drift_remediation``), field names and schema strings.

What differs (reference §11.5-§11.8):

- the request is signed (§3.2 wire format) and counts only under a pinned **remediation**-role key;
- the approval binds the request's *subject digest* -- sha256 of the canonical request without its
  ``approval`` summary and ``signature`` (the summary names the approval, so it cannot be inside
  what the approval binds) -- plus the action and ``<release version>:<request_id>`` as target;
- each request carries its dedup keys (release, deployment target, drift class) so a run that finds
  the same drift attaches to the open request instead of opening another approval;
- republish and rollback actions are listed for the promotion flows (each under its own approval),
  the rest become handoff work items; nothing here mutates an endpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringward.core.errors import InputError, MalformedDocumentError, validation_problem

REQUEST_SCHEMA = "cavra.endpoint-drift-remediation-request.v1"
EXECUTION_SCHEMA = "cavra.endpoint-drift-remediation-execution.v1"
RECONCILIATION_SCHEMA = "cavra.endpoint-reconciliation.v1"
#: the embedded signature's schema string (the reference left these requests unsigned)
REQUEST_SIGNATURE = "ringward.endpoint-drift-remediation.signature.v1"
REQUEST_FILE = "endpoint-remediation-request.json"
REQUEST_MD = "endpoint-remediation-request.md"
EXECUTION_FILE = "endpoint-remediation-execution.json"
EXECUTION_MD = "endpoint-remediation-execution.md"
#: approval action (reference §5.3)
ACTION = "endpoint_drift_remediation"
RULE_ID = "release.endpoint_remediation.require_approval"
LABEL = "endpoint drift remediation request"
DEFAULT_APPROVER_GROUP = "Endpoint Change Advisory Board"
#: evidence kinds (reference ``metadata_kind``)
KIND_REQUEST = "endpoint-drift-remediation-request"
KIND_EXECUTION = "endpoint-drift-remediation-execution"
#: largest reconciliation report / request document read from disk
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
#: most actions one request may carry (a fleet-wide outage is one incident, not 10^6 approvals)
MAX_ACTIONS = 50_000

REQUEST_CONTROLS = (
    "endpoint-drift-actions-derived-from-reconciliation",
    "approval-required-before-remediation",
    "public-repo-records-governance-only",
    "private-connectors-required-for-endpoint-mutation",
)
EXECUTION_CONTROLS = (
    "approval-state-approved",
    "approval-bound-to-reconciliation",
    "remediation-request-digest-recorded",
    "public-execution-record-does-not-mutate-endpoints",
)
PUBLIC_BOUNDARY = (
    "Ringward records the approved remediation; endpoint mutation runs only through the promotion flows "
    "or a private connector that re-checks the approval."
)

MISSING = "missing_observation"
UNKNOWN = "unknown_deployment_target"
STALE = "stale_observation"
VERSION_DRIFT = "version_drift"
BINARY_DRIFT = "binary_drift"


class Strategy(StrEnum):
    MIXED = "mixed"
    REPUBLISH = "republish"
    ROLLBACK = "rollback"


def parse_strategy(value: str) -> Strategy:
    try:
        return Strategy(value.strip().lower())
    except ValueError:
        raise InputError(f"--strategy: strategy must be one of: mixed, republish, rollback, found {value!r}") from None


RATIONALE = {
    "republish_endpoint_export": "No endpoint reported for the target: republish the signed endpoint export so "
    "the management tool deploys the approved release.",
    "review_unknown_endpoint_target": "Endpoints report a deployment target the signed manifest does not name: "
    "review them before any change.",
    "refresh_endpoint_inventory": "The endpoint's observation is stale: refresh the inventory before deciding "
    "on a change.",
    "rollback_runtime": "The endpoint runs a runtime other than the approved release: roll it back to the "
    "approved release.",
    "republish_or_rollback_runtime": "The endpoint runs a runtime other than the approved release: republish "
    "the approved release or roll the endpoint back, whichever the change board decides.",
    "review_endpoint_drift": "The endpoint differs from the signed manifest: review the drift.",
}
#: action types that run through the promotion flows, each under its own approval
PROMOTION_FLOW_ACTIONS: dict[str, tuple[str, ...]] = {
    "republish_endpoint_export": ("ringward endpoint export / publish (endpoint publication flow)",),
    "rollback_runtime": ("ringward rollout rollback (rollout rollback flow)",),
    "republish_or_rollback_runtime": (
        "ringward endpoint export / publish (endpoint publication flow)",
        "ringward rollout rollback (rollout rollback flow)",
    ),
}


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def canonical_sha256(value: Any) -> str:
    """sha256 of ``json.dumps(value, sort_keys=True, default=str)`` (the reference's digests)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def action_id_for(reconciliation_id: str, index: int, drift_type: str, target: str, endpoint_id: str) -> str:
    return "era_" + _sha12(f"{reconciliation_id}:{index}:{drift_type}:{target}:{endpoint_id}")


def request_id_for(reconciliation_id: str, strategy: str, actions: Sequence[Mapping[str, Any]]) -> str:
    body = {"reconciliation_id": reconciliation_id, "strategy": strategy, "actions": list(actions)}
    return "err_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def execution_id_for(request_id: str, approval_id: str) -> str:
    return "ere_" + _sha12(f"{request_id}:{approval_id}")


def approval_target(release_version: str, request_id: str) -> str:
    """What the approval names: the release and the request (``<version>:<request_id>``)."""
    return f"{release_version}:{request_id}"


def subject_digest(request: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical request without ``approval`` and ``signature``: what the
    approval binds (the approval summary names the approval, so it cannot be inside)."""
    body = {k: v for k, v in request.items() if k not in ("approval", "signature")}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the reconciliation report, parsed once ----------------------------------------------------------


class ReleaseRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = Field(min_length=1, max_length=128)
    commit: str = Field(default="", max_length=128)
    repository: str | None = Field(default=None, max_length=512)


class DriftItem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(min_length=1, max_length=256)
    severity: str = Field(default="warning", max_length=32)
    deployment_target: str | None = Field(default=None, max_length=256)
    endpoint_id: str | None = Field(default=None, max_length=256)
    expected_version: str | None = Field(default=None, max_length=128)
    observed_version: str | None = Field(default=None, max_length=128)
    expected_binary_sha256: str | None = Field(default=None, max_length=128)
    observed_binary_sha256: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=2048)


class ReconciliationReport(BaseModel):
    """The fields of a ``cavra.endpoint-reconciliation.v1`` report a request is built from."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal["cavra.endpoint-reconciliation.v1"]
    reconciliation_id: str = Field(pattern=r"^mer_[0-9a-f]{12}$")
    drift_status: Literal["drift_detected", "aligned"]
    alert_level: Literal["healthy", "warning", "critical"]
    release: ReleaseRef
    channel: str | None = Field(default=None, max_length=128)
    summary: dict[str, Any] = Field(default_factory=dict)
    desired_manifest: dict[str, Any] = Field(default_factory=dict)
    drift_items: tuple[DriftItem, ...] = Field(default=(), max_length=MAX_ACTIONS)


def parse_reconciliation(document: Any, *, source: str) -> ReconciliationReport:
    """Raises MalformedDocumentError naming the field (the reference's messages as the gist)."""
    if not isinstance(document, dict):
        raise MalformedDocumentError(f"{source}: reconciliation report must be a JSON object")
    if document.get("schema_version") != RECONCILIATION_SCHEMA:
        raise MalformedDocumentError(
            f"{source}: schema_version expected {RECONCILIATION_SCHEMA!r}, found {document.get('schema_version')!r} "
            "(reconciliation report has an invalid schema_version)"
        )
    try:
        return ReconciliationReport.model_validate(document)
    except ValidationError as exc:
        raise MalformedDocumentError(f"{source}: {validation_problem(exc)}") from exc


def _provider_of(target: str | None, tools: Mapping[str, str]) -> str:
    text = (tools.get(target or "", "") + " " + (target or "")).lower()
    for provider in ("jamf", "intune", "linux"):
        if provider in text:
            return provider
    if "macos" in text or "darwin" in text:
        return "jamf"
    if "windows" in text:
        return "intune"
    return "unknown"


def action_type_for(drift_type: str, strategy: Strategy) -> str:
    """The §9.1 rule: drift item type (comma list) and strategy -> action type."""
    parts = {p.strip() for p in drift_type.split(",") if p.strip()}
    if MISSING in parts:
        return "republish_endpoint_export"
    if UNKNOWN in parts:
        return "review_unknown_endpoint_target"
    if parts == {STALE}:
        return "refresh_endpoint_inventory"
    if parts & {VERSION_DRIFT, BINARY_DRIFT}:
        return {
            Strategy.ROLLBACK: "rollback_runtime",
            Strategy.REPUBLISH: "republish_endpoint_export",
            Strategy.MIXED: "republish_or_rollback_runtime",
        }[strategy]
    return "review_endpoint_drift"


def build_actions(report: ReconciliationReport, strategy: Strategy) -> list[dict[str, Any]]:
    tools = {
        str(t.get("id")): str(t.get("management_tool", ""))
        for t in report.desired_manifest.get("deployment_targets", [])
        if isinstance(t, dict)
    }
    actions: list[dict[str, Any]] = []
    for index, item in enumerate(report.drift_items, start=1):
        target = item.deployment_target or ""
        endpoint = item.endpoint_id or ""
        kind = action_type_for(item.type, strategy)
        actions.append(
            {
                "action_id": action_id_for(report.reconciliation_id, index, item.type, target, endpoint),
                "action_type": kind,
                "deployment_target": item.deployment_target,
                "endpoint_id": item.endpoint_id,
                "provider": _provider_of(item.deployment_target, tools),
                "severity": item.severity,
                "drift_type": item.type,
                "expected_version": item.expected_version,
                "observed_version": item.observed_version,
                "expected_binary_sha256": item.expected_binary_sha256,
                "observed_binary_sha256": item.observed_binary_sha256,
                "execution_mode": "manual_or_private_connector",
                "requires_approval": True,
                "message": item.message or f"Remediate {item.type} on {target or 'unknown target'}.",
                "rationale": RATIONALE[kind],
            }
        )
    return actions


def dedup_keys(release: ReleaseRef, actions: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The (release, deployment target, drift class) keys a request covers, sorted, distinct."""
    seen = {
        (release.version, release.commit, str(a.get("deployment_target") or ""), str(a.get("drift_type") or ""))
        for a in actions
    }
    return [
        {"release": v, "commit": c, "deployment_target": t, "drift_class": d} for v, c, t, d in sorted(seen)
    ]


def dedup_key_id(key: Mapping[str, str]) -> str:
    """The state key of one dedup key (hashed: targets and classes are free text)."""
    return hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode("utf-8")).hexdigest()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decision_for(report: ReconciliationReport, *, request_id: str, strategy: Strategy, action_count: int,
                 requested_by: str) -> dict[str, Any]:
    summary = report.summary
    return {
        "decision_id": f"{request_id}:decision",
        "session_id": report.reconciliation_id,
        "correlation_id": request_id,
        "action_type": ACTION,
        "rule_id": RULE_ID,
        "severity": report.alert_level,
        "target": report.reconciliation_id,
        "actor": requested_by,
        "metadata": {
            "request_id": request_id,
            "reconciliation_id": report.reconciliation_id,
            "strategy": strategy.value,
            "action_count": action_count,
            "drift_status": report.drift_status,
            "drifted_endpoint_count": summary.get("drifted_endpoint_count", 0),
            "missing_target_count": summary.get("missing_target_count", 0),
            "stale_endpoint_count": summary.get("stale_endpoint_count", 0),
        },
        "evidence_refs": [f"endpoint-reconciliation://{report.reconciliation_id}"],
    }


def build_request(
    report: ReconciliationReport,
    raw_report: Mapping[str, Any],
    *,
    strategy: Strategy,
    requested_by: str,
    created_at: datetime,
    expires_at: datetime,
) -> dict[str, Any]:
    """The unsigned request without its ``approval`` summary (add it with :func:`with_approval`)."""
    actions = build_actions(report, strategy)
    request_id = request_id_for(report.reconciliation_id, strategy.value, actions)
    return {
        "schema_version": REQUEST_SCHEMA,
        "request_id": request_id,
        "reconciliation_id": report.reconciliation_id,
        "created_at": _iso(created_at),
        "expires_at": _iso(expires_at),
        "requested_by": requested_by,
        "strategy": strategy.value,
        "drift_status": report.drift_status,
        "alert_level": report.alert_level,
        "release": report.release.model_dump(mode="json"),
        "channel": report.channel,
        "summary": dict(report.summary),
        "action_count": len(actions),
        "actions": actions,
        "decision": decision_for(report, request_id=request_id, strategy=strategy, action_count=len(actions),
                                 requested_by=requested_by),
        "dedup_keys": dedup_keys(report.release, actions),
        "controls": list(REQUEST_CONTROLS),
        "evidence_refs": [f"endpoint-reconciliation://{report.reconciliation_id}"],
        "reconciliation_sha256": canonical_sha256(dict(raw_report)),
        "reconciliation_report": dict(raw_report),
    }


def with_approval(request: Mapping[str, Any], *, approval_id: str, state: str, approver_group: str | None
                  ) -> dict[str, Any]:
    body = {k: v for k, v in request.items() if k not in ("approval", "signature")}
    body["approval"] = {
        "approval_id": approval_id,
        "state": state,
        "approver_group": approver_group,
        "decision_id": f"{request['request_id']}:decision",
    }
    return body


# --- the request file, parsed once ------------------------------------------------------------------


class RequestApproval(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    approval_id: str = Field(min_length=1, max_length=128)
    state: str = Field(max_length=32)
    approver_group: str | None = Field(default=None, max_length=256)
    decision_id: str = Field(max_length=256)


class RemediationRequest(BaseModel):
    """A signed request file; the signature is checked separately (it covers the raw document)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal["cavra.endpoint-drift-remediation-request.v1"]
    request_id: str = Field(pattern=r"^err_[0-9a-f]{12}$")
    reconciliation_id: str = Field(pattern=r"^mer_[0-9a-f]{12}$")
    created_at: AwareDatetime
    expires_at: AwareDatetime
    requested_by: str = Field(min_length=1, max_length=256)
    strategy: Strategy
    drift_status: str
    alert_level: str
    release: ReleaseRef
    channel: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    action_count: int = Field(ge=0)
    actions: tuple[dict[str, Any], ...] = Field(max_length=MAX_ACTIONS)
    decision: dict[str, Any]
    dedup_keys: tuple[dict[str, str], ...] = ()
    approval: RequestApproval
    evidence_refs: tuple[str, ...] = ()
    reconciliation_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("created_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


def parse_request(document: Any, *, source: str) -> RemediationRequest:
    """Parse a request file and check its §9.1/§9.2 self-consistency (ids, decision binding).

    Raises:
        MalformedDocumentError: naming the field, expected vs found.
    """
    if not isinstance(document, dict):
        raise MalformedDocumentError(f"{source}: remediation request must be a JSON object")
    if document.get("schema_version") != REQUEST_SCHEMA:
        raise MalformedDocumentError(
            f"{source}: schema_version expected {REQUEST_SCHEMA!r}, found {document.get('schema_version')!r}"
        )
    try:
        request = RemediationRequest.model_validate(document)
    except ValidationError as exc:
        raise MalformedDocumentError(f"{source}: {validation_problem(exc)}") from exc
    expected = request_id_for(request.reconciliation_id, request.strategy.value, list(request.actions))
    if expected != request.request_id:
        raise MalformedDocumentError(f"{source}: request_id expected {expected} (the §9.1 formula), "
                                     f"found {request.request_id}")
    if request.action_count != len(request.actions):
        raise MalformedDocumentError(f"{source}: action_count expected {len(request.actions)}, "
                                     f"found {request.action_count}")
    decision = request.decision
    for field, want in (
        ("decision_id", f"{request.request_id}:decision"),
        ("session_id", request.reconciliation_id),
        ("action_type", ACTION),
    ):
        if decision.get(field) != want:
            raise MalformedDocumentError(f"{source}: decision.{field} expected {want!r}, found {decision.get(field)!r}")
    metadata = decision.get("metadata") or {}
    for field, want in (("request_id", request.request_id), ("reconciliation_id", request.reconciliation_id)):
        if field in metadata and metadata[field] != want:
            raise MalformedDocumentError(f"{source}: decision.metadata.{field} expected {want!r}, "
                                         f"found {metadata[field]!r}")
    if request.approval.decision_id != f"{request.request_id}:decision":
        raise MalformedDocumentError(f"{source}: approval.decision_id expected {request.request_id}:decision, "
                                     f"found {request.approval.decision_id!r}")
    return request


# --- execution ---------------------------------------------------------------------------------------


def action_results(actions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One result per action: promotion-flow work for republish/rollback, handoff work for the rest."""
    results = []
    for action in actions:
        kind = str(action.get("action_type"))
        flows = PROMOTION_FLOW_ACTIONS.get(kind)
        results.append(
            {
                "action_id": action.get("action_id"),
                "action_type": kind,
                "deployment_target": action.get("deployment_target"),
                "endpoint_id": action.get("endpoint_id"),
                "provider": action.get("provider"),
                "status": "awaiting_promotion_flow" if flows else "queued_for_private_connector_or_manual_execution",
                "work_item": "promotion_flow" if flows else "handoff",
                "promotion_flows": list(flows or ()),
                "requires_own_approval": bool(flows),
                "public_boundary": PUBLIC_BOUNDARY,
                "evidence_ref": f"endpoint-remediation-action://{action.get('action_id')}",
            }
        )
    return results


def build_execution(
    request: RemediationRequest,
    *,
    request_sha256: str,
    approval: Mapping[str, Any],
    executed_by: str,
    created_at: datetime,
    execution_environment: str | None = None,
    notes: str | None = None,
) -> dict[str, Any]:
    approval_id = str(approval["approval_id"])
    execution_id = execution_id_for(request.request_id, approval_id)
    record: dict[str, Any] = {
        "schema_version": EXECUTION_SCHEMA,
        "execution_id": execution_id,
        "request_id": request.request_id,
        "approval_id": approval_id,
        "reconciliation_id": request.reconciliation_id,
        "created_at": _iso(created_at),
        "executed_by": executed_by,
        "execution_environment": execution_environment or "ringward",
        "execution_status": "recorded",
        "strategy": request.strategy.value,
        "release": request.release.model_dump(mode="json"),
        "channel": request.channel,
        "action_results": action_results(request.actions),
        "approval": dict(approval),
        "controls": list(EXECUTION_CONTROLS),
        "request_sha256": request_sha256,
        "evidence_refs": [
            f"endpoint-remediation-request://{request.request_id}",
            f"endpoint-reconciliation://{request.reconciliation_id}",
            f"approval://{approval_id}",
        ],
    }
    if notes:
        record["notes"] = notes
    return record


def render_request_markdown(request: Mapping[str, Any]) -> bytes:
    lines = [
        f"# Endpoint drift remediation request {request['request_id']}",
        "",
        f"- reconciliation: {request['reconciliation_id']} ({request['drift_status']}, {request['alert_level']})",
        f"- release: {request['release']['version']} ({request['release'].get('commit') or '-'}), "
        f"channel {request.get('channel') or '-'}",
        f"- strategy: {request['strategy']}; requested by {request['requested_by']} at {request['created_at']}",
        f"- approval: {request['approval']['approval_id']} ({request['approval']['state']}), "
        f"expires {request['expires_at']}",
        "",
        "| action | type | target | endpoint | severity |",
        "|---|---|---|---|---|",
    ]
    for action in request["actions"][:500]:
        lines.append(f"| {action['action_id']} | {action['action_type']} | {action.get('deployment_target') or '-'} "
                     f"| {action.get('endpoint_id') or '-'} | {action['severity']} |")
    if len(request["actions"]) > 500:
        lines.append(f"\n({len(request['actions']) - 500} more actions in the JSON file)")
    return ("\n".join(lines) + "\n").encode("utf-8")


def render_execution_markdown(execution: Mapping[str, Any]) -> bytes:
    lines = [
        f"# Endpoint drift remediation execution {execution['execution_id']}",
        "",
        f"- request: {execution['request_id']}; approval {execution['approval_id']}",
        f"- executed by {execution['executed_by']} at {execution['created_at']} ({execution['execution_status']})",
        "- nothing was mutated: republish/rollback actions wait for the promotion flows (each under its own "
        "approval); the rest are handoff work items",
        "",
        "| action | type | work item | status |",
        "|---|---|---|---|",
    ]
    for result in execution["action_results"][:500]:
        lines.append(f"| {result['action_id']} | {result['action_type']} | {result['work_item']} | "
                     f"{result['status']} |")
    return ("\n".join(lines) + "\n").encode("utf-8")
