"""The SLA history: an append-only list of typed events, the only memory the engine has.

Every rule of :mod:`ringward.core.sla.engine` is a pure function of (history, policy, report,
now). The store keeps these events in order (``ringward.store.sla``); nothing is ever updated
in place: a silence is ended by a ``silence-expired`` event, an incident is closed by an
acknowledgement event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from ringward.core.sla.policy import Matcher

HISTORY_EVENT_SCHEMA = "ringward.sla-event.v1"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class NotificationKind(StrEnum):
    #: an Alertmanager-style group notification (first, new alerts, repeat, resolved)
    GROUP = "group"
    #: a rung of an escalation policy
    ESCALATION = "escalation"
    #: an owner digest (§9.14; its own scope, never planned by the engine)
    DIGEST = "digest"


class Reason(StrEnum):
    """``notification_reason`` (Alertmanager's names) plus the escalation reasons."""

    FIRST_NOTIFICATION = "first_notification"
    NEW_ALERTS_IN_GROUP = "new_alerts_in_group"
    ALL_ALERTS_RESOLVED = "all_alerts_resolved"
    REPEAT_INTERVAL_ELAPSED = "repeat_interval_elapsed"
    HEALTHY_REPORT = "healthy_report"
    RUNG_DUE = "rung_due"
    ESCALATED_PAST_UNAVAILABLE = "escalated_past_unavailable"
    MANUAL_ESCALATION = "manual_escalation"
    OWNER_DIGEST = "owner_digest"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: AwareDatetime

    _at = field_validator("at")(lambda cls, v: _utc(v))


class _Send(_Event):
    #: the decision key (stable for one decision, so two schedulers agree on it)
    key: str = Field(min_length=1, max_length=128)
    notification: NotificationKind
    group_key: str
    route_id: str
    receiver: str
    reason: Reason
    #: fingerprints of the firing alerts the notification carried (empty: a resolved notification)
    firing: tuple[str, ...] = ()
    #: escalation only: the ladder run (epoch) and position (loop * rungs + rung)
    epoch: str | None = None
    position: int | None = None
    #: the incident's trigger time when the send belongs to one (keeps the ladder's clock stable)
    triggered_at: AwareDatetime | None = None


class SentOk(_Send):
    kind: Literal["sent-ok"] = "sent-ok"
    delivery_ref: str | None = None


class SendFailed(_Send):
    kind: Literal["send-failed"] = "send-failed"
    error: str = Field(default="", max_length=2000)


class AckState(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    DISMISSED = "dismissed"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class ReviewState(StrEnum):
    """§9.11 owner review states and what each does to the incident (``ringward.core.sla.reviews``)."""

    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"
    ESCALATED = "escalated"


class Acknowledged(_Event):
    """A human (or automation) decision on a group's incident."""

    kind: Literal["ack"] = "ack"
    acknowledgement_id: str
    group_key: str
    state: AckState
    by: str = Field(min_length=1, max_length=256)
    comment: str | None = Field(default=None, max_length=2000)
    #: alerts the decision covers (resolved/dismissed mute exactly these until they change)
    fingerprints: tuple[str, ...] = ()
    #: an acknowledgement with an end (a deferring owner review): the incident re-triggers then
    expires_at: AwareDatetime | None = None
    #: set when the decision is an owner review (§9.11): its review state
    review_state: ReviewState | None = None
    #: the signed-webhook source it came through (None: CLI or API token)
    via: str | None = Field(default=None, max_length=128)

    _expiry = field_validator("expires_at")(lambda cls, v: None if v is None else _utc(v))


class SilenceAdded(_Event):
    kind: Literal["silence"] = "silence"
    silence_id: str
    matchers: tuple[Matcher, ...] = Field(min_length=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: str = Field(min_length=1, max_length=256)
    comment: str = Field(default="", max_length=2000)

    _bounds = field_validator("starts_at", "ends_at")(lambda cls, v: _utc(v))


class SilenceExpired(_Event):
    kind: Literal["silence-expired"] = "silence-expired"
    silence_id: str
    by: str = Field(min_length=1, max_length=256)


class AckRefused(_Event):
    """An acknowledgement attempt by someone who may not act for the route (auditable)."""

    kind: Literal["ack-refused"] = "ack-refused"
    group_key: str
    state: AckState
    by: str
    reason: str


HistoryEvent = Annotated[
    SentOk | SendFailed | Acknowledged | SilenceAdded | SilenceExpired | AckRefused,
    Field(discriminator="kind"),
]
History = Sequence[HistoryEvent]

EVENT_ADAPTER: TypeAdapter[HistoryEvent] = TypeAdapter(HistoryEvent)


def acknowledgement_id_for(group_key: str, state: str, by: str, at: datetime) -> str:
    """``erslaack-`` + sha256(``<group>|<state>|<by>|<at>``)[:16] (the §9.8 shape, keyed by group)."""
    text = f"{group_key}|{state}|{by}|{_utc(at).isoformat()}"
    return "erslaack-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def silence_id_for(matchers: Sequence[Matcher], starts_at: datetime, ends_at: datetime, by: str) -> str:
    text = "|".join([*(m.describe() for m in matchers), _utc(starts_at).isoformat(), _utc(ends_at).isoformat(), by])
    return "sil-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
