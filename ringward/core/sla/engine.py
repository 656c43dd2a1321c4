"""The SLA notification engine: ``plan(history, policy, report, now)`` and ``apply(history, outcomes)``.

Everything here is a pure function of its arguments: no clock, no store, no network. The
scheduled flow (and the CLI with ``--at``) builds the report for ``now``, calls :func:`plan`,
delivers the plan's notifications through the connector platform, and appends the outcomes with
:func:`apply`. Time travel is calling it again with a later ``now``.

Vocabulary (Alertmanager for grouping and suppression, PagerDuty for escalation):

- **alert** -- a work item of the report that is at risk or breached. Its *fingerprint* is the
  hash of its labels (handoff, provider, severity, status, channel, release), never of free
  text, so a change of severity or status is a new alert.
- **route** -- a policy rule (first match wins, ``continue`` goes on), or the fallback route
  ``default``. A **group** is (report scope, route); its key is ``<scope>/<route_id>``.
- **receiver** -- a connector destination name. The notification log is kept per
  (group, receiver) and written only by a *successful* send (``sent-ok``).
- **incident** -- the open episode of a group whose route requires acknowledgement; it carries
  the acknowledgement state and runs the route's escalation policy (the ladder).

Group notifications (rules G1-G8)::

  G1 no successful send yet (or the last one was "resolved") and alerts fire -> first_notification,
     due group_wait after the earliest alert started firing.
  G2 firing alerts not all in the last sent set -> new_alerts_in_group, due group_interval after
     the last successful send.
  G3 nothing fires any more (cleared, or closed by resolve/dismiss) and the last send carried
     alerts -> all_alerts_resolved, sent once, due group_interval after the last send.
  G4 otherwise repeat_interval (never less than group_interval) after the last successful send ->
     repeat_interval_elapsed; not while the incident is acknowledged; at most
     recurrence.max_recurrences repeats of an unchanged group when a cap is set.
  G5 a failed send never counts as sent: it is retried after retry.delay x multiplier^(n-1); after
     retry.max_attempts consecutive failures the group waits until the oldest of them is
     repeat_interval old (counts age out, so the item never goes silent for good).
  G6 alerts muted by an active silence or maintenance window (matchers over owner, provider,
     report, channel, route, receiver, severity, release) are left out and recorded as
     suppressed; a group whose alerts are all muted sends nothing (no "resolved"). When the
     silence ends they are new to the log and go out on the next tick (G2).
  G7 a healthy report is sent only to routes with notify_healthy (once per repeat_interval).
  G8 a route without receivers sends nothing and says so.

Incidents and ladders (rules E1-E7)::

  E1 an incident triggers at the latest of: the earliest firing_since of its open alerts, the last
     resolve/dismiss of the group, the last successful "resolved" notification.
  E2 rung positions p = loop * len(rungs) + i run from the anchor (trigger, 0); position p is due at
     anchor + offset(p) - offset(anchor position), offset = loop * (last rung after + repeat_after)
     + rungs[i].after; 1 + repeat loops in all.
  E3 only the highest due position is sent (per receiver, once per ladder run); due positions that
     were skipped are recorded as superseded.
  E4 the rung's own targets decide who is notified: an owner target goes to the owner's receivers,
     a receiver target to itself.
  E5 an owner target outside business hours or out of office is deferred to the owner's next
     available instant, unless that is after the acknowledgement SLO due time: then the owner is
     escalated past (the next rung with someone available is sent now). With nobody available on
     any remaining rung, the last rung is notified regardless of calendars (never silent).
  E6 acknowledgement state machine (:mod:`ringward.core.sla.acks`): acknowledged stops the ladder
     and the repeats; ack_timeout re-triggers (a new ladder run from rung 0); escalated sends the
     next rung now; resolved and dismissed close the incident and mute its alerts until they change.
  E7 retries and mutes of escalation sends follow G5 and G6 per (ladder run, position, receiver).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ringward.core.common.windows import active_at
from ringward.core.errors import InputError
from ringward.core.sla.history import (
    Acknowledged,
    AckState,
    HistoryEvent,
    NotificationKind,
    Reason,
    SendFailed,
    SentOk,
    SilenceAdded,
    SilenceExpired,
)
from ringward.core.sla.policy import EscalationPolicy, Matcher, ResolvedRoute, SlaPolicy, matches_all
from ringward.core.sla.report import Severity, SlaReport, WorkItem

PLAN_SCHEMA = "ringward.sla-plan.v1"
HEALTHY_FINGERPRINT = "report:healthy"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()


# --- alerts -----------------------------------------------------------------------------------------


class Alert:
    """A firing work item as the engine sees it: identity, severity, since when, and its labels
    (built only when a silence or maintenance window has to match them)."""

    __slots__ = ("_labels", "fingerprint", "firing_since", "item", "item_key", "scope", "severity")

    def __init__(
        self,
        fingerprint: str,
        item_key: str,
        severity: Severity,
        firing_since: datetime,
        item: WorkItem | None,
        scope: str,
    ) -> None:
        self.fingerprint = fingerprint
        self.item_key = item_key
        self.severity = severity
        self.firing_since = firing_since
        self.item = item
        self.scope = scope
        self._labels: dict[str, str] | None = None

    @property
    def labels(self) -> dict[str, str]:
        if self._labels is None:
            item = self.item
            self._labels = (
                {"report": self.scope}
                if item is None
                else {
                    "handoff": item.handoff_id,
                    "provider": item.provider,
                    "severity": item.severity.value,
                    "status": item.status,
                    "channel": item.channel or "",
                    "release": item.release or "",
                    "report": self.scope,
                }
            )
            if item is not None and item.incident_type is not None:
                self._labels["incident_type"] = item.incident_type
                self._labels["incident_severity"] = item.incident_severity or ""
        return self._labels


def alert_of(item: WorkItem, scope: str) -> Alert:
    # the label set only (Alertmanager's hashAlert), never free text
    identity = (
        f"handoff={item.handoff_id}\x1fprovider={item.provider}\x1fseverity={item.severity.value}"
        f"\x1fstatus={item.status}\x1fchannel={item.channel or ''}\x1frelease={item.release or ''}"
    )
    if item.incident_type is not None:
        identity += f"\x1fincident_type={item.incident_type}\x1fincident_severity={item.incident_severity or ''}"
    fingerprint = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    assert item.firing_since is not None
    return Alert(fingerprint, f"{item.handoff_id}/{item.provider}", item.severity, item.firing_since, item, scope)


def route_alerts(report: SlaReport, policy: SlaPolicy) -> dict[str, list[Alert]]:
    """Alerts per route id (first matching rule wins unless ``continue``; else ``default``).

    Rules are indexed by channel so that 10,000 routes over 100,000 items cost one scan of the
    candidate rules per distinct (severity, channel, provider), not per item.
    """
    summary = report.executive_summary
    eligible = [
        (i, r)
        for i, r in enumerate(policy.rules)
        if summary.breached_count >= r.min_breached and summary.at_risk_count >= r.min_at_risk
    ]
    by_channel: dict[str, list[int]] = defaultdict(list)
    any_channel: list[int] = []
    for position, (_, rule) in enumerate(eligible):
        if rule.channels:
            for channel in set(rule.channels):
                by_channel[channel].append(position)
        else:
            any_channel.append(position)
    cache: dict[tuple[str, str, str, str | None, str | None], tuple[str, ...]] = {}
    out: dict[str, list[Alert]] = defaultdict(list)
    firing = report.firing()
    for item in firing:
        key = (item.severity.value, item.channel or "", item.provider, item.incident_type, item.incident_severity)
        routes = cache.get(key)
        if routes is None:
            # an item without a channel matches any channel filter (the reference's rule)
            candidates = sorted({*by_channel.get(item.channel, []), *any_channel}) if item.channel else None
            chosen: list[str] = []
            for position in candidates if candidates is not None else range(len(eligible)):
                rule = eligible[position][1]
                if rule.alert_levels and item.severity not in rule.alert_levels:
                    continue
                if rule.match_providers and item.provider not in rule.match_providers:
                    continue
                if rule.incident_types and item.incident_type not in rule.incident_types:
                    continue
                if rule.incident_severities and item.incident_severity not in rule.incident_severities:
                    continue
                chosen.append(rule.rule_id)
                if not rule.continue_:
                    break
            routes = cache[key] = tuple(chosen) or ("default",)
        alert = alert_of(item, policy.scope)
        for route_id in routes:
            out[route_id].append(alert)
    if not firing:
        healthy = Alert(HEALTHY_FINGERPRINT, "report", Severity.HEALTHY, report.generated_at, None, policy.scope)
        for _, rule in eligible:
            if rule.notify_healthy and (not rule.alert_levels or Severity.HEALTHY in rule.alert_levels):
                out[rule.rule_id].append(healthy)
    return dict(out)


def group_key_of(scope: str, route_id: str) -> str:
    return f"{scope}/{route_id}"


# --- the plan -----------------------------------------------------------------------------------------


class SuppressionCode(StrEnum):
    SILENCED = "silenced"
    MAINTENANCE = "maintenance_window"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
    DEFERRED = "deferred_owner_unavailable"
    ESCALATED_PAST = "escalated_past_owner"
    MAX_RETRIES = "maximum_retry_attempts"
    MAX_RECURRENCES = "maximum_recurrences"
    SUPERSEDED = "superseded_rung"
    NO_RECEIVERS = "no_receivers"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Notification(_Out):
    """Something to send now."""

    key: str
    notification: NotificationKind
    group_key: str
    route_id: str
    owner: str
    receiver: str
    reason: Reason
    firing: tuple[str, ...]
    items: tuple[str, ...]
    severity: Severity
    attempt: int
    due_at: datetime
    epoch: str | None = None
    position: int | None = None
    level: str | None = None
    action: str | None = None
    detail: str = ""
    #: the incident's trigger (E1), recorded with the send so the ladder's clock is stable
    triggered_at: datetime | None = None


class Suppression(_Out):
    """Something that would have been sent (or an alert left out), and why it was not."""

    group_key: str
    route_id: str
    receiver: str | None
    subject: str
    code: SuppressionCode
    detail: str
    until: datetime | None = None


class Waiting(_Out):
    """A send that is not due yet: when it is."""

    group_key: str
    receiver: str
    notification: NotificationKind
    reason: Reason
    next_at: datetime
    detail: str


class SloState(StrEnum):
    WITHIN = "within_slo"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"


class IncidentState(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"


def plan_id_of(group_key: str, triggered_at: datetime) -> str:
    """The id of one incident (episode) of a group: ``erslaesc-`` + sha256(``<group>|<trigger>``)[:16].
    Stable while the episode lasts (across evaluations, escalations and re-triggers); an owner
    review names it (§9.11 ``plan_id``) so a review of a closed episode is refused."""
    return "erslaesc-" + hashlib.sha256(f"{group_key}|{iso(triggered_at)}".encode()).hexdigest()[:16]


class IncidentStatus(_Out):
    group_key: str
    route_id: str
    owner: str
    state: IncidentState
    triggered_at: datetime
    plan_id: str
    epoch: str
    alerts: tuple[str, ...]
    fingerprints: tuple[str, ...]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    #: an acknowledgement with an end (a deferring review): when the incident re-triggers
    acknowledged_until: datetime | None = None
    #: the latest owner review's state in this episode (None: no review)
    review_state: str | None = None
    retriggered: bool
    escalation_policy: str | None
    position: int | None
    level: str | None
    next_rung_at: datetime | None
    acknowledgement_due_at: datetime
    resolution_due_at: datetime
    acknowledgement_slo_state: SloState
    resolution_slo_state: SloState


class Plan(_Out):
    schema_version: str = PLAN_SCHEMA
    scope: str
    generated_at: datetime
    report_id: str
    notifications: tuple[Notification, ...]
    suppressions: tuple[Suppression, ...]
    waiting: tuple[Waiting, ...]
    incidents: tuple[IncidentStatus, ...]

    @property
    def escalations(self) -> tuple[Notification, ...]:
        return tuple(n for n in self.notifications if n.notification is NotificationKind.ESCALATION)

    def next_wakeup(self) -> datetime | None:
        times = [w.next_at for w in self.waiting] + [i.next_rung_at for i in self.incidents if i.next_rung_at]
        return min(times, default=None)


# --- history views ------------------------------------------------------------------------------------


@dataclass
class _GroupHistory:
    sends: list[SentOk | SendFailed] = field(default_factory=list)
    acks: list[Acknowledged] = field(default_factory=list)


@dataclass
class _Index:
    groups: dict[str, _GroupHistory]
    silences: list[SilenceAdded]


def _index(history: Iterable[HistoryEvent], now: datetime) -> _Index:
    groups: dict[str, _GroupHistory] = defaultdict(_GroupHistory)
    silences: dict[str, SilenceAdded] = {}
    expired: dict[str, datetime] = {}
    for event in history:
        if event.at > now:
            continue  # time travel backwards: the future has not happened yet
        if isinstance(event, (SentOk, SendFailed)):
            groups[event.group_key].sends.append(event)
        elif isinstance(event, Acknowledged):
            groups[event.group_key].acks.append(event)
        elif isinstance(event, SilenceAdded):
            silences[event.silence_id] = event
        elif isinstance(event, SilenceExpired):
            expired[event.silence_id] = min(event.at, expired.get(event.silence_id, event.at))
    for gh in groups.values():
        gh.sends.sort(key=lambda e: e.at)
        gh.acks.sort(key=lambda e: (e.at, e.acknowledgement_id))
    active = [s for s in silences.values() if s.starts_at <= now < min(s.ends_at, expired.get(s.silence_id, s.ends_at))]
    active.sort(key=lambda s: s.silence_id)
    return _Index(dict(groups), active)


class _Mutes:
    """Silences and maintenance windows active at ``now``."""

    def __init__(self, silences: list[SilenceAdded], policy: SlaPolicy, now: datetime) -> None:
        self.silences = silences
        self.windows: list[tuple[str, str, tuple[Matcher, ...], datetime]] = []
        if policy.maintenance_windows:
            specs = {spec.name: spec for spec in policy.maintenance_windows}
            for hit in active_at([spec.window for spec in policy.maintenance_windows], now):
                spec = specs[hit.name]
                self.windows.append((spec.name, spec.reason, spec.matchers, hit.end))

    @property
    def empty(self) -> bool:
        return not self.silences and not self.windows

    def reason(self, labels: dict[str, str]) -> tuple[SuppressionCode, str, datetime] | None:
        for s in self.silences:
            if matches_all(s.matchers, labels):
                return SuppressionCode.SILENCED, f"silenced by {s.silence_id} ({s.created_by})", s.ends_at
        for name, why, matchers, end in self.windows:
            if matches_all(matchers, labels):
                return SuppressionCode.MAINTENANCE, f"maintenance window {name}: {why}", end
        return None


# --- incidents ----------------------------------------------------------------------------------------


@dataclass
class _Incident:
    state: IncidentState
    triggered_at: datetime
    anchor_at: datetime
    anchor_pos: int
    ack: Acknowledged | None
    retriggered: bool
    first_ack_at: datetime | None
    manual: bool = False
    review: str | None = None

    @property
    def epoch(self) -> str:
        return f"{iso(self.anchor_at)}#{self.anchor_pos}"


def _offset(policy: EscalationPolicy, position: int) -> timedelta:
    loop, index = divmod(position, len(policy.rungs))
    return policy.loop_length * loop + policy.rungs[index].after


def _positions(policy: EscalationPolicy) -> int:
    return (1 + policy.repeat) * len(policy.rungs)


def due_of(policy: EscalationPolicy, anchor_at: datetime, anchor_pos: int, position: int) -> datetime:
    return anchor_at + _offset(policy, position) - _offset(policy, anchor_pos)


def current_position(policy: EscalationPolicy, anchor_at: datetime, anchor_pos: int, at: datetime) -> int:
    """The highest position due at ``at`` (``anchor_pos - 1`` when none is due yet)."""
    pos = anchor_pos - 1
    for p in range(anchor_pos, _positions(policy)):
        if due_of(policy, anchor_at, anchor_pos, p) <= at:
            pos = p
        else:
            break
    return pos


def _expiry(inc: _Incident, timeout: timedelta | None) -> datetime | None:
    """When an acknowledged incident re-triggers: the policy's ack_timeout after the acknowledgement
    or the acknowledgement's own end (a deferral), whichever comes first; None: never."""
    if inc.state is not IncidentState.ACKNOWLEDGED or inc.ack is None:
        return None
    ends = [inc.ack.at + timeout] if timeout is not None else []
    if inc.ack.expires_at is not None:
        ends.append(inc.ack.expires_at)
    return min(ends, default=None)


def _timed_out(inc: _Incident, timeout: timedelta | None, at: datetime) -> bool:
    """An acknowledged incident whose ack_timeout (or deferral) has elapsed at ``at`` (PagerDuty re-trigger)."""
    end = _expiry(inc, timeout)
    return end is not None and at >= end


def replay_incident(
    acks: Sequence[Acknowledged],
    triggered_at: datetime,
    ladder: EscalationPolicy | None,
    now: datetime,
) -> _Incident:
    """The acknowledgement state machine (:mod:`ringward.core.sla.acks`) replayed up to ``now``."""
    timeout = ladder.ack_timeout if ladder is not None else None
    inc = _Incident(IncidentState.TRIGGERED, triggered_at, triggered_at, 0, None, False, None)
    for ack in acks:
        if ack.at < triggered_at or ack.state in (AckState.RESOLVED, AckState.DISMISSED):
            continue
        if _timed_out(inc, timeout, ack.at):
            end = _expiry(inc, timeout)
            assert end is not None
            inc = _Incident(IncidentState.TRIGGERED, triggered_at, end, 0, None, True, inc.first_ack_at)
        if ack.state is AckState.ACKNOWLEDGED:
            inc.state, inc.ack = IncidentState.ACKNOWLEDGED, ack
            inc.first_ack_at = inc.first_ack_at or ack.at
        elif ack.state is AckState.ESCALATED:
            nxt = 0
            if ladder is not None:
                cur = current_position(ladder, inc.anchor_at, inc.anchor_pos, ack.at)
                nxt = min(cur + 1, _positions(ladder) - 1)
            inc = _Incident(
                IncidentState.TRIGGERED, triggered_at, ack.at, nxt, None, inc.retriggered, inc.first_ack_at, True
            )
    if _timed_out(inc, timeout, now):
        end = _expiry(inc, timeout)
        assert end is not None
        inc = _Incident(IncidentState.TRIGGERED, triggered_at, end, 0, None, True, inc.first_ack_at)
    inc.review = next((a.review_state for a in reversed(acks) if a.at >= triggered_at and a.review_state), None)
    return inc


def _slo_state(due: datetime, start: datetime, now: datetime, met: bool) -> SloState:
    if met:
        return SloState.MET
    if now > due:
        return SloState.BREACHED
    if now - start >= (due - start) * 0.8:
        return SloState.AT_RISK
    return SloState.WITHIN


# --- planning -----------------------------------------------------------------------------------------


@dataclass
class _Planner:
    policy: SlaPolicy
    now: datetime
    mutes: _Mutes
    notifications: list[Notification] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    incidents: list[IncidentStatus] = field(default_factory=list)
    calendar_memo: dict[str, tuple[str | None, datetime | None]] = field(default_factory=dict)

    def availability(self, owner: str) -> tuple[str | None, datetime | None]:
        """The owner's availability at ``now`` (memoised: one calendar walk per owner per plan)."""
        if owner not in self.calendar_memo:
            calendar = self.policy.calendars.get(owner)
            self.calendar_memo[owner] = (None, self.now) if calendar is None else calendar.availability(self.now)
        return self.calendar_memo[owner]

    def suppress(
        self,
        group: str,
        route: ResolvedRoute,
        receiver: str | None,
        subject: str,
        code: SuppressionCode,
        detail: str,
        until: datetime | None = None,
    ) -> None:
        self.suppressions.append(
            Suppression(
                group_key=group,
                route_id=route.route_id,
                receiver=receiver,
                subject=subject,
                code=code,
                detail=detail,
                until=until,
            )
        )

    def unmuted(
        self, group: str, route: ResolvedRoute, receiver: str, alerts: Sequence[Alert], *, record: bool
    ) -> list[Alert]:
        if self.mutes.empty:
            return list(alerts)
        kept: list[Alert] = []
        for alert in alerts:
            labels = {**alert.labels, "owner": route.owner, "route": route.route_id, "receiver": receiver}
            muted = self.mutes.reason(labels)
            if muted is None:
                kept.append(alert)
            elif record:
                self.suppress(group, route, receiver, alert.item_key, muted[0], muted[1], muted[2])
        return kept

    def retry_gate(
        self, failures: list[SendFailed], group: str, route: ResolvedRoute, receiver: str, subject: str
    ) -> tuple[int, datetime | None, bool]:
        """(attempts so far, earliest next attempt, capped) for consecutive failures (G5)."""
        window = max(route.repeat_interval, route.group_interval)
        recent = [f for f in failures if f.at > self.now - window]
        retry = self.policy.retry
        if not recent:
            return 0, None, False
        n = len(recent)
        if n >= retry.max_attempts:
            until = recent[n - retry.max_attempts].at + window
            self.suppress(
                group,
                route,
                receiver,
                subject,
                SuppressionCode.MAX_RETRIES,
                f"maximum retry attempts {retry.max_attempts} reached; next attempt at {iso(until)}",
                until,
            )
            return n, until, True
        return n, recent[-1].at + retry.delay_after(n), False

    # --- G1-G8 --------------------------------------------------------------------------------------

    def group_notifications(
        self,
        group: str,
        route: ResolvedRoute,
        alerts: list[Alert],
        closed: set[str],
        gh: _GroupHistory,
        incident: _Incident | None,
    ) -> None:
        if not route.receivers:
            if alerts:
                self.suppress(group, route, None, "group", SuppressionCode.NO_RECEIVERS, "route has no receivers")
            return
        open_alerts = [a for a in alerts if a.fingerprint not in closed]
        for a in alerts:
            if a.fingerprint in closed:
                self.suppress(
                    group, route, None, a.item_key, SuppressionCode.CLOSED, "incident closed; alert unchanged since"
                )
        for receiver in route.receivers:
            sends = [s for s in gh.sends if s.notification is NotificationKind.GROUP and s.receiver == receiver]
            last_ok: SentOk | None = None
            for s in sends:
                if isinstance(s, SentOk):
                    last_ok = s
            failures = [s for s in sends if isinstance(s, SendFailed) and (last_ok is None or s.at > last_ok.at)]
            firing = self.unmuted(group, route, receiver, open_alerts, record=True)
            muted_only = bool(open_alerts) and not firing
            fps = {a.fingerprint for a in firing}
            last_fps = set(last_ok.firing) if last_ok is not None else set()
            reason: Reason | None = None
            due = self.now
            if firing and not last_fps:
                reason = Reason.HEALTHY_REPORT if fps == {HEALTHY_FINGERPRINT} else Reason.FIRST_NOTIFICATION
                start = min(a.firing_since for a in firing)
                if last_ok is not None:
                    start = max(start, last_ok.at)
                due = start + route.group_wait
                if last_ok is not None:
                    due = max(due, last_ok.at + route.group_interval)
                if reason is Reason.HEALTHY_REPORT:
                    # a heartbeat has no start to wait from: once per repeat_interval
                    due = self.now if last_ok is None else last_ok.at + route.repeat_interval
            elif last_ok is not None and fps - last_fps:
                reason, due = Reason.NEW_ALERTS_IN_GROUP, last_ok.at + route.group_interval
            elif last_ok is not None and last_fps and not firing:
                if muted_only:
                    continue  # G6: muted, not resolved
                if last_fps == {HEALTHY_FINGERPRINT}:
                    continue  # a healthy heartbeat has nothing to resolve
                reason, due = Reason.ALL_ALERTS_RESOLVED, last_ok.at + route.group_interval
            elif last_ok is not None and firing:
                reason = Reason.REPEAT_INTERVAL_ELAPSED
                due = last_ok.at + max(route.repeat_interval, route.group_interval)
                if incident is not None and incident.state is IncidentState.ACKNOWLEDGED and incident.ack is not None:
                    if self.now >= due:
                        self.suppress(
                            group,
                            route,
                            receiver,
                            "group",
                            SuppressionCode.ACKNOWLEDGED,
                            f"acknowledged by {incident.ack.by} at {iso(incident.ack.at)}; reminders stopped",
                        )
                    continue
                cap = self.policy.recurrence.max_recurrences
                if cap is not None:
                    repeats = 0
                    for s in reversed(sends):
                        if isinstance(s, SentOk):
                            if s.reason is not Reason.REPEAT_INTERVAL_ELAPSED:
                                break
                            repeats += 1
                    if repeats >= cap and self.now >= due:
                        self.suppress(
                            group,
                            route,
                            receiver,
                            "group",
                            SuppressionCode.MAX_RECURRENCES,
                            f"maximum recurrence count {cap} reached",
                        )
                        continue
            if reason is None:
                continue
            attempts, retry_at, capped = self.retry_gate(failures, group, route, receiver, "group")
            if capped:
                assert retry_at is not None
                self.waiting.append(
                    Waiting(
                        group_key=group,
                        receiver=receiver,
                        notification=NotificationKind.GROUP,
                        reason=reason,
                        next_at=retry_at,
                        detail="retry attempts exhausted",
                    )
                )
                continue
            retrying = retry_at is not None and retry_at > due
            if retry_at is not None:
                due = max(due, retry_at)
            if self.now < due:
                what = f"retry of {reason.value} (attempt {attempts + 1})" if retrying else reason.value
                self.waiting.append(
                    Waiting(
                        group_key=group,
                        receiver=receiver,
                        notification=NotificationKind.GROUP,
                        reason=reason,
                        next_at=due,
                        detail=f"{what} due at {iso(due)}",
                    )
                )
                continue
            basis = iso(last_ok.at) if last_ok else "-"
            sent = tuple(sorted(fps))
            key = "sla-" + _hash("group", group, receiver, reason.value, basis, ",".join(sent), attempts)[:32]
            self.notifications.append(
                Notification(
                    key=key,
                    notification=NotificationKind.GROUP,
                    group_key=group,
                    route_id=route.route_id,
                    owner=route.owner,
                    receiver=receiver,
                    reason=reason,
                    firing=sent,
                    items=tuple(sorted({a.item_key for a in firing})),
                    severity=min((a.severity for a in firing), key=lambda s: s.rank, default=Severity.HEALTHY),
                    attempt=attempts + 1,
                    due_at=due,
                    triggered_at=incident.triggered_at if incident is not None else None,
                )
            )

    # --- E1-E7 --------------------------------------------------------------------------------------

    def incident_of(self, route: ResolvedRoute, open_alerts: list[Alert], gh: _GroupHistory) -> _Incident | None:
        real = [a for a in open_alerts if a.fingerprint != HEALTHY_FINGERPRINT]
        if not route.acknowledgement_required or not real:
            return None
        closed_at: datetime | None = None
        for ack in gh.acks:
            if ack.state in (AckState.RESOLVED, AckState.DISMISSED):
                closed_at = ack.at if closed_at is None else max(closed_at, ack.at)
        for s in gh.sends:
            if isinstance(s, SentOk) and s.reason is Reason.ALL_ALERTS_RESOLVED:
                closed_at = s.at if closed_at is None else max(closed_at, s.at)
        # E1, sticky: once a send of this episode recorded the trigger, it stays, so an alert that
        # clears while others still fire does not restart the ladder
        recorded = [
            s.triggered_at for s in gh.sends if s.triggered_at is not None and (closed_at is None or s.at > closed_at)
        ]
        trigger = min(recorded) if recorded else min(a.firing_since for a in real)
        if closed_at is not None:
            trigger = max(trigger, closed_at)
        ladder = self.policy.escalation_policies.get(route.escalation_policy) if route.escalation_policy else None
        return replay_incident(gh.acks, trigger, ladder, self.now)

    def escalate(
        self, group: str, route: ResolvedRoute, open_alerts: list[Alert], gh: _GroupHistory, inc: _Incident
    ) -> IncidentStatus:
        ladder = self.policy.escalation_policies.get(route.escalation_policy) if route.escalation_policy else None
        slo = self.policy.slo_for(route.owner)
        ack_due = inc.triggered_at + slo.ack
        res_due = inc.triggered_at + slo.resolution
        position: int | None = None
        level: str | None = None
        next_rung: datetime | None = None
        if ladder is not None:
            pos = current_position(ladder, inc.anchor_at, inc.anchor_pos, self.now)
            if pos + 1 < _positions(ladder):
                next_rung = due_of(ladder, inc.anchor_at, inc.anchor_pos, pos + 1)
            if pos >= inc.anchor_pos:
                position, level = pos, ladder.rungs[pos % len(ladder.rungs)].level
                if inc.state is IncidentState.ACKNOWLEDGED and inc.ack is not None:
                    self.suppress(
                        group,
                        route,
                        None,
                        f"rung {level}",
                        SuppressionCode.ACKNOWLEDGED,
                        f"acknowledged by {inc.ack.by} at {iso(inc.ack.at)}; ladder stopped",
                    )
                    next_rung = None
                else:
                    self.ladder_sends(group, route, open_alerts, gh, inc, ladder, pos, ack_due)
            if inc.state is IncidentState.ACKNOWLEDGED:
                next_rung = None
        acked = inc.state is IncidentState.ACKNOWLEDGED
        return IncidentStatus(
            group_key=group,
            route_id=route.route_id,
            owner=route.owner,
            state=inc.state,
            triggered_at=inc.triggered_at,
            plan_id=plan_id_of(group, inc.triggered_at),
            epoch=inc.epoch,
            alerts=tuple(sorted(a.item_key for a in open_alerts)),
            fingerprints=tuple(sorted(a.fingerprint for a in open_alerts)),
            acknowledged_by=inc.ack.by if acked and inc.ack else None,
            acknowledged_at=inc.ack.at if acked and inc.ack else None,
            acknowledged_until=_expiry(inc, ladder.ack_timeout if ladder is not None else None) if acked else None,
            review_state=inc.review,
            retriggered=inc.retriggered,
            escalation_policy=route.escalation_policy,
            position=position,
            level=level,
            next_rung_at=next_rung,
            acknowledgement_due_at=ack_due,
            resolution_due_at=res_due,
            acknowledgement_slo_state=_slo_state(
                ack_due, inc.triggered_at, self.now, inc.first_ack_at is not None and inc.first_ack_at <= ack_due
            ),
            resolution_slo_state=_slo_state(res_due, inc.triggered_at, self.now, False),
        )

    def _rung_receivers(
        self, group: str, route: ResolvedRoute, ladder: EscalationPolicy, pos: int, ack_due: datetime, *, force: bool
    ) -> tuple[list[str], list[tuple[str, str, datetime | None, bool]]]:
        """(receivers to notify now, [(owner, reason, next available, would breach)] of unavailable owners)."""
        rung = ladder.rungs[pos % len(ladder.rungs)]
        receivers: list[str] = []
        away: list[tuple[str, str, datetime | None, bool]] = []
        for target in rung.targets:
            if target.receiver is not None:
                receivers.append(target.receiver)
                continue
            assert target.owner is not None
            why, available = (None, self.now) if force else self.availability(target.owner)
            if why is None:
                receivers.extend(self.policy.receivers_of(target.owner))
            else:
                away.append((target.owner, why, available, available is None or available > ack_due))
        return list(dict.fromkeys(receivers)), away

    def ladder_sends(
        self,
        group: str,
        route: ResolvedRoute,
        open_alerts: list[Alert],
        gh: _GroupHistory,
        inc: _Incident,
        ladder: EscalationPolicy,
        pos: int,
        ack_due: datetime,
    ) -> None:
        epoch = inc.epoch
        esc = [s for s in gh.sends if s.notification is NotificationKind.ESCALATION and s.epoch == epoch]
        done = {(s.position, s.receiver) for s in esc if isinstance(s, SentOk)}
        sent_positions = {p for p, _ in done}
        for skipped in range(inc.anchor_pos, pos):
            if skipped not in sent_positions:
                rung = ladder.rungs[skipped % len(ladder.rungs)]
                self.suppress(
                    group,
                    route,
                    None,
                    f"rung {rung.level}",
                    SuppressionCode.SUPERSEDED,
                    f"position {skipped} was due but a later rung is due now",
                )
        reason = Reason.MANUAL_ESCALATION if inc.manual and pos == inc.anchor_pos else Reason.RUNG_DUE
        effective = pos
        total = _positions(ladder)
        receivers, away = self._rung_receivers(group, route, ladder, effective, ack_due, force=False)
        while True:
            for owner, why, available, breach in away:
                if breach:
                    self.suppress(
                        group,
                        route,
                        None,
                        f"owner {owner}",
                        SuppressionCode.ESCALATED_PAST,
                        f"{why}; next available {iso(available) if available else 'not within 30 days'} "
                        f"is after the acknowledgement SLO due {iso(ack_due)}",
                    )
                else:
                    assert available is not None
                    self.suppress(
                        group,
                        route,
                        None,
                        f"owner {owner}",
                        SuppressionCode.DEFERRED,
                        f"{why}; deferred until {iso(available)}",
                        available,
                    )
                    self.waiting.append(
                        Waiting(
                            group_key=group,
                            receiver=owner,
                            notification=NotificationKind.ESCALATION,
                            reason=Reason.RUNG_DUE,
                            next_at=available,
                            detail=f"deferred: {why}",
                        )
                    )
            deferred = any(not breach for _, _, _, breach in away)
            if receivers or deferred:
                break
            # E5: everyone on this rung is away past the SLO: escalate past them
            if effective + 1 < total:
                effective += 1
                reason = Reason.ESCALATED_PAST_UNAVAILABLE
                receivers, away = self._rung_receivers(group, route, ladder, effective, ack_due, force=False)
                continue
            reason = Reason.ESCALATED_PAST_UNAVAILABLE
            receivers, away = self._rung_receivers(group, route, ladder, effective, ack_due, force=True)
            break
        rung = ladder.rungs[effective % len(ladder.rungs)]
        for receiver in receivers:
            if (effective, receiver) in done:
                continue
            firing = self.unmuted(group, route, receiver, open_alerts, record=False)
            if not firing:
                muted = self.mutes.reason(
                    {**open_alerts[0].labels, "owner": route.owner, "route": route.route_id, "receiver": receiver}
                )
                code, detail, until = muted if muted else (SuppressionCode.SILENCED, "all alerts muted", None)
                self.suppress(group, route, receiver, f"rung {rung.level}", code, detail, until)
                continue
            failures = [
                s for s in esc if isinstance(s, SendFailed) and s.position == effective and s.receiver == receiver
            ]
            attempts, retry_at, capped = self.retry_gate(failures, group, route, receiver, f"rung {rung.level}")
            if capped:
                continue
            if retry_at is not None and self.now < retry_at:
                self.waiting.append(
                    Waiting(
                        group_key=group,
                        receiver=receiver,
                        notification=NotificationKind.ESCALATION,
                        reason=reason,
                        next_at=retry_at,
                        detail=f"retry of rung {rung.level}",
                    )
                )
                continue
            key = "sla-" + _hash("escalation", group, epoch, effective, receiver, attempts)[:32]
            fps = tuple(sorted(a.fingerprint for a in firing))
            self.notifications.append(
                Notification(
                    key=key,
                    notification=NotificationKind.ESCALATION,
                    group_key=group,
                    route_id=route.route_id,
                    owner=route.owner,
                    receiver=receiver,
                    reason=reason,
                    firing=fps,
                    items=tuple(sorted({a.item_key for a in firing})),
                    severity=min((a.severity for a in firing), key=lambda s: s.rank),
                    attempt=attempts + 1,
                    due_at=due_of(ladder, inc.anchor_at, inc.anchor_pos, pos),
                    epoch=epoch,
                    position=effective,
                    level=rung.level,
                    action=rung.action,
                    triggered_at=inc.triggered_at,
                )
            )


def plan(history: Iterable[HistoryEvent], policy: SlaPolicy, report: SlaReport, now: datetime) -> Plan:
    """What to send, suppress and escalate at ``now`` (rules G1-G8, E1-E7 of this module).

    Raises:
        InputError: ``now`` without a UTC offset.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError("now: expected a time with a UTC offset")
    now = now.astimezone(UTC)
    index = _index(history, now)
    planner = _Planner(policy, now, _Mutes(index.silences, policy, now))
    routed = route_alerts(report, policy)
    empty = _GroupHistory()
    for route_id, route in policy.routes.items():
        group = group_key_of(policy.scope, route_id)
        alerts = routed.get(route_id, [])
        gh = index.groups.get(group, empty)
        if not alerts and not gh.sends:
            continue
        closed: set[str] = set()
        for ack in gh.acks:
            if ack.state in (AckState.RESOLVED, AckState.DISMISSED):
                closed.update(ack.fingerprints)
        open_alerts = [a for a in alerts if a.fingerprint not in closed]
        incident = planner.incident_of(route, open_alerts, gh)
        planner.group_notifications(group, route, alerts, closed, gh, incident)
        if incident is not None:
            planner.incidents.append(planner.escalate(group, route, open_alerts, gh, incident))
    return Plan(
        scope=policy.scope,
        generated_at=now,
        report_id=report.report_id,
        notifications=tuple(planner.notifications),
        suppressions=tuple(planner.suppressions),
        waiting=tuple(planner.waiting),
        incidents=tuple(planner.incidents),
    )


class Outcome(BaseModel):
    """What happened to one planned notification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notification: Notification
    ok: bool
    at: datetime
    error: str = ""
    delivery_ref: str | None = None


def outcome_event(outcome: Outcome) -> SentOk | SendFailed:
    n = outcome.notification
    common = {
        "at": outcome.at,
        "key": n.key,
        "notification": n.notification,
        "group_key": n.group_key,
        "route_id": n.route_id,
        "receiver": n.receiver,
        "reason": n.reason,
        "firing": n.firing,
        "epoch": n.epoch,
        "position": n.position,
        "triggered_at": n.triggered_at,
    }
    if outcome.ok:
        return SentOk(delivery_ref=outcome.delivery_ref, **common)
    return SendFailed(error=outcome.error[:2000], **common)


def apply(history: Sequence[HistoryEvent], outcomes: Iterable[Outcome]) -> tuple[HistoryEvent, ...]:
    """``history`` followed by one ``sent-ok`` / ``send-failed`` event per outcome (append-only).

    Raises:
        InputError: an outcome earlier than the last event (the history only grows forward).
    """
    out = list(history)
    last = max((e.at for e in out), default=None)
    for outcome in outcomes:
        event = outcome_event(outcome)
        if last is not None and event.at < last:
            raise InputError(f"outcome for {event.key} at {iso(event.at)} is earlier than the history's last event")
        out.append(event)
        last = event.at
    return tuple(out)
