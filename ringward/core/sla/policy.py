"""The SLA notification policy (``routing.yaml``): routes, owners and their calendars and SLOs,
escalation policies, maintenance windows, retry and recurrence limits.

The file keeps the reference §9.6 shape (``rules`` | ``notification_routing`` with ``rule_id``,
``alert_levels``, ``channels``, ``min_breached``, ``min_at_risk``, ``providers``, ``owner``,
``acknowledgement_required`` | ``ack_required``, ``suppression_window_minutes``;
``default_providers``, ``owner``, ``suppression_window_minutes``) and adds the Alertmanager timers
and the PagerDuty escalation vocabulary::

    scope: endpoint-remediation          # the report scope; one notification group per (scope, route)
    owner: release-governance            # owner of the fallback route
    default_providers: [slack-ops]       # connector destination names of the fallback route
    group_wait: 30s                      # Alertmanager defaults: 30s / 5m / 4h
    group_interval: 5m
    repeat_interval: 4h                  # ``suppression_window_minutes`` is read as this
    rules:
      - rule_id: breached-stable
        alert_levels: [critical]         # item severities the route takes (empty: any)
        channels: [stable]               # release channels (empty: any)
        match_providers: [jira]          # handoff providers (empty: any)
        min_breached: 1                  # report-level conditions (§9.6)
        providers: [jira-main]           # receivers: connector destination names
        owner: endpoint-ops
        continue: false                  # first matching route wins unless continue (Alertmanager)
        escalation_policy: standard
        notify_healthy: false            # a healthy report is sent only when a route asks
    owners:
      endpoint-ops:
        members: [alice, bob]            # may acknowledge besides the owner and admins
        receivers: [slack-ops]           # where a rung targeting this owner is delivered
        timezone: Europe/Berlin
        business_hours: [{days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}]
        out_of_office: [{name: xmas, start_at: "2026-12-24T00:00:00+01:00", end_at: "2026-12-27T00:00:00+01:00"}]
        slo: {acknowledgement_minutes: 60, resolution_minutes: 240}
    default_slo: {acknowledgement_minutes: 60, resolution_minutes: 240}
    escalation_policies:
      standard:
        rungs:                           # PagerDuty escalation rules, in order
          - {level: owner, after: 0m, targets: [{owner: endpoint-ops}]}
          - {level: governance, after: 60m, targets: [{owner: release-governance}, {receiver: jira-main}]}
        repeat: 2                        # num_loops: the whole ladder runs 1 + repeat times
        repeat_after: 60m                # from the last rung to the next loop's first rung
        ack_timeout: 4h                  # an acknowledged incident not resolved by then re-triggers
    maintenance_windows:                 # recurring (RRULE + IANA zone) or absolute
      - name: patch-tuesday
        rrule: FREQ=MONTHLY;BYDAY=2TU
        start: 2026-01-13T18:00
        duration: 4h
        timezone: America/New_York
        matchers: [{name: channel, value: stable}]
    retry: {max_attempts: 3, delay: 15m, multiplier: 2.0}
    recurrence: {max_recurrences: null}  # cap on repeats of an unchanged group (null: none)
    incidents:                           # open incidents' response clocks as work items (absent: not fed)
      scope: incidents                   # their notification scope (groups incidents/<route>)
      at_risk_fraction: 0.75             # a clock is at risk from this fraction of its target
      owner: security-oncall             # owner of the fallback incident route (default: owner above)
      default_providers: [pager-sec]     # its receivers (default: default_providers above)
      escalation_policy: standard        # its ladder (default: default_escalation_policy)
      rules:                             # routes for incident work items only (same keys as rules)
        - rule_id: kev
          incident_types: [kev-match]    # supply-chain, leaked-credential, unauthorized-release,
          incident_severities: [critical, high]   # vulnerability-report, kev-match; critical..low
          match_providers: [first-action]          # the clocks: first-action, reporter-acknowledgement,
          providers: [pager-sec]                   # response, disclosure
          owner: security-oncall
    health:                              # alerts on the SLA deployments' own health (absent: report only)
      scope: sla-health
      owner: release-governance
      receivers: [slack-ops]
      repeat_interval: 4h
      expected_interval: 5m              # the schedule of the deployments below
      deployments: [sla-escalation/sla-escalation]   # <flow name>/<deployment name>

Durations are ``30s``, ``5m``, ``4h``, ``1d`` or ISO 8601; a bare number is minutes (the
reference's ``*_minutes`` fields).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ringward.core.common.windows import (
    RecurringWindow,
    Timeline,
    Window,
    WindowSpec,
    check_zone,
    recurring_window,
)
from ringward.core.errors import ConfigError
from ringward.core.sla.report import Severity

POLICY_SCHEMA = "ringward.sla-policy.v1"
MAX_POLICY_BYTES = 1024 * 1024
MAX_ENTRIES = 10_000

#: label names a matcher may test (silences, maintenance windows)
Label = Literal[
    "owner",
    "provider",
    "report",
    "channel",
    "route",
    "receiver",
    "severity",
    "release",
    "incident_type",
    "incident_severity",
]
LABELS: tuple[str, ...] = get_args(Label)
INCIDENT_TYPES = ("supply-chain", "leaked-credential", "unauthorized-release", "vulnerability-report", "kev-match")
INCIDENT_SEVERITIES = ("critical", "high", "medium", "low")
INCIDENT_CLOCKS = ("first-action", "reporter-acknowledgement", "response", "disclosure")

_DURATION = re.compile(r"^(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?$")
_ISO = re.compile(r"^P(?:(\d{1,6})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,6})M)?(?:(\d{1,6})S)?)?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DAYS = {"mon": "MO", "tue": "TU", "wed": "WE", "thu": "TH", "fri": "FR", "sat": "SA", "sun": "SU"}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"


def parse_duration(value: object, *, allow_zero: bool = True) -> timedelta:
    """``30s``, ``5m``, ``4h``, ``1d2h``, ``PT5M`` or a number of minutes.

    Raises:
        ValueError: anything else, negative, or above 366 days.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration such as 5m, 4h or a number of minutes, found {value!r}")
    elif isinstance(value, (int, float)):
        result = timedelta(minutes=value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) <= 6:
            return parse_duration(int(text), allow_zero=allow_zero)
        match = _DURATION.match(text.lower()) or _ISO.match(text.upper())
        if text in ("", "P", "PT") or match is None or not any(match.groups()):
            raise ValueError(f"expected a duration such as 30s, 5m, 4h or PT5M, found {value!r}")
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        result = timedelta(days=d, hours=h, minutes=m, seconds=s)
    else:
        raise ValueError(f"expected a duration such as 5m, 4h or a number of minutes, found {type(value).__name__}")
    if result < timedelta(0) or (result == timedelta(0) and not allow_zero) or result > timedelta(days=366):
        raise ValueError(f"expected a duration {'from 0' if allow_zero else 'above 0'} up to 366 days, found {value!r}")
    return result


def _dur(value: Any) -> Any:
    return None if value is None else parse_duration(value)


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """A mapping with the reference's field names (``old: new`` in ``names``) read as the model's own;
    the model's own name wins when both are given. Anything else is left to the model to refuse."""
    if isinstance(value, dict):
        value = dict(value)
        for old, new in names.items():
            if old in value:
                value.setdefault(new, value.pop(old))
    return value


def _among(value: tuple[str, ...], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    for item in value:
        if item not in allowed:
            raise ValueError(f"expected {what} among {', '.join(allowed)}, found {item!r}")
    return value


class MatchOp(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class Matcher(BaseModel):
    """An Alertmanager matcher over a label of :data:`LABELS` (regex: fully anchored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Label
    value: str = Field(max_length=256)
    is_regex: bool = False
    is_equal: bool = True

    @model_validator(mode="after")
    def _regex(self) -> Matcher:
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"value: not a regular expression ({exc})") from None
        return self

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(self.value)

    def matches(self, labels: dict[str, str]) -> bool:
        # a missing label is the empty string, as in Alertmanager
        actual = labels.get(self.name, "")
        hit = bool(self._pattern.fullmatch(actual)) if self.is_regex else actual == self.value
        return hit == self.is_equal

    def describe(self) -> str:
        op = ("=~" if self.is_regex else "=") if self.is_equal else ("!~" if self.is_regex else "!=")
        return f"{self.name}{op}{self.value!r}"


def matches_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class MaintenanceWindowSpec(WindowSpec):
    """A maintenance window (recurring or absolute) muting the alerts its matchers select."""

    matchers: tuple[Matcher, ...] = ()
    reason: str = Field(default="maintenance window", max_length=500)


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: tuple[str, ...] = Field(default=("mon", "tue", "wed", "thu", "fri"), min_length=1)
    start: str = "09:00"
    end: str = "17:00"

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            out = []
            for day in value:
                key = str(day).strip().lower()[:3]
                if key not in _DAYS:
                    raise ValueError(f"expected weekdays mon..sun, found {day!r}")
                out.append(key)
            return tuple(out)
        return value

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        # the reference parses an invalid HH:MM as 00:00; here it is refused
        if not _HHMM.match(value) and value != "24:00":
            raise ValueError(f"expected HH:MM (24-hour), found {value!r}")
        return value

    def window(self, name: str, timezone: str) -> RecurringWindow:
        """Weekly recurrence in the owner's zone: 09:00 local on both sides of a DST change."""
        sh, sm = (int(x) for x in self.start.split(":"))
        eh, em = (int(x) for x in self.end.split(":"))
        begin, finish = sh * 60 + sm, eh * 60 + em
        length = finish - begin if finish > begin else 24 * 60 - begin + finish
        byday = ",".join(_DAYS[d] for d in self.days)
        return recurring_window(
            name,
            rrule=f"FREQ=WEEKLY;BYDAY={byday}",
            # a Monday; the rule's first occurrence, so expansion starts near any recent instant
            start=datetime(2024, 1, 1, sh, sm),
            duration=f"{length}m",
            timezone=timezone,
        )


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    acknowledgement_minutes: int = Field(default=60, ge=1, le=527_040, alias="acknowledgement_minutes")
    resolution_minutes: int = Field(default=240, ge=1, le=527_040)

    _alias = model_validator(mode="before")(lambda cls, v: _renamed(v, {"ack_minutes": "acknowledgement_minutes"}))

    @property
    def ack(self) -> timedelta:
        return timedelta(minutes=self.acknowledgement_minutes)

    @property
    def resolution(self) -> timedelta:
        return timedelta(minutes=self.resolution_minutes)


class OutOfOffice(WindowSpec):
    reason: str = Field(default="out of office", max_length=500)


class OwnerSpec(BaseModel):
    """An owner (a person or team): who may act for it, where it is reached, when, and its SLO."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: tuple[str, ...] = ()
    receivers: tuple[str, ...] = ()
    timezone: str = "UTC"
    business_hours: tuple[BusinessHours, ...] = ()
    out_of_office: tuple[OutOfOffice, ...] = ()
    slo: Slo | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    def calendar(self, name: str) -> OwnerCalendar:
        return OwnerCalendar(
            owner=name,
            timezone=self.timezone,
            business=tuple(b.window(f"{name}-hours-{i}", self.timezone) for i, b in enumerate(self.business_hours)),
            away=tuple(o.window for o in self.out_of_office),
        )


class OwnerCalendar:
    """When an owner can be reached: inside business hours (if any are given) and outside every
    out-of-office window, all in the owner's IANA zone (DST-correct through :mod:`windows`)."""

    def __init__(self, owner: str, timezone: str, business: tuple[Window, ...], away: tuple[Window, ...]) -> None:
        self.owner = owner
        self.timezone = timezone
        self.business = business
        self.away = away

    @property
    def always(self) -> bool:
        return not self.business and not self.away

    def unavailable_reason(self, timeline: Timeline, at: datetime) -> str | None:
        n = len(self.business)
        active = timeline.active(at)
        if self.business and not any(i < n for i, _ in active):
            return f"owner {self.owner} is outside business hours ({self.timezone})"
        for i, hit in active:
            if i >= n:
                return f"owner {self.owner} is out of office ({hit.name})"
        return None

    def availability(self, at: datetime, horizon: timedelta = timedelta(days=30)) -> tuple[str | None, datetime | None]:
        """(why unavailable at ``at`` or None, the next instant the owner is available or None)."""
        if self.always:
            return None, at
        timeline = Timeline((*self.business, *self.away), at, at + horizon)
        reason = self.unavailable_reason(timeline, at)
        if reason is None:
            return None, at
        return reason, timeline.first(lambda t: self.unavailable_reason(timeline, t) is None)


class Target(BaseModel):
    """A rung target: an owner (delivered to the owner's receivers, calendar-gated) or a receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str | None = Field(default=None, pattern=_NAME)
    receiver: str | None = Field(default=None, pattern=_NAME)

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.owner is None) == (self.receiver is None):
            raise ValueError("a target names exactly one of owner or receiver")
        return self


class Rung(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: str = Field(min_length=1, max_length=128)
    #: offset of this rung from the start of a loop (the incident's trigger for the first loop)
    after: timedelta = timedelta(0)
    targets: tuple[Target, ...] = Field(min_length=1)
    action: str = Field(default="Escalate unacknowledged endpoint remediation SLA notification.", max_length=500)

    _compat = model_validator(mode="before")(lambda cls, v: _renamed(v, {"after_minutes": "after", "name": "level"}))

    _after = field_validator("after", mode="before")(lambda cls, v: parse_duration(v))


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rungs: tuple[Rung, ...] = Field(min_length=1, max_length=50)
    repeat: int = Field(default=0, ge=0, le=20)
    repeat_after: timedelta = timedelta(minutes=30)
    ack_timeout: timedelta | None = None

    _durs = field_validator("repeat_after", "ack_timeout", mode="before")(lambda cls, v: _dur(v))

    @model_validator(mode="after")
    def _ordered(self) -> EscalationPolicy:
        afters = [r.after for r in self.rungs]
        if afters != sorted(afters) or len(set(afters)) != len(afters):
            raise ValueError("rungs: after must strictly increase from one rung to the next")
        if self.repeat_after <= timedelta(0):
            raise ValueError("repeat_after: expected a duration above 0")
        return self

    @property
    def loop_length(self) -> timedelta:
        return self.rungs[-1].after + self.repeat_after


class RetryPolicy(BaseModel):
    """§9.13, executed: a failed send is retried after delay × multiplier^(n-1), at most max_attempts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    delay: timedelta = timedelta(minutes=15)
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    _d = field_validator("delay", mode="before")(lambda cls, v: parse_duration(v))

    def delay_after(self, failures: int) -> timedelta:
        return self.delay * (self.multiplier ** max(0, failures - 1))


class RecurrencePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_recurrences: int | None = Field(default=None, ge=0, le=10_000)


class Route(BaseModel):
    """A §9.6 rule read as an Alertmanager route."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: str = Field(pattern=_NAME)
    alert_levels: tuple[Severity, ...] = ()
    channels: tuple[str, ...] = ()
    match_providers: tuple[str, ...] = ()
    min_breached: int = Field(default=0, ge=0)
    min_at_risk: int = Field(default=0, ge=0)
    providers: tuple[str, ...] = ()
    owner: str | None = Field(default=None, pattern=_NAME)
    acknowledgement_required: bool = True
    group_wait: timedelta | None = None
    group_interval: timedelta | None = None
    repeat_interval: timedelta | None = None
    continue_: bool = Field(default=False, alias="continue")
    notify_healthy: bool = False
    escalation_policy: str | None = None
    #: incident work items only: the incident types and severities the route takes (empty: any)
    incident_types: tuple[str, ...] = ()
    incident_severities: tuple[str, ...] = ()

    _types = field_validator("incident_types")(lambda cls, v: _among(v, INCIDENT_TYPES, "incident types"))
    _severities = field_validator("incident_severities")(
        lambda cls, v: _among(v, INCIDENT_SEVERITIES, "incident severities")
    )
    _compat = model_validator(mode="before")(
        lambda cls, v: _renamed(
            v,
            {
                "name": "rule_id",
                "ack_required": "acknowledgement_required",
                "suppression_window_minutes": "repeat_interval",
            },
        )
    )

    _durs = field_validator("group_wait", "group_interval", "repeat_interval", mode="before")(lambda cls, v: _dur(v))


class ResolvedRoute(BaseModel):
    """A route with every timer and owner filled in from the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route_id: str
    owner: str
    receivers: tuple[str, ...]
    acknowledgement_required: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    escalation_policy: str | None
    notify_healthy: bool


class IncidentFeed(BaseModel):
    """Open incidents' response clocks fed to the engine (:mod:`ringward.core.sla.incidents`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str = Field(default="incidents", pattern=_NAME)
    at_risk_fraction: float = Field(default=0.75, gt=0, le=1)
    owner: str | None = Field(default=None, pattern=_NAME)
    default_providers: tuple[str, ...] = ()
    escalation_policy: str | None = None
    rules: tuple[Route, ...] = Field(default=(), max_length=MAX_ENTRIES)


class HealthFeed(BaseModel):
    """The SLA deployments' health (Prefect flow-run states) as alerts of their own scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str = Field(default="sla-health", pattern=_NAME)
    owner: str | None = Field(default=None, pattern=_NAME)
    receivers: tuple[str, ...] = ()
    repeat_interval: timedelta = timedelta(hours=4)
    escalation_policy: str | None = None
    expected_interval: timedelta = timedelta(minutes=5)
    #: how old the newest SLA evaluation record may be before it is stale (default 2 x 60m, at least)
    stale_after: timedelta = timedelta(hours=2)
    deployments: tuple[str, ...] = Field(default=("sla-escalation/sla-escalation",), min_length=1, max_length=50)

    _durs = field_validator("repeat_interval", "expected_interval", "stale_after", mode="before")(
        lambda cls, v: parse_duration(v, allow_zero=False)
    )

    @field_validator("deployments")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            flow, _, name = item.partition("/")
            if not flow or not name or "/" in name or len(item) > 200:
                raise ValueError(f"expected <flow name>/<deployment name>, found {item!r}")
        return value


class SlaPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal["ringward.sla-policy.v1"] = "ringward.sla-policy.v1"
    scope: str = Field(default="endpoint-remediation", pattern=_NAME)
    owner: str = Field(default="release-governance", pattern=_NAME)
    default_providers: tuple[str, ...] = ()
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    rules: tuple[Route, ...] = Field(default=(), max_length=MAX_ENTRIES)
    owners: dict[str, OwnerSpec] = Field(default_factory=dict)
    admins: tuple[str, ...] = ()
    default_slo: Slo = Slo()
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=dict)
    default_escalation_policy: str | None = None
    maintenance_windows: tuple[MaintenanceWindowSpec, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    recurrence: RecurrencePolicy = RecurrencePolicy()
    incidents: IncidentFeed | None = None
    health: HealthFeed | None = None

    _compat = model_validator(mode="before")(
        lambda cls, v: _renamed(v, {"notification_routing": "rules", "suppression_window_minutes": "repeat_interval"})
    )

    _durs = field_validator("group_wait", "group_interval", "repeat_interval", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @model_validator(mode="after")
    def _refs(self, info: ValidationInfo) -> SlaPolicy:
        ids = [r.rule_id for r in self.rules]
        if len(set(ids)) != len(ids) or "default" in ids:
            raise ValueError("rules: rule_id must be unique and not 'default' (the fallback route)")
        derived = isinstance(info.context, dict) and info.context.get("derived") is True
        for rule in () if derived else self.rules:
            if rule.incident_types or rule.incident_severities:
                raise ValueError(
                    f"rules: {rule.rule_id}: incident_types/incident_severities belong to incidents.rules"
                )
        names = {*(r.escalation_policy for r in self.rules if r.escalation_policy), self.default_escalation_policy}
        if self.incidents is not None:
            feed_ids = [r.rule_id for r in self.incidents.rules]
            if len(set(feed_ids)) != len(feed_ids) or "default" in feed_ids:
                raise ValueError("incidents.rules: rule_id must be unique and not 'default' (the fallback route)")
            names |= {r.escalation_policy for r in self.incidents.rules if r.escalation_policy}
            names.add(self.incidents.escalation_policy)
        if self.health is not None:
            names.add(self.health.escalation_policy)
        scopes = [self.scope, *(f.scope for f in (self.incidents, self.health) if f is not None)]
        if len(set(scopes)) != len(scopes):
            raise ValueError(f"scope, incidents.scope and health.scope must differ, found {', '.join(scopes)}")
        for name in sorted(n for n in names if n):
            if name not in self.escalation_policies:
                raise ValueError(f"escalation_policy {name!r} is not defined in escalation_policies")
        for pname, pol in self.escalation_policies.items():
            for rung in pol.rungs:
                for target in rung.targets:
                    if target.owner is not None and target.owner not in self.owners and target.owner != self.owner:
                        raise ValueError(f"escalation_policies.{pname}: target owner {target.owner!r} is not in owners")
        if self.group_interval <= timedelta(0) or self.repeat_interval <= timedelta(0):
            raise ValueError("group_interval and repeat_interval must be above 0")
        return self

    def resolve(self, route: Route | None) -> ResolvedRoute:
        if route is None:
            return ResolvedRoute(
                route_id="default",
                owner=self.owner,
                receivers=self.default_providers,
                acknowledgement_required=True,
                group_wait=self.group_wait,
                group_interval=self.group_interval,
                repeat_interval=self.repeat_interval,
                escalation_policy=self.default_escalation_policy,
                notify_healthy=False,
            )
        interval = route.group_interval or self.group_interval
        return ResolvedRoute(
            route_id=route.rule_id,
            owner=route.owner or self.owner,
            receivers=route.providers or self.default_providers,
            acknowledgement_required=route.acknowledgement_required,
            group_wait=route.group_wait if route.group_wait is not None else self.group_wait,
            group_interval=interval if interval > timedelta(0) else self.group_interval,
            repeat_interval=route.repeat_interval or self.repeat_interval,
            escalation_policy=route.escalation_policy or self.default_escalation_policy,
            notify_healthy=route.notify_healthy,
        )

    @cached_property
    def routes(self) -> dict[str, ResolvedRoute]:
        out = {r.rule_id: self.resolve(r) for r in self.rules}
        out["default"] = self.resolve(None)
        return out

    def owner_spec(self, name: str) -> OwnerSpec:
        return self.owners.get(name) or OwnerSpec()

    def slo_for(self, owner: str) -> Slo:
        spec = self.owners.get(owner)
        return spec.slo if spec is not None and spec.slo is not None else self.default_slo

    @cached_property
    def calendars(self) -> dict[str, OwnerCalendar]:
        return {name: spec.calendar(name) for name, spec in self.owners.items()}

    def receivers_of(self, owner: str) -> tuple[str, ...]:
        spec = self.owners.get(owner)
        if spec is not None and spec.receivers:
            return spec.receivers
        return self.default_providers

    def may_act(self, owner: str, actor: str) -> bool:
        """The route's owner, a member of the owner's group, or an admin."""
        spec = self.owners.get(owner)
        return actor == owner or actor in self.admins or (spec is not None and actor in spec.members)

    # --- the other work-item sources: each is a policy of its own scope --------------------------------

    def _derived(self, **changes: Any) -> SlaPolicy:
        data: dict[str, Any] = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(incidents=None, health=None, **changes)
        # validated again (never model_copy: it would carry this policy's cached routes along)
        return type(self).model_validate(data, context={"derived": True})

    @cached_property
    def incident_policy(self) -> SlaPolicy | None:
        """The policy incident work items are planned with (scope ``incidents.scope``,
        ``incidents.rules``), or None when incidents are not fed."""
        feed = self.incidents
        if feed is None:
            return None
        return self._derived(
            scope=feed.scope,
            owner=feed.owner or self.owner,
            default_providers=feed.default_providers or self.default_providers,
            default_escalation_policy=feed.escalation_policy or self.default_escalation_policy,
            rules=feed.rules,
        )

    @cached_property
    def health_policy(self) -> SlaPolicy | None:
        """The policy health alerts are planned with (scope ``health.scope``, one fallback route)."""
        feed = self.health
        if feed is None:
            return None
        return self._derived(
            scope=feed.scope,
            owner=feed.owner or self.owner,
            default_providers=feed.receivers or self.default_providers,
            default_escalation_policy=feed.escalation_policy,
            repeat_interval=feed.repeat_interval,
            # a health condition is known when it is evaluated: nothing to batch, send at once
            group_wait=timedelta(0),
            rules=(),
        )

    def for_scope(self, scope: str) -> SlaPolicy | None:
        """The policy of ``scope`` (this one, the incidents' or the health alerts'), None if unknown."""
        for candidate in (self, self.incident_policy, self.health_policy):
            if candidate is not None and candidate.scope == scope:
                return candidate
        return None

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(p.scope for p in (self, self.incident_policy, self.health_policy) if p is not None)


def parse_policy(data: bytes, *, source: str) -> SlaPolicy:
    """Parse ``routing.yaml`` (YAML or JSON).

    Raises:
        ConfigError: ``<source>: <field path>: <problem>`` for the first problem.
    """
    if len(data) > MAX_POLICY_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        document = yaml.safe_load(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(document).__name__}")
    try:
        return SlaPolicy.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}: {message}") from None
