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
- API13 ``POST /sla/reviews``: an owner review (§9.11) under the rules of API10-API12 (same callers,
  same refusals, recorded); ``group`` may name any scope of the policy (``incidents/<route>``).
- API14 ``POST /webhooks/sla/acknowledgements``: the signed acknowledgement callback. No bearer
  token: the Standard Webhooks signature under a source of ``$RINGWARD_SLA_WEBHOOKS`` /
  ``<home>/sla-webhooks.yaml`` (loaded at startup; secrets shared with an inventory source are
  refused) authenticates the *sender*; the body names the person, who must be the route's owner, a
  member of its group or an admin. Like the inventory receiver it is a small app of its own in front
  of the API (no bearer token, its own body cap counted while streaming, no schema page). Order and
  statuses: no source configured 404; over the body cap 413; a signed header twice, a bad
  signature, a stale or future timestamp 401; a replayed ``webhook-id`` 409; then (the message is
  authentic; its receipt is written with the outcome) a bad body 422, unknown group 404, a person
  or source that may not decide 403 ``sla-ack-refused`` / ``forbidden``, no open incident 409, else
  200 with the recorded acknowledgement. Every refusal is evidence
  (:mod:`ringward.operations.sla.webhook_ack_ops`).
"""

# no `from __future__ import annotations`: FastAPI must see the route annotations, which use locals

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

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


class ReviewBody(BaseModel):
    """An owner review (§9.11) of a group's open incident; the reviewer is the calling token's name."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=257, pattern=GROUP_PATTERN,
                       description="The route id (or `<scope>/<route id>`) whose open incident is reviewed.")
    state: Literal["accepted", "deferred", "resolved", "false_positive", "escalated"] = Field(
        description="accepted stops the ladder; deferred stops it until `until`; escalated notifies the next "
        "rung now; resolved and false_positive close the incident (docs/sla.md)."
    )
    plan_id: str | None = Field(default=None, pattern=r"^erslaesc-[0-9a-f]{16}$",
                                description="The open incident's id (refused 409 when it is not the open one).")
    owner: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
    provider: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
    until: AwareDatetime | None = Field(default=None, description="deferred only: when the incident re-triggers.")
    report_id: str | None = Field(default=None, max_length=128, pattern=REPORT_ID_PATTERN)
    external_ref: str | None = Field(default=None, max_length=256, pattern=TEXT_PATTERN)
    comment: str | None = Field(default=None, max_length=2000, pattern=TEXT_PATTERN)


class ReviewOut(BaseModel):
    """The recorded review (``cavra.endpoint_remediation_sla.escalation_review.v1``)."""

    schema_version: str
    review_id: str
    plan_id: str
    report_id: str
    group_key: str
    provider: str
    owner: str
    review_state: str
    effect: str
    unresolved: bool
    deferred_until: str | None
    reviewed_by: str
    reviewed_at: str
    external_ref: str | None
    notes: str | None
    route_key: str
    controls: list[str]
    replayed: bool


class WebhookAckOut(BaseModel):
    """The acknowledgement recorded from a signed callback."""

    schema_version: str
    acknowledgement_id: str
    report_id: str
    group_key: str
    plan_id: str
    owner: str
    acknowledgement_state: str
    acknowledged_by: str
    acknowledged_at: str
    via: str
    webhook: dict[str, Any]
    evidence_id: str


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


def _webhook_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message[:500]})


def add_sla_routes(
    app: FastAPI,
    *,
    auth: Callable[[Permission], Any],
    get_store: Callable[[], Store],
    clock: Callable[[], datetime],
    sla_webhooks: Any = None,
) -> None:
    """Register ``POST /sla/acknowledgements``, ``POST /sla/reviews``, ``GET /sla/escalations`` and
    the signed ``POST /webhooks/sla/acknowledgements`` on ``app`` (the callback's configuration is
    ``sla_webhooks`` or loaded now, API14).

    Raises:
        ConfigError: the SLA webhook configuration is invalid (or shares a secret with an inventory source).
    """
    from ringward.operations.sla import webhook_ack_ops

    receiver = sla_webhooks or webhook_ack_ops.load_receiver(inventory=getattr(app.state, "webhook_receiver", None))
    app.state.sla_webhook_receiver = receiver
    hooks = build_sla_receiver_app(get_store=get_store, clock=clock, receiver=receiver)
    app.add_middleware(SlaWebhookDispatch, receiver_app=hooks)
    # every valid token passes the dependency; who may write is decided per route (API11)
    caller_of = Annotated[Principal, Depends(auth(Permission.READ_EVIDENCE))]

    def writer(caller: Principal, policy: SlaPolicy, group_key: str, state: str, now: datetime, what: str) -> None:
        if caller.role not in WRITING_ROLES:
            from ringward.operations.sla import sla_ops

            reason = f"token role {caller.role.value} cannot {what} (operator, approver or admin needed)"
            effect = {"accepted": "acknowledged", "deferred": "acknowledged", "false_positive": "dismissed"}
            sla_ops.refuse_acknowledgement(
                get_store(), policy, group=group_key, state=effect.get(state, state), by=caller.name, at=now,
                reason=reason,
            )
            raise ApiError(403, "forbidden", f"{what} refused: {reason} (the refusal is recorded)")

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
        scoped, group_key, _ = sla_ops.resolve(policy, body.group)  # 404 before anything else is read
        now = clock()
        writer(caller, policy, group_key, body.state, now, "acknowledgement")
        report = sla_ops.current_report(store, policy, scoped.scope, now=now, report_id=body.report_id)
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

    @app.post("/sla/reviews", response_model=ReviewOut, responses=SLA_RESPONSES, tags=["sla"])
    def review(body: ReviewBody, caller: caller_of) -> dict[str, Any]:
        """Review a group's open incident as its owner, a member of the owner's group or an admin
        (operator role or above): accepted, deferred (until), escalated, resolved, false_positive."""
        from ringward.operations.sla import oversight_ops, sla_ops

        store = get_store()
        policy = _policy()
        scoped, group_key, _ = sla_ops.resolve(policy, body.group)
        now = clock()
        writer(caller, policy, group_key, body.state, now, "review")
        report = sla_ops.current_report(store, policy, scoped.scope, now=now, report_id=body.report_id)
        try:
            record, replayed = oversight_ops.review(
                store, policy, report, group=group_key, state=body.state, by=caller.name, at=now,
                plan_id=body.plan_id, owner=body.owner, provider=body.provider, until=body.until,
                external_ref=body.external_ref, comment=body.comment, is_admin=caller.role is Role.ADMIN,
            )
        except AcknowledgementRefused as exc:
            raise ApiError(403, exc.code, f"{exc.message} (the refusal is recorded)") from None
        return {**record, "replayed": replayed}

    @app.get("/sla/escalations", response_model=EscalationsOut, responses=ERROR_RESPONSES, tags=["sla"])
    def escalations(
        _: caller_of,
        owner: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")] = None,
        report_id: Annotated[str | None, Query(max_length=128, pattern=REPORT_ID_PATTERN)] = None,
        scope: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")] = None,
    ) -> dict[str, Any]:
        """Open incidents now, per owner: state, who acknowledged, the current rung, the next rung's
        time and the SLO states (evaluated from the recorded history; nothing is written). ``scope``:
        the policy's incidents or health scope instead of the remediation one."""
        from ringward.core.errors import NotFoundError
        from ringward.operations.sla import sla_ops

        store = get_store()
        policy = _policy()
        now = clock()
        scoped = policy.for_scope(scope) if scope else policy
        if scoped is None:
            raise NotFoundError(f"scope: {scope!r} is not one of the policy's ({', '.join(policy.scopes)})")
        report = sla_ops.current_report(store, policy, scoped.scope, now=now, report_id=report_id)
        result = sla_ops.open_escalations(store, scoped, report, now=now)
        if owner is not None:
            result["owners"] = {name: rows for name, rows in result["owners"].items() if name == owner}
            result["incident_count"] = sum(len(rows) for rows in result["owners"].values())
        return result


# --- API14: the signed acknowledgement callback (its own small app, like the inventory receiver) -----

SLA_WEBHOOK_PREFIX = "/webhooks/sla/"


def build_sla_receiver_app(*, get_store: Callable[[], Store], clock: Callable[[], datetime], receiver: Any) -> FastAPI:
    """The signed SLA callback receiver: no bearer token (the signature authenticates the sender),
    its own body cap, no schema pages. Placed in front of the API like the inventory receiver."""
    from fastapi.exceptions import RequestValidationError
    from sqlalchemy.exc import DBAPIError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ringward.api.webhooks import _read_capped, _TooLarge
    from ringward.core.errors import StoreConflictError, WebhookSignatureError
    from ringward.operations.sla import webhook_ack_ops
    from ringward.store.inventory.receipts import WebhookReplayError

    hooks = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @hooks.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:  # pragma: no cover - no params
        return _webhook_error(422, "bad-input", "invalid request")

    @hooks.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _webhook_error(exc.status_code, code, str(exc.detail))

    @hooks.post("/webhooks/sla/acknowledgements")
    async def webhook_acknowledgement(request: Request) -> JSONResponse:
        if not receiver.sources:
            return _webhook_error(404, "not-found", "no SLA webhook source is configured (sla-webhooks.yaml)")
        now = clock()
        store = get_store()
        try:
            body = await _read_capped(request, receiver.max_body_bytes)
        except _TooLarge as exc:
            message = f"body is {exc.size}+ bytes, expected at most {receiver.max_body_bytes}"
            await run_in_threadpool(webhook_ack_ops.record_unauthenticated, store, status=413, code="body-too-large",
                                    reason=message, webhook_id=request.headers.get("webhook-id"), body=b"", now=now)
            return _webhook_error(413, "body-too-large", message)
        repeated = [(n, c) for n in webhook_ack_ops.SIGNED_HEADERS if (c := len(request.headers.getlist(n))) > 1]
        if repeated:
            message = f"{repeated[0][0]} appears {repeated[0][1]} times, expected once"
            await run_in_threadpool(webhook_ack_ops.record_unauthenticated, store, status=401,
                                    code="webhook-signature", reason=message, webhook_id=None, body=body, now=now)
            return _webhook_error(401, "webhook-signature", message)
        try:
            policy = _policy()
            record = await run_in_threadpool(webhook_ack_ops.accept_acknowledgement, store, receiver, policy,
                                             dict(request.headers), body, now=now)
        except ApiError as exc:
            return _webhook_error(exc.status, exc.code, exc.message)
        except WebhookSignatureError as exc:
            return _webhook_error(401, exc.code, exc.message)
        except WebhookReplayError as exc:
            return _webhook_error(409, exc.code, exc.message)
        except webhook_ack_ops.WebhookRefused as exc:
            suffix = " (the refusal is recorded)" if exc.status == 403 else ""
            return _webhook_error(exc.status, exc.error, exc.message + suffix)
        except StoreConflictError as exc:
            return _webhook_error(409, exc.code, exc.message)
        except DBAPIError:
            return _webhook_error(503, "store-unavailable", "the evidence store is unavailable; retry later")
        return JSONResponse(status_code=200, content=WebhookAckOut.model_validate(record).model_dump(mode="json"))

    return hooks


class SlaWebhookDispatch:
    """Send requests under :data:`SLA_WEBHOOK_PREFIX` to the callback receiver (header-capped),
    everything else (and lifespan) to the API as before."""

    def __init__(self, app: ASGIApp, receiver_app: ASGIApp) -> None:
        from ringward.api.middleware import HeaderLimitMiddleware

        self.app = app
        self.receiver_app = HeaderLimitMiddleware(receiver_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(SLA_WEBHOOK_PREFIX):
            await self.receiver_app(scope, receive, send)
            return
        await self.app(scope, receive, send)
