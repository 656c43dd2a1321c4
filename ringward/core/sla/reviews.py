"""Owner reviews of an escalated incident (``cavra.endpoint_remediation_sla.escalation_review.v1``, §9.11).

A review is the route owner's decision on an escalation. It acts on the group's open incident
through the acknowledgement state machine (:mod:`ringward.core.sla.acks`), recorded as an
``ack`` history event carrying ``review_state`` (the engine reads one kind of decision)::

    review_state    effect on the incident                                   unresolved
    --------------  ------------------------------------------------------  ----------
    accepted        acknowledged: the ladder and the reminders stop          yes
    deferred        acknowledged until --until (at most 30 days): then it    yes
                    re-triggers and its ladder starts again from rung 0
    escalated       the next rung is notified now                            yes
    resolved        closed (as an acknowledgement "resolved")                no
    false_positive  closed, its alerts muted until they change ("dismissed") no

What differs from the reference (§11.13): only the route's owner, a member of its group or an
admin may review (anyone else is refused and the refusal recorded); the review names an incident
that exists and is open (``plan_id``, when given, must be the open incident's id -- the reference
never checked it); ``owner``, when given, must be the route's owner; the ``provider`` must be one of
the route's receivers or of its ladder's; and the review has an effect (the reference only
suppressed recurrences of resolved / false_positive reviews).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from ringward.core.errors import InputError, StateError
from ringward.core.sla.acks import AcknowledgementRefused, resolve_group
from ringward.core.sla.engine import Plan, iso
from ringward.core.sla.history import Acknowledged, AckRefused, AckState, ReviewState
from ringward.core.sla.policy import SlaPolicy

REVIEW_SCHEMA = "cavra.endpoint_remediation_sla.escalation_review.v1"
MAX_DEFERRAL = timedelta(days=30)
EFFECT: dict[ReviewState, AckState] = {
    ReviewState.ACCEPTED: AckState.ACKNOWLEDGED,
    ReviewState.DEFERRED: AckState.ACKNOWLEDGED,
    ReviewState.ESCALATED: AckState.ESCALATED,
    ReviewState.RESOLVED: AckState.RESOLVED,
    ReviewState.FALSE_POSITIVE: AckState.DISMISSED,
}
UNRESOLVED = frozenset({ReviewState.ACCEPTED, ReviewState.DEFERRED, ReviewState.ESCALATED})
REVIEW_CONTROLS = (
    "review-records-owner-decision",
    "reviewer-is-route-owner-member-or-admin",
    "review-names-an-open-incident",
    "no-provider-token-or-secret-stored",
)


def review_id_for(plan_id: str, report_id: str, provider: str, owner: str, state: str, by: str, at: datetime) -> str:
    """``erslaescr-`` + sha256(``<plan>|<report>|<provider>|<owner>|<state>|<by>|<at>``)[:16] (§9.11)."""
    text = f"{plan_id}|{report_id}|{provider}|{owner}|{state}|{by}|{at.astimezone(UTC).isoformat()}"
    return "erslaescr-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def route_key_for(plan_id: str, report_id: str, provider: str, owner: str) -> str:
    """``erslaroute-`` + sha256(``<plan_id>|<report_id>|<provider>|<owner>``)[:16] (§9.11)."""
    return "erslaroute-" + hashlib.sha256(f"{plan_id}|{report_id}|{provider}|{owner}".encode()).hexdigest()[:16]


def parse_review_state(value: str) -> ReviewState:
    try:
        return ReviewState(value.strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in ReviewState)
        raise InputError(f"review_state must be one of: {allowed}") from None


def route_receivers(policy: SlaPolicy, route_id: str) -> tuple[str, ...]:
    """Who a route's notifications and its ladder's rungs reach (the review's ``provider`` choices)."""
    route = policy.routes[route_id]
    found = list(route.receivers)
    ladder = policy.escalation_policies.get(route.escalation_policy) if route.escalation_policy else None
    for rung in ladder.rungs if ladder is not None else ():
        for target in rung.targets:
            found.extend([target.receiver] if target.receiver else policy.receivers_of(target.owner or ""))
    return tuple(dict.fromkeys(found))


def review(
    plan: Plan,
    policy: SlaPolicy,
    *,
    group: str,
    state: str,
    by: str,
    at: datetime,
    report_id: str,
    plan_id: str | None = None,
    owner: str | None = None,
    provider: str | None = None,
    until: datetime | None = None,
    external_ref: str | None = None,
    comment: str | None = None,
    via: str | None = None,
) -> tuple[Acknowledged, dict[str, Any]]:
    """A checked review of ``group``'s open incident in ``plan`` (the plan at ``at``): the history
    event and the §9.11 record.

    Raises:
        InputError: unknown state or group, naive time, an owner that is not the route's, a
            provider the route does not reach, a missing / past / too long ``until`` for deferred
            (or an ``until`` for another state).
        AcknowledgementRefused: ``by`` is not the owner, a member or an admin (record ``.event``).
        StateError: no open incident in the group, or ``plan_id`` is not the open incident.
    """
    if at.tzinfo is None:
        raise InputError("at: expected a time with a UTC offset")
    at = at.astimezone(UTC)
    chosen = parse_review_state(state)
    effect = EFFECT[chosen]
    key = resolve_group(policy, group)
    route_id = key.split("/", 1)[1]
    route = policy.routes[route_id]
    if owner is not None and owner != route.owner:
        raise InputError(f"owner: route {route_id} is owned by {route.owner}, found {owner!r}")
    if not policy.may_act(route.owner, by):
        reason = f"{by} is not {route.owner}, a member of it, or an admin"
        refusal = AckRefused(at=at, group_key=key, state=effect, by=by, reason=f"review {chosen.value}: {reason}")
        raise AcknowledgementRefused(f"review refused: {reason}", refusal)
    reachable = route_receivers(policy, route_id)
    if provider is not None and provider not in reachable:
        raise InputError(
            f"provider: route {route_id} reaches {', '.join(reachable) or 'no receiver'}, found {provider!r}"
        )
    if chosen is ReviewState.DEFERRED:
        if until is None:
            raise InputError("until: a deferred review says until when (at most 30 days)")
        if until.tzinfo is None:
            raise InputError("until: expected a time with a UTC offset")
        until = until.astimezone(UTC)
        if not at < until <= at + MAX_DEFERRAL:
            raise InputError(f"until: expected after {iso(at)} and at most 30 days later, found {iso(until)}")
    elif until is not None:
        raise InputError(f"until: only a deferred review has an end, found one for {chosen.value}")
    incident = next((i for i in plan.incidents if i.group_key == key), None)
    if incident is None:
        raise StateError(f"{key}: no open incident to review (nothing fires, or it is closed)")
    if plan_id is not None and plan_id != incident.plan_id:
        raise StateError(f"plan_id: {plan_id} is not the open incident of {key} (that is {incident.plan_id})")
    closes = effect in (AckState.RESOLVED, AckState.DISMISSED)
    receiver = provider or "all"
    review_id = review_id_for(incident.plan_id, report_id, receiver, route.owner, chosen.value, by, at)
    event = Acknowledged(
        at=at,
        acknowledgement_id=review_id,
        group_key=key,
        state=effect,
        by=by,
        comment=comment,
        fingerprints=incident.fingerprints if closes else (),
        expires_at=until,
        review_state=chosen,
        via=via,
    )
    record = {
        "schema_version": REVIEW_SCHEMA,
        "review_id": review_id,
        "plan_id": incident.plan_id,
        "report_id": report_id,
        "group_key": key,
        "provider": receiver,
        "owner": route.owner,
        "review_state": chosen.value,
        "effect": effect.value,
        "unresolved": chosen in UNRESOLVED,
        "deferred_until": iso(until) if until is not None else None,
        "reviewed_by": by,
        "reviewed_at": iso(at),
        "external_ref": external_ref,
        "notes": comment,
        "route_key": route_key_for(incident.plan_id, report_id, receiver, route.owner),
        "incident_state_before": incident.state.value,
        "escalation_level": incident.level,
        "via": via,
        "controls": list(REVIEW_CONTROLS),
    }
    return event, record
