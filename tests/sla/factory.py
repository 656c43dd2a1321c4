"""Builders for SLA tests: handoffs, statuses, policies, and a virtual-time scheduler."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from ringward.core.remediation.handoff import (
    RemediationHandoff,
    RemediationHandoffStatus,
    handoff_id_for,
    record_status,
)
from ringward.core.sla.engine import Notification, Outcome, Plan, apply, plan
from ringward.core.sla.history import HistoryEvent
from ringward.core.sla.policy import SlaPolicy, parse_policy
from ringward.core.sla.report import SlaReport, build_report

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


def handoff(
    n: int,
    *,
    created_at: datetime = T0,
    providers: Sequence[str] = ("jira",),
    channel: str = "stable",
    release: str = "1.4.2",
) -> RemediationHandoff:
    request_id = f"err_{n:012x}"
    request_sha = hashlib.sha256(request_id.encode()).hexdigest()
    return RemediationHandoff(
        handoff_id=handoff_id_for(request_id, providers, request_sha),
        request_id=request_id,
        reconciliation_id=f"erc_{n:012x}",
        created_at=created_at,
        requested_by="release-manager",
        providers=tuple(providers),
        provider_count=len(providers),
        action_count=2,
        approval_id=f"apr-{n}",
        approval_state="approved",
        approval_required=False,
        release=release,
        channel=channel,
        request_sha256=request_sha,
    )


def status(
    h: RemediationHandoff,
    value: str,
    at: datetime,
    *,
    provider: str = "jira",
    previous: Sequence[RemediationHandoffStatus] = (),
) -> RemediationHandoffStatus:
    return record_status(h, previous, provider=provider, status=value, recorded_at=at, recorded_by="ops")


def policy_of(document: dict[str, Any]) -> SlaPolicy:
    return parse_policy(yaml.safe_dump(document).encode(), source="routing.yaml")


@dataclass
class Sent:
    at: datetime
    kind: str
    receiver: str
    reason: str
    level: str | None
    items: tuple[str, ...]

    def short(self) -> tuple[str, str, str, str]:
        return (self.at.strftime("%m-%d %H:%M"), self.receiver, self.reason, self.level or "-")


@dataclass
class Scheduler:
    """Runs plan -> deliver -> apply at virtual instants; records every attempt."""

    policy: SlaPolicy
    handoffs: list[RemediationHandoff]
    statuses: list[RemediationHandoffStatus] = field(default_factory=list)
    history: tuple[HistoryEvent, ...] = ()
    #: receiver -> predicate(at) deciding whether a send succeeds (default: always)
    failing: dict[str, Callable[[datetime], bool]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    failed: list[Sent] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)

    def report(self, now: datetime) -> SlaReport:
        return build_report(self.handoffs, [s for s in self.statuses if s.recorded_at <= now], now=now)

    def plan(self, now: datetime) -> Plan:
        return plan(self.history, self.policy, self.report(now), now)

    def tick(self, now: datetime) -> Plan:
        result = self.plan(now)
        self.plans.append(result)
        outcomes = [self._deliver(n, now) for n in result.notifications]
        self.history = apply(self.history, outcomes)
        return result

    def _deliver(self, n: Notification, now: datetime) -> Outcome:
        fails = self.failing.get(n.receiver)
        ok = not (fails is not None and fails(now))
        row = Sent(now, n.notification.value, n.receiver, n.reason.value, n.level, n.items)
        (self.sent if ok else self.failed).append(row)
        return Outcome(notification=n, ok=ok, at=now, error="" if ok else "HTTP 503")

    def run(self, start: datetime, end: datetime, step: timedelta = timedelta(minutes=5)) -> None:
        at = start
        while at <= end:
            self.tick(at)
            at += step

    def add(self, event: HistoryEvent) -> None:
        self.history = (*self.history, event)

    def log(self) -> list[tuple[str, str, str, str]]:
        return [s.short() for s in self.sent]
