"""``POST /webhooks/inventory/{source}``: signed inventory webhooks (rule API9), and
``POST /webhooks/handoff-status``: signed remediation handoff statuses over the same machinery
(:mod:`ringward.operations.remediation.handoff_webhook`; 200 recorded, 409 illegal transition).

- API9 the only routes authenticated by something other than a bearer token: the Standard
  Webhooks signature (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; HMAC ``v1``
  and Ed25519 ``v1a``, two secrets during a rotation) under the per-source configuration
  (``webhooks.yaml``, :mod:`ringward.operations.inventory.webhook_ops`), loaded once at startup.
  Order: unknown source 404; body over ``max_body_bytes`` 413 (counted while streaming, never
  buffered past the cap); bad or missing signature, stale or future timestamp 401; replayed
  ``webhook-id`` 409 -- each a one-line ``{"error", "message"}`` and, but for the 404, an evidence
  record without the body. An accepted body is evidence (bytes + sha256) with its receipt before
  the 202 ``{"receipt_id", "evidence_id", "body_sha256", "status": "received"}`` is sent; then
  ``ringward.inventory.received`` is emitted (Prefect API configured) or the body is ingested
  in-process after the response.

The receiver is its own small ASGI app placed in front of the bearer-token API's guards: those
cap every body at 64 KiB and require a bearer token, and an inventory export is larger and
carries a signature instead. Everything that is not under :data:`RECEIVER_PATHS` goes to the API as before.
"""

# no `from __future__ import annotations`: FastAPI must see the route annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ringward.api.middleware import DEFAULT_MAX_HEADER_BYTES, HeaderLimitMiddleware
from ringward.core.errors import NotFoundError, RingwardError, WebhookSignatureError
from ringward.operations.inventory import webhook_ops
from ringward.operations.inventory.webhook_ops import WebhookReceiver
from ringward.store import Store

log = logging.getLogger("ringward.api.webhooks")

PREFIX = "/webhooks/inventory/"
#: signed remediation handoff statuses (:mod:`ringward.operations.remediation.handoff_webhook`)
HANDOFF_STATUS_PATH = "/webhooks/handoff-status"
#: every path the receiver (not the bearer-token API) answers
RECEIVER_PATHS: tuple[str, ...] = (PREFIX, HANDOFF_STATUS_PATH)
SOURCE_PARAM = Annotated[str, PathParam(pattern=webhook_ops.SOURCE_PATTERN, max_length=64)]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message[:500]})


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    # ASCII digits only (str.isdigit also accepts '²'), and no int() of thousands of digits
    if declared is not None and declared.isascii() and declared.isdigit():
        size = int(declared) if len(declared) <= 19 else cap + 1
        if size > cap:
            raise _TooLarge(size)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _TooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def dispatch(store: Store, receiver: WebhookReceiver, receipt: Any, *, now: datetime) -> dict[str, Any]:
    """After the 202: emit ``ringward.inventory.received`` when a Prefect API is configured (the
    ``inventory-ingest-on-receive`` trigger ingests), else -- or when the event cannot be sent --
    ingest here. A crash in between leaves the receipt ``received`` for ``recover-webhooks``."""
    from flows.events import emit_if_configured, events_enabled
    from ringward.store.inventory.receipts import DISPATCHED, RECEIVED, WebhookReceiptRepository

    if events_enabled():
        configured = receiver.sources.get(receipt.source)
        software = configured.software if configured else ("cavra-runtime",)
        event = webhook_ops.received_event(receipt, software)
        warning = emit_if_configured(*event)
        if warning is None:
            WebhookReceiptRepository(store).finish(receipt.receipt_id, DISPATCHED, now=now, allowed_from=(RECEIVED,))
            return {"receipt_id": receipt.receipt_id, "status": DISPATCHED}
        log.warning("%s; ingesting receipt %s in-process", warning, receipt.receipt_id)
    outcome = webhook_ops.ingest_receipt(store, receiver, receipt, now=now)
    if outcome.get("ingestion") == "ingested":
        # no Prefect to trigger the automation: reconcile + remediation request here, when configured
        from ringward.operations.remediation.automation import automate_if_configured

        try:
            automated = automate_if_configured(store, str(outcome["inventory_id"]), now=now)
        except RingwardError as exc:  # recorded by the automation; the ingestion stands
            log.warning("inventory %s: automation refused: %s", outcome["inventory_id"], exc.message)
        else:
            if automated is not None:
                outcome["automation"] = {k: automated.get(k) for k in ("status", "automation_id", "request_id",
                                                                         "approval_id", "message")}
    return outcome


def _ingest_after_response(store: Store, receiver: WebhookReceiver, receipt: Any,
                           clock: Callable[[], datetime]) -> None:
    try:
        outcome = dispatch(store, receiver, receipt, now=clock())
    except Exception:  # the body is stored; recover-webhooks finishes it. Never lose the worker.
        log.exception("webhook receipt %s: ingestion failed; run `ringward inventory recover-webhooks`",
                      receipt.receipt_id)
        return
    if outcome["status"] == "rejected":
        log.warning("webhook receipt %s rejected: %s", receipt.receipt_id, outcome["reason"])


def build_receiver_app(*, get_store: Callable[[], Store], clock: Callable[[], datetime],
                       receiver: WebhookReceiver) -> FastAPI:
    """The signed-webhook receiver (no bearer auth, its own body cap, no schema pages)."""
    hooks = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @hooks.exception_handler(RequestValidationError)
    async def _bad_source(_: Request, exc: RequestValidationError) -> JSONResponse:
        # the only validated input is the source name in the path: a name that cannot be configured
        return _error(404, "not-found", "webhook source is not configured (expected lowercase letters, digits, "
                      "- or _, 1-64)")

    @hooks.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _error(exc.status_code, code, str(exc.detail))

    @hooks.post("/webhooks/inventory/{source}", status_code=202)
    async def receive_inventory(source: SOURCE_PARAM, request: Request, background: BackgroundTasks) -> JSONResponse:
        if source not in receiver.sources:
            return _error(404, "not-found", f"webhook source {source!r} is not configured")
        now = clock()
        store = get_store()
        provider = receiver.sources[source].provider
        try:
            body = await _read_capped(request, receiver.max_body_bytes)
        except _TooLarge as exc:
            message = f"body is {exc.size}+ bytes, expected at most {receiver.max_body_bytes}"
            await run_in_threadpool(
                webhook_ops.record_refusal, store, source=source, provider=provider, status_code=413,
                error="body-too-large", reason=message, webhook_id=request.headers.get("webhook-id"),
                body_sha256=None, body_bytes=exc.size, now=now)
            return _error(413, "body-too-large", message)
        repeated = [(name, n) for name in webhook_ops.SIGNED_HEADERS if (n := len(request.headers.getlist(name))) > 1]
        if repeated:
            # ambiguous: a proxy or logger may keep another copy than the one the signature covers
            refused = WebhookSignatureError(f"{repeated[0][0]} appears {repeated[0][1]} times, expected once")
            await run_in_threadpool(
                webhook_ops.record_refusal, store, source=source, provider=provider, status_code=401,
                error=refused.code, reason=refused.message, webhook_id=None,
                body_sha256=hashlib.sha256(body).hexdigest(), body_bytes=len(body), now=now)
            return _error(401, refused.code, refused.message)
        try:
            accepted = await run_in_threadpool(webhook_ops.accept_webhook, store, receiver, source,
                                               dict(request.headers), body, now=now)
        except WebhookSignatureError as exc:
            return _error(401, exc.code, exc.message)
        except NotFoundError as exc:  # pragma: no cover - checked above
            return _error(404, exc.code, exc.message)
        except RingwardError as exc:
            from ringward.store.inventory.receipts import WebhookReplayError

            if isinstance(exc, WebhookReplayError):
                return _error(409, exc.code, exc.message)
            log.error("webhook %s: %s", source, exc.message)
            return _error(503, exc.code, "the receipt could not be stored; retry later")
        except DBAPIError as exc:
            log.error("store error: %s", exc.orig)
            return _error(503, "store-unavailable", "the evidence store is unavailable; retry later")
        receipt = accepted.receipt
        background.add_task(_ingest_after_response, store, receiver, receipt, clock)
        return JSONResponse(status_code=202, content={
            "receipt_id": str(receipt.receipt_id), "evidence_id": str(accepted.evidence.id),
            "body_sha256": receipt.body_sha256, "status": receipt.status, "source": source,
            "webhook_id": receipt.webhook_id, "signature_version": accepted.verified.version,
        })

    @hooks.post(HANDOFF_STATUS_PATH)
    async def receive_handoff_status(request: Request) -> JSONResponse:
        """A signed §9.4 status: stored as evidence, then recorded with the real transition rules
        (200; 409 illegal transition, 404 unknown handoff, 403 provider not the sender's, 422 body)."""
        from ringward.operations.remediation import handoff_webhook as hw
        from ringward.store.inventory.receipts import WebhookReplayError

        if not receiver.handoff_senders:
            return _error(404, "not-found", "handoff-status webhooks are not configured")
        now = clock()
        store = get_store()
        cap = receiver.handoff_max_body_bytes
        refuse = functools.partial(webhook_ops.record_refusal, store, source=hw.REFUSAL_SOURCE,
                                   provider=webhook_ops.HANDOFF_RECEIPT_PROVIDER, kind=hw.KIND_HANDOFF_WEBHOOK, now=now)
        try:
            body = await _read_capped(request, cap)
        except _TooLarge as exc:
            size = exc.size
            message = f"body is {size}+ bytes, expected at most {cap}"
            await run_in_threadpool(refuse, status_code=413, error="body-too-large", reason=message,
                                    webhook_id=request.headers.get("webhook-id"), body_sha256=None, body_bytes=size)
            return _error(413, "body-too-large", message)
        repeated = [(name, n) for name in webhook_ops.SIGNED_HEADERS if (n := len(request.headers.getlist(name))) > 1]
        if repeated:
            refused = WebhookSignatureError(f"{repeated[0][0]} appears {repeated[0][1]} times, expected once")
            await run_in_threadpool(refuse, status_code=401, error=refused.code, reason=refused.message,
                                    webhook_id=None, body_sha256=hashlib.sha256(body).hexdigest(),
                                    body_bytes=len(body))
            return _error(401, refused.code, refused.message)
        try:
            accepted = await run_in_threadpool(hw.accept_handoff_status, store, receiver, dict(request.headers), body,
                                               now=now)
            outcome = await run_in_threadpool(hw.process_handoff_receipt, store, receiver, accepted.receipt, now=now)
        except WebhookSignatureError as exc:
            return _error(401, exc.code, exc.message)
        except WebhookReplayError as exc:
            return _error(409, exc.code, exc.message)
        except RingwardError as exc:  # the body is stored (or not): recover-webhooks finishes an open receipt
            log.error("handoff-status webhook: %s", exc.message)
            return _error(503, exc.code, "the status could not be recorded now; retry later")
        except DBAPIError as exc:
            log.error("store error: %s", exc.orig)
            return _error(503, "store-unavailable", "the evidence store is unavailable; retry later")
        status = int(outcome.pop("http_status"))
        if status >= 400:
            return JSONResponse(status_code=status, content={
                "error": outcome.get("error"), "message": str(outcome.get("message"))[:500],
                "receipt_id": str(outcome["receipt_id"]), "status": outcome["status"]})
        return JSONResponse(status_code=200, content={**outcome, "receipt_id": str(outcome["receipt_id"])})

    return hooks


class WebhookDispatch:
    """Send requests under :data:`PREFIX` to the receiver, everything else (and lifespan) to the API."""

    def __init__(self, app: ASGIApp, receiver_app: ASGIApp, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        self.app = app
        self.receiver_app = HeaderLimitMiddleware(receiver_app, max_header_bytes=max_header_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(RECEIVER_PATHS):
            await self.receiver_app(scope, receive, send)
            return
        await self.app(scope, receive, send)


def add_webhook_routes(app: FastAPI, *, get_store: Callable[[], Store], clock: Callable[[], datetime],
                       receiver: WebhookReceiver | None = None) -> WebhookReceiver:
    """Install the receiver in front of ``app`` (outermost), with the configuration loaded now
    (``receiver`` or ``$RINGWARD_WEBHOOKS`` / ``<home>/webhooks.yaml``; an absent file accepts no source).

    Raises:
        ConfigError: the configuration file is invalid or a referenced secret is missing.
    """
    loaded = receiver or webhook_ops.load_receiver()
    hooks = build_receiver_app(get_store=get_store, clock=clock, receiver=loaded)
    app.add_middleware(WebhookDispatch, receiver_app=hooks)
    app.state.webhook_receiver = loaded
    return loaded
