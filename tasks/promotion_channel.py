"""Prefect tasks around the channel promotion operations. Coarse on purpose: one task per step
(request, export, deliver, channel-aware upgrade validation), each opening the store once; no
retries -- every step is a decision, and a delivery's network retries live in the engine."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from ringward.core.approvals.rules import parse_duration
from ringward.core.errors import RingwardError
from ringward.operations.promotion import channel_ops, endpoint_ops
from ringward.operations.release.upgrade import run_validate_upgrade_on_channel

_F = TypeVar("_F", bound=Callable[..., Any])

#: key of the result dict a refused step returns instead of raising
REFUSAL = "refused"


def refusal(exc: RingwardError) -> dict[str, Any]:
    """A refused step as data: the task ends Failed with it (no traceback in the run's logs), and the
    front door re-raises it as the same one-line error with the same exit code (:func:`raise_refusal`)."""
    return {REFUSAL: True, "valid": False, "errors": [{"code": exc.code, "message": exc.message,
                                                       "error_type": type(exc).__name__,
                                                       "exit_code": exc.exit_code}]}


def raise_refusal(result: dict[str, Any]) -> None:
    """Re-raise a refusal returned by a flow as its own exception class (exit code included)."""
    if not result.get(REFUSAL):
        return
    from ringward.core import errors as error_module

    error = result["errors"][0]
    cls = getattr(error_module, error["error_type"], None)
    if not (isinstance(cls, type) and issubclass(cls, RingwardError)):
        # a subclass defined next to its rules (e.g. windows_policy.WindowClosedError): the error class
        # with the same stable code (PromotionWindowError for "window-closed")
        fallback = error_module.InputError if error.get("exit_code") == 2 else RingwardError
        cls = next((c for c in vars(error_module).values() if isinstance(c, type) and issubclass(c, RingwardError)
                    and c.code == error.get("code")), fallback)
    try:
        raise cls(error["message"])
    except TypeError:  # pragma: no cover - an error class with a different constructor
        raise RingwardError(error["message"]) from None


class _NoEmptyExcInfo(logging.Filter):
    """Drop ``exc_info`` when no exception is being handled. Prefect's task engine logs a task that
    returns a Failed state (a refusal) with ``exc_info=True`` outside any ``except`` block, so the
    formatter appends ``NoneType: None`` to "Task run failed with state: Failed(...)"; real
    exceptions keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.exc_info, tuple) and record.exc_info[0] is None:
            record.exc_info = None
            record.exc_text = None
        return True


_EMPTY_EXC_INFO = _NoEmptyExcInfo()


def quiet_refusal_logs() -> None:
    """Install :class:`_NoEmptyExcInfo` on Prefect's task-run logger (idempotent)."""
    logger = logging.getLogger("prefect.task_runs")
    if _EMPTY_EXC_INFO not in logger.filters:
        logger.addFilter(_EMPTY_EXC_INFO)


def refusals_as_state(fn: _F) -> _F:
    """Wrap a task (or flow) body: a :class:`RingwardError` ends the run Failed with
    :func:`refusal` as its data instead of raising (Prefect would log the traceback twice)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RingwardError as exc:
            quiet_refusal_logs()
            return Failed(message=exc.message[:500], data=refusal(exc))

    return wrapper  # type: ignore[return-value]


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


@task(name="request-channel-promotion", cache_policy=NO_CACHE)
@refusals_as_state
def request_channel_promotion(
    params: dict[str, Any], now: datetime, flow_run_id: str | None
) -> dict[str, Any] | State:
    """Verify, open the approval, sign and write the request (``channel request-promotion``)."""
    with _open_store() as store:
        return channel_ops.request_channel_promotion(
            store,
            package_dir=Path(params["package_dir"]),
            channel=params["channel"],
            target_ring=params["target_ring"],
            requester=params["requester"],
            signing_key=Path(params["signing_key"]),
            trust_root=Path(params["trust_root"]),
            now=now,
            expires_in=parse_duration(params.get("expires_in") or "24h"),
            quorum=int(params.get("quorum") or 1),
            approver_group=params.get("approver_group"),
            output=Path(params["output"]) if params.get("output") else None,
            flow_run_id=flow_run_id,
        )


@task(name="export-endpoint", cache_policy=NO_CACHE)
@refusals_as_state
def export_endpoint(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """Consume the approval, raise the high-water mark, write the export (``endpoint export``)."""
    with _open_store() as store:
        return endpoint_ops.export_endpoint(
            store,
            package_dir=Path(params["package_dir"]),
            channel=params["channel"],
            provider=params.get("provider") or "all",
            promotion_request=Path(params["promotion_request"]),
            trust_root=Path(params["trust_root"]),
            actor=params["actor"],
            output=Path(params["output"]),
            windows=Path(params["windows"]) if params.get("windows") else None,
            break_glass_approval=params.get("break_glass_approval") or None,
            now=now,
            flow_run_id=flow_run_id,
        )


@task(name="deliver-endpoint-export", cache_policy=NO_CACHE)
@refusals_as_state
def deliver_endpoint_export(
    params: dict[str, Any], now: datetime, flow_run_id: str | None
) -> dict[str, Any] | State:
    """Re-check the export and publish it (``endpoint deliver``); Prefect secrets resolve here."""
    from tasks.delivery import prefect_secret_lookup

    with _open_store() as store:
        return endpoint_ops.deliver_endpoint_export(
            store,
            manifest_path=Path(params["export_manifest"]),
            config_path=Path(params["config"]),
            provider=params.get("provider") or "all",
            actor=params["actor"],
            now=now,
            flow_run_id=flow_run_id,
            lookups={"prefect-secret": prefect_secret_lookup},
        )


@task(name="validate-channel-upgrade", cache_policy=NO_CACHE)
@refusals_as_state
def validate_channel_upgrade(params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | State:
    """``release validate-upgrade --channel``: the comparison plus the channel's persisted rules."""
    return run_validate_upgrade_on_channel(**params, flow_run_id=flow_run_id)
