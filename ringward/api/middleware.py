"""Request guards: header size, body size and content type, strict JSON bodies, read-only GETs."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import HTTPException
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringward.core.common.jsonio import loads_strict
from ringward.store.core import READ_ONLY

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}

#: largest total of request header names and values accepted (431 above it)
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
#: uvicorn's h11 buffer for an incomplete request head: the backstop behind the 431 middleware.
#: h11 applies it only while a head is still arriving, so it cannot replace the middleware (a 70 KB
#: head read in one go is complete and passes); large enough that every head up to it reaches the
#: middleware whichever way it is split into reads, small enough that no client makes a connection
#: buffer an unbounded head (it gets uvicorn's 400 and the connection is closed)
H11_MAX_INCOMPLETE_EVENT_BYTES = 8 * DEFAULT_MAX_HEADER_BYTES


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_json(content_type: str) -> bool:
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (main.startswith("application/") and main.endswith("+json"))


class HeaderLimitMiddleware:
    """Refuse requests whose headers (names plus values) total more than ``max_header_bytes``: 431
    with a one-line JSON error, before authentication or any route code runs (outermost guard)."""

    def __init__(self, app: ASGIApp, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope.get("headers", []))
            if size > self.max_header_bytes:
                await _send_error(
                    send,
                    431,
                    "headers-too-large",
                    f"request headers are {size} bytes, expected at most {self.max_header_bytes}",
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse oversize bodies (413) and non-JSON bodies (415) before any route code runs.

    The body is read here (it is small by construction) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "bad-input", "content-length: expected a number")
                return
            if int(declared) > self.max_body_bytes:
                await _send_error(
                    send,
                    413,
                    "body-too-large",
                    f"body is {declared} bytes, expected at most {self.max_body_bytes}",
                )
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_error(send, 413, "body-too-large", f"body exceeds {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = headers.get("content-type", "")
        if (body or content_type) and not _is_json(content_type):
            await _send_error(
                send,
                415,
                "unsupported-media-type",
                f"content-type: expected application/json, found {content_type!r}",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ReadOnlyGetMiddleware:
    """While a GET/HEAD/OPTIONS request runs, the store refuses write transactions (API2)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        token = READ_ONLY.set(True)
        try:
            await self.app(scope, receive, send)
        finally:
            READ_ONLY.reset(token)


class StrictJSONRequest(Request):
    """Request bodies parse with the project's strict JSON reader (no duplicate keys, NaN, BOM)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_strict(await self.body(), source="request body")
            except Exception as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return self._json


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class StrictJSONRoute(APIRoute):
    """Routes that parse bodies strictly and refuse query parameters they do not declare."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        from fastapi.responses import JSONResponse

        handler = super().get_route_handler()
        allowed = _query_names(self.dependant)

        async def strict(request: Request) -> Response:
            unknown = sorted(set(request.query_params) - allowed)
            if unknown:
                expected = ", ".join(sorted(allowed)) or "none"
                return JSONResponse(
                    status_code=422,
                    content={
                        "error": "bad-input",
                        "message": f"query: unknown parameter {unknown[0]!r} (expected: {expected})"[:500],
                    },
                )
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


class RequestIdMiddleware:
    """Outermost: give every request an id (the caller's ``X-Request-ID`` when plain and bounded, else
    a new one), answer it in ``X-Request-ID``, keep it in :data:`ringward.operations.common.logs.REQUEST_ID`
    for every log line and Prefect event of the request, and write one access line (method, path
    without the query string, status, duration) -- never headers or query strings, which may carry
    credentials."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import logging
        import time

        from ringward.operations.common.logs import REQUEST_ID, REQUEST_ID_HEADER, request_id_from

        incoming = next((value.decode("latin-1") for name, value in scope.get("headers", [])
                         if name.lower() == REQUEST_ID_HEADER.encode()), None)
        request_id = request_id_from(incoming)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REQUEST_ID_HEADER.encode(), request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = "".join(ch for ch in str(scope.get("path", ""))[:256] if ch.isprintable())
            logging.getLogger("ringward.api.access").info(
                "%s %s %d", scope.get("method", "?"), path, status[0],
                extra={"method": scope.get("method"), "path": path, "status": status[0],
                       "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
            REQUEST_ID.reset(token)
