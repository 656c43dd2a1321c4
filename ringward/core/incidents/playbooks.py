"""Incident playbooks as records: the run (``ringward.playbook-run.v1``), its steps, the approval
binding of each destructive step and the pure detection rules the playbooks apply.

Three playbooks (the incident-response playbook's checklists, as software):

==========================  =====================================================================
playbook                    steps (``*`` = destructive: runs only under an approval)
==========================  =====================================================================
``key-compromise``          ``revoke-key*`` -> ``list-affected`` -> ``re-verify`` ->
                            ``hold-channels*`` -> ``notify`` -> ``incident``
``yank``                    ``locate`` -> ``yank*`` -> ``reconcile`` -> ``remediate``
``unauthorized-release``    ``detect`` -> ``incident`` -> ``hold-channel*``
==========================  =====================================================================

Rules (numbered so code and tests can cite them):

- PB1 a run's id is derived from the playbook and its identifying inputs
  (:func:`run_id_for`): the same playbook with the same inputs is the same run, and re-running it
  never repeats a step already ``done`` or ``skipped`` (idempotency by key).
- PB2 steps run in order; a step runs only when every earlier step is ``done`` or ``skipped``.
- PB3 a destructive step first records a *plan* (exactly what it will change) and opens an
  approval bound to action ``playbook.<playbook>.<step>``, subject digest ``sha256`` of the
  canonical plan (:func:`plan_digest`) and target ``playbook-run:<run id>/<step>``; the run stops
  ``awaiting-approval``. Re-run with ``--approval ID``: the approval must be that one, approved by
  someone other than the requester, unexpired and unused; it is consumed once (execution ref = the
  target) together with the step's move to ``approved``, then the plan is carried out. A step
  ``approved`` whose effect did not finish (crash, failure) resumes under the consumed approval.
- PB4 a live approval (pending, or approved and unused, before expiry) is kept while its plan is
  kept; a denied, revoked or expired one is replaced by a new approval on the next run.
- PB5 every step transition is one ``playbook-step`` evidence record naming the actor; each step
  lists the evidence ids it wrote (its own records and the domain records its effects wrote).

Time is a parameter; nothing here reads the clock or touches a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ringward.core.common.jsonio import dumps_canonical
from ringward.core.common.versions import version_or_none
from ringward.core.errors import InputError, StateError

RUN_SCHEMA: Final = "ringward.playbook-run.v1"
STEP_SCHEMA: Final = "ringward.playbook-step.v1"
#: evidence kinds: one ``playbook-run`` record when a run starts, one ``playbook-step`` per step transition
KIND_RUN: Final = "playbook-run"
KIND_STEP: Final = "playbook-step"
#: items kept per list in a step's output (the counts are always complete)
MAX_LISTED: Final = 1000
#: characters of an error message kept on a failed step
MAX_ERROR: Final = 1000


class PlaybookKind(StrEnum):
    KEY_COMPROMISE = "key-compromise"
    YANK = "yank"
    UNAUTHORIZED_RELEASE = "unauthorized-release"


class StepStatus(StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting-approval"
    #: the approval was consumed; the step's effect runs (or resumes) under it
    APPROVED = "approved"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


FINISHED: Final = frozenset({StepStatus.DONE, StepStatus.SKIPPED})


@dataclass(frozen=True)
class StepSpec:
    name: str
    destructive: bool = False


STEPS: Final[Mapping[PlaybookKind, tuple[StepSpec, ...]]] = {
    PlaybookKind.KEY_COMPROMISE: (StepSpec("revoke-key", True), StepSpec("list-affected"), StepSpec("re-verify"),
                                  StepSpec("hold-channels", True), StepSpec("notify"), StepSpec("incident")),
    PlaybookKind.YANK: (StepSpec("locate"), StepSpec("yank", True), StepSpec("reconcile"), StepSpec("remediate")),
    PlaybookKind.UNAUTHORIZED_RELEASE: (StepSpec("detect"), StepSpec("incident"), StepSpec("hold-channel", True)),
}


def step_names(kind: PlaybookKind) -> tuple[str, ...]:
    return tuple(s.name for s in STEPS[kind])


def parse_kind(text: str) -> PlaybookKind:
    try:
        return PlaybookKind(text)
    except ValueError:
        raise InputError(f"playbook: expected one of {', '.join(k.value for k in PlaybookKind)}, "
                         f"found {text!r}") from None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"expected a time with a UTC offset, found {value.isoformat()}")
    return value.astimezone(UTC)


class StepApproval(BaseModel):
    """The approval a destructive step opened, with its binding (PB3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approval_id: str = Field(min_length=1, max_length=128)
    action: str
    subject_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    target: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None
    consumed_by: str | None = None

    @field_validator("requested_at", "expires_at", "consumed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class PlaybookStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    destructive: bool = False
    status: StepStatus = StepStatus.PENDING
    updated_at: datetime | None = None
    updated_by: str | None = None
    attempts: int = Field(default=0, ge=0)
    #: evidence records this step wrote (its own ``playbook-step`` records and its effects'), in order
    evidence_ids: tuple[int, ...] = ()
    #: what a destructive step will change, exactly (the approval binds its digest)
    plan: dict[str, Any] | None = None
    approval: StepApproval | None = None
    #: approvals this step opened before the current one (denied, revoked or expired: PB4)
    replaced_approvals: tuple[str, ...] = ()
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(default=None, max_length=MAX_ERROR)

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


RunStatus = Literal["in-progress", "awaiting-approval", "failed", "completed"]


class PlaybookRun(BaseModel):
    """One run of a playbook. Frozen: every change returns a new record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.playbook-run.v1"] = RUN_SCHEMA
    run_id: str = Field(pattern=r"^pbr_[0-9a-f]{20}$")
    playbook: PlaybookKind
    #: the identifying inputs (PB1), canonical
    inputs: dict[str, Any]
    created_at: datetime
    created_by: str = Field(min_length=1, max_length=256)
    updated_at: datetime
    steps: tuple[PlaybookStep, ...]
    #: Prefect flow runs that advanced this run
    flow_run_ids: tuple[str, ...] = ()

    @field_validator("created_at", "updated_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value)

    @property
    def status(self) -> RunStatus:
        statuses = [s.status for s in self.steps]
        if all(s in FINISHED for s in statuses):
            return "completed"
        if StepStatus.FAILED in statuses:
            return "failed"
        if StepStatus.AWAITING_APPROVAL in statuses:
            return "awaiting-approval"
        return "in-progress"

    def step(self, name: str) -> PlaybookStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise InputError(f"step {name!r}: not a step of the {self.playbook.value} playbook "
                         f"({', '.join(s.name for s in self.steps)})")

    def next_step(self) -> PlaybookStep | None:
        """The first step not finished (PB2), or None when the run is complete."""
        return next((s for s in self.steps if s.status not in FINISHED), None)

    def check_ready(self, name: str) -> PlaybookStep:
        """PB2: ``name`` may run now.

        Raises:
            StateError: an earlier step is not finished.
        """
        for step in self.steps:
            if step.name == name:
                return step
            if step.status not in FINISHED:
                raise StateError(f"run {self.run_id}: step {name} waits for step {step.name} "
                                 f"({step.status.value})")
        raise InputError(f"step {name!r}: not a step of the {self.playbook.value} playbook")

    def with_step(self, step: PlaybookStep, *, now: datetime) -> PlaybookRun:
        steps = tuple(step if s.name == step.name else s for s in self.steps)
        return self.model_copy(update={"steps": steps, "updated_at": _utc(now)})

    def evidence_ids(self) -> list[int]:
        return [i for s in self.steps for i in s.evidence_ids]

    def document(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["status"] = self.status
        return doc


# --- ids and bindings ---------------------------------------------------------------------------------


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(dumps_canonical(value)).hexdigest()


def run_id_for(kind: PlaybookKind, inputs: Mapping[str, Any]) -> str:
    """PB1: ``pbr_`` + 20 hex of sha256(schema, playbook, canonical inputs)."""
    return "pbr_" + canonical_sha256({"schema": RUN_SCHEMA, "playbook": kind.value, "inputs": dict(inputs)})[:20]


def new_run(kind: PlaybookKind, inputs: Mapping[str, Any], *, actor: str, now: datetime) -> PlaybookRun:
    when = _utc(now)
    return PlaybookRun(run_id=run_id_for(kind, inputs), playbook=kind, inputs=dict(inputs), created_at=when,
                       created_by=actor, updated_at=when,
                       steps=tuple(PlaybookStep(name=s.name, destructive=s.destructive) for s in STEPS[kind]))


def approval_action(kind: PlaybookKind, step: str) -> str:
    return f"playbook.{kind.value}.{step}"


def approval_target(run_id: str, step: str) -> str:
    """The approval's target and the consumption's execution ref (PB3)."""
    return f"playbook-run:{run_id}/{step}"


def plan_digest(run_id: str, kind: PlaybookKind, step: str, plan: Mapping[str, Any]) -> str:
    """``sha256:`` of the canonical (run, playbook, step, plan): what the approval binds (PB3)."""
    return "sha256:" + canonical_sha256({"schema": STEP_SCHEMA, "run_id": run_id, "playbook": kind.value,
                                         "step": step, "plan": dict(plan)})


def listed(items: Sequence[Any]) -> list[Any]:
    """At most :data:`MAX_LISTED` items (counts are reported separately)."""
    return list(items[:MAX_LISTED])


# --- key compromise -------------------------------------------------------------------------------------


def signature_names_key(signature: Any, *, key_id: str, public_key_sha256: str) -> bool:
    """True when an embedded or detached signature object claims the key: its ``public_key_sha256``
    is the key's PEM digest, or its ``key_id`` is the key id or the 16-hex PEM-digest prefix the
    embedded format uses. A claim only: re-verification against the trust root decides."""
    if not isinstance(signature, Mapping):
        return False
    if signature.get("public_key_sha256") == public_key_sha256:
        return True
    claimed = signature.get("key_id")
    return isinstance(claimed, str) and claimed in (key_id, public_key_sha256[:16])


# --- release yank --------------------------------------------------------------------------------------


def same_version(a: str | None, b: str) -> bool:
    """SemVer equality (``v1.2.3`` == ``1.2.3``); a text that is not SemVer compares as text."""
    if a is None:
        return False
    left, right = version_or_none(a), version_or_none(b)
    if left is None or right is None:
        return a == b
    return left == right


def runs_release(endpoint: Mapping[str, Any], *, version: str, binaries: Iterable[str]) -> bool:
    """The endpoint runs the yanked release: its installed version is the yanked version, or its
    binary digest is one of the yanked package's binaries (case-insensitive)."""
    sha = endpoint.get("binary_sha256") or endpoint.get("observed_binary_sha256")
    if isinstance(sha, str) and sha.lower() in {b.lower() for b in binaries}:
        return True
    observed = endpoint.get("installed_version", endpoint.get("observed_version"))
    return isinstance(observed, str) and same_version(observed, version)


# --- unauthorized release ------------------------------------------------------------------------------


class FindingReason(StrEnum):
    NEVER_PROMOTED = "never-promoted"
    UNTRUSTED_BUILDER = "untrusted-builder"
    UNTRUSTED_SOURCE = "untrusted-source"
    UNVERIFIED_PACKAGE = "package-does-not-verify"


class Finding(BaseModel):
    """One unauthorized release found: which version (and package digest), why, and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: FindingReason
    version: str | None = None
    package_digest: str | None = None
    detail: str = Field(max_length=1000)
    endpoint_count: int = 0
    endpoints: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.reason.value}|{self.version or '-'}|{self.package_digest or '-'}"


def never_promoted(observed: Mapping[str, Sequence[str]], promoted: Iterable[str], *,
                   channel: str) -> list[Finding]:
    """Versions endpoints of ``channel`` run that were never promoted on it (its promotion history).

    ``observed``: installed version -> endpoint ids reporting it. Endpoints reporting no version are
    not judged here (reconciliation reports them)."""
    seen = list(promoted)
    findings = []
    for version, endpoints in sorted(observed.items()):
        if any(same_version(version, p) for p in seen):
            continue
        findings.append(Finding(reason=FindingReason.NEVER_PROMOTED, version=version, endpoint_count=len(endpoints),
                                endpoints=tuple(sorted(endpoints)[:50]),
                                detail=f"{len(endpoints)} endpoint(s) on channel {channel} run {version}, which was "
                                       "never approved and promoted on the channel"))
    return findings


def provenance_findings(*, version: str, package_digest: str, builder: str | None, repository: str | None,
                        trusted_builders: Sequence[str], trusted_sources: Sequence[str]) -> list[Finding]:
    """A package's provenance against the trust root's builders and the trusted source repositories
    (no trusted sources given: the source is not judged)."""
    findings = []
    if builder is None or builder not in trusted_builders:
        findings.append(Finding(reason=FindingReason.UNTRUSTED_BUILDER, version=version,
                                package_digest=package_digest,
                                detail=f"provenance builder.id {builder!r} is not a trusted builder of the trust "
                                       f"root ({', '.join(trusted_builders)})"[:1000]))
    if trusted_sources and (repository is None or repository not in trusted_sources):
        findings.append(Finding(reason=FindingReason.UNTRUSTED_SOURCE, version=version,
                                package_digest=package_digest,
                                detail=f"provenance source repository {repository!r} is not a trusted source "
                                       f"({', '.join(trusted_sources)})"[:1000]))
    return findings


def incident_summary(kind: PlaybookKind, run_id: str, subject: str) -> str:
    """One line for the incident the playbook opens."""
    return f"playbook {kind.value} {run_id}: {subject}"[:1000].replace("\n", " ")
