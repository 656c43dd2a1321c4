"""Promotion windows and freezes (``windows.yaml``, ``ringward.promotion-windows.v1``) and the
decision they give for a set of targets at one instant.

File shape::

    schema_version: ringward.promotion-windows.v1
    default: allow            # a target no allow window applies to: allow (default) or deny
    allow:                    # allow windows: a target they apply to is open only inside one
      - name: production-weekday-changes
        targets: [ring:production]
        rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH
        start: 2026-01-05T09:00        # DTSTART, local wall-clock time in `timezone`
        duration: 7h
        timezone: America/New_York
    freezes:                  # freezes: a target they apply to is closed inside one
      - name: year-end-2026
        targets: ["*"]
        reason: Year-end change freeze
        start_at: 2026-12-18T17:00:00-05:00
        end_at: 2027-01-04T09:00:00-05:00

Windows are recurring (``rrule`` + ``start`` + ``duration`` + ``timezone``) or absolute
(``start_at`` + ``end_at`` with UTC offsets); the maths is :mod:`ringward.core.common.windows`.

Targets are ``ring:<name>``, ``channel:<name>`` or ``environment:<name>``; an entry's ``targets``
may also use ``<kind>:*`` (every target of that kind) or ``*`` (every target). Matching ignores
case, so ``ring:Production`` is frozen by a freeze on ``ring:production``.

Rules (numbered so code and tests can cite them):

- PW1 deny wins: a freeze applying to any of the targets and active at the instant closes the
  whole action, whatever allow windows say.
- PW2 every target some allow window applies to must be inside one of those windows.
- PW3 a target no allow window applies to follows the policy ``default`` (``allow`` unless the
  file says ``deny``); freezes still apply to it.
- PW4 a refusal names the target, the freeze or the closed windows, and the next opening: the
  earliest instant within the horizon (default 400 days) at which *all* targets are open at
  once, in UTC and in the zone of the window that opens then.

Break glass: an action refused by windows may still run with a separate approval of action
:data:`BREAK_GLASS_ACTION`, bound by :func:`break_glass_binding`; the execution then records
``break_glass: true`` (:func:`break_glass_evidence`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ringward.core.common.windows import (
    DEFAULT_HORIZON,
    Timeline,
    WindowHit,
    WindowSpec,
    check_horizon,
    format_instant,
    iso_utc,
    require_aware,
    zone_of,
)
from ringward.core.errors import ConfigError, InputError, PromotionWindowError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject

SCHEMA_VERSION = "ringward.promotion-windows.v1"
DECISION_SCHEMA = "ringward.promotion-window-decision.v1"
BREAK_GLASS_SCHEMA = "ringward.break-glass-binding.v1"
#: the approval action that lets one execution run outside its windows
BREAK_GLASS_ACTION = "break_glass"
#: evidence kind of a recorded window decision
KIND_WINDOW_DECISION = "promotion-window-decision"

#: largest policy file and number of entries per list
MAX_POLICY_BYTES = 1024 * 1024
MAX_ENTRIES = 500

TARGET_KINDS = ("ring", "channel", "environment")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
TARGET_RE = re.compile(rf"^(?:ring|channel|environment):{_NAME}$")
SCOPE_RE = re.compile(rf"^(?:\*|(?:ring|channel|environment):(?:\*|{_NAME}))$")
_LINE = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/+=>-]{0,199}$")
_ACTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class WindowsPolicyError(ConfigError):
    """``windows.yaml`` is invalid; ``problems`` lists every ``path: message``."""

    code = "bad-windows-policy"

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class WindowClosedError(PromotionWindowError):
    """The action is outside its windows or inside a freeze; ``decision`` says why and when
    the next opening is."""

    def __init__(self, message: str, decision: WindowDecision) -> None:
        super().__init__(message)
        self.decision = decision


# --- the file ---------------------------------------------------------------------------------------


def _scope_key(scope: str) -> str:
    return scope.casefold()


class PolicyWindow(WindowSpec):
    """A window of the policy file, scoped to targets."""

    targets: tuple[str, ...] = Field(min_length=1, max_length=64)
    reason: str | None = Field(default=None, min_length=1, max_length=512, pattern=_LINE)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for scope in value:
            if not SCOPE_RE.match(scope):
                raise ValueError(
                    f"expected ring:<name>, channel:<name>, environment:<name>, <kind>:* or *, found {scope!r}"
                )
        keys = [_scope_key(s) for s in value]
        if len(set(keys)) != len(keys):
            raise ValueError("a target is listed twice")
        return value

    def applies_to(self, target: str) -> bool:
        """Whether this entry scopes ``target`` (a concrete ``kind:name``)."""
        key = _scope_key(target)
        kind = key.split(":", 1)[0]
        return any(s in ("*", f"{kind}:*", key) for s in (_scope_key(scope) for scope in self.targets))


class AllowWindow(PolicyWindow):
    """A window in which its targets may be promoted, exported and executed."""


class Freeze(PolicyWindow):
    """A window in which its targets are closed (deny wins); ``reason`` is shown in refusals."""

    reason: str = Field(min_length=1, max_length=512, pattern=_LINE)


class WindowsPolicy(BaseModel):
    """``windows.yaml`` (``ringward.promotion-windows.v1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.promotion-windows.v1"]
    description: str | None = Field(default=None, max_length=1024)
    default: Literal["allow", "deny"] = "allow"
    allow: tuple[AllowWindow, ...] = Field(default=(), max_length=MAX_ENTRIES)
    freezes: tuple[Freeze, ...] = Field(default=(), max_length=MAX_ENTRIES)

    @model_validator(mode="after")
    def _unique_names(self) -> WindowsPolicy:
        seen: dict[str, str] = {}
        problems: list[str] = []
        entries: list[tuple[str, PolicyWindow]] = [(f"allow[{n}]", w) for n, w in enumerate(self.allow)]
        entries += [(f"freezes[{n}]", w) for n, w in enumerate(self.freezes)]
        for path, entry in entries:
            key = entry.name.casefold()
            if key in seen:
                problems.append(f"{path}.name: duplicate window name {entry.name!r} (also {seen[key]})")
            seen.setdefault(key, path)
        if problems:
            raise ValueError("; ".join(problems))
        return self


#: an empty policy: no windows, everything open
NO_POLICY = WindowsPolicy(schema_version=SCHEMA_VERSION)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (two readers must see one policy)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _problems(exc: ValidationError) -> list[str]:
    """Each pydantic error as ``path: message`` (list indexes as ``[n]``)."""
    out: list[str] = []
    for error in exc.errors(include_url=False):
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "timezone_aware":
            message = "expected a date and time with a UTC offset (2026-12-18T17:00:00-05:00)"
        if not path and message.startswith(("allow[", "freezes[")):
            out.extend(message.split("; "))  # the policy-level check names its own paths
            continue
        out.append(f"{path or '<root>'}: {message}")
    return out


def parse_windows_policy(data: bytes, *, source: str) -> WindowsPolicy:
    """Parse and validate ``windows.yaml`` bytes (YAML, or JSON as YAML), every problem reported.

    Raises:
        WindowsPolicyError: ``<source>: N problems: allow[0].timezone: unknown IANA time zone
        'Mars/Base'; freezes[1].rrule: FREQ=SECONDLY is not supported ...`` with ``problems``.
    """
    if len(data) > MAX_POLICY_BYTES:
        raise WindowsPolicyError(f"{source}: {len(data)} bytes, expected at most {MAX_POLICY_BYTES}")
    try:
        document = yaml.load(data.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except UnicodeDecodeError:
        raise WindowsPolicyError(f"{source}: not UTF-8") from None
    except yaml.YAMLError as exc:
        raise WindowsPolicyError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(document, dict):
        found = "an empty file" if document is None else type(document).__name__
        raise WindowsPolicyError(f"{source}: expected a mapping with schema_version {SCHEMA_VERSION!r}, found {found}")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        problem = f"schema_version: expected {SCHEMA_VERSION!r}, found {version!r}"
        raise WindowsPolicyError(f"{source}: {problem}", (problem,))
    try:
        return WindowsPolicy.model_validate(document)
    except ValidationError as exc:
        problems = tuple(dict.fromkeys(_problems(exc)))
        noun = "problem" if len(problems) == 1 else "problems"
        raise WindowsPolicyError(f"{source}: {len(problems)} {noun}: " + "; ".join(problems), problems) from None


# --- the decision -----------------------------------------------------------------------------------


TargetStateName = Literal["open", "closed", "frozen", "default-allow", "default-deny"]


class TargetWindowState(BaseModel):
    """What the policy says about one target at one instant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    allowed: bool
    state: TargetStateName
    reason: str
    #: allow windows that apply to the target, and those of them open now
    allow_windows: tuple[str, ...]
    open_windows: tuple[str, ...]
    #: freezes active now
    freezes: tuple[str, ...]
    #: open: when the open window ends; frozen: when the last active freeze ends
    until: datetime | None = None
    until_zone: str | None = None


class WindowDecision(BaseModel):
    """The policy's answer for ``targets`` at ``at`` (PW1-PW4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["ringward.promotion-window-decision.v1"] = "ringward.promotion-window-decision.v1"
    at: datetime
    allowed: bool
    #: one line: why, and (when closed) the next opening
    reason: str
    #: the first refused target (None when allowed)
    target: str | None
    denied_targets: tuple[str, ...]
    #: allowed: the allow windows open now; refused: the closed allow windows of the refused targets
    windows: tuple[str, ...]
    #: freezes active now on any of the targets
    freezes: tuple[str, ...]
    #: refused: earliest instant within the horizon at which every target is open
    next_opening: datetime | None
    next_opening_zone: str | None
    #: allowed: the instant (within the horizon) at which some target closes
    open_until: datetime | None
    default: Literal["allow", "deny"]
    policy_configured: bool
    horizon_days: float
    targets: tuple[TargetWindowState, ...]

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.target for t in self.targets)

    def next_opening_text(self) -> str:
        """``next opening <UTC> (<local> <zone>)`` or ``no opening within N days``."""
        if self.next_opening is None:
            return f"no opening within {self.horizon_days:g} days"
        return f"next opening {format_instant(self.next_opening, self.next_opening_zone)}"

    def to_document(self) -> dict[str, Any]:
        """Plain JSON (instants as ``...Z``)."""
        doc = self.model_dump(mode="json")
        for key in ("at", "next_opening", "open_until"):
            value = getattr(self, key)
            doc[key] = None if value is None else iso_utc(value)
        doc["next_opening_local"] = (
            None
            if self.next_opening is None or self.next_opening_zone is None
            else self.next_opening.astimezone(zone_of(self.next_opening_zone)).isoformat()
        )
        for item, state in zip(doc["targets"], self.targets, strict=True):
            item["until"] = None if state.until is None else iso_utc(state.until)
        return doc


def check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """Concrete targets (``ring:<name>``, ``channel:<name>``, ``environment:<name>``), at least
    one, duplicates (ignoring case) dropped.

    Raises:
        InputError: a target of another shape, or none.
    """
    if isinstance(targets, str):
        targets = [targets]
    out: list[str] = []
    seen: set[str] = set()
    for target in targets:
        if not isinstance(target, str) or not TARGET_RE.match(target):
            raise InputError(
                f"--target: expected ring:<name>, channel:<name> or environment:<name> "
                f"(letters, digits, ._-), found {target!r}"
            )
        if target.casefold() not in seen:
            seen.add(target.casefold())
            out.append(target)
    if not out:
        raise InputError("--target: at least one target is required")
    return tuple(out)


def _names(hits: Sequence[WindowHit]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(hit.name for hit in hits))


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


class _Evaluator:
    """The policy over one timeline (``at`` .. ``at + horizon``) for fixed targets."""

    def __init__(self, policy: WindowsPolicy, targets: tuple[str, ...], at: datetime, horizon: timedelta) -> None:
        self.policy = policy
        self.targets = targets
        self.entries: list[PolicyWindow] = [
            *(w for w in policy.allow if any(w.applies_to(t) for t in targets)),
            *(f for f in policy.freezes if any(f.applies_to(t) for t in targets)),
        ]
        self.timeline = Timeline([e.window for e in self.entries], at, at + horizon)

    def states(self, at: datetime) -> list[TargetWindowState]:
        active = self.timeline.active(at)
        return [self._state(target, at, active) for target in self.targets]

    def open(self, at: datetime) -> bool:
        return all(s.allowed for s in self.states(at))

    def _state(self, target: str, at: datetime, active: list[tuple[int, WindowHit]]) -> TargetWindowState:
        allows = [e.name for e in self.entries if isinstance(e, AllowWindow) and e.applies_to(target)]
        open_hits = [
            h for i, h in active if isinstance(self.entries[i], AllowWindow) and self.entries[i].applies_to(target)
        ]
        freeze_hits = [(self.entries[i], h) for i, h in active if isinstance(self.entries[i], Freeze)]
        freeze_hits = [(e, h) for e, h in freeze_hits if e.applies_to(target)]
        common: dict[str, Any] = {
            "target": target,
            "allow_windows": tuple(allows),
            "open_windows": _names(open_hits),
            "freezes": tuple(dict.fromkeys(e.name for e, _ in freeze_hits)),
        }
        if freeze_hits:  # PW1
            last = max((h for _, h in freeze_hits), key=lambda h: h.end)
            what = "; ".join(f"{e.name!r} ({e.reason})" for e, _ in freeze_hits)
            return TargetWindowState(
                **common,
                allowed=False,
                state="frozen",
                reason=f"{target} is frozen by {what} until {format_instant(last.end, last.timezone)}",
                until=last.end,
                until_zone=last.timezone,
            )
        if open_hits:  # PW2
            best = max(open_hits, key=lambda h: h.end)
            return TargetWindowState(
                **common,
                allowed=True,
                state="open",
                reason=f"{target} is inside allow window {best.name!r} until {format_instant(best.end, best.timezone)}",
                until=best.end,
                until_zone=best.timezone,
            )
        if allows:
            return TargetWindowState(
                **common,
                allowed=False,
                state="closed",
                reason=f"{target} is outside every allow window ({_quoted(allows)})",
            )
        if self.policy.default == "deny":  # PW3
            return TargetWindowState(
                **common,
                allowed=False,
                state="default-deny",
                reason=f"{target} has no allow window and the policy default is deny",
            )
        return TargetWindowState(
            **common,
            allowed=True,
            state="default-allow",
            reason=f"{target} has no allow window and no active freeze (policy default allow)",
        )

    def opening_zone(self, moment: datetime) -> str:
        """The zone to show an opening at ``moment`` in: an allow window that starts then, else
        a freeze that ends then, else an allow window open then, else UTC."""
        active = self.timeline.active(moment)
        allow_hits = [hit for i, hit in active if isinstance(self.entries[i], AllowWindow)]
        for hit in allow_hits:
            if hit.start == moment:
                return hit.timezone
        for i, hit in self.timeline.active(moment - timedelta(microseconds=1)):
            if hit.end == moment and isinstance(self.entries[i], Freeze):
                return hit.timezone
        return allow_hits[0].timezone if allow_hits else "UTC"


def evaluate_window(
    policy: WindowsPolicy | None,
    targets: Sequence[str],
    at: datetime,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
) -> WindowDecision:
    """The decision for an action on ``targets`` at ``at`` (PW1-PW4); ``policy`` None means no
    windows are configured (everything open).

    Raises:
        InputError: naive ``at``, a bad target, a horizon out of range.
    """
    moment = require_aware(at)
    names = check_targets(targets)
    span = check_horizon(horizon)
    configured = policy is not None
    rules = policy if policy is not None else NO_POLICY
    evaluator = _Evaluator(rules, names, moment, span)
    states = evaluator.states(moment)
    denied = [s for s in states if not s.allowed]
    open_windows = tuple(dict.fromkeys(n for s in states for n in s.open_windows))
    freezes = tuple(dict.fromkeys(n for s in states for n in s.freezes))
    days = span / timedelta(days=1)
    common: dict[str, Any] = {
        "at": moment,
        "freezes": freezes,
        "default": rules.default,
        "policy_configured": configured,
        "horizon_days": days,
        "targets": tuple(states),
    }
    if not denied:
        closes = evaluator.timeline.first(lambda t: t > moment and not evaluator.open(t))
        reason = "; ".join(s.reason for s in states) if configured else "no promotion window policy configured"
        return WindowDecision(
            **common,
            allowed=True,
            reason=reason,
            target=None,
            denied_targets=(),
            windows=open_windows,
            next_opening=None,
            next_opening_zone=None,
            open_until=closes,
        )
    denied_names = [s.target for s in denied]
    opening = evaluator.timeline.first(evaluator.open)
    zone = None if opening is None else evaluator.opening_zone(opening)
    closed_windows = tuple(dict.fromkeys(n for s in denied if s.state == "closed" for n in s.allow_windows))
    partial = WindowDecision(
        **common,
        allowed=False,
        reason="",
        target=denied_names[0],
        denied_targets=tuple(denied_names),
        windows=closed_windows,
        next_opening=opening,
        next_opening_zone=zone,
        open_until=None,
    )
    reason = "; ".join(s.reason for s in denied) + "; " + partial.next_opening_text()
    return partial.model_copy(update={"reason": reason})


def require_open(
    policy: WindowsPolicy | None,
    targets: Sequence[str],
    at: datetime,
    *,
    action: str = "promotion",
    horizon: timedelta = DEFAULT_HORIZON,
) -> WindowDecision:
    """The decision when open; otherwise raise.

    Raises:
        WindowClosedError: (a :class:`PromotionWindowError`) ``<action> refused by promotion
        windows: ring:production is frozen by 'year-end' (...) until ...; next opening
        2027-01-04T14:00:00Z (2027-01-04T09:00:00-05:00 America/New_York)``.
        InputError: see :func:`evaluate_window`.
    """
    decision = evaluate_window(policy, targets, at, horizon=horizon)
    if not decision.allowed:
        raise WindowClosedError(f"{action} refused by promotion windows: {decision.reason}", decision)
    return decision


# --- break glass ---------------------------------------------------------------------------------------


class BreakGlassBinding(NamedTuple):
    """What a break-glass approval must be bound to (action :data:`BREAK_GLASS_ACTION`)."""

    subject_digest: str
    target: str

    @property
    def action(self) -> str:
        return BREAK_GLASS_ACTION


def break_glass_binding(
    targets: Sequence[str] | WindowDecision,
    *,
    subject: str,
    overridden_action: str = "rollout",
    at: datetime | None = None,
) -> BreakGlassBinding:
    """The binding of the break-glass approval that lets one refused execution run anyway.

    A break-glass approval is an ordinary approval (requested, then approved by someone other
    than the requester, expiring, consumed once) with

    - ``action`` = :data:`BREAK_GLASS_ACTION` (``break_glass``), so no promotion approval can
      stand in for it and it can stand in for nothing else;
    - ``target`` = ``<overridden_action>:<subject>`` (``rollout:rpr_0123abcd``): what is being
      let through, readable in ``ringward approval list``;
    - ``subject_digest`` = ``sha256:`` of the canonical JSON ``{"schema_version":
      "ringward.break-glass-binding.v1", "action": <overridden_action>, "subject": <subject>,
      "targets": <the window targets, case-folded and sorted>}``, so it only covers that
      execution on exactly those targets (``ring:production`` + ``environment:prod``), however
      the caller orders them and whichever of them is closed at execution time.

    ``subject`` is the execution's stable id (a promotion request id or a payload digest).
    ``targets`` may be the refused :class:`WindowDecision` (its targets are used; an open
    decision is refused, there is nothing to break). ``at`` is accepted for the caller's
    convenience and is not part of the binding: the approval's own expiry bounds when it can be
    used. ``ringward window break-glass`` prints the same binding for the requester.

    Raises:
        InputError: an open decision, a bad subject, action or target, or a target above 256
        characters.
    """
    if at is not None:
        require_aware(at)
    if isinstance(targets, WindowDecision):
        if targets.allowed:
            raise InputError("break glass: the window decision is open; there is nothing to override")
        names = targets.target_names
    else:
        names = check_targets(targets)
    if not isinstance(subject, str) or not _SUBJECT_RE.match(subject):
        raise InputError(
            f"break glass subject: expected an execution id (letters, digits, _.:/+=>-), found {subject!r}"
        )
    if not _ACTION_RE.match(overridden_action):
        raise InputError(f"break glass action: expected letters, digits and ._- , found {overridden_action!r}")
    target = f"{overridden_action}:{subject}"
    if len(target) > 256:
        raise InputError(f"break glass target: {len(target)} characters, expected at most 256")
    body = {
        "schema_version": BREAK_GLASS_SCHEMA,
        "action": overridden_action,
        "subject": subject,
        "targets": sorted({n.casefold() for n in names}),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return BreakGlassBinding(subject_digest="sha256:" + hashlib.sha256(canonical).hexdigest(), target=target)


def break_glass_evidence(decision: WindowDecision, approval_id: str) -> dict[str, Any]:
    """The fields an execution that ran on a break-glass approval records."""
    return {"break_glass": True, "break_glass_approval_id": approval_id, "window": decision.to_document()}


def window_decision_draft(
    decision: WindowDecision,
    *,
    actor: str,
    action: str,
    policy_source: str | None = None,
    flow_run_id: str | None = None,
) -> EvidenceDraft:
    """An evidence record of a window decision (a refusal, or a check someone asked to record)."""
    ring = next((t.split(":", 1)[1] for t in decision.target_names if t.startswith("ring:")), None)
    channel = next((t.split(":", 1)[1] for t in decision.target_names if t.startswith("channel:")), None)
    environment = next((t.split(":", 1)[1] for t in decision.target_names if t.startswith("environment:")), None)
    return EvidenceDraft(
        kind=KIND_WINDOW_DECISION,
        actor=actor,
        flow_run_id=flow_run_id,
        subject=EvidenceSubject(
            ring=ring,
            channel=channel,
            environment=environment,
            deployment_target=",".join(decision.target_names)[:256],
            status="open" if decision.allowed else "closed",
            success=decision.allowed,
        ),
        payload={"action": action, "policy": policy_source, **decision.to_document()},
    )
