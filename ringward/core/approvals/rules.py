"""Approvals: the state machine and the rules every decision and execution must pass.

States (``ringward.approval.v1``)::

    pending --approve x quorum--> approved --consume (once)--> approved + consumed
       |  \\--deny--> denied
       |   \\--revoke--> revoked          approved --revoke--> revoked (while unconsumed)
       \\--(expires_at passes)--> expired  approved --(expires_at passes, unconsumed)--> expired

Rules (numbered so code and tests can cite them):

- AP1 an approval binds one action, one subject digest (``sha256:<hex>``) and one target; an
  execution must present exactly that binding to consume it.
- AP2 the requester never approves or denies their own request (separation of duties); each
  approver counts once toward the quorum.
- AP3 expiry is enforced at use: after ``expires_at`` an approval can be neither decided nor
  consumed, whatever its stored state says.
- AP4 only pending approvals are decided; a decision is a compare-and-swap in the store.
- AP5 consumption happens once: ``consumed_at`` is set in the same transaction that checks it.
- AP6 an approved state counts only when backed by ``quorum`` distinct recorded approvers
  (so an ``approved`` record imported from a reference ``approvals.json`` authorises nothing).

Time is always a parameter (``now``, UTC-aware); nothing here reads the clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalConsumedError,
    ApprovalExpiredError,
    ApprovalStateError,
    InputError,
    SeparationOfDutiesError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject, ensure_utc

APPROVAL_SCHEMA = "ringward.approval.v1"
TRANSITION_SCHEMA = "ringward.approval-transition.v1"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
#: one line of text with at least one visible character (targets, groups)
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
#: free text (reasons, notes): newlines and tabs allowed, other control characters not
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b-\x1f\x7f]*$"
ACTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

#: default and longest lifetime of an approval request (the reference defaults to 24 h)
DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=90)
MAX_QUORUM = 9

#: evidence kinds written for approval transitions
KIND_REQUEST = "approval-request"
KIND_DECISION = "approval-decision"
KIND_CONSUMPTION = "approval-consumption"


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Decision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    REVOKE = "revoke"
    EXPIRE = "expire"
    CONSUME = "consume"


class ApprovalRequest(BaseModel):
    """What a requester asks for; parsed once at the boundary (CLI options, API body)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(min_length=1, max_length=128, pattern=ACTION_PATTERN)
    subject_digest: str = Field(pattern=DIGEST_PATTERN)
    target: str = Field(min_length=1, max_length=256, pattern=LINE_PATTERN)
    requester: str = Field(min_length=1, max_length=256, pattern=LINE_PATTERN)
    quorum: int = Field(default=1, ge=1, le=MAX_QUORUM)
    approver_group: str | None = Field(default=None, min_length=1, max_length=256, pattern=LINE_PATTERN)
    note: str | None = Field(default=None, max_length=4096, pattern=TEXT_PATTERN)


class ApprovalVote(BaseModel):
    """One recorded decision on an approval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str
    decision: Decision
    reason: str | None = None
    at: datetime
    evidence_id: int | None = None


class Approval(BaseModel):
    """An approval as stored, with its recorded decisions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approval_id: str
    action: str
    subject_digest: str
    target: str
    requester: str
    approver_group: str | None = None
    quorum: int = 1
    state: ApprovalState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    consumed_at: datetime | None = None
    consumed_by: str | None = None
    execution_ref: str | None = None
    origin: Literal["ringward", "import"] = "ringward"
    note: str | None = None
    version: int = 1
    votes: tuple[ApprovalVote, ...] = ()

    def is_expired(self, now: datetime) -> bool:
        return ensure_utc(now) >= self.expires_at

    def effective_state(self, now: datetime) -> ApprovalState:
        """The state a reader should see at ``now`` (AP3: an unused approval past its expiry is
        expired even before anyone writes that down)."""
        if (
            self.state in (ApprovalState.PENDING, ApprovalState.APPROVED)
            and self.consumed_at is None
            and self.is_expired(now)
        ):
            return ApprovalState.EXPIRED
        return self.state

    def approvers(self) -> list[str]:
        """Distinct recorded approvers other than the requester, in vote order (AP6)."""
        seen: list[str] = []
        for vote in self.votes:
            if (
                vote.decision is Decision.APPROVE
                and not same_actor(vote.actor, self.requester)
                and not any(same_actor(vote.actor, other) for other in seen)
            ):
                seen.append(vote.actor)
        return seen

    def to_document(self, now: datetime) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["schema_version"] = APPROVAL_SCHEMA
        doc["effective_state"] = self.effective_state(now).value
        doc["consumed"] = self.consumed_at is not None
        doc["approvals"] = len(self.approvers())
        return doc


def same_actor(a: str, b: str) -> bool:
    """Actor names compare case-insensitively and without surrounding blanks."""
    return a.strip().casefold() == b.strip().casefold()


def parse_duration(text: str, *, option: str = "--expires-in", maximum: timedelta = MAX_TTL) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or ``2w`` -> timedelta (positive, at most ``maximum``).

    Raises:
        InputError: the text is not such a duration or is out of range.
    """
    match = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw])\s*", text)
    if match is None:
        raise InputError(f"{option}: expected a duration like 30m, 24h or 7d, found {text!r}")
    amount = int(match.group(1))
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    value = timedelta(**{unit: amount})
    if value <= timedelta(0) or value > maximum:
        raise InputError(f"{option}: expected a duration between 1s and {maximum}, found {text!r}")
    return value


def _check_actor(actor: str) -> str:
    if len(actor) > 256:
        raise InputError(f"actor: expected at most 256 characters, found {len(actor)}")
    if not re.match(LINE_PATTERN, actor):
        raise InputError(f"actor: expected a visible one-line name, found {actor!r}")
    return actor


def _check_reason(reason: str) -> str:
    if len(reason) > 4096:
        raise InputError(f"reason: expected at most 4096 characters, found {len(reason)}")
    if not re.match(TEXT_PATTERN, reason):
        raise InputError(f"reason: expected visible text without control characters, found {reason[:80]!r}")
    return reason


def check_decision(approval: Approval, *, actor: str, decision: Decision, reason: str, now: datetime) -> ApprovalState:
    """Check one approve / deny / revoke; returns the state it leads to.

    Raises:
        InputError: empty actor or reason, or an unknown decision.
        ApprovalExpiredError: AP3.
        ApprovalStateError: AP4 (already decided) or revoking a consumed approval.
        SeparationOfDutiesError: AP2.
    """
    _check_actor(actor)
    _check_reason(reason)
    state = approval.effective_state(now)
    aid = approval.approval_id
    if decision is Decision.REVOKE:
        if approval.consumed_at is not None:
            raise ApprovalConsumedError(f"approval {aid}: already consumed at {approval.consumed_at.isoformat()}")
        if state not in (ApprovalState.PENDING, ApprovalState.APPROVED):
            raise ApprovalStateError(f"approval {aid}: state {state.value}, expected pending or approved to revoke")
        return ApprovalState.REVOKED
    if decision not in (Decision.APPROVE, Decision.DENY):
        raise InputError(f"decision: expected approve, deny or revoke, found {decision.value}")
    if state is ApprovalState.EXPIRED:
        raise ApprovalExpiredError(
            f"approval {aid}: expired at {approval.expires_at.isoformat()} (now {now.isoformat()}); "
            "expired approvals cannot be decided"
        )
    if state is not ApprovalState.PENDING:
        raise ApprovalStateError(
            f"approval {aid}: state {state.value}, expected pending; only pending approvals can be decided"
        )
    if same_actor(actor, approval.requester):
        raise SeparationOfDutiesError(
            f"approval {aid}: {actor!r} requested it and cannot {decision.value} it; another approver must decide"
        )
    if decision is Decision.DENY:
        return ApprovalState.DENIED
    if any(same_actor(actor, a) for a in approval.approvers()):
        raise SeparationOfDutiesError(
            f"approval {aid}: {actor!r} already approved; quorum {approval.quorum} needs distinct approvers"
        )
    return ApprovalState.APPROVED if len(approval.approvers()) + 1 >= approval.quorum else ApprovalState.PENDING


def check_consume(
    approval: Approval, *, action: str, subject_digest: str, target: str, actor: str, now: datetime
) -> None:
    """Check that an execution may use this approval now (AP1, AP3, AP5, AP6).

    Raises:
        InputError: empty actor.
        ApprovalBindingError: action, subject digest or target differ from the approval's.
        ApprovalConsumedError: already used.
        ApprovalExpiredError: past ``expires_at``.
        ApprovalStateError: not approved, or approved without enough recorded approvers.
    """
    _check_actor(actor)
    aid = approval.approval_id
    # AP1: binding first, so a mismatched execution learns nothing else about the approval
    for field, expected, found in (
        ("action", approval.action, action),
        ("subject_digest", approval.subject_digest, subject_digest),
        ("target", approval.target, target),
    ):
        if expected != found:
            raise ApprovalBindingError(f"approval {aid}: {field} expected {expected!r}, found {found!r}")
    if approval.consumed_at is not None:
        raise ApprovalConsumedError(
            f"approval {aid}: already consumed at {approval.consumed_at.isoformat()} "
            f"by {approval.consumed_by}; approvals are single-use"
        )
    state = approval.effective_state(now)
    if state is ApprovalState.EXPIRED:
        raise ApprovalExpiredError(
            f"approval {aid}: expired at {approval.expires_at.isoformat()} (now {now.isoformat()})"
        )
    if state is not ApprovalState.APPROVED:
        raise ApprovalStateError(f"approval {aid}: state {state.value}, expected approved")
    approvers = approval.approvers()
    if len(approvers) < approval.quorum:
        raise ApprovalStateError(
            f"approval {aid}: {len(approvers)} of {approval.quorum} required approvals recorded in Ringward"
        )


def transition_draft(
    *,
    before: Approval | None,
    after: Approval,
    event: str,
    actor: str,
    reason: str | None,
    now: datetime,
    flow_run_id: str | None = None,
) -> EvidenceDraft:
    """The evidence record of one approval transition (every transition names its actor)."""
    kind = {
        "requested": KIND_REQUEST,
        "imported": KIND_REQUEST,
        "consumed": KIND_CONSUMPTION,
    }.get(event, KIND_DECISION)
    payload: dict[str, Any] = {
        "schema_version": TRANSITION_SCHEMA,
        "approval_id": after.approval_id,
        "event": event,
        "actor": actor,
        "reason": reason,
        "at": ensure_utc(now).isoformat(),
        "from_state": None if before is None else before.state.value,
        "to_state": after.state.value,
        "action": after.action,
        "subject_digest": after.subject_digest,
        "target": after.target,
        "requester": after.requester,
        "quorum": after.quorum,
        "approvers": after.approvers(),
        "expires_at": after.expires_at.isoformat(),
        "consumed_at": None if after.consumed_at is None else after.consumed_at.isoformat(),
        "execution_ref": after.execution_ref,
    }
    return EvidenceDraft(
        kind=kind,
        actor=actor,
        flow_run_id=flow_run_id,
        subject=EvidenceSubject(
            deployment_target=after.target,
            status=event,
            approval_id=after.approval_id,
            approval_state=after.state.value,
            execution_status="consumed" if after.consumed_at is not None else None,
        ),
        payload=payload,
    )
