"""Remediation handoffs (``cavra.endpoint-remediation-handoff.v1``, reference §9.3) and their status
records (``cavra.endpoint-remediation-handoff-status.v1``, §9.4): the inputs of the SLA report.

The field names, id formulas and ``schema_version`` strings are the reference's. What differs
(reference §11.13): status records follow a transition table instead of accepting any status
after any other.

Status transitions (:data:`ALLOWED_TRANSITIONS`), per (handoff_id, provider):

=============  ====================================================================
from           may move to
=============  ====================================================================
(none)         any status (the first record of a work item)
queued         delivered, acknowledged, in_progress, blocked, completed, failed, cancelled
delivered      acknowledged, in_progress, blocked, completed, failed, cancelled
acknowledged   in_progress, blocked, completed, failed, cancelled, acknowledged
in_progress    in_progress, blocked, completed, failed, cancelled
blocked        in_progress, blocked, completed, failed, cancelled
completed      (final)
failed         (final)
cancelled      (final)
=============  ====================================================================

Nothing goes back to ``queued`` and nothing leaves a final status (``completed``, ``failed``,
``cancelled``): a retried remediation is a new handoff with a new id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from ringward.core.errors import InputError, StateError

HANDOFF_SCHEMA = "cavra.endpoint-remediation-handoff.v1"
HANDOFF_STATUS_SCHEMA = "cavra.endpoint-remediation-handoff-status.v1"

HANDOFF_CONTROLS = (
    "handoff-payloads-derived-from-remediation-request",
    "approval-id-preserved-for-downstream-gates",
    "public-package-contains-no-connector-credentials",
    "private-connectors-required-for-endpoint-mutation",
)
STATUS_CONTROLS = (
    "handoff-status-derived-from-handoff-package",
    "approval-id-preserved-for-downstream-gates",
    "callback-payload-redacted",
    "private-connectors-required-for-endpoint-mutation",
)


class HandoffProvider(StrEnum):
    JIRA = "jira"
    SERVICENOW = "servicenow"
    SLACK = "slack"
    TEAMS = "teams"
    PRIVATE_QUEUE = "private_queue"
    #: a generic signed webhook receiver (Standard Webhooks); Ringward's addition to the reference's five
    WEBHOOK = "webhook"


class HandoffStatus(StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({HandoffStatus.COMPLETED, HandoffStatus.FAILED, HandoffStatus.CANCELLED})

_WORKING = frozenset(
    {
        HandoffStatus.IN_PROGRESS,
        HandoffStatus.BLOCKED,
        HandoffStatus.COMPLETED,
        HandoffStatus.FAILED,
        HandoffStatus.CANCELLED,
    }
)
ALLOWED_TRANSITIONS: dict[HandoffStatus, frozenset[HandoffStatus]] = {
    HandoffStatus.QUEUED: frozenset({HandoffStatus.DELIVERED, HandoffStatus.ACKNOWLEDGED} | _WORKING),
    HandoffStatus.DELIVERED: frozenset({HandoffStatus.ACKNOWLEDGED} | _WORKING),
    HandoffStatus.ACKNOWLEDGED: frozenset({HandoffStatus.ACKNOWLEDGED} | _WORKING),
    HandoffStatus.IN_PROGRESS: _WORKING,
    HandoffStatus.BLOCKED: _WORKING,
    HandoffStatus.COMPLETED: frozenset(),
    HandoffStatus.FAILED: frozenset(),
    HandoffStatus.CANCELLED: frozenset(),
}


def normalise_provider(value: object) -> HandoffProvider:
    """``Private-Queue`` / ``private-queue`` -> ``private_queue``; unknown -> ValueError (reference text)."""
    text = str(value).strip().lower().replace("-", "_")
    try:
        return HandoffProvider(text)
    except ValueError:
        raise ValueError("provider must be one of: jira, servicenow, slack, teams, private_queue, webhook") from None


def normalise_status(value: object) -> HandoffStatus:
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return HandoffStatus(text)
    except ValueError:
        allowed = ", ".join(s.value for s in HandoffStatus)
        raise ValueError(f"status must be one of: {allowed}") from None


def _sha12(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]


def handoff_id_for(request_id: str, providers: Iterable[str], request_sha256: str) -> str:
    """``erh_`` + sha256(json{request_id, sorted providers, request_sha256})[:12] (§9.3)."""
    return "erh_" + _sha12({"request_id": request_id, "providers": sorted(providers), "request_sha256": request_sha256})


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def status_id_for(handoff_id: str, provider: str, status: str, external_ref: str | None, recorded_at: datetime) -> str:
    """``erhs_`` + sha256(json{handoff_id, provider, status, external_ref, recorded_at})[:12] (§9.4)."""
    return "erhs_" + _sha12(
        {
            "handoff_id": handoff_id,
            "provider": provider,
            "status": status,
            "external_ref": external_ref,
            "recorded_at": _iso(recorded_at),
        }
    )


class RemediationHandoff(BaseModel):
    """A remediation handoff package record (§9.3). Extra keys are kept out: the file is parsed once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal["cavra.endpoint-remediation-handoff.v1"] = "cavra.endpoint-remediation-handoff.v1"
    handoff_id: str = Field(pattern=r"^erh_[0-9a-f]{12}$")
    request_id: str = Field(min_length=1, max_length=256)
    reconciliation_id: str = Field(min_length=1, max_length=256)
    created_at: AwareDatetime
    requested_by: str = Field(min_length=1, max_length=256)
    delivery_mode: str = "manual"
    providers: tuple[HandoffProvider, ...] = Field(min_length=1)
    provider_count: int = Field(ge=1)
    action_count: int = Field(ge=0)
    approval_id: str | None = None
    approval_state: str | None = None
    approval_required: bool = True
    release: str | None = None
    channel: str | None = None
    strategy: str = "mixed"
    alert_level: str = "warning"
    summary: dict[str, Any] = Field(default_factory=dict)
    payloads: dict[str, Any] = Field(default_factory=dict)
    controls: tuple[str, ...] = HANDOFF_CONTROLS
    evidence_refs: tuple[str, ...] = ()
    request_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    remediation_request: dict[str, Any] = Field(default_factory=dict)

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            providers = [normalise_provider(v) for v in value]
            if len(set(providers)) != len(providers):
                raise ValueError("providers must not repeat")
            return tuple(providers)
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def check_id(self) -> None:
        """Raise InputError when ``handoff_id`` does not follow the §9.3 formula."""
        expected = handoff_id_for(self.request_id, [p.value for p in self.providers], self.request_sha256)
        if expected != self.handoff_id:
            raise InputError(f"handoff_id: expected {expected} (the §9.3 formula), found {self.handoff_id}")


class RemediationHandoffStatus(BaseModel):
    """One status record of one provider's work item of a handoff (§9.4)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal["cavra.endpoint-remediation-handoff-status.v1"] = (
        "cavra.endpoint-remediation-handoff-status.v1"
    )
    status_id: str = Field(pattern=r"^erhs_[0-9a-f]{12}$")
    handoff_id: str = Field(pattern=r"^erh_[0-9a-f]{12}$")
    request_id: str = Field(min_length=1, max_length=256)
    reconciliation_id: str = Field(min_length=1, max_length=256)
    provider: HandoffProvider
    status: HandoffStatus
    recorded_at: AwareDatetime
    recorded_by: str = Field(min_length=1, max_length=256)
    external_ref: str | None = None
    external_url: str | None = None
    notes: str | None = None
    approval_id: str | None = None
    approval_state: str | None = None
    action_count: int = Field(default=0, ge=0)
    delivery_mode: str = "manual"
    release: str | None = None
    channel: str | None = None
    callback_payload: dict[str, Any] | None = None
    controls: tuple[str, ...] = STATUS_CONTROLS
    evidence_refs: tuple[str, ...] = ()
    handoff_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("provider", mode="before")
    @classmethod
    def _provider(cls, value: Any) -> Any:
        return normalise_provider(value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return normalise_status(value)

    @field_validator("recorded_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def check_id(self) -> None:
        expected = status_id_for(
            self.handoff_id, self.provider.value, self.status.value, self.external_ref, self.recorded_at
        )
        if expected != self.status_id:
            raise InputError(f"status_id: expected {expected} (the §9.4 formula), found {self.status_id}")


def check_transition(previous: HandoffStatus | None, following: HandoffStatus) -> None:
    """Raise StateError when ``following`` may not be recorded after ``previous``."""
    if previous is None:
        return
    if following not in ALLOWED_TRANSITIONS[previous]:
        if previous in FINAL_STATUSES:
            raise StateError(f"status: {previous.value} is final; {following.value} cannot follow it")
        raise StateError(f"status: {following.value} cannot follow {previous.value}")


def check_against_handoff(handoff: RemediationHandoff, status: RemediationHandoffStatus) -> None:
    """The §9.4 checks that bind a status record to its handoff."""
    if status.handoff_id != handoff.handoff_id:
        raise InputError(f"handoff_id: expected {handoff.handoff_id}, found {status.handoff_id}")
    if status.provider not in handoff.providers:
        raise InputError("provider is not present in the handoff package")


def status_sequence_problems(statuses: Sequence[RemediationHandoffStatus]) -> list[str]:
    """Every transition violation across ``statuses`` (per handoff and provider, by recorded_at)."""
    problems: list[str] = []
    latest: dict[tuple[str, str], HandoffStatus] = {}
    for record in sorted(statuses, key=lambda s: (s.recorded_at, s.status_id)):
        key = (record.handoff_id, record.provider.value)
        try:
            check_transition(latest.get(key), record.status)
        except StateError as exc:
            problems.append(f"{record.status_id} ({key[0]}/{key[1]}): {exc.message}")
            continue
        latest[key] = record.status
    return problems


def record_status(
    handoff: RemediationHandoff,
    previous: Sequence[RemediationHandoffStatus],
    *,
    provider: str,
    status: str,
    recorded_at: datetime,
    recorded_by: str,
    external_ref: str | None = None,
    external_url: str | None = None,
    notes: str | None = None,
    callback_payload: dict[str, Any] | None = None,
    handoff_sha256: str | None = None,
) -> RemediationHandoffStatus:
    """A new status record for ``provider`` of ``handoff``, checked against the transition table.

    Raises:
        InputError: provider or status unknown or not in the handoff.
        StateError: the transition is not allowed.
    """
    try:
        chosen = normalise_provider(provider)
        state = normalise_status(status)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if chosen not in handoff.providers:
        raise InputError("provider is not present in the handoff package")
    mine = [s for s in previous if s.handoff_id == handoff.handoff_id and s.provider is chosen]
    last = max(mine, key=lambda s: (s.recorded_at, s.status_id)).status if mine else None
    check_transition(last, state)
    refs = [
        f"endpoint-remediation-handoff://{handoff.handoff_id}",
        f"endpoint-remediation-request://{handoff.request_id}",
        f"endpoint-reconciliation://{handoff.reconciliation_id}",
    ]
    if handoff.approval_id:
        refs.append(f"approval://{handoff.approval_id}")
    if external_ref:
        refs.append(f"external://{chosen.value}/{external_ref}")
    return RemediationHandoffStatus(
        status_id=status_id_for(handoff.handoff_id, chosen.value, state.value, external_ref, recorded_at),
        handoff_id=handoff.handoff_id,
        request_id=handoff.request_id,
        reconciliation_id=handoff.reconciliation_id,
        provider=chosen,
        status=state,
        recorded_at=recorded_at,
        recorded_by=recorded_by,
        external_ref=external_ref,
        external_url=external_url,
        notes=notes,
        approval_id=handoff.approval_id,
        approval_state=handoff.approval_state,
        action_count=handoff.action_count,
        delivery_mode=handoff.delivery_mode,
        release=handoff.release,
        channel=handoff.channel,
        callback_payload=callback_payload,
        evidence_refs=tuple(refs),
        handoff_sha256=handoff_sha256,
    )
