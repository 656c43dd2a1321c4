"""Promotion routes: channel promotion requests and endpoint exports, rollout promotion requests,
executions, rollback requests and rollbacks, rollout drill-down, channel status and holds, and
promotion window checks.

Every route calls the same operation as its CLI command and returns the same result document
(``--json``), plus ``warnings``. On top of rules API1-API4 of :mod:`ringward.api.app`:

- API5 server paths named by a request are confined to the promotion root
  (``$RINGWARD_PROMOTION_ROOT``, else the server's working directory; links resolved): the
  schema's path pattern admits paths relative to the root or absolute under it, without ``.``
  or ``..`` segments (else 400 ``unsafe-path``); a path whose links lead outside the root is
  refused with 400 ``unsafe-path``; an input that does not exist is 404 ``path-not-found``. Paths
  inside signed or recorded documents the server will read (a rollout's package, a request's
  rollout and package) are confined the same way.
- API6 the server's own configuration supplies what a client must never choose: the trust root
  (``$RINGWARD_TRUST_ROOT``), the promotion signing key (``$RINGWARD_PROMOTION_SIGNING_KEY``, PEM
  text; never in a body) and the promotion window policy (``$RINGWARD_WINDOWS``). Missing
  configuration is 400 ``not-configured``.
- API7 the actor of every write is the calling token's name (requester, executor, holder); the
  time is the server clock. A closed promotion window is 423 ``window-closed`` with the next
  opening; held channels, consumed / expired approvals and replayed executions are 409.
- API8 decisions emit their Prefect event (``flows.events``) when a Prefect API is configured;
  an event that cannot be sent is a warning in the response, never a failed decision.
"""

# no `from __future__ import annotations`: FastAPI must see the route annotations, which use locals

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, FastAPI, Query
from fastapi import Path as PathParam
from pydantic import AwareDatetime, Field, TypeAdapter, ValidationError

from ringward.api import events
from ringward.api.auth import ApiError, Principal
from ringward.api.models import (
    CHANNEL_PATTERN,
    ERROR_RESPONSES,
    ID_PATTERN,
    WINDOW_AT_PATTERN,
    WINDOW_TARGET_PATTERN,
    ChannelChangeOut,
    ChannelRequestBody,
    ChannelRequestOut,
    ChannelStatusOut,
    EndpointExportBody,
    EndpointExportOut,
    HoldBody,
    PromotionBodies,
    RollbackBody,
    RollbackOut,
    RollbackRequestBody,
    RollbackRequestOut,
    RolloutDrilldownOut,
    RolloutExecutionBody,
    RolloutExecutionOut,
    RolloutPageOut,
    RolloutRequestBody,
    RolloutRequestOut,
    WindowClosedOut,
    WindowDecisionOut,
)
from ringward.core.common.roles import Permission
from ringward.core.errors import InputError
from ringward.core.evidence.query import MAX_OFFSET
from ringward.store import Store

PROMOTION_ROOT_ENV = "RINGWARD_PROMOTION_ROOT"
TRUST_ROOT_ENV = "RINGWARD_TRUST_ROOT"
MAX_PAGE = 500

FILTER = Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
STEP = Literal["capture", "verify", "request", "execution", "rollback-request", "rollback", "audit"]

WINDOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    423: {"model": WindowClosedOut, "description": "Refused by the promotion windows (with the next opening)."},
}


def promotion_root(explicit: Path | None = None, *, environ: dict[str, str] | None = None) -> Path:
    """The directory request paths are confined to: ``explicit``, else ``$RINGWARD_PROMOTION_ROOT``,
    else the working directory; links resolved."""
    env = os.environ if environ is None else environ
    value = explicit or (Path(env[PROMOTION_ROOT_ENV]) if env.get(PROMOTION_ROOT_ENV, "").strip() else None)
    return Path(os.path.realpath(value or Path.cwd()))


class Confinement:
    """Resolves request paths inside the promotion root (API5)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _inside(self, path: Path) -> bool:
        return path == self.root or path.is_relative_to(self.root)

    def resolve(self, field: str, value: str | Path) -> Path:
        """``value`` (relative to the root, or absolute) with links resolved, or 400."""
        text = str(value)
        if "\x00" in text:
            raise ApiError(400, "unsafe-path", f"{field}: a path cannot contain NUL")
        candidate = Path(text)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = Path(os.path.realpath(candidate))
        if not self._inside(resolved):
            raise ApiError(
                400, "unsafe-path", f"{field}: {text!r} resolves to {resolved}, outside the promotion root {self.root}"
            )
        return resolved

    def existing(self, field: str, value: str) -> Path:
        """An input: inside the root and present (404 when it does not exist)."""
        resolved = self.resolve(field, value)
        if not resolved.exists():
            raise ApiError(404, "path-not-found", f"{field}: {value!r} does not exist under the promotion root")
        return resolved

    def output(self, field: str, value: str | None) -> Path | None:
        """An output directory inside the root; None (the operation's default under the working
        directory) only when the working directory is inside the root."""
        if value is not None:
            return self.resolve(field, value)
        cwd = Path(os.path.realpath(Path.cwd()))
        if not self._inside(cwd):
            raise ApiError(
                400,
                "bad-input",
                f"{field}: required (the server's working directory {cwd} is outside the promotion root {self.root})",
            )
        return None

    def recorded(self, field: str, value: object) -> Path | None:
        """A path named inside a document the server will follow (relative = to the working
        directory, as the operations read it); None when absent or not text."""
        if not isinstance(value, str) or not value:
            return None
        return self.resolve(field, Path(value).absolute())


def _document(path: Path, filename: str) -> dict[str, Any] | None:
    """A JSON document given as its file or its directory, or None when unreadable (the
    operation then reports the problem in its own words)."""
    from ringward.core.common.jsonio import loads_strict
    from ringward.core.promotion.rollout import MAX_DOCUMENT_BYTES
    from ringward.operations.common.files import read_capped

    file = path / filename if path.is_dir() else path
    try:
        parsed = loads_strict(read_capped(file, MAX_DOCUMENT_BYTES, source=str(file)), source=str(file))
    except Exception:
        return None
    return parsed if isinstance(parsed, dict) else None


def _trust_root() -> Path:
    value = os.environ.get(TRUST_ROOT_ENV, "").strip()
    if not value:
        raise ApiError(400, "not-configured", f"the server has no trust root (set ${TRUST_ROOT_ENV})")
    return Path(value)


def _require_promotion_key() -> Any:
    """The server's promotion signing key (API6), loaded the way the CLI loads it."""
    from ringward.operations.promotion.rollout_ops import (
        PROMOTION_KEY_ENV,
        REFERENCE_PROMOTION_KEY_ENV,
        load_promotion_key,
    )

    if not any(os.environ.get(name) for name in (PROMOTION_KEY_ENV, REFERENCE_PROMOTION_KEY_ENV)):
        raise ApiError(400, "not-configured", f"the server has no promotion signing key (set ${PROMOTION_KEY_ENV})")
    return load_promotion_key(None)


@contextlib.contextmanager
def _key_file(key: Any) -> Iterator[Path]:
    """The key as a PEM file readable only by this process, removed afterwards (the channel
    operation takes a key file)."""
    from ringward.core.trust.keys import private_key_pem

    directory = Path(tempfile.mkdtemp(prefix="ringward-promotion-key-"))
    try:
        path = directory / "promotion.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_AT = TypeAdapter(AwareDatetime)


def _parse_at(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        return _AT.validate_python(value)
    except ValidationError:
        raise InputError(f"at: expected an RFC 3339 time with a UTC offset, found {value[:64]!r}") from None


def utc_bound(value: datetime | None) -> datetime | None:
    """A time filter's bound in UTC; an offset that carries it past the calendar's ends clamps it
    there (a lower bound before year 1 bounds nothing, an upper bound after year 9999 neither)
    instead of failing. Naive values are returned as they are."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if value.year < 5000 else datetime.max
        return edge.replace(tzinfo=UTC)


def add_promotion_routes(
    app: FastAPI,
    *,
    auth: Callable[[Permission], Any],
    get_store: Callable[[], Store],
    clock: Callable[[], datetime],
    bodies: PromotionBodies,
    confine: Confinement,
) -> None:
    """Register the promotion, rollout, channel and window routes on ``app``."""

    # the confined subclasses (FastAPI validates with them); handlers read them as the base models
    channel_request_body = bodies.ChannelRequestBody
    endpoint_export_body = bodies.EndpointExportBody
    rollout_request_body = bodies.RolloutRequestBody
    rollout_execution_body = bodies.RolloutExecutionBody
    rollback_request_body = bodies.RollbackRequestBody
    rollback_body = bodies.RollbackBody

    requester = Annotated[Principal, Depends(auth(Permission.REQUEST_PROMOTION))]
    executor = Annotated[Principal, Depends(auth(Permission.EXECUTE_PROMOTION))]
    reader = Annotated[Principal, Depends(auth(Permission.READ_PROMOTIONS))]
    holder = Annotated[Principal, Depends(auth(Permission.HOLD_CHANNEL))]

    # --- channel promotion ---------------------------------------------------------------------

    @app.post(
        "/promotions/channel-requests",
        status_code=201,
        response_model=ChannelRequestOut,
        responses=ERROR_RESPONSES,
        tags=["promotions"],
    )
    def request_channel_promotion(body_in: channel_request_body, caller: requester) -> dict[str, Any]:  # type: ignore[valid-type]
        """Verify the package, check the channel, open the approval bound to the package's
        checksums and ``<channel>-><ring>``, and write the request signed with the server's
        promotion key. The requester is the caller (who can therefore never approve it)."""
        body = cast(ChannelRequestBody, body_in)
        from ringward.operations.promotion.channel_ops import request_channel_promotion as operation

        package = confine.existing("package_dir", body.package_dir)
        output = confine.output("output_dir", body.output_dir)
        trust = _trust_root()
        key = _require_promotion_key()
        with _key_file(key) as key_path:
            result = operation(
                get_store(),
                package_dir=package,
                channel=body.channel,
                target_ring=body.target_ring,
                requester=caller.name,
                signing_key=key_path,
                trust_root=trust,
                now=clock(),
                expires_in=timedelta(seconds=body.expires_in_seconds),
                quorum=body.quorum,
                approver_group=body.approver_group,
                output=output,
            )
        return {**result, "warnings": events.emit(events.channel_requested(result))}

    @app.post(
        "/promotions/endpoint-exports",
        status_code=201,
        response_model=EndpointExportOut,
        responses=WINDOW_RESPONSES,
        tags=["promotions"],
    )
    def export_endpoint(body_in: endpoint_export_body, caller: executor) -> dict[str, Any]:  # type: ignore[valid-type]
        """Execute an approved channel promotion: consume its approval (once), raise the channel's
        high-water mark and write the Jamf / Intune / Linux exports; the server's promotion
        windows apply (423 when closed). The executor is the caller."""
        body = cast(EndpointExportBody, body_in)
        from ringward.operations.promotion.endpoint_ops import export_endpoint as operation

        package = confine.existing("package_dir", body.package_dir)
        request = confine.existing("promotion_request", body.promotion_request)
        output = confine.resolve("output_dir", body.output_dir)
        trust = _trust_root()
        result = operation(
            get_store(),
            package_dir=package,
            channel=body.channel,
            provider=body.provider,
            promotion_request=request,
            trust_root=trust,
            actor=caller.name,
            output=output,
            now=clock(),
        )
        return {**result, "warnings": events.emit(events.channel_exported(result, caller.name))}

    # --- rollouts: writes ----------------------------------------------------------------------

    @app.post(
        "/rollouts/promotion-requests",
        status_code=201,
        response_model=RolloutRequestOut,
        responses=ERROR_RESPONSES,
        tags=["rollouts"],
    )
    def request_rollout_promotion(body_in: rollout_request_body, caller: requester) -> dict[str, Any]:  # type: ignore[valid-type]
        """Sign a promotion request for a captured rollout and open (or reuse) its approval."""
        body = cast(RolloutRequestBody, body_in)
        from ringward.core.promotion.rollout import ROLLOUT_EVIDENCE_FILE
        from ringward.operations.promotion.rollout_ops import request_promotion

        rollout = confine.existing("rollout_dir", body.rollout_dir)
        if body.package_dir is not None:
            package: Path | None = confine.existing("package_dir", body.package_dir)
        else:
            recorded = _document(rollout, ROLLOUT_EVIDENCE_FILE) or {}
            package = confine.recorded(f"{ROLLOUT_EVIDENCE_FILE} package_dir", recorded.get("package_dir"))
        output = confine.output("output_dir", body.output_dir)
        trust = _trust_root()
        _require_promotion_key()
        result = request_promotion(
            get_store(),
            rollout_dir=rollout,
            target_ring=body.target_ring,
            requester=caller.name,
            trust_root=trust,
            expires_in=timedelta(seconds=body.expires_in_seconds),
            quorum=body.quorum,
            approver_group=body.approver_group,
            package_dir=package,
            output=output,
            now=clock(),
        )
        return {**result, "warnings": events.emit(events.rollout_requested(result, caller.name))}

    @app.post(
        "/rollouts/executions",
        status_code=201,
        response_model=RolloutExecutionOut,
        responses=WINDOW_RESPONSES,
        tags=["rollouts"],
    )
    def execute_rollout_promotion(body_in: rollout_execution_body, caller: executor) -> dict[str, Any]:  # type: ignore[valid-type]
        """Execute an approved promotion request: everything is re-verified now, the approval is
        consumed once (a replay is 409), the server's promotion windows apply (423 when closed,
        unless an approved break-glass approval is named)."""
        body = cast(RolloutExecutionBody, body_in)
        from ringward.core.promotion.rollout import PROMOTION_REQUEST_FILE
        from ringward.operations.promotion.rollout_ops import execute_promotion

        request = confine.existing("request", body.request)
        document = _document(request, PROMOTION_REQUEST_FILE) or {}
        confine.recorded("request rollout_dir", document.get("rollout_dir"))
        confine.recorded("request package_dir", document.get("package_dir"))
        output = confine.output("output_dir", body.output_dir)
        trust = _trust_root()
        result = execute_promotion(
            get_store(),
            request_path=request,
            approval_id=body.approval_id,
            actor=caller.name,
            trust_root=trust,
            break_glass_approval=body.break_glass_approval_id,
            output=output,
            notes=body.notes,
            now=clock(),
        )
        return {**result, "warnings": events.emit(events.rollout_executed(result))}

    @app.post(
        "/rollouts/rollback-requests",
        status_code=201,
        response_model=RollbackRequestOut,
        responses=ERROR_RESPONSES,
        tags=["rollouts"],
    )
    def request_rollback(body_in: rollback_request_body, caller: requester) -> dict[str, Any]:  # type: ignore[valid-type]
        """Sign a rollback request for a recorded promotion execution and open its approval."""
        body = cast(RollbackRequestBody, body_in)
        from ringward.operations.promotion.rollout_ops import request_rollback as operation

        execution = confine.existing("execution", body.execution)
        output = confine.output("output_dir", body.output_dir)
        trust = _trust_root()
        _require_promotion_key()
        result = operation(
            get_store(),
            execution_path=execution,
            requester=caller.name,
            reason=body.reason,
            trust_root=trust,
            expires_in=timedelta(seconds=body.expires_in_seconds),
            quorum=body.quorum,
            output=output,
            now=clock(),
        )
        return {**result, "warnings": []}

    @app.post(
        "/rollouts/rollbacks",
        status_code=201,
        response_model=RollbackOut,
        responses=ERROR_RESPONSES,
        tags=["rollouts"],
    )
    def execute_rollback(body_in: rollback_body, caller: executor) -> dict[str, Any]:  # type: ignore[valid-type]
        """Roll back a promotion execution with its approved rollback approval (once per
        execution; channels at the release may then go down once)."""
        body = cast(RollbackBody, body_in)
        from ringward.operations.promotion.rollout_ops import execute_rollback as operation

        execution = confine.existing("execution", body.execution)
        output = confine.output("output_dir", body.output_dir)
        trust = _trust_root()
        result = operation(
            get_store(),
            execution_path=execution,
            approval_id=body.approval_id,
            actor=caller.name,
            trust_root=trust,
            output=output,
            notes=body.notes,
            now=clock(),
        )
        return {**result, "warnings": events.emit(events.rollback_executed(result))}

    # --- rollouts: reads -----------------------------------------------------------------------

    def _filters(
        environment: str | None,
        ring: str | None,
        status: str | None,
        release_version: str | None,
        since: datetime | None,
        until: datetime | None,
        step: str | None = None,
    ) -> Any:
        from ringward.store.promotion.executions_repo import StepFilter

        return StepFilter(
            environment=environment,
            ring=ring,
            status=status,
            release_version=release_version,
            step=step,
            since=utc_bound(since),
            until=utc_bound(until),
        )

    limit_param = Annotated[int, Query(ge=1, le=MAX_PAGE)]
    offset_param = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

    @app.get("/rollouts", response_model=RolloutPageOut, responses=ERROR_RESPONSES, tags=["rollouts"])
    def list_rollouts(
        _: reader,
        environment: FILTER = None,
        ring: FILTER = None,
        status: FILTER = None,
        release_version: FILTER = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        limit: limit_param = 50,
        offset: offset_param = 0,
    ) -> dict[str, Any]:
        """Rollouts by their state after their latest step (the filters apply to it), newest first."""
        from ringward.operations.promotion.rollout_ops import list_rollouts as operation

        filters = _filters(environment, ring, status, release_version, since, until)
        return operation(get_store(), filters, limit=limit, offset=offset)

    @app.get("/rollouts/search", response_model=RolloutPageOut, responses=ERROR_RESPONSES, tags=["rollouts"])
    def search_rollouts(
        _: reader,
        environment: FILTER = None,
        ring: FILTER = None,
        status: FILTER = None,
        release_version: FILTER = None,
        step: STEP | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        limit: limit_param = 50,
        offset: offset_param = 0,
    ) -> dict[str, Any]:
        """Every rollout step matching the filters, newest first."""
        from ringward.operations.promotion.rollout_ops import search_rollouts as operation

        filters = _filters(environment, ring, status, release_version, since, until, step)
        return operation(get_store(), filters, limit=limit, offset=offset)

    @app.get("/rollouts/{name}", response_model=RolloutDrilldownOut, responses=ERROR_RESPONSES, tags=["rollouts"])
    def show_rollout(
        name: Annotated[
            str, PathParam(pattern=ID_PATTERN, description="Rollout id, or a request/execution/rollback/approval id.")
        ],
        _: reader,
    ) -> dict[str, Any]:
        """Drill down: rollout -> request -> approval (who, when, why) -> execution -> rollback
        request -> rollback -> audits and deliveries, each with its evidence record."""
        from ringward.operations.promotion.rollout_ops import show_rollout as operation

        return operation(get_store(), name, now=clock())

    # --- promotion windows ---------------------------------------------------------------------

    @app.get("/windows/check", response_model=WindowDecisionOut, responses=ERROR_RESPONSES, tags=["windows"])
    def check_window(
        _: reader,
        target: Annotated[
            list[Annotated[str, Field(pattern=WINDOW_TARGET_PATTERN)]],
            Query(min_length=1, max_length=32, description="ring:<name>, channel:<name> or environment:<name>."),
        ],
        at: Annotated[
            str | None,
            Query(
                max_length=64,
                pattern=WINDOW_AT_PATTERN,
                json_schema_extra={"format": "date-time"},
                description="RFC 3339 time with offset (years 1970-8999); default now.",
            ),
        ] = None,
        horizon_days: Annotated[int, Query(ge=1, le=3660, description="How far ahead to look.")] = 400,
    ) -> dict[str, Any]:
        """Whether an action on the targets may run at ``at`` under the server's window policy
        (``$RINGWARD_WINDOWS``): open or closed, why, and the next opening. A closed window is a
        200 answer here (``allowed: false``); executions are refused with 423."""
        from ringward.core.promotion.windows_policy import evaluate_window
        from ringward.operations.promotion.windows import WINDOWS_ENV, load_windows_policy, windows_policy_path

        path = windows_policy_path(None)
        if path is None:
            raise ApiError(400, "not-configured", f"no promotion window policy is configured (set ${WINDOWS_ENV})")
        moment = _parse_at(at, clock())
        decision = evaluate_window(load_windows_policy(path), target, moment, horizon=timedelta(days=horizon_days))
        return {**decision.to_document(), "policy": str(path)}

    # --- channels ------------------------------------------------------------------------------

    # path parameters are called ``name`` (the channel's; a rollout's or one of its ids)
    channel_param = Annotated[str, PathParam(pattern=CHANNEL_PATTERN, description="Release channel name.")]

    @app.get("/channels", response_model=ChannelStatusOut, responses=ERROR_RESPONSES, tags=["channels"])
    def list_channels(_: reader) -> dict[str, Any]:
        """Every channel with state: high-water mark, current release, hold, rollback allowance."""
        from ringward.operations.promotion.channel_status import channel_status

        return channel_status(get_store())

    @app.get("/channels/{name}", response_model=ChannelStatusOut, responses=ERROR_RESPONSES, tags=["channels"])
    def show_channel(name: channel_param, _: reader) -> dict[str, Any]:
        """One channel (a channel never written has an empty state)."""
        from ringward.operations.promotion.channel_status import channel_status

        return channel_status(get_store(), name)

    @app.post("/channels/{name}/hold", response_model=ChannelChangeOut, responses=ERROR_RESPONSES, tags=["channels"])
    def hold_channel(name: channel_param, body: HoldBody, caller: holder) -> dict[str, Any]:
        """Hold a channel: no promotion request, export or upgrade validation passes until unheld
        (409 when already held)."""
        from ringward.operations.promotion.channel_ops import hold_channel as operation

        result = operation(get_store(), name, reason=body.reason, actor=caller.name, now=clock())
        return {**result, "warnings": []}

    @app.post("/channels/{name}/unhold", response_model=ChannelChangeOut, responses=ERROR_RESPONSES, tags=["channels"])
    def unhold_channel(name: channel_param, body: HoldBody, caller: holder) -> dict[str, Any]:
        """Lift a channel's hold (409 when not held)."""
        from ringward.operations.promotion.channel_ops import unhold_channel as operation

        result = operation(get_store(), name, reason=body.reason, actor=caller.name, now=clock())
        return {**result, "warnings": []}
