"""SLA routes: acknowledge / escalate / resolve / dismiss a notification group's incident, and the
open escalations per owner.

On top of rules API1-API4 of :mod:`ringward.api.app`:

- API10 the routing policy comes from the server's configuration only (``$RINGWARD_SLA_POLICY``,
  else ``<home>/sla-routing.yaml``; missing is 409 ``not-configured`` and unreadable 409 ``bad-config``:
  the server's state, not the request, is wrong), and the report is one the
  server itself recorded (``endpoint-remediation-sla-report`` evidence, written by
  ``ringward sla report`` and the ``sla-escalation`` flow): the newest, or the newest with the
  body's ``report_id``. A request never names a server path, so there is nothing to confine.
- API11 who may decide (issue 9): an admin token always; otherwise the token's name must be the
  route's owner, a member of the owner's group or one of the policy's ``admins``, and the token
  must be able to write (operator, approver or admin: a viewer token never writes, 403
  ``forbidden``). Anyone else is refused 403 ``sla-ack-refused``. Both refusals are recorded
  (``ack-refused`` history row and ``endpoint-remediation-sla-notification-ack-refused`` evidence).
  The actor is always the token's name: a body naming ``by``/``actor``/``acknowledged_by`` is
  refused 422 (unknown field).
- API12 the same decision by the same token at the same instant is answered again from its record
  (``replayed: true``), never recorded twice; an unknown group is 404; a group with no open
  incident (or a route that does not require acknowledgement) is 409.
"""

# no `from __future__ import annotations`: FastAPI must see the route annotations, which use locals

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from ringward.api.auth import ApiError, Principal
from ringward.api.models import ERROR_RESPONSES
from ringward.core.approvals.rules import TEXT_PATTERN
from ringward.core.common.roles import Permission, Role
from ringward.core.errors import RingwardError
from ringward.core.sla.acks import AcknowledgementRefused
from ringward.core.sla.policy import SlaPolicy
from ringward.store import Store

#: a route id, or ``<scope>/<route id>`` (the group key)
GROUP_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._@-]{0,127}/)?[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
REPORT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: roles that may write an acknowledgement (still only for routes they own, are members of, or as admin)
WRITING_ROLES = frozenset({Role.OPERATOR, Role.APPROVER, Role.ADMIN})


class AcknowledgementBody(BaseModel):
    """A decision on a notification group's incident; the decider is the calling token's name."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(
        min_length=1,
        max_length=257,
        pattern=GROUP_PATTERN,
        description="The route id (or `<scope>/<route id>`) whose incident is decided.",
    )
    state: Literal["acknowledged", "escalated", "resolved", "dismissed"] = Field(
        description="acknowledged stops the route's ladder and reminders; escalated notifies the next "
        "rung now; resolved and dismissed close the incident (state table in docs/sla.md)."
    )
    report_id: str | None = Field(
        default=None,
        max_length=128,
        pattern=REPORT_ID_PATTERN,
        description="Decide against this recorded report (default: the newest recorded report).",
    )
    comment: str | None = Field(default=None, max_length=2000, pattern=TEXT_PATTERN)


class AcknowledgementOut(BaseModel):
    """The recorded acknowledgement (``cavra.endpoint_remediation_sla.notification_ack.v1``)."""

    schema_version: str
    acknowledgement_id: str
    report_id: str
    group_key: str
    acknowledgement_state: str
    acknowledged_by: str
    acknowledged_at: str
    notes: str | None
    fingerprints: list[str]
    controls: list[str]
    #: true when this exact decision was already recorded (answered from its record)
    replayed: bool


class EscalationsOut(BaseModel):
    """Open incidents at the server's time, per owner (from the recorded history; read-only)."""

    scope: str
    at: str
    report_id: str
    incident_count: int
    owners: dict[str, list[dict[str, Any]]]


SLA_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    403: {
        "model": ERROR_RESPONSES[403]["model"],
        "description": "Not the route's owner, a member of its group or an admin (the refusal is recorded), "
        "or a viewer token.",
    },
}


def _policy() -> SlaPolicy:
    """The configured routing policy (API10); 409 ``not-configured`` when the file is absent, 409
    ``bad-config`` when it does not load (a valid request never gets a 4xx that blames it)."""
    from ringward.operations.sla import sla_ops
    from ringward.settings import SLA_POLICY_ENV, sla_policy_path

    path = sla_policy_path()
    if not path.is_file():
        raise ApiError(
            409, "not-configured", f"the server has no SLA routing policy (set ${SLA_POLICY_ENV} or create {path})"
        )
    try:
        return sla_ops.load_policy(path)
    except RingwardError as exc:
        raise ApiError(409, "bad-config", f"the server's SLA routing policy does not load: {exc.message}") from None


def add_sla_routes(
    app: FastAPI,
    *,
    auth: Callable[[Permission], Any],
    get_store: Callable[[], Store],
    clock: Callable[[], datetime],
) -> None:
    """Register ``POST /sla/acknowledgements`` and ``GET /sla/escalations`` on ``app``."""
    # every valid token passes the dependency; who may write is decided per route (API11)
    caller_of = Annotated[Principal, Depends(auth(Permission.READ_EVIDENCE))]

    @app.post(
        "/sla/acknowledgements",
        response_model=AcknowledgementOut,
        responses=SLA_RESPONSES,
        tags=["sla"],
    )
    def acknowledge(body: AcknowledgementBody, caller: caller_of) -> dict[str, Any]:
        """Acknowledge, escalate, resolve or dismiss a group's open incident as the calling token's
        name (the route's owner, a member of its group, or an admin; operator role or above)."""
        from ringward.operations.sla import sla_ops

        store = get_store()
        policy = _policy()
        group_key, _ = sla_ops.route_of(policy, body.group)  # 404 before anything else is read
        now = clock()
        if caller.role not in WRITING_ROLES:
            reason = f"token role {caller.role.value} cannot acknowledge (operator, approver or admin needed)"
            sla_ops.refuse_acknowledgement(
                store, policy, group=group_key, state=body.state, by=caller.name, at=now, reason=reason
            )
            raise ApiError(403, "forbidden", f"acknowledgement refused: {reason} (the refusal is recorded)")
        report = sla_ops.recorded_report(store, report_id=body.report_id)
        try:
            payload, replayed = sla_ops.acknowledge_checked(
                store,
                policy,
                report,
                group=group_key,
                state=body.state,
                by=caller.name,
                at=now,
                comment=body.comment,
                is_admin=caller.role is Role.ADMIN,
            )
        except AcknowledgementRefused as exc:
            raise ApiError(403, exc.code, f"{exc.message} (the refusal is recorded)") from None
        return {**payload, "replayed": replayed}

    @app.get("/sla/escalations", response_model=EscalationsOut, responses=ERROR_RESPONSES, tags=["sla"])
    def escalations(
        _: caller_of,
        owner: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")] = None,
        report_id: Annotated[str | None, Query(max_length=128, pattern=REPORT_ID_PATTERN)] = None,
    ) -> dict[str, Any]:
        """Open incidents now, per owner: state, who acknowledged, the current rung, the next rung's
        time and the SLO states (evaluated from the recorded history; nothing is written)."""
        from ringward.operations.sla import sla_ops

        store = get_store()
        policy = _policy()
        report = sla_ops.recorded_report(store, report_id=report_id)
        result = sla_ops.open_escalations(store, policy, report, now=clock())
        if owner is not None:
            result["owners"] = {name: rows for name, rows in result["owners"].items() if name == owner}
            result["incident_count"] = sum(len(rows) for rows in result["owners"].values())
        return result
