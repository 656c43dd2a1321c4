"""Response and request bodies of the API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ringward.core.approvals.rules import (
    ACTION_PATTERN,
    DIGEST_PATTERN,
    LINE_PATTERN,
    MAX_QUORUM,
    MAX_TTL,
    TEXT_PATTERN,
    ApprovalVote,
)
from ringward.core.evidence.records import EvidenceArtifact, EvidenceSubject
from ringward.core.promotion.rollout import DEFAULT_APPROVER_GROUP


class ErrorOut(BaseModel):
    """Every refusal: a stable code and one line saying what was expected and found."""

    error: str
    message: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Bad input (e.g. malformed JSON)."},
    401: {"model": ErrorOut, "description": "Missing, invalid, expired or revoked bearer token."},
    403: {"model": ErrorOut, "description": "The token's role does not allow this."},
    404: {"model": ErrorOut, "description": "No such record, approval or artifact."},
    409: {"model": ErrorOut, "description": "Refused by state or integrity (decided, expired, tampered)."},
    413: {"model": ErrorOut, "description": "Body too large."},
    415: {"model": ErrorOut, "description": "Body is not application/json."},
    422: {"model": ErrorOut, "description": "A parameter or body field is invalid."},
    503: {"model": ErrorOut, "description": "The store is unavailable."},
}


class HealthOut(BaseModel):
    status: Literal["ok"]
    evidence_records: int


class EvidenceRecordOut(BaseModel):
    schema_version: str
    id: int
    kind: str
    actor: str
    created_at: str
    flow_run_id: str | None
    subject: EvidenceSubject
    payload: dict[str, Any]
    payload_sha256: str
    bundle_dir: str | None
    artifacts: list[EvidenceArtifact]
    previous_hash: str
    record_hash: str


class EvidencePageOut(BaseModel):
    items: list[EvidenceRecordOut]
    #: matches counted (null with ``total=none``); a lower bound when ``total_is_lower_bound``
    total: int | None
    #: true when counting stopped at the bound: at least ``total`` records match
    total_is_lower_bound: bool
    limit: int
    offset: int
    next_before_id: int | None


class ArtifactEntryOut(BaseModel):
    artifact: str
    media_type: str
    bytes: int
    sha256: str
    status: Literal["verified", "missing", "unsafe", "mismatch"]
    problem: str | None
    download_url: str


class ArtifactListingOut(BaseModel):
    schema_version: Literal["ringward.evidence.artifacts.v1"]
    evidence_id: int
    metadata_kind: str
    artifact_root_configured: bool
    artifact_count: int
    artifacts: list[ArtifactEntryOut]
    bundle_download_url: str | None
    integrity: Literal["verified", "failed", "incomplete", "none"]
    integrity_problem: str | None
    download_readiness: Literal["ready", "blocked"]


class ApprovalOut(BaseModel):
    """An approval (``ringward.approval.v1``) with its state in force now."""

    schema_version: str
    approval_id: str
    action: str
    subject_digest: str
    target: str
    requester: str
    approver_group: str | None
    quorum: int
    state: str
    effective_state: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    consumed: bool
    consumed_at: datetime | None
    consumed_by: str | None
    execution_ref: str | None
    origin: str
    note: str | None
    version: int
    approvals: int
    votes: list[ApprovalVote]


class ApprovalListOut(BaseModel):
    items: list[ApprovalOut]
    total: int
    limit: int
    offset: int


class ApprovalRequestBody(BaseModel):
    """A new approval request; the requester is the calling token's identity."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=128, pattern=ACTION_PATTERN)
    subject_digest: str = Field(pattern=DIGEST_PATTERN)
    target: str = Field(min_length=1, max_length=256, pattern=LINE_PATTERN)
    expires_in_seconds: int = Field(default=86400, ge=1, le=int(MAX_TTL.total_seconds()))
    quorum: int = Field(default=1, ge=1, le=MAX_QUORUM)
    approver_group: str | None = Field(default=None, min_length=1, max_length=256, pattern=LINE_PATTERN)
    note: str | None = Field(default=None, max_length=4096, pattern=TEXT_PATTERN)


class DecisionBody(BaseModel):
    """A decision: the reason is recorded in the evidence chain with the caller as actor."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=4096, pattern=TEXT_PATTERN)


class DecisionOut(ApprovalOut):
    """The approval after a decision, plus warnings (e.g. a Prefect event that could not be sent)."""

    warnings: list[str] = Field(default_factory=list)


# --- promotion, rollouts, channels and windows ---------------------------------------------------------

#: approval ids (``apr_…``)
APPROVAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: channel names, as the channel manifest uses them
CHANNEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
#: rings, environments, rollout ids and the request/execution/rollback ids of a rollout
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: ``ring:<name>``, ``channel:<name>`` or ``environment:<name>``
WINDOW_TARGET_PATTERN = r"^(?:ring|channel|environment):[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: the instants the window maths handles (years 1970-8999), as RFC 3339 date-times
WINDOW_AT_PATTERN = r"^(?:19[7-9][0-9]|[2-8][0-9]{3})-"
MAX_PATH_CHARS = 4096
#: one path segment that is not ``.`` or ``..`` (names starting with dots are fine)
_SEGMENT = r"(?:[^/.\x00-\x1f\x7f]|\.[^/.\x00-\x1f\x7f]|\.\.[^/\x00-\x1f\x7f])[^/\x00-\x1f\x7f]*"

PROVIDERS = Literal["all", "jamf", "intune", "linux", "jamf,intune", "jamf,linux", "intune,linux", "jamf,intune,linux"]


def _escape(text: str) -> str:
    """``text`` as a literal in a pattern both Python's ``re`` and the Rust regex engine (and
    ECMA-262 for BMP characters) read the same way."""
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char in "/_"):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(f"\\U{ord(char):08X}")
    return "".join(out)


def path_pattern(root: Path) -> str:
    """Server paths a request may name: relative to ``root``, or absolute under it; no empty,
    ``.`` or ``..`` segments. Lexical only: links are resolved (and confined) when the request runs."""
    prefix = "/" if str(root) == "/" else _escape(str(root)) + "/"
    return rf"^(?:{prefix})?{_SEGMENT}(?:/{_SEGMENT})*/?$"


class EvidenceRefOut(BaseModel):
    """The evidence record a decision wrote."""

    model_config = ConfigDict(extra="allow")

    evidence_id: str
    record_hash: str


class OperationOut(BaseModel):
    """An operation's result: exactly the CLI's ``--json`` document, plus ``warnings``."""

    model_config = ConfigDict(extra="allow")

    warnings: list[str] = Field(default_factory=list, description="Non-fatal problems, e.g. an unsent event.")


class ChannelRequestOut(OperationOut):
    schema_version: str
    request_id: str
    channel: str
    target_ring: str
    version: str
    approval_id: str
    approval_state: str
    requested_by: str
    output_dir: str
    files: list[str]
    evidence: EvidenceRefOut


class EndpointExportOut(OperationOut):
    schema_version: str
    export_id: str
    channel: str
    target_ring: str
    version: str
    request_id: str
    approval_id: str
    rollback: bool
    providers: list[str]
    output_dir: str
    manifest: str
    evidence: EvidenceRefOut


class RolloutRequestOut(OperationOut):
    request_id: str
    rollout_id: str
    current_ring: str
    target_ring: str
    approval_id: str
    approval_state: str
    approval_reused: bool
    expires_at: str
    request_path: str
    output_dir: str
    evidence: EvidenceRefOut


class RolloutExecutionOut(OperationOut):
    execution_id: str
    request_id: str
    rollout_id: str
    approval_id: str
    executed_by: str
    break_glass: bool
    ring_advancement: dict[str, Any]
    execution_path: str
    output_dir: str
    evidence: EvidenceRefOut


class RollbackRequestOut(OperationOut):
    request_id: str
    promotion_execution_id: str
    rollout_id: str
    promoted_ring: str
    previous_ring: str
    approval_id: str
    approval_state: str
    request_path: str
    output_dir: str
    evidence: EvidenceRefOut


class RollbackOut(OperationOut):
    rollback_id: str
    promotion_execution_id: str
    rollout_id: str
    approval_id: str
    executed_by: str
    ring_rollback: dict[str, Any]
    channels: list[dict[str, Any]]
    rollback_path: str
    output_dir: str
    evidence: EvidenceRefOut


class RolloutStepOut(BaseModel):
    """One step of a rollout's ledger (capture, verify, request, execution, rollback-request,
    rollback, audit)."""

    model_config = ConfigDict(extra="allow")

    id: int | None
    rollout_id: str
    step: str
    ref_id: str
    parent_ref: str | None
    environment: str | None
    ring: str | None
    status: str | None
    release_version: str | None
    approval_id: str | None
    actor: str
    created_at: str | None
    evidence_id: int | None


class RolloutPageOut(BaseModel):
    items: list[RolloutStepOut]
    total: int
    limit: int
    offset: int


class RolloutDrilldownOut(BaseModel):
    """``ringward rollout show --json``: rollout -> requests -> approvals (votes) -> executions ->
    rollback requests -> rollbacks -> audits and deliveries, each with its evidence record."""

    model_config = ConfigDict(extra="allow")

    schema_version: str
    rollout_id: str
    environment: str | None
    release_version: str | None
    current_ring: str | None
    current_status: str | None
    rollout: list[dict[str, Any]]
    promotions: list[dict[str, Any]]
    refusals: list[dict[str, Any]]
    timeline: list[dict[str, Any]]


class WindowDecisionOut(BaseModel):
    """``ringward window check --json``: open or closed, why, and the next opening."""

    model_config = ConfigDict(extra="allow")

    schema_version: str
    at: str
    allowed: bool
    reason: str
    denied_targets: list[str]
    next_opening: str | None
    next_opening_local: str | None
    open_until: str | None
    policy_configured: bool
    targets: list[dict[str, Any]]
    policy: str


class ChannelStateOut(BaseModel):
    """One channel: high-water mark, current release, hold, rollback allowance, recent history."""

    model_config = ConfigDict(extra="allow")

    schema_version: str
    channel: str
    high_water: dict[str, Any] | None
    current: dict[str, Any] | None
    hold: dict[str, Any] | None
    rollback_allowance: dict[str, Any] | None
    held: bool
    version: int


class ChannelStatusOut(BaseModel):
    schema_version: str
    channels: list[ChannelStateOut]


class ChannelChangeOut(OperationOut):
    channel: ChannelStateOut
    evidence: EvidenceRefOut


class WindowClosedOut(ErrorOut):
    """A refusal by the promotion windows: when they next open (UTC, and in the window's zone)."""

    next_opening: str | None = None
    next_opening_local: str | None = None


class HoldBody(BaseModel):
    """Why the channel is held or released (recorded with the caller as actor)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=4096, pattern=TEXT_PATTERN)


_PATH = Field(min_length=1, max_length=MAX_PATH_CHARS)
_OPTIONAL_PATH = Field(default=None, min_length=1, max_length=MAX_PATH_CHARS)
_TTL = int(MAX_TTL.total_seconds())


class ChannelRequestBody(BaseModel):
    """A channel promotion request; the requester is the calling token's name and the server
    signs with its promotion key (never a key in the body)."""

    model_config = ConfigDict(extra="forbid")

    package_dir: str = _PATH
    channel: str = Field(pattern=CHANNEL_PATTERN)
    target_ring: str = Field(pattern=ID_PATTERN)
    expires_in_seconds: int = Field(default=86400, ge=1, le=_TTL)
    quorum: int = Field(default=1, ge=1, le=MAX_QUORUM)
    approver_group: str | None = Field(default=None, min_length=1, max_length=256, pattern=LINE_PATTERN)
    output_dir: str | None = _OPTIONAL_PATH


class EndpointExportBody(BaseModel):
    """Execute an approved channel promotion as endpoint-management exports; the executor is the
    calling token's name and the server's window policy applies."""

    model_config = ConfigDict(extra="forbid")

    package_dir: str = _PATH
    channel: str = Field(pattern=CHANNEL_PATTERN)
    provider: PROVIDERS = "all"
    promotion_request: str = _PATH
    output_dir: str = _PATH


class RolloutRequestBody(BaseModel):
    """Sign a rollout promotion request (server key) and open, or reuse, its approval."""

    model_config = ConfigDict(extra="forbid")

    rollout_dir: str = _PATH
    target_ring: str = Field(pattern=ID_PATTERN)
    expires_in_seconds: int = Field(default=86400, ge=1, le=_TTL)
    quorum: int = Field(default=1, ge=1, le=MAX_QUORUM)
    approver_group: str = Field(default=DEFAULT_APPROVER_GROUP, min_length=1, max_length=256, pattern=LINE_PATTERN)
    package_dir: str | None = _OPTIONAL_PATH
    output_dir: str | None = _OPTIONAL_PATH


class RolloutExecutionBody(BaseModel):
    """Execute an approved rollout promotion (its approval is consumed once)."""

    model_config = ConfigDict(extra="forbid")

    request: str = _PATH
    approval_id: str = Field(pattern=APPROVAL_ID_PATTERN)
    break_glass_approval_id: str | None = Field(default=None, pattern=APPROVAL_ID_PATTERN)
    notes: str | None = Field(default=None, max_length=4096, pattern=TEXT_PATTERN)
    output_dir: str | None = _OPTIONAL_PATH


class RollbackRequestBody(BaseModel):
    """Sign a rollback request for a recorded promotion execution and open its approval."""

    model_config = ConfigDict(extra="forbid")

    execution: str = _PATH
    reason: str = Field(min_length=1, max_length=4096, pattern=TEXT_PATTERN)
    expires_in_seconds: int = Field(default=86400, ge=1, le=_TTL)
    quorum: int = Field(default=1, ge=1, le=MAX_QUORUM)
    output_dir: str | None = _OPTIONAL_PATH


class RollbackBody(BaseModel):
    """Roll back a promotion execution with its approved rollback approval (once per execution)."""

    model_config = ConfigDict(extra="forbid")

    execution: str = _PATH
    approval_id: str = Field(pattern=APPROVAL_ID_PATTERN)
    notes: str | None = Field(default=None, max_length=4096, pattern=TEXT_PATTERN)
    output_dir: str | None = _OPTIONAL_PATH


#: what each server path field names (its description in the schema)
_PATH_FIELDS: dict[str, str] = {
    "package_dir": "The release package directory.",
    "output_dir": "Directory to create (must not exist). Default: the CLI's default name under the server's "
    "working directory, which must then be inside the promotion root.",
    "promotion_request": "release-channel-promotion-request.json (signed).",
    "rollout_dir": "The captured rollout directory.",
    "request": "rollout-promotion-approval-request.json, or its directory.",
    "execution": "rollout-promotion-execution.json, or its directory.",
}


class PromotionBodies:
    """The write bodies with their server paths confined to one promotion root: each class is a
    subclass of the module's body model whose path fields carry :func:`path_pattern` (the root is
    part of the pattern, so the schema says which paths are acceptable)."""

    def __init__(self, root: Path) -> None:
        self.pattern = path_pattern(root)
        self.ChannelRequestBody = self._confined(ChannelRequestBody)
        self.EndpointExportBody = self._confined(EndpointExportBody)
        self.RolloutRequestBody = self._confined(RolloutRequestBody)
        self.RolloutExecutionBody = self._confined(RolloutExecutionBody)
        self.RollbackRequestBody = self._confined(RollbackRequestBody)
        self.RollbackBody = self._confined(RollbackBody)

    def _confined(self, base: type[BaseModel]) -> Any:
        fields: dict[str, Any] = {}
        for name, info in base.model_fields.items():
            if name not in _PATH_FIELDS:
                continue
            required = info.is_required()
            fields[name] = (
                str if required else str | None,
                Field(
                    default=... if required else None,
                    min_length=1,
                    max_length=MAX_PATH_CHARS,
                    pattern=self.pattern,
                    description=_PATH_FIELDS[name],
                ),
            )
        return create_model(base.__name__, __base__=base, __doc__=base.__doc__, **fields)
