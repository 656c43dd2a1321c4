"""The Ringward HTTP API (FastAPI).

Rules every route follows:

- API1 every route but ``/healthz`` needs ``Authorization: Bearer <token>``; tokens are looked
  up by SHA-256 and carry one role (viewer, operator, approver, admin); a route declares the
  permission it needs (:mod:`ringward.core.common.roles`). The caller's token name is the actor on
  every write -- no body field can name someone else.
- API2 GET routes never write: the store refuses write transactions while one runs.
- API3 bad input (malformed or non-strict JSON, unknown fields, oversize bodies, request headers
  over 16 KiB (431), wrong content type, out-of-range parameters) is a 4xx with a one-line
  ``{"error", "message"}``; a 500 would be a bug.
- API4 artifacts are served only if listed in the record, only from inside the artifact root
  after resolving links, and only after re-hashing them against the recorded digest.
- API5-API8 (promotion, rollout, channel and window routes; :mod:`ringward.api.promotion`):
  request paths confined to the promotion root, trust root / signing key / window policy from
  the server's configuration only, the token's name as actor, 423 for a closed window, Prefect
  events on decisions when a Prefect API is configured (an unsent event is a warning).
- API9 token lookups and evidence reads bounded by construction (a page through an index, a count
  with a time budget, one record by id) run on the event loop; everything else -- writes, exact
  counts, deep offsets, artifact files -- in the thread pool. A hand-off to a worker thread and
  back cost ~1 ms of CPU per request under load, more than the read itself (docs/benchmarks.md).
"""

# no `from __future__ import annotations`: FastAPI must see the route annotations, which use locals

import logging
import mimetypes
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ringward.api import events
from ringward.api.auth import ApiError, Principal, authenticator
from ringward.api.middleware import (
    DEFAULT_MAX_HEADER_BYTES,
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    ReadOnlyGetMiddleware,
    RequestIdMiddleware,
    StrictJSONRoute,
)
from ringward.api.models import (
    APPROVAL_ID_PATTERN,
    ERROR_RESPONSES,
    ApprovalListOut,
    ApprovalOut,
    ApprovalRequestBody,
    ArtifactListingOut,
    DecisionBody,
    DecisionOut,
    ErrorOut,
    EvidencePageOut,
    EvidenceRecordOut,
    HealthOut,
    PromotionBodies,
)
from ringward.api.promotion import Confinement, add_promotion_routes, promotion_root, utc_bound
from ringward.core.approvals.rules import Decision
from ringward.core.common.roles import Permission
from ringward.core.errors import (
    InputError,
    NotFoundError,
    PromotionWindowError,
    RingwardError,
    StateError,
    VerificationError,
)
from ringward.core.evidence.query import (
    DEFAULT_TOTAL_BUDGET_MS,
    DEFAULT_TOTAL_LIMIT,
    MAX_OFFSET,
    MAX_PAGE_SIZE,
    EvidenceQuery,
)
from ringward.operations.approvals import approval_ops
from ringward.operations.evidence import evidence_ops
from ringward.store import Store, open_store

log = logging.getLogger("ringward.api")

#: largest request body accepted (approval requests and decisions are small)
DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_ID = 2**31 - 1
FILTER = Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]


#: deepest offset a search may page to and still run on the event loop (API9): skipping that many
#: index entries stays within a few milliseconds
INLINE_MAX_OFFSET = 10_000


def bounded_read(query: EvidenceQuery) -> bool:
    """Whether a search is cheap by construction (API9): its count is bounded and budgeted (or
    skipped) and its offset shallow."""
    return (not query.with_total or query.total_limit is not None) and query.offset <= INLINE_MAX_OFFSET


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message}, headers=headers)


def create_app(
    *,
    store: Store | None = None,
    database_url: str | None = None,
    artifact_root: Path | None = None,
    clock: Callable[[], datetime] = _utcnow,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    promotion_root_dir: Path | None = None,
) -> FastAPI:
    """Build the app. ``store`` (else one opened from ``database_url`` / settings at startup),
    ``artifact_root`` (else ``$RINGWARD_EVIDENCE_ARTIFACT_ROOT`` / the evidence root),
    ``promotion_root_dir`` (else ``$RINGWARD_PROMOTION_ROOT`` / the working directory) and
    ``clock`` are parameters so tests control them."""
    state: dict[str, Any] = {"store": store}
    confine = Confinement(promotion_root(promotion_root_dir))
    bodies = PromotionBodies(confine.root)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        owned = state["store"] is None
        if owned:
            state["store"] = open_store(database_url)
        try:
            yield
        finally:
            if owned:
                state["store"].close()

    app = FastAPI(
        title="Ringward API",
        version="1.0.0",
        description="Evidence search, governed artifact downloads, approvals, channel and rollout "
        "promotions (requests, executions, rollbacks, drill-down), channel holds and promotion window "
        "checks. Bearer tokens on every route but /healthz (`ringward api token create`). Server paths "
        f"in request bodies are confined to the promotion root {confine.root}.",
        lifespan=lifespan,
        # the schema is served below behind a token (API1); no unauthenticated docs pages
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = StrictJSONRoute
    app.add_middleware(ReadOnlyGetMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    # added last, so outermost: oversized headers are refused (431) before anything reads them
    app.add_middleware(HeaderLimitMiddleware, max_header_bytes=max_header_bytes)

    def get_store() -> Store:
        current = state["store"]
        if current is None:  # pragma: no cover - only before startup
            state["store"] = current = open_store(database_url)
        assert isinstance(current, Store)
        return current

    def root() -> Path:
        return artifact_root or evidence_ops.artifact_root()

    auth = authenticator(get_store, clock)

    # --- errors (API3) -------------------------------------------------------------------------

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        ctx = first.get("ctx")
        path_field = isinstance(ctx, dict) and ctx.get("pattern") == bodies.pattern
        if first.get("type") == "string_pattern_mismatch" and path_field:
            # API5: a server path outside the promotion root (or with . / .. segments)
            found = str(first.get("input"))[:200]
            return _error(
                400,
                "unsafe-path",
                f"{where}: {found!r} is not a path inside the promotion root {confine.root} "
                "(relative to it or absolute under it, without . or .. segments)"[:500],
            )
        return _error(422, "bad-input", f"{where}: {first.get('msg', 'invalid')}"[:500])

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad-input", 404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(PromotionWindowError)
    async def _window_closed(_: Request, exc: PromotionWindowError) -> JSONResponse:
        """API7: a closed promotion window is 423 with the next opening."""
        content: dict[str, Any] = {"error": exc.code, "message": exc.message}
        decision = getattr(exc, "decision", None)
        if decision is not None:
            document = decision.to_document()
            content["next_opening"] = document.get("next_opening")
            content["next_opening_local"] = document.get("next_opening_local")
        return JSONResponse(status_code=423, content=content)

    @app.exception_handler(RingwardError)
    async def _ringward(_: Request, exc: RingwardError) -> JSONResponse:
        if isinstance(exc, InputError):
            status = 400
        elif isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, StateError | VerificationError):
            status = 409
        else:  # pragma: no cover - transport errors do not arise here
            status = 503
        return _error(status, exc.code, exc.message)

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        log.error("store error: %s", exc.orig)
        return _error(503, "store-unavailable", "the evidence store is unavailable; retry later")

    # --- schema --------------------------------------------------------------------------------

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(_: Annotated[Principal, Depends(auth(Permission.READ_EVIDENCE))]) -> JSONResponse:
        """The OpenAPI schema (any valid token)."""
        return JSONResponse(app.openapi())

    # --- health --------------------------------------------------------------------------------

    @app.get("/healthz", response_model=HealthOut, tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness and store reachability. The only unauthenticated route."""
        head = get_store().head()
        return {"status": "ok", "evidence_records": head.last_id}

    # --- evidence ------------------------------------------------------------------------------

    @app.get("/evidence", response_model=EvidencePageOut, responses=ERROR_RESPONSES, tags=["evidence"])
    async def search_evidence(
        _: Annotated[Principal, Depends(auth(Permission.READ_EVIDENCE))],
        metadata_kind: FILTER = None,
        rollout_status: FILTER = None,
        environment: FILTER = None,
        deployment_target: FILTER = None,
        target_ring: FILTER = None,
        channel: FILTER = None,
        release_version: FILTER = None,
        runtime: FILTER = None,
        approval_id: FILTER = None,
        approval_state: FILTER = None,
        execution_status: FILTER = None,
        promotion_execution_status: FILTER = None,
        provider: FILTER = None,
        success: bool | None = None,
        actor: FILTER = None,
        flow_run_id: Annotated[str | None, Query(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        order: Literal["newest", "oldest"] = "newest",
        total: Annotated[
            Literal["bounded", "exact", "none"],
            Query(
                description="How to count the matches: `bounded` (default) stops at "
                f"{DEFAULT_TOTAL_LIMIT:,} matches or {DEFAULT_TOTAL_BUDGET_MS} ms and then sets "
                "`total_is_lower_bound`; `exact` counts every match (slow for broad filters on a big "
                "store); `none` skips the count (`total` null)."
            ),
        ] = "bounded",
    ) -> Response:
        """Search evidence with the reference's filters; newest first; page with limit/offset or before_id."""
        try:
            query = EvidenceQuery(
                kind=metadata_kind,
                status=rollout_status,
                environment=environment,
                deployment_target=deployment_target,
                ring=target_ring,
                channel=channel,
                release_version=release_version,
                runtime=runtime,
                approval_id=approval_id,
                approval_state=approval_state,
                execution_status=execution_status or promotion_execution_status,
                provider=provider,
                success=success,
                actor=actor,
                flow_run_id=flow_run_id,
                created_from=utc_bound(created_from),
                created_to=utc_bound(created_to),
                before_id=before_id,
                limit=limit,
                offset=offset,
                order=order,
                with_total=total != "none",
                total_limit=None if total == "exact" else DEFAULT_TOTAL_LIMIT,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InputError(f"{'.'.join(str(p) for p in first['loc']) or 'query'}: {first['msg']}") from exc
        # the page's JSON is built from the rows (EvidencePageOut documents it): validating fifty
        # records through two pydantic models again cost more than the query itself
        if bounded_read(query):
            body = get_store().search_evidence_json(query)
        else:
            body = await run_in_threadpool(get_store().search_evidence_json, query)
        return Response(content=body, media_type="application/json")

    record_id_param = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Evidence record id.")]

    @app.get(
        "/evidence/{record_id}",
        response_model=EvidenceRecordOut,
        responses=ERROR_RESPONSES,
        tags=["evidence"],
    )
    async def evidence_detail(
        record_id: record_id_param, _: Annotated[Principal, Depends(auth(Permission.READ_EVIDENCE))]
    ) -> dict[str, Any]:
        """One evidence record with its payload and chain hashes."""
        return get_store().get_evidence(record_id).to_document()

    @app.get(
        "/evidence/{record_id}/artifacts",
        response_model=ArtifactListingOut,
        responses=ERROR_RESPONSES,
        tags=["evidence"],
    )
    def artifact_listing(
        record_id: record_id_param, _: Annotated[Principal, Depends(auth(Permission.READ_EVIDENCE))]
    ) -> dict[str, Any]:
        """The record's artifacts, each re-hashed, with the bundle's integrity and download readiness."""
        record = get_store().get_evidence(record_id)
        return evidence_ops.artifact_listing(root(), record)

    def _artifact_response(data: bytes, filename: str, media_type: str, extra: dict[str, str]) -> Response:
        import hashlib

        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in filename) or "artifact"
        headers = {
            "content-disposition": f'attachment; filename="{safe}"',
            "x-ringward-artifact-sha256": hashlib.sha256(data).hexdigest(),
            "x-content-type-options": "nosniff",
            "cache-control": "no-store",
            **extra,
        }
        return Response(content=data, media_type=media_type, headers=headers)

    def _problem(exc: evidence_ops.ArtifactProblem) -> JSONResponse:
        if exc.status == "missing":
            return _error(404, "artifact-missing", exc.message)
        return _error(409, f"artifact-{exc.status}", exc.message)

    binary_response: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/octet-stream": {}}, "description": "The verified bytes."}
    }

    @app.get(
        "/evidence/{record_id}/artifacts/{name:path}",
        response_class=Response,
        responses={**binary_response, **ERROR_RESPONSES},
        tags=["evidence"],
    )
    def artifact_download(
        record_id: record_id_param,
        name: Annotated[str, PathParam(min_length=1, max_length=1024)],
        _: Annotated[Principal, Depends(auth(Permission.DOWNLOAD_ARTIFACTS))],
    ) -> Response:
        """One listed artifact (or the bundle's checksums.txt), checked against its recorded sha256."""
        record = get_store().get_evidence(record_id)
        try:
            data = evidence_ops.read_verified_artifact(root(), record, name)
        except evidence_ops.ArtifactProblem as exc:
            return _problem(exc)
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return _artifact_response(data, name.rsplit("/", 1)[-1], media, {})

    @app.get(
        "/evidence/{record_id}/artifact-bundle",
        response_class=Response,
        responses={
            200: {"content": {"application/zip": {}}, "description": "Zip of verified files."},
            **ERROR_RESPONSES,
        },
        tags=["evidence"],
    )
    def artifact_bundle(
        record_id: record_id_param, _: Annotated[Principal, Depends(auth(Permission.DOWNLOAD_ARTIFACTS))]
    ) -> Response:
        """Every artifact plus checksums.txt as one zip; refused if any file fails its check."""
        record = get_store().get_evidence(record_id)
        try:
            data = evidence_ops.build_artifact_bundle(root(), record)
        except evidence_ops.ArtifactProblem as exc:
            return _problem(exc)
        return _artifact_response(
            data,
            f"evidence-{record.id}-bundle.zip",
            "application/zip",
            {"x-ringward-artifact-count": str(len(record.artifacts) + 1)},
        )

    # --- approvals -----------------------------------------------------------------------------

    approval_id_param = Annotated[str, PathParam(pattern=APPROVAL_ID_PATTERN, description="Approval id (apr_…).")]

    def _approval_out(approval: Any) -> dict[str, Any]:
        return approval.to_document(clock())  # type: ignore[no-any-return]

    @app.get("/approvals", response_model=ApprovalListOut, responses=ERROR_RESPONSES, tags=["approvals"])
    def list_approvals(
        _: Annotated[Principal, Depends(auth(Permission.READ_APPROVALS))],
        state: Literal["pending", "approved", "denied", "expired", "revoked"] | None = None,
        target: FILTER = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Approvals newest first; ``state`` filters on the state in force now (expiry included)."""
        from ringward.core.approvals.rules import ApprovalState

        items, total = approval_ops.list_approvals(
            get_store(),
            state=None if state is None else ApprovalState(state),
            target=target,
            limit=limit,
            offset=offset,
            now=clock(),
        )
        return {"items": [_approval_out(a) for a in items], "total": total, "limit": limit, "offset": offset}

    @app.post(
        "/approvals",
        status_code=201,
        response_model=ApprovalOut,
        responses=ERROR_RESPONSES,
        tags=["approvals"],
    )
    def request_approval(
        body: ApprovalRequestBody, caller: Annotated[Principal, Depends(auth(Permission.REQUEST_APPROVAL))]
    ) -> dict[str, Any]:
        """Open a pending approval; the caller is the requester (and so can never approve it)."""
        approval = approval_ops.request_approval(
            get_store(),
            action=body.action,
            subject_digest=body.subject_digest,
            target=body.target,
            requester=caller.name,
            expires_in=timedelta(seconds=body.expires_in_seconds),
            quorum=body.quorum,
            approver_group=body.approver_group,
            note=body.note,
            now=clock(),
        )
        return _approval_out(approval)

    @app.get("/approvals/{approval_id}", response_model=ApprovalOut, responses=ERROR_RESPONSES, tags=["approvals"])
    def show_approval(
        approval_id: approval_id_param, _: Annotated[Principal, Depends(auth(Permission.READ_APPROVALS))]
    ) -> dict[str, Any]:
        """One approval with its recorded decisions."""
        return _approval_out(approval_ops.show_approval(get_store(), approval_id))

    def _decide(approval_id: str, decision: Decision, body: DecisionBody, caller: Principal) -> dict[str, Any]:
        approval = approval_ops.decide_approval(
            get_store(), approval_id, decision=decision, actor=caller.name, reason=body.reason, now=clock()
        )
        # API8: the decision is recorded; its event is sent when a Prefect API is configured
        warnings = events.emit(events.approval_decided(approval, decision.value, caller.name))
        return {**_approval_out(approval), "warnings": warnings}

    @app.post(
        "/approvals/{approval_id}/approve",
        response_model=DecisionOut,
        responses=ERROR_RESPONSES,
        tags=["approvals"],
    )
    def approve(
        approval_id: approval_id_param,
        body: DecisionBody,
        caller: Annotated[Principal, Depends(auth(Permission.DECIDE_APPROVAL))],
    ) -> dict[str, Any]:
        """Approve as the calling token's identity (one vote toward the quorum)."""
        return _decide(approval_id, Decision.APPROVE, body, caller)

    @app.post(
        "/approvals/{approval_id}/deny",
        response_model=DecisionOut,
        responses=ERROR_RESPONSES,
        tags=["approvals"],
    )
    def deny(
        approval_id: approval_id_param,
        body: DecisionBody,
        caller: Annotated[Principal, Depends(auth(Permission.DECIDE_APPROVAL))],
    ) -> dict[str, Any]:
        """Deny as the calling token's identity."""
        return _decide(approval_id, Decision.DENY, body, caller)

    @app.post(
        "/approvals/{approval_id}/revoke",
        response_model=DecisionOut,
        responses=ERROR_RESPONSES,
        tags=["approvals"],
    )
    def revoke(
        approval_id: approval_id_param,
        body: DecisionBody,
        caller: Annotated[Principal, Depends(auth(Permission.REVOKE_APPROVAL))],
    ) -> dict[str, Any]:
        """Withdraw a pending or approved (unused) approval."""
        return _decide(approval_id, Decision.REVOKE, body, caller)

    add_promotion_routes(app, auth=auth, get_store=get_store, clock=clock, bodies=bodies, confine=confine)
    from ringward.api.webhooks import add_webhook_routes  # API9: signed inventory webhooks (no bearer token)

    add_webhook_routes(app, get_store=get_store, clock=clock)
    from ringward.api.sla import add_sla_routes  # API10-API12: SLA acknowledgements, open escalations

    add_sla_routes(app, auth=auth, get_store=get_store, clock=clock)
    # added last, so outermost (in front of the webhook receiver too): every request, refused ones
    # included (431, 413, 401), has an id, answers it in X-Request-ID and gets one access line
    app.add_middleware(RequestIdMiddleware)
    return app


__all__ = ["ErrorOut", "create_app"]


def iter_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route (for the auth coverage test)."""
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, getattr(route, "path", "")
