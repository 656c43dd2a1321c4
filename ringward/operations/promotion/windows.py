"""Promotion windows on disk: load ``windows.yaml``, explain a decision, gate an execution.

Executors (rollout promotion, channel promotion, endpoint export) call :func:`enforce_window`
with the policy path (``None``: no windows configured, everything open; resolve a default with
:func:`windows_policy_path`, which reads ``RINGWARD_WINDOWS``), the targets the action touches
(``ring:<name>``, ``channel:<name>``, ``environment:<name>``) and ``now``. A refusal is a
:class:`~ringward.core.promotion.windows_policy.WindowClosedError` (a ``PromotionWindowError``,
exit 1) whose one-line message names the target, the freeze or closed windows and the next
opening; its ``decision`` carries the details for the refusal's evidence record.

To run anyway, the executor needs a separate approved ``break_glass`` approval bound by
:func:`~ringward.core.promotion.windows_policy.break_glass_binding`; :func:`consume_break_glass`
checks and consumes it (once) and the execution records ``break_glass: true``
(:func:`~ringward.core.promotion.windows_policy.break_glass_evidence`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ringward.core.common.windows import DEFAULT_HORIZON
from ringward.core.errors import InputError
from ringward.core.promotion.windows_policy import (
    MAX_POLICY_BYTES,
    BreakGlassBinding,
    WindowDecision,
    WindowsPolicy,
    break_glass_binding,
    evaluate_window,
    parse_windows_policy,
    require_open,
    window_decision_draft,
)
from ringward.operations.common.files import read_capped

if TYPE_CHECKING:
    from ringward.core.approvals.rules import Approval
    from ringward.core.evidence.records import EvidenceRecord
    from ringward.store import Store

#: environment variable naming the default policy file
WINDOWS_ENV = "RINGWARD_WINDOWS"


def windows_policy_path(explicit: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """``explicit`` if given, else ``$RINGWARD_WINDOWS`` if set and non-empty, else None (no
    windows configured)."""
    if explicit is not None:
        return explicit
    value = (os.environ if environ is None else environ).get(WINDOWS_ENV, "").strip()
    return Path(value) if value else None


def load_windows_policy(path: Path) -> WindowsPolicy:
    """Read and validate a policy file (regular file, at most 1 MiB, YAML or JSON).

    Raises:
        InputError: missing or unreadable file.
        WindowsPolicyError: every schema problem, each as ``<field path>: <message>``, the
        message prefixed with the file name.
    """
    data = read_capped(path, MAX_POLICY_BYTES, source=str(path))
    return parse_windows_policy(data, source=str(path))


def _policy(policy_path: Path | None) -> WindowsPolicy | None:
    return None if policy_path is None else load_windows_policy(policy_path)


def check_window(
    policy_path: Path | None,
    targets: Sequence[str],
    at: datetime,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
) -> WindowDecision:
    """The decision (open or closed, why, next opening) for ``targets`` at ``at``; never raises
    for a closed window."""
    return evaluate_window(_policy(policy_path), targets, at, horizon=horizon)


def enforce_window(
    policy_path: Path | None,
    targets: Sequence[str],
    at: datetime,
    *,
    action: str = "promotion",
    horizon: timedelta = DEFAULT_HORIZON,
) -> WindowDecision:
    """The open decision, or raise: for executors and exports. ``policy_path`` None = no windows.

    Raises:
        WindowClosedError: outside every allow window or inside a freeze (exit 1).
        InputError / WindowsPolicyError: a bad policy file, target or time (exit 2).
    """
    return require_open(_policy(policy_path), targets, at, action=action, horizon=horizon)


def consume_break_glass(
    store: Store,
    approval_id: str,
    *,
    decision: WindowDecision,
    subject: str,
    actor: str,
    now: datetime,
    overridden_action: str = "rollout",
    execution_ref: str | None = None,
    flow_run_id: str | None = None,
) -> tuple[Approval, BreakGlassBinding]:
    """Check and consume (once, compare-and-swap) the break-glass approval that lets the refused
    ``decision`` run anyway; returns the consumed approval and its binding.

    Raises:
        InputError: the decision is open (nothing to break).
        ApprovalNotFoundError, ApprovalBindingError, ApprovalConsumedError, ApprovalExpiredError,
        ApprovalStateError: as for every approval (the requester never approves; expiry and single
        use enforced).
    """
    from ringward.operations.approvals.approval_ops import consume_approval

    binding = break_glass_binding(decision, subject=subject, overridden_action=overridden_action)
    approval = consume_approval(
        store,
        approval_id,
        action=binding.action,
        subject_digest=binding.subject_digest,
        target=binding.target,
        actor=actor,
        execution_ref=execution_ref,
        now=now,
        flow_run_id=flow_run_id,
    )
    return approval, binding


def record_window_decision(
    store: Store,
    decision: WindowDecision,
    *,
    actor: str,
    action: str,
    policy_path: Path | None,
    now: datetime | None = None,
    flow_run_id: str | None = None,
) -> EvidenceRecord:
    """Append the decision to the evidence chain (kind ``promotion-window-decision``)."""
    if not actor.strip():
        raise InputError("actor: expected a name")
    draft = window_decision_draft(
        decision,
        actor=actor,
        action=action,
        policy_source=None if policy_path is None else str(policy_path),
        flow_run_id=flow_run_id,
    )
    return store.append(draft, now=now)
