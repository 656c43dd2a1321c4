"""Response and request bodies of the API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    total: int | None
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
