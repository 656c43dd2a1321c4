"""Rollout operations: capture, verify, promotion request, execution, rollback request, rollback,
audit, and the auditor's views (show / list / search). What ``ringward rollout ...`` runs
in-process and what the Prefect tasks in ``tasks/promotion_rollout.py`` wrap.

Every step that decides something leaves (1) its output directory, assembled under a temporary
name and renamed into place, (2) an evidence bundle with copies of those files and (3) one
hash-chained evidence record, written in the same transaction as the step's row in the rollout
ledger (:mod:`ringward.store.promotion.executions_repo`). A refused step leaves no output and no
ledger row, only a ``rollout-refusal`` evidence record naming the check that refused it (bad
usage, exit 2, records nothing).

Approvals are only ever looked up in the store and consumed through it (compare-and-swap, once),
by the deciding steps (execution, rollback) in the same transaction as their evidence record and
ledger row (an execution's break-glass approval too): a refused decision consumes nothing. See
:mod:`ringward.core.promotion.rollout` for the rules (RO1-RO4).

This module is the public facade: every step and view is importable from here (the CLI, the API,
the Prefect tasks, automation and tests do), implemented by step in package-internal modules --
:mod:`.rollout_base` (shared staging, decisions, refusals, keys), :mod:`.rollout_capture` (capture,
verify, package and rollout checks), :mod:`.rollout_requests` (promotion and rollback requests),
:mod:`.rollout_execution` (execution and rollback), :mod:`.rollout_audit` (audit export and
delivery) and :mod:`.rollout_queries` (show / list / search) -- plus :func:`run_step`, the one entry
point per step with plain parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.errors import InputError
from ringward.core.promotion import rollout as ro

# every name this module defined before it was split by step, private helpers included
from ringward.operations.promotion.rollout_audit import (  # noqa: F401
    _load_audited,
    audit,
    audit_connector_event,
)
from ringward.operations.promotion.rollout_base import (  # noqa: F401
    MAX_FILE_BYTES,
    PROMOTION_DELIVERY_SOURCE,
    PROMOTION_KEY_ENV,
    REFERENCE_PROMOTION_KEY_ENV,
    REFUSAL_SCHEMA,
    ROLLBACK_DELIVERY_SOURCE,
    _Bundle,
    _check_output,
    _check_promotion_key,
    _current_state,
    _decide,
    _evidence_ref,
    _load_root,
    _Made,
    _publish,
    _read,
    _record,
    _resolve,
    _short,
    _stage,
    _stage_bundle,
    _state_after,
    ledger,
    load_promotion_key,
    refusal_draft,
    refusals,
    utc_now,
)
from ringward.operations.promotion.rollout_capture import (  # noqa: F401
    CheckedRollout,
    VerifiedPackage,
    _package_documents,
    capture_rollout,
    check_rollout,
    verify_release_package,
    verify_rollout,
)
from ringward.operations.promotion.rollout_execution import (  # noqa: F401
    _release_digest,
    _signed_rollback_request,
    _window_check,
    allow_channel_rollbacks,
    execute_promotion,
    execute_rollback,
)
from ringward.operations.promotion.rollout_queries import (  # noqa: F401
    _approval_view,
    _deliveries,
    _refusals_of,
    _resolve_rollout_id,
    _step_view,
    list_rollouts,
    search_rollouts,
    show_rollout,
)
from ringward.operations.promotion.rollout_requests import (  # noqa: F401
    _approval_ref,
    _check_promotable_state,
    _check_rollbackable,
    _live_approval,
    _load_execution,
    _load_request,
    _not_rolled_back,
    _open_or_reuse,
    _recorded_execution,
    request_promotion,
    request_rollback,
)

if TYPE_CHECKING:
    from ringward.store import Store

__all__ = [
    "MAX_FILE_BYTES",
    "PROMOTION_DELIVERY_SOURCE",
    "PROMOTION_KEY_ENV",
    "REFERENCE_PROMOTION_KEY_ENV",
    "REFUSAL_SCHEMA",
    "ROLLBACK_DELIVERY_SOURCE",
    "STEP_FUNCTIONS",
    "CheckedRollout",
    "VerifiedPackage",
    "allow_channel_rollbacks",
    "audit",
    "audit_connector_event",
    "capture_rollout",
    "check_rollout",
    "execute_promotion",
    "execute_rollback",
    "ledger",
    "list_rollouts",
    "load_promotion_key",
    "refusal_draft",
    "refusals",
    "request_promotion",
    "request_rollback",
    "run_step",
    "search_rollouts",
    "show_rollout",
    "step_arguments",
    "utc_now",
    "verify_release_package",
    "verify_rollout",
]


# --- one entry point per step (the CLI's in-process path and the Prefect tasks) ----------------------

_PATH_PARAMS = frozenset({
    "package_dir", "trust_root", "output", "rollout_dir", "signing_key", "request_path", "windows",
    "execution_path", "record_path", "deliver_config",
})

STEP_FUNCTIONS: dict[str, Any] = {
    "capture": capture_rollout,
    "verify": verify_rollout,
    "request_promotion": request_promotion,
    "execute": execute_promotion,
    "request_rollback": request_rollback,
    "rollback": execute_rollback,
    "audit": audit,
}


def step_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """Plain (JSON-able) step parameters -> the operation's arguments: paths become ``Path``,
    ``expires_in`` text (``24h``) a timedelta, ``now`` text an aware datetime."""
    from ringward.core.approvals.rules import parse_duration

    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _PATH_PARAMS:
            out[name] = Path(value)
        elif name == "expires_in" and isinstance(value, str):
            out[name] = parse_duration(value)
        elif name == "now" and isinstance(value, str):
            out[name] = ro.parse_iso(value, where="now")
        elif name == "deployment_ids":
            out[name] = list(value)
        else:
            out[name] = value
    return out


def run_step(step: str, params: Mapping[str, Any], *, flow_run_id: str | None = None,
             store: Store | None = None) -> dict[str, Any]:
    """Run one rollout step with plain parameters; opens (and closes) the store unless given one."""
    function = STEP_FUNCTIONS.get(step)
    if function is None:
        raise InputError(f"rollout step: expected one of {', '.join(STEP_FUNCTIONS)}, found {step!r}")
    arguments = step_arguments(params)
    if store is not None:
        return dict(function(store, **arguments, flow_run_id=flow_run_id))
    from ringward.store import open_store

    with open_store() as opened:
        return dict(function(opened, **arguments, flow_run_id=flow_run_id))
