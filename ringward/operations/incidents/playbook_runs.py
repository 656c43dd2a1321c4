"""The playbook engine: run records, step transitions and the approval gate (no Prefect here).

A run (``ringward.playbook-run.v1``, :mod:`ringward.core.incidents.playbooks`) lives in the
versioned key/value table (``kv_state``, namespace ``playbooks.runs``; no table of its own, so no
migration). Every step transition is one transaction: the ``playbook-step`` evidence record, the
run's compare-and-set and -- when a destructive step starts under its approval -- the approval's
consumption (:meth:`~ringward.store.approvals.repo.ApprovalRepository.consume_in`, the same call the
channel export and the remediation execution use), so an approval is consumed exactly when its
step moves to ``approved``. Domain effects (a channel hold, a trust-root rotation, an incident)
are written by their own domains and listed in the step's evidence ids.

Each playbook module (``playbook_key_compromise``, ``playbook_yank``, ``playbook_unauthorized``)
provides one :class:`Handler` per step. :func:`advance` runs one step; :func:`run_playbook` is the
in-process driver (``ringward playbook ...``); ``flows/incidents_playbooks.py`` composes the same
:func:`start_run` / :func:`advance` / :func:`finish` calls as Prefect tasks.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from ringward.core.approvals.rules import MAX_TTL, Approval, ApprovalState, Decision, same_actor
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalConsumedError,
    ApprovalExpiredError,
    ApprovalStateError,
    EvidenceIntegrityError,
    InputError,
    NotFoundError,
    RingwardError,
    SeparationOfDutiesError,
    StateError,
    StoreConflictError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.core.incidents import playbooks as pb
from ringward.core.incidents.playbooks import PlaybookKind, PlaybookRun, PlaybookStep, StepApproval, StepStatus
from ringward.store.state_repo import StateRepository, compare_and_set

if TYPE_CHECKING:
    from ringward.store import Store

NAMESPACE: Final = "playbooks.runs"
RESULT_SCHEMA: Final = "ringward.playbook-result.v1"
LIST_SCHEMA: Final = "ringward.playbook-run-list.v1"
DEFAULT_EXPIRES_IN: Final = timedelta(hours=24)
MAX_ATTEMPTS: Final = 3


@dataclass
class Context:
    """One invocation: who acts, when, the approval presented and the playbook's options (paths...)."""

    store: Store
    now: datetime
    actor: str
    approval_id: str | None = None
    flow_run_id: str | None = None
    expires_in: timedelta = DEFAULT_EXPIRES_IN
    options: Mapping[str, Any] = field(default_factory=dict)
    #: set once the presented approval was used by a step of this invocation
    approval_used: bool = False

    @property
    def presented(self) -> str | None:
        """The approval still to be used in this invocation (one approval serves one step)."""
        return None if self.approval_used else self.approval_id

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise InputError(f"--at: expected a time with a UTC offset, found {self.now.isoformat()}")
        self.now = self.now.astimezone(UTC)
        if not timedelta(0) < self.expires_in <= MAX_TTL:
            raise InputError(f"--expires-in: expected between 1s and {MAX_TTL}, found {self.expires_in}")
        if self.approval_id is not None and not 1 <= len(self.approval_id) <= 128:
            raise InputError(f"--approval: expected an approval id, found {self.approval_id[:80]!r}")


@dataclass(frozen=True)
class StepResult:
    """What a step did: ``done`` or ``skipped``, its output and the domain evidence ids it wrote."""

    status: StepStatus
    output: dict[str, Any]
    evidence_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Handler:
    """One step. Non-destructive: ``run``. Destructive: ``plan`` (a dict, or a StepResult when there
    is nothing to change), optionally ``stale`` (why a kept plan no longer applies), ``prepare``
    (checks and work before the approval is consumed; its value is passed to ``execute``) and
    ``execute`` (carry the plan out; idempotent, it may resume after a crash)."""

    run: Callable[[Context, PlaybookRun], StepResult] | None = None
    plan: Callable[[Context, PlaybookRun], dict[str, Any] | StepResult] | None = None
    stale: Callable[[Context, PlaybookRun, dict[str, Any]], str | None] | None = None
    prepare: Callable[[Context, PlaybookRun, dict[str, Any]], Any] | None = None
    execute: Callable[[Context, PlaybookRun, dict[str, Any], Any], StepResult] | None = None


Handlers = Mapping[str, Handler]


@dataclass(frozen=True)
class Advance:
    """The outcome of :func:`advance`: the run after the step, and whether the run stops here."""

    run: PlaybookRun
    step: str
    status: StepStatus
    stop: bool
    changed: bool


# --- storage ------------------------------------------------------------------------------------------------


def _parse(value: Any, run_id: str) -> PlaybookRun:
    try:
        return PlaybookRun.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise EvidenceIntegrityError(f"stored playbook run {run_id} is not a valid {pb.RUN_SCHEMA}: "
                                     f"{first['loc']}: {first['msg']}") from exc


def load(store: Store, run_id: str) -> tuple[PlaybookRun, int]:
    """The run and its row version.

    Raises:
        NotFoundError: no such run.
    """
    entry = StateRepository(store).get(NAMESPACE, run_id)
    if entry is None:
        raise NotFoundError(f"playbook run {run_id!r}: not found (see `ringward playbook status`)")
    return _parse(entry.value, run_id), entry.version


def list_runs(store: Store) -> builtins.list[PlaybookRun]:
    runs = [_parse(e.value, e.key) for e in StateRepository(store).list(NAMESPACE)]
    return sorted(runs, key=lambda r: (r.created_at, r.run_id))


def _stored(run: PlaybookRun) -> dict[str, Any]:
    return run.model_dump(mode="json")


def _commit(ctx: Context, run: PlaybookRun, version: int, drafts: list[EvidenceDraft], *,
            update: Callable[[list[EvidenceRecord]], PlaybookRun], consume: StepApproval | None = None,
            ) -> tuple[PlaybookRun, int, list[EvidenceRecord]]:
    """One transaction: consume ``consume`` (if given), append ``drafts``, compare-and-set the run to
    ``update(records)``. Lock order: approval row, evidence chain head, run row.

    Raises:
        StoreConflictError: the run changed concurrently (another invocation advanced it).
        Approval*Error: from the approval rules (nothing is written).
    """
    from ringward.store.approvals import repo as approvals_repo
    from ringward.store.evidence.repo import append_locked

    try:
        with ctx.store.writing() as conn:
            records: list[EvidenceRecord] = []
            if consume is not None:
                approvals_repo.load(conn, consume.approval_id, for_update=True)
                _, consumption = ctx.store.approvals.consume_in(
                    conn, consume.approval_id, action=consume.action, subject_digest=consume.subject_digest,
                    target=consume.target, actor=ctx.actor, execution_ref=consume.target, now=ctx.now,
                    flow_run_id=ctx.flow_run_id)
                records.append(consumption)
            records.extend(append_locked(conn, drafts, ctx.now) if drafts else [])
            after = update(records)
            compare_and_set(conn, NAMESPACE, run.run_id, _stored(after), version, actor=ctx.actor, when=ctx.now)
    except IntegrityError as exc:
        raise StoreConflictError(f"playbook run {run.run_id}: written concurrently; re-run") from exc
    return after, version + 1, records


def _flow_runs(run: PlaybookRun, ctx: Context) -> tuple[str, ...]:
    if ctx.flow_run_id and ctx.flow_run_id not in run.flow_run_ids:
        return (*run.flow_run_ids, ctx.flow_run_id)
    return run.flow_run_ids


def step_draft(ctx: Context, run: PlaybookRun, step: PlaybookStep, *, event: str, details: Mapping[str, Any],
               success: bool = True, effect_ids: tuple[int, ...] = ()) -> EvidenceDraft:
    """The ``playbook-step`` evidence record of one transition (PB5)."""
    approval = step.approval
    return EvidenceDraft(
        kind=pb.KIND_STEP, actor=ctx.actor, flow_run_id=ctx.flow_run_id,
        subject=EvidenceSubject(status=event, success=success, approval_id=approval.approval_id if approval else None,
                                approval_state=("consumed" if approval and approval.consumed_at else
                                                "pending" if approval else None),
                                deployment_target=pb.approval_target(run.run_id, step.name)),
        payload={"schema_version": pb.STEP_SCHEMA, "run_id": run.run_id, "playbook": run.playbook.value,
                 "step": step.name, "destructive": step.destructive, "event": event, "status": step.status.value,
                 "at": ctx.now.isoformat(), "actor": ctx.actor, "inputs": run.inputs,
                 "approval": approval.model_dump(mode="json") if approval else None,
                 "plan_digest": (pb.plan_digest(run.run_id, run.playbook, step.name, step.plan)
                                 if step.plan is not None else None),
                 "effect_evidence_ids": list(effect_ids), "details": dict(details)},
    )


def _transition(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, *, event: str,
                details: Mapping[str, Any], success: bool = True, effect_ids: tuple[int, ...] = (),
                consume: StepApproval | None = None, extra_ids: tuple[int, ...] = ()) -> tuple[PlaybookRun, int]:
    """Record ``step`` (already in its new status) and store it in the run."""
    stamped = step.model_copy(update={"updated_at": ctx.now, "updated_by": ctx.actor})
    draft = step_draft(ctx, run, stamped, event=event, details=details, success=success, effect_ids=effect_ids)

    def update(records: list[EvidenceRecord]) -> PlaybookRun:
        ids = (*stamped.evidence_ids, *extra_ids, *effect_ids, *(r.id for r in records))
        final = stamped.model_copy(update={"evidence_ids": tuple(dict.fromkeys(ids))})
        return run.with_step(final, now=ctx.now).model_copy(update={"flow_run_ids": _flow_runs(run, ctx)})

    after, new_version, _ = _commit(ctx, run, version, [draft], update=update, consume=consume)
    return after, new_version


def record_refusal(ctx: Context, run: PlaybookRun, step: PlaybookStep, exc: RingwardError) -> None:
    """A refused step attempt (wrong, unapproved or replayed approval; a plan that cannot be carried
    out) as its own evidence record; the run is left as it was."""
    ctx.store.append(step_draft(ctx, run, step, event="refused", success=False,
                                details={"error": {"code": exc.code, "type": type(exc).__name__,
                                                   "message": exc.message[:pb.MAX_ERROR]},
                                         "approval_presented": ctx.approval_id}), now=ctx.now)


# --- starting a run ---------------------------------------------------------------------------------------


def start_run(ctx: Context, kind: PlaybookKind, inputs: Mapping[str, Any]) -> tuple[PlaybookRun, bool]:
    """The run of (playbook, inputs): created with a ``playbook-run`` record the first time, returned
    as it is afterwards (PB1). Returns (run, created)."""
    fresh = pb.new_run(kind, inputs, actor=ctx.actor, now=ctx.now)
    for _ in range(MAX_ATTEMPTS):
        entry = StateRepository(ctx.store).get(NAMESPACE, fresh.run_id)
        if entry is not None:
            existing = _parse(entry.value, fresh.run_id)
            if existing.inputs != fresh.inputs or existing.playbook is not kind:  # pragma: no cover - sha256 clash
                raise EvidenceIntegrityError(f"playbook run {fresh.run_id}: stored inputs differ from the inputs "
                                             "that derive its id; the run record was altered")
            return existing, False
        run = fresh.model_copy(update={"flow_run_ids": _flow_runs(fresh, ctx)})
        draft = EvidenceDraft(kind=pb.KIND_RUN, actor=ctx.actor, flow_run_id=ctx.flow_run_id,
                              subject=EvidenceSubject(status="started", success=True),
                              payload={"schema_version": pb.RUN_SCHEMA, "event": "started", "run": run.document()})
        def same(_records: list[EvidenceRecord], r: PlaybookRun = run) -> PlaybookRun:
            return r

        try:
            after, _, _ = _commit(ctx, run, 0, [draft], update=same)
        except StoreConflictError:
            continue  # another invocation created it first: read theirs
        return after, True
    raise StoreConflictError(f"playbook run {fresh.run_id}: created concurrently; re-run")


# --- advancing one step -----------------------------------------------------------------------------------


def _live(approval: Approval, now: datetime) -> bool:
    return approval.consumed_at is None and approval.effective_state(now) in (ApprovalState.PENDING,
                                                                               ApprovalState.APPROVED)


def advance(ctx: Context, run_id: str, name: str, handlers: Handlers) -> Advance:
    """Run step ``name`` of the run (PB2-PB5). A step already finished is not repeated.

    Raises:
        StateError: an earlier step is not finished.
        RingwardError: the step failed (recorded as ``failed`` first) or an approval was refused
            (recorded as ``refused``; the run unchanged).
    """
    run, version = load(ctx.store, run_id)
    step = run.check_ready(name)
    if step.status in pb.FINISHED:
        return Advance(run, name, step.status, stop=False, changed=False)
    handler = handlers[name]
    if not step.destructive:
        return _run_plain(ctx, run, version, step, handler)
    return _run_gated(ctx, run, version, step, handler)


def _failed(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, exc: RingwardError) -> None:
    failed = step.model_copy(update={"status": StepStatus.FAILED, "attempts": step.attempts + 1,
                                     "error": exc.message[:pb.MAX_ERROR]})
    # a concurrent invocation that moved the run meanwhile keeps its record
    with contextlib.suppress(StoreConflictError):
        _transition(ctx, run, version, failed, event="failed", success=False,
                    details={"error": {"code": exc.code, "type": type(exc).__name__,
                                       "message": exc.message[:pb.MAX_ERROR]}})


def _finish(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, result: StepResult, *,
            event: str | None = None) -> Advance:
    done = step.model_copy(update={"status": result.status, "attempts": step.attempts + 1, "output": result.output,
                                   "error": None})
    after, _ = _transition(ctx, run, version, done, event=event or result.status.value, details=result.output,
                           effect_ids=result.evidence_ids)
    return Advance(after, step.name, result.status, stop=False, changed=True)


def _run_plain(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, handler: Handler) -> Advance:
    assert handler.run is not None
    try:
        result = handler.run(ctx, run)
    except InputError:
        raise
    except RingwardError as exc:
        _failed(ctx, run, version, step, exc)
        raise
    return _finish(ctx, run, version, step, result)


def _open_approval(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, plan: dict[str, Any],
                   replaced: str | None) -> Advance:
    from ringward.operations.approvals.approval_ops import parse_request

    digest = pb.plan_digest(run.run_id, run.playbook, step.name, plan)
    target = pb.approval_target(run.run_id, step.name)
    request = parse_request(action=pb.approval_action(run.playbook, step.name), subject_digest=digest, target=target,
                            requester=ctx.actor, quorum=1, approver_group="Security Incident Response",
                            note=f"playbook {run.playbook.value} run {run.run_id}: step {step.name} "
                                 f"({_plan_line(plan)})"[:4000])
    approval, record = ctx.store.approvals.create(request, expires_at=ctx.now + ctx.expires_in, now=ctx.now,
                                                  flow_run_id=ctx.flow_run_id)
    waiting = step.model_copy(update={
        "status": StepStatus.AWAITING_APPROVAL, "plan": plan, "error": None,
        "approval": StepApproval(approval_id=approval.approval_id, action=approval.action,
                                 subject_digest=approval.subject_digest, target=approval.target,
                                 requested_by=ctx.actor, requested_at=ctx.now, expires_at=approval.expires_at),
        "replaced_approvals": (*step.replaced_approvals, replaced) if replaced else step.replaced_approvals})
    after, _ = _transition(ctx, run, version, waiting, event="awaiting-approval",
                           details={"plan": plan, "approval_id": approval.approval_id,
                                    "replaced_approval": replaced}, extra_ids=(record.id,))
    return Advance(after, step.name, StepStatus.AWAITING_APPROVAL, stop=True, changed=True)


def _plan_line(plan: Mapping[str, Any]) -> str:
    summary = plan.get("summary")
    return str(summary) if summary else ", ".join(sorted(plan))


def _run_gated(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, handler: Handler) -> Advance:
    assert handler.plan is not None and handler.execute is not None
    consumed = step.approval is not None and step.approval.consumed_at is not None
    if step.status is StepStatus.APPROVED or (step.status is StepStatus.FAILED and consumed):
        assert step.plan is not None
        return _execute(ctx, run, version, step, handler, step.plan, prepared=None)
    current = None
    if step.approval is not None:
        try:
            current = ctx.store.approvals.get(step.approval.approval_id)
        except NotFoundError:
            current = None
    kept = step.plan if (step.plan is not None and current is not None and _live(current, ctx.now)) else None
    try:
        if kept is not None and handler.stale is not None and handler.stale(ctx, run, kept) is not None:
            kept = None  # the world moved since the plan was made: plan again under a new approval (PB4)
        planned = handler.plan(ctx, run) if kept is None else None
    except InputError:
        raise
    except RingwardError as exc:
        _failed(ctx, run, version, step, exc)
        raise
    if planned is not None:
        if isinstance(planned, StepResult):  # nothing to change: no approval needed
            return _finish(ctx, run, version, step, planned)
        advanced = _open_approval(ctx, run, version, step, planned,
                                  replaced=step.approval.approval_id if step.approval else None)
        if ctx.presented is None:
            return advanced
        run, version = load(ctx.store, run.run_id)
        step = run.step(step.name)
    elif ctx.presented is None:
        return Advance(run, step.name, StepStatus.AWAITING_APPROVAL, stop=True, changed=False)
    assert step.approval is not None and step.plan is not None and ctx.presented is not None
    try:
        _check_presented(ctx, run, step)
        prepared = handler.prepare(ctx, run, step.plan) if handler.prepare is not None else None
        approved = step.model_copy(update={
            "status": StepStatus.APPROVED, "error": None,
            "approval": step.approval.model_copy(update={"consumed_at": ctx.now, "consumed_by": ctx.actor})})
        run, version = _transition(ctx, run, version, approved, event="approved", consume=step.approval,
                                   details={"approval_id": step.approval.approval_id})
    except InputError:
        raise
    except RingwardError as exc:
        record_refusal(ctx, run, step, exc)
        raise
    ctx.approval_used = True
    return _execute(ctx, run, version, run.step(step.name), handler, step.plan, prepared=prepared)


def _check_presented(ctx: Context, run: PlaybookRun, step: PlaybookStep) -> None:
    """The presented approval is this step's (the rest -- approved, quorum, expiry, single use -- is
    checked by the consumption itself)."""
    assert step.approval is not None and ctx.approval_id is not None
    presented = ctx.store.approvals.get(ctx.approval_id)
    if presented.approval_id != step.approval.approval_id:
        if presented.approval_id in step.replaced_approvals:
            state = presented.effective_state(ctx.now)
            cls = ApprovalExpiredError if state is ApprovalState.EXPIRED else ApprovalStateError
            raise cls(f"approval {presented.approval_id}: {state.value} (expires_at "
                      f"{presented.expires_at.isoformat()}, now {ctx.now.isoformat()}); step {step.name} of run "
                      f"{run.run_id} now awaits approval {step.approval.approval_id}")
        if presented.consumed_at is not None:
            raise ApprovalConsumedError(
                f"approval {presented.approval_id}: already consumed at {presented.consumed_at.isoformat()} by "
                f"{presented.consumed_by} ({presented.execution_ref}); approvals are single-use -- step "
                f"{step.name} of run {run.run_id} awaits approval {step.approval.approval_id}")
        raise ApprovalBindingError(
            f"approval {presented.approval_id}: bound to {presented.action} / {presented.target}; step {step.name} "
            f"of run {run.run_id} awaits approval {step.approval.approval_id} ({step.approval.target})")
    approvers = [v.actor for v in presented.votes if v.decision is Decision.APPROVE]
    if any(same_actor(actor, presented.requester) for actor in approvers):
        raise SeparationOfDutiesError(f"approval {presented.approval_id}: approved by its requester "
                                      f"{presented.requester!r}; the approver must be someone else")


def _execute(ctx: Context, run: PlaybookRun, version: int, step: PlaybookStep, handler: Handler,
             plan: dict[str, Any], *, prepared: Any) -> Advance:
    assert handler.execute is not None
    try:
        if prepared is None and handler.prepare is not None:
            prepared = handler.prepare(ctx, run, plan)
        result = handler.execute(ctx, run, plan, prepared)
    except InputError:
        raise
    except RingwardError as exc:
        _failed(ctx, run, version, step, exc)
        raise
    return _finish(ctx, run, version, step, result)


# --- the in-process driver and the result -------------------------------------------------------------------


def finish(ctx: Context, run_id: str) -> dict[str, Any]:
    """The result of an invocation; a presented approval no step of this run awaited is refused
    (unless a step of this run consumed it earlier: a harmless re-run)."""
    run, _ = load(ctx.store, run_id)
    if ctx.approval_id is not None and not ctx.approval_used:
        targets = {pb.approval_target(run.run_id, s.name): s for s in run.steps}
        approval = ctx.store.approvals.get(ctx.approval_id)
        if approval.target not in targets or approval.consumed_at is None:
            waiting = run.next_step()
            nxt = f", next step {waiting.name} ({waiting.status.value})" if waiting else ""
            raise StateError(f"approval {ctx.approval_id}: no step of run {run.run_id} awaits it (run "
                             f"{run.status}{nxt})")
    return result(run)


def result(run: PlaybookRun) -> dict[str, Any]:
    waiting = next((s for s in run.steps if s.status is StepStatus.AWAITING_APPROVAL), None)
    awaiting = None
    if waiting is not None and waiting.approval is not None:
        awaiting = {"step": waiting.name, "approval_id": waiting.approval.approval_id,
                    "action": waiting.approval.action, "target": waiting.approval.target,
                    "subject_digest": waiting.approval.subject_digest,
                    "expires_at": waiting.approval.expires_at.isoformat(),
                    "requested_by": waiting.approval.requested_by, "plan": waiting.plan}
    return {"schema_version": RESULT_SCHEMA, "run_id": run.run_id, "playbook": run.playbook.value,
            "status": run.status, "ok": run.status != "failed", "awaiting": awaiting, "run": run.document()}


def run_playbook(ctx: Context, kind: PlaybookKind, inputs: Mapping[str, Any], handlers: Handlers) -> dict[str, Any]:
    """Start (or find) the run and advance it step by step until it completes or a destructive step
    awaits its approval."""
    run, _ = start_run(ctx, kind, inputs)
    for name in pb.step_names(kind):
        if advance(ctx, run.run_id, name, handlers).stop:
            break
    return finish(ctx, run.run_id)


def run_dir(run_id: str) -> Path:
    """Files a run writes (a signed trust-root version, reconciliation reports, remediation requests)."""
    from ringward.settings import ringward_home

    return ringward_home().absolute() / "playbooks" / run_id


def status(store: Store, run_id: str | None = None) -> dict[str, Any]:
    if run_id is not None:
        run, _ = load(store, run_id)
        return result(run)
    return {"schema_version": LIST_SCHEMA,
            "runs": [{"run_id": r.run_id, "playbook": r.playbook.value, "status": r.status,
                      "created_at": r.created_at.isoformat(), "created_by": r.created_by,
                      "updated_at": r.updated_at.isoformat(), "inputs": r.inputs,
                      "steps": {s.name: s.status.value for s in r.steps}} for r in list_runs(store)]}
