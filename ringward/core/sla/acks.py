"""Acknowledgements and silences: the human inputs to the SLA history.

An acknowledgement acts on a group's *incident* (PagerDuty), not on one notification. State table
(rows: the incident's state when the acknowledgement arrives; columns: the acknowledgement)::

    state \\ ack   | acknowledged          | escalated               | resolved | dismissed
    --------------+-----------------------+-------------------------+----------+----------
    triggered     | acknowledged          | triggered, next rung now| closed   | closed
    acknowledged  | acknowledged (renewed,| triggered, next rung now| closed   | closed
                  | ack_timeout restarts) | (the ack is cleared)    |          |
    no incident   | refused               | refused                 | refused  | refused

- **acknowledged** stops the ladder and the repeat reminders of that route; new alerts joining the
  group are still announced (new_alerts_in_group). With the policy's ``ack_timeout`` an incident
  still open that long after the acknowledgement returns to *triggered* and its ladder starts again
  from the first rung (a new ladder run).
- **escalated** is "I cannot handle this": the next rung is notified now, and the ladder goes on
  from there; it is not an acknowledgement (nothing stops).
- **resolved** (the work is done, the report may lag) and **dismissed** (a false positive) close
  the incident: the alerts it covered are muted until they change (a new severity or status is a
  new alert and opens a new incident); the channel gets one all_alerts_resolved notification.
- Only the route's owner, a member of the owner's group or an admin may decide; anyone else is
  refused and the refusal is recorded (``ack-refused``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ringward.core.errors import InputError, StateError
from ringward.core.sla.engine import Plan, group_key_of
from ringward.core.sla.history import (
    Acknowledged,
    AckRefused,
    AckState,
    HistoryEvent,
    SilenceAdded,
    SilenceExpired,
    acknowledgement_id_for,
    silence_id_for,
)
from ringward.core.sla.policy import Matcher, SlaPolicy

MAX_SILENCE_DAYS = 366


class AcknowledgementRefused(StateError):
    """The actor may not acknowledge for this route (carries the ``ack-refused`` event to record)."""

    code = "sla-ack-refused"

    def __init__(self, message: str, event: AckRefused) -> None:
        super().__init__(message)
        self.event = event


def resolve_group(policy: SlaPolicy, group: str) -> str:
    """``route_id`` or ``<scope>/<route_id>`` -> the group key; unknown -> InputError."""
    route_id = group.split("/", 1)[1] if "/" in group else group
    if route_id not in policy.routes:
        known = ", ".join(sorted(policy.routes))
        raise InputError(f"group: expected one of the policy's routes ({known}), found {group!r}")
    return group_key_of(policy.scope, route_id)


def acknowledge(
    plan: Plan,
    policy: SlaPolicy,
    *,
    group: str,
    state: str,
    by: str,
    at: datetime,
    comment: str | None = None,
    via: str | None = None,
) -> Acknowledged:
    """A checked acknowledgement of ``group``'s open incident in ``plan`` (the plan at ``at``);
    ``via`` names the signed-webhook source it came through.

    Raises:
        InputError: unknown state or group, naive time.
        AcknowledgementRefused: ``by`` is not the owner, a member or an admin (record ``.event``).
        StateError: the group has no open incident.
    """
    if at.tzinfo is None:
        raise InputError("at: expected a time with a UTC offset")
    try:
        chosen = AckState(state.strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in AckState)
        raise InputError(f"acknowledgement_state must be one of: {allowed}") from None
    key = resolve_group(policy, group)
    route = policy.routes[key.split("/", 1)[1]]
    if not policy.may_act(route.owner, by):
        reason = f"{by} is not {route.owner}, a member of it, or an admin"
        event = AckRefused(at=at.astimezone(UTC), group_key=key, state=chosen, by=by, reason=reason)
        raise AcknowledgementRefused(f"acknowledgement refused: {reason}", event)
    if not route.acknowledgement_required:
        raise StateError(f"{key}: the route does not require acknowledgement (acknowledgement_required: false)")
    incident = next((i for i in plan.incidents if i.group_key == key), None)
    if incident is None:
        raise StateError(f"{key}: no open incident to mark {chosen.value} (nothing fires, or it is closed)")
    # resolve/dismiss cover exactly the alerts open now; a later change is a new alert
    closes = chosen in (AckState.RESOLVED, AckState.DISMISSED)
    return Acknowledged(
        at=at.astimezone(UTC),
        acknowledgement_id=acknowledgement_id_for(key, chosen.value, by, at),
        group_key=key,
        state=chosen,
        by=by,
        comment=comment,
        fingerprints=incident.fingerprints if closes else (),
        via=via,
    )


def add_silence(
    matchers: Sequence[Matcher],
    *,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    at: datetime,
) -> SilenceAdded:
    """A silence (Alertmanager API v2 shape). A silence must say who, why and until when.

    Raises:
        InputError: no matchers, naive or inverted times, longer than a year, no comment.
    """
    if not matchers:
        raise InputError("matchers: a silence needs at least one matcher (owner, provider, report, channel, ...)")
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at), ("at", at)):
        if value.tzinfo is None:
            raise InputError(f"{name}: expected a time with a UTC offset")
    if ends_at <= starts_at:
        raise InputError(f"ends_at: {ends_at.isoformat()} is not after starts_at {starts_at.isoformat()}")
    if (ends_at - starts_at).days > MAX_SILENCE_DAYS:
        raise InputError(f"ends_at: a silence lasts at most {MAX_SILENCE_DAYS} days")
    if ends_at <= at:
        raise InputError(f"ends_at: {ends_at.isoformat()} is already past")
    if not comment.strip():
        raise InputError("comment: say why the alerts are silenced")
    return SilenceAdded(
        at=at,
        silence_id=silence_id_for(matchers, starts_at, ends_at, created_by),
        matchers=tuple(matchers),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        comment=comment,
    )


def silence_state(history: Sequence[HistoryEvent], silence_id: str, now: datetime) -> str:
    """``pending`` | ``active`` | ``expired`` (Alertmanager); InputError when unknown."""
    added = next((e for e in history if isinstance(e, SilenceAdded) and e.silence_id == silence_id), None)
    if added is None:
        raise InputError(f"silence: no silence {silence_id!r}")
    ended = min(
        [added.ends_at, *(e.at for e in history if isinstance(e, SilenceExpired) and e.silence_id == silence_id)]
    )
    if now >= ended:
        return "expired"
    return "pending" if now < added.starts_at else "active"


def expire_silence(history: Sequence[HistoryEvent], silence_id: str, *, by: str, at: datetime) -> SilenceExpired:
    """End a silence now (a started one cannot be deleted, only ended -- PagerDuty windows).

    Raises:
        InputError: unknown silence. StateError: already expired.
    """
    if silence_state(history, silence_id, at) == "expired":
        raise StateError(f"silence {silence_id} has already expired")
    return SilenceExpired(at=at, silence_id=silence_id, by=by)
