"""SLA operations: build the report from handoff files, run one notification cycle (plan -> claim
-> deliver through the connector platform -> record), acknowledge, silence.

No Prefect here; the SLA tasks wrap these. Every decision leaves evidence: the report
(``endpoint-remediation-sla-report``), each cycle's plan with every suppression and wait and the
open incidents (``endpoint-remediation-sla-notification-plan``), each send (the connector
platform's ``release-connector-delivery`` record, linked from the history row), each
acknowledgement (``endpoint-remediation-sla-notification-ack``), refused acknowledgement
(``endpoint-remediation-sla-notification-ack-refused``) and silence (``endpoint-remediation-sla-silence``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.delivery.config import ConnectorConfig
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.event import Severity as EventSeverity
from ringward.core.errors import ConfigError, InputError, NotFoundError, StoreConflictError, validation_problem
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.remediation.handoff import (
    HANDOFF_SCHEMA,
    HANDOFF_STATUS_SCHEMA,
    RemediationHandoff,
    RemediationHandoffStatus,
    status_sequence_problems,
)
from ringward.core.sla import acks
from ringward.core.sla.engine import Notification, Outcome, Plan, iso, outcome_event, plan
from ringward.core.sla.history import (
    Acknowledged,
    AckRefused,
    AckState,
    HistoryEvent,
    NotificationKind,
    SilenceAdded,
    SilenceExpired,
    acknowledgement_id_for,
)
from ringward.core.sla.incidents import INCIDENT_REPORT_CONTROLS, INCIDENT_REPORT_KIND
from ringward.core.sla.policy import Matcher, SlaPolicy, parse_policy
from ringward.core.sla.report import Severity, SlaReport, build_report
from ringward.operations.common.files import atomic_write, read_capped

if TYPE_CHECKING:
    from connectors.secrets import SecretLookup
    from ringward.operations.delivery.delivery_ops import DeliveryHooks
    from ringward.store import Store

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_FILES = 100_000
KIND_REPORT = "endpoint-remediation-sla-report"
KIND_PLAN = "endpoint-remediation-sla-notification-plan"
KIND_ACK = "endpoint-remediation-sla-notification-ack"
KIND_ACK_REFUSED = "endpoint-remediation-sla-notification-ack-refused"
KIND_SILENCE = "endpoint-remediation-sla-silence"
SOURCE_GROUP = "endpoint_remediation_sla_notification"
SOURCE_ESCALATION = "endpoint_remediation_sla_escalation_delivery"
DEFAULT_SCHEDULE = timedelta(minutes=5)


def _wall() -> datetime:
    """When a record is written (evidence time); decisions carry their own (virtual) ``at``."""
    return datetime.now(UTC)


def _ledger(store: Store) -> Any:
    from ringward.store.sla.ledger import SlaLedger

    return SlaLedger(store)


# --- inputs --------------------------------------------------------------------------------------


def _json_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file() and not p.is_symlink()))
        else:
            files.append(path)
        if len(files) > MAX_FILES:
            raise InputError(f"handoffs: more than {MAX_FILES} files")
    return files


def load_handoffs(paths: Sequence[Path]) -> tuple[list[RemediationHandoff], list[RemediationHandoffStatus]]:
    """Handoff and handoff-status documents from files and directories (``*.json``, by
    ``schema_version``; other JSON files are skipped). Parsed once, strictly.

    Raises:
        InputError: ``<file>: <field>: <problem>``; duplicate ids; a status for an unknown handoff
        or provider; a status sequence the transition table forbids.
    """
    handoffs: dict[str, RemediationHandoff] = {}
    statuses: dict[str, RemediationHandoffStatus] = {}
    for path in _json_files(paths):
        document = loads_strict(read_capped(path, MAX_FILE_BYTES, source=str(path)), source=str(path))
        if not isinstance(document, dict):
            continue
        # a metadata record wraps the document (reference ``handoff`` / ``status_record``)
        for wrapper in ("handoff", "status_record"):
            if isinstance(document.get(wrapper), dict) and "schema_version" not in document:
                document = document[wrapper]
        schema = document.get("schema_version")
        try:
            if schema == HANDOFF_SCHEMA:
                h = RemediationHandoff.model_validate(document)
                h.check_id()
                if h.handoff_id in handoffs:
                    raise InputError(f"handoff_id: {h.handoff_id} appears twice")
                handoffs[h.handoff_id] = h
            elif schema == HANDOFF_STATUS_SCHEMA:
                s = RemediationHandoffStatus.model_validate(document)
                s.check_id()
                statuses.setdefault(s.status_id, s)
        except ValidationError as exc:
            raise InputError(f"{path}: {validation_problem(exc)}") from None
        except InputError as exc:
            raise InputError(f"{path}: {exc.message}") from None
    for s in statuses.values():
        owner = handoffs.get(s.handoff_id)
        if owner is None:
            raise InputError(f"status {s.status_id}: handoff {s.handoff_id} is not among the inputs")
        if s.provider not in owner.providers:
            raise InputError(f"status {s.status_id}: provider is not present in the handoff package")
    problems = status_sequence_problems(list(statuses.values()))
    if problems:
        raise InputError(f"handoff status: {problems[0]}")
    return list(handoffs.values()), list(statuses.values())


def load_policy(path: Path) -> SlaPolicy:
    return parse_policy(read_capped(path, MAX_FILE_BYTES, source=str(path)), source=str(path))


def load_report(path: Path) -> SlaReport:
    document = loads_strict(read_capped(path, MAX_FILE_BYTES, source=str(path)), source=str(path))
    if isinstance(document, dict) and isinstance(document.get("report"), dict):
        document = document["report"]
    try:
        return SlaReport.model_validate(document)
    except ValidationError as exc:
        raise InputError(f"{path}: {validation_problem(exc)}") from None


def report_document(report: SlaReport) -> dict[str, Any]:
    return report.model_dump(mode="json")


def _record_report(
    store: Store, report: SlaReport, actor: str, flow_run_id: str | None, kind: str = KIND_REPORT
) -> int:
    s = report.executive_summary
    payload = {
        "report_id": report.report_id,
        "alert_level": report.alert_level.value,
        "warning_hours": report.warning_hours,
        "critical_hours": report.critical_hours,
        "tracked_work_item_count": s.tracked_work_item_count,
        "completed_count": s.completed_count,
        "at_risk_count": s.at_risk_count,
        "breached_count": s.breached_count,
        "completion_rate": s.completion_rate,
        "critical_provider_count": s.critical_provider_count,
        "release_channels": list(s.release_channels),
        "escalation_count": len(report.escalations),
        "report": report_document(report),
        "evidence_refs": list(report.evidence_refs),
    }
    record = store.append(
        EvidenceDraft(
            kind=kind,
            actor=actor,
            subject=EvidenceSubject(status=report.alert_level.value),
            flow_run_id=flow_run_id,
            payload=payload,
        )
    )
    return record.id


def make_report(
    paths: Sequence[Path],
    *,
    now: datetime,
    warning_hours: float = 24,
    critical_hours: float = 48,
    generated_by: str = "release-manager",
    store: Store | None = None,
    output: Path | None = None,
    flow_run_id: str | None = None,
) -> SlaReport:
    """Build the §9.5 report at ``now``; write it atomically to ``output``; record its evidence."""
    handoffs, statuses = load_handoffs(paths)
    report = build_report(
        handoffs,
        [s for s in statuses if s.recorded_at <= now],
        now=now,
        warning_hours=warning_hours,
        critical_hours=critical_hours,
        generated_by=generated_by,
    )
    if output is not None:
        atomic_write(output, dumps_document(report_document(report)))
    if store is not None:
        _record_report(store, report, generated_by, flow_run_id)
    return report


# --- one cycle ------------------------------------------------------------------------------------


def window_start(now: datetime, interval: timedelta = DEFAULT_SCHEDULE) -> datetime:
    """``now`` floored to the schedule interval (UTC epoch based)."""
    seconds = int(interval.total_seconds())
    if seconds <= 0:
        raise InputError("schedule interval: expected a positive duration")
    epoch = int(now.astimezone(UTC).timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


@dataclass
class CycleResult:
    """What one cycle did (``--json`` output of notify/escalate, the flow's artifact)."""

    scope: str
    now: datetime
    window: datetime
    run_id: str
    plan: Plan
    skipped_window: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    claimed_elsewhere: list[str] = field(default_factory=list)
    plan_evidence_id: int | None = None

    def summary(self) -> dict[str, Any]:
        suppressed = [s.model_dump(mode="json") for s in self.plan.suppressions]
        by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for incident in self.plan.incidents:
            by_owner[incident.owner].append(incident.model_dump(mode="json"))
        return {
            "scope": self.scope,
            "at": iso(self.now),
            "window": iso(self.window),
            "run_id": self.run_id,
            "skipped_window": self.skipped_window,
            "report_id": self.plan.report_id,
            "sent": self.sent,
            "failed": self.failed,
            "claimed_elsewhere": self.claimed_elsewhere,
            "suppressed": suppressed,
            "waiting": [w.model_dump(mode="json") for w in self.plan.waiting],
            "open_incidents_by_owner": dict(by_owner),
            "plan_evidence_id": self.plan_evidence_id,
        }


def check_receivers(policy: SlaPolicy, config: ConnectorConfig) -> None:
    """Every receiver the policy names must be a configured, enabled destination."""
    configured = {d.name for d in config.providers if d.enabled}
    named = {r for route in policy.routes.values() for r in route.receivers}
    named |= {r for spec in policy.owners.values() for r in spec.receivers}
    for pol in policy.escalation_policies.values():
        named |= {t.receiver for rung in pol.rungs for t in rung.targets if t.receiver}
    missing = sorted(named - configured)
    if missing:
        raise ConfigError(
            f"routing policy names receivers not configured (or disabled) in the connector config: "
            f"{', '.join(missing)} (configured: {', '.join(sorted(configured)) or 'none'})"
        )


_EVENT_SEVERITY = {Severity.CRITICAL: EventSeverity.CRITICAL, Severity.WARNING: EventSeverity.WARNING}


def report_subject(report: SlaReport) -> str:
    """What a report's work items are: ``handoff`` (§9.5), ``incident`` or ``health``."""
    if INCIDENT_REPORT_CONTROLS[0] in report.controls:
        return "incident"
    if any(c.startswith("health-from-prefect") for c in report.controls):
        return "health"
    return "handoff"


def notification_event(n: Notification, report: SlaReport, now: datetime) -> ConnectorEvent:
    """The connector event of one notification (§9.7 / §9.10 titles and messages; incident and
    health alerts say what they are about)."""
    s = report.executive_summary
    level = n.severity.value if n.reason.value != "all_alerts_resolved" else "resolved"
    subject = report_subject(report)
    escalation = n.notification is NotificationKind.ESCALATION
    if subject == "incident":
        message = (
            f"{s.breached_count} breached and {s.at_risk_count} at-risk incident response clocks across "
            f"{len({w.handoff_id for w in report.work_items})} open incidents."
        )
        what = "incident response SLA"
        event_type = "ringward.incident.sla." + ("escalation" if escalation else "notification")
    elif subject == "health":
        message = str(report.escalation_payloads.get("executive_summary", {}).get("message", ""))[:2000]
        what = "SLA automation health"
        event_type = "cavra.endpoint_remediation_sla.escalation_recurrence_automation_health_alert"
    else:
        message = (
            f"{s.breached_count} breached and {s.at_risk_count} at-risk endpoint remediation handoffs "
            f"across {s.tracked_work_item_count} tracked work items."
        )
        what = "endpoint remediation SLA"
        event_type = (
            "cavra.endpoint_remediation_sla.escalation_delivery"
            if escalation
            else "cavra.endpoint_remediation_sla.notification"
        )
    product = "CAVRA" if subject == "handoff" else "Ringward"
    if escalation:
        title = f"{product} {what} escalation ({n.level}) to {n.receiver}: {n.group_key}"
    else:
        title = f"{product} {what} {level}: {report.report_id}"
    wanted = set(n.items)
    items = [e.model_dump(mode="json") for e in report.escalations if f"{e.handoff_id}/{e.provider}" in wanted]
    return ConnectorEvent(
        event_id=n.key,
        event_type=event_type,
        created_at=now,
        severity=_EVENT_SEVERITY.get(n.severity, EventSeverity.INFO),
        title=title[:250],
        summary=(n.action + " " if n.action else "") + message,
        source="ringward-sla",
        session_id=report.report_id,
        attributes={
            "notification_reason": n.reason.value,
            "group_key": n.group_key,
            "route_id": n.route_id,
            "owner": n.owner,
            "receiver": n.receiver,
            "attempt": n.attempt,
            "escalation_level": n.level,
            "items": list(n.items)[:50],
            "omitted_item_count": max(0, len(n.items) - 50),
            "escalations": items[:10],
            "report_id": report.report_id,
            "subject": subject,
            **(
                {"health_id": report.escalation_payloads.get("executive_summary", {}).get("health_id")}
                if subject == "health"
                else {}
            ),
        },
    )


def run_cycle(
    store: Store,
    policy: SlaPolicy,
    report: SlaReport,
    config: ConnectorConfig,
    *,
    now: datetime,
    kinds: Iterable[NotificationKind] = (NotificationKind.GROUP, NotificationKind.ESCALATION),
    interval: timedelta = DEFAULT_SCHEDULE,
    run_id: str | None = None,
    actor: str = "ringward-sla",
    flow_run_id: str | None = None,
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: DeliveryHooks | None = None,
    claim_window: bool = True,
) -> CycleResult:
    """Evaluate -> route -> deliver -> escalate -> record, once for ``now``'s schedule window.

    With ``claim_window`` (the scheduled flow) the window's run key is taken first by CAS; a
    second run of the same window does nothing. Each send is also claimed by its decision key
    before delivery, so a manual run racing the schedule cannot send it twice either.

    Raises:
        ConfigError: the policy names receivers the connector config lacks.
        InputError: the report is from after ``now``.
    """
    if now.tzinfo is None:
        raise InputError("at: expected a time with a UTC offset")
    now = now.astimezone(UTC)
    if report.generated_at > now:
        raise InputError(f"report: generated at {iso(report.generated_at)}, after --at {iso(now)}")
    # imported on use: reading files and building reports must not pay for the connector engine
    from ringward.operations.delivery.delivery_ops import deliver_events

    check_receivers(policy, config)
    ledger = _ledger(store)
    window = window_start(now, interval)
    run_id = run_id or f"sla-{uuid.uuid4().hex[:12]}"
    wanted = set(kinds)
    if claim_window and not ledger.claim_window(policy.scope, window, run_id=run_id, now=now):
        empty = Plan(
            scope=policy.scope,
            generated_at=now,
            report_id=report.report_id,
            notifications=(),
            suppressions=(),
            waiting=(),
            incidents=(),
        )
        return CycleResult(policy.scope, now, window, run_id, empty, skipped_window=True)
    history = ledger.history(policy.scope)
    result = plan(history, policy, report, now)
    cycle = CycleResult(policy.scope, now, window, run_id, result)
    todo: dict[str, list[Notification]] = defaultdict(list)
    for n in result.notifications:
        if n.notification not in wanted:
            continue
        if not ledger.claim_send(policy.scope, iso(window), n.key, group_key=n.group_key, at=now, now=now):
            cycle.claimed_elsewhere.append(n.key)
            continue
        todo[n.receiver].append(n)
    events: list[HistoryEvent] = []
    evidence_ids: list[int | None] = []
    for receiver, notifications in sorted(todo.items()):
        by_kind: dict[NotificationKind, list[Notification]] = defaultdict(list)
        for n in notifications:
            by_kind[n.notification].append(n)
        for kind, batch in by_kind.items():
            source = SOURCE_ESCALATION if kind is NotificationKind.ESCALATION else SOURCE_GROUP
            runs = deliver_events(
                [notification_event(n, report, now) for n in batch],
                config,
                store=store,
                providers=receiver,
                lookups=lookups,
                run_id=run_id,
                actor=actor,
                flow_run_id=flow_run_id,
                source=source,
                hooks=hooks,
            )
            for n, run in zip(batch, runs, strict=True):
                error = "; ".join(r.error or r.status.value for r in run.failed)
                outcome = Outcome(
                    notification=n, ok=run.success, at=now, error=error, delivery_ref=str(run.evidence_id)
                )
                events.append(outcome_event(outcome))
                evidence_ids.append(run.evidence_id)
                row = {
                    "key": n.key,
                    "receiver": receiver,
                    "reason": n.reason.value,
                    "kind": kind.value,
                    "group_key": n.group_key,
                    "level": n.level,
                    "evidence_id": run.evidence_id,
                }
                (cycle.sent if run.success else cycle.failed).append(row if run.success else {**row, "error": error})
    plan_draft = EvidenceDraft(
        kind=KIND_PLAN,
        actor=actor,
        subject=EvidenceSubject(status="sent" if cycle.sent else "nothing-sent", success=not cycle.failed),
        flow_run_id=flow_run_id,
        payload=_plan_payload(cycle),
    )
    # the plan record and the outcomes in one transaction: a cycle is recorded whole or not at all
    records = ledger.record(policy.scope, events, [plan_draft], now=_wall(), evidence_ids=evidence_ids)
    cycle.plan_evidence_id = records[0].id if records else None
    return cycle


def _plan_payload(cycle: CycleResult) -> dict[str, Any]:
    body = cycle.summary()
    body.pop("plan_evidence_id", None)
    body["schema_version"] = cycle.plan.schema_version
    body["suppressed_count"] = len(cycle.plan.suppressions)
    body["suppressed"] = body["suppressed"][:1000]
    body["omitted_suppressed_count"] = max(0, len(cycle.plan.suppressions) - 1000)
    return body


def load_config(path: Path) -> ConnectorConfig:
    from ringward.operations.delivery.delivery_ops import load_connector_config

    return load_connector_config(path)


# --- acknowledgements and silences ---------------------------------------------------------------


ACK_CONTROLS = (
    "acknowledgement-records-review-only",
    "no-provider-token-or-secret-stored",
    "endpoint-mutation-remains-private-connector-responsibility",
    "acknowledger-is-route-owner-member-or-admin",
)


def ack_payload(event: Acknowledged, report_id: str) -> dict[str, Any]:
    """The recorded acknowledgement (``cavra.endpoint_remediation_sla.notification_ack.v1``)."""
    return {
        "schema_version": "cavra.endpoint_remediation_sla.notification_ack.v1",
        "acknowledgement_id": event.acknowledgement_id,
        "report_id": report_id,
        "group_key": event.group_key,
        "acknowledgement_state": event.state.value,
        "acknowledged_by": event.by,
        "acknowledged_at": iso(event.at),
        "notes": event.comment,
        "fingerprints": list(event.fingerprints),
        "controls": list(ACK_CONTROLS),
    }


def refusal_draft(event: AckRefused, *, extra: Mapping[str, Any] | None = None) -> EvidenceDraft:
    return EvidenceDraft(
        kind=KIND_ACK_REFUSED,
        actor=event.by,
        subject=EvidenceSubject(status="refused", success=False),
        payload={**event.model_dump(mode="json"), **(extra or {})},
    )


def acknowledge(
    store: Store,
    policy: SlaPolicy,
    report: SlaReport,
    *,
    group: str,
    state: str,
    by: str,
    at: datetime,
    comment: str | None = None,
) -> dict[str, Any]:
    """Record an acknowledgement (checked against the state table and the route's owner).
    ``group`` may name a route of any scope of the policy (``incidents/<route>``); ``report`` must
    be that scope's (:func:`current_report`).

    Raises:
        acks.AcknowledgementRefused: recorded first (auditable), then raised.
        StateError: no open incident. InputError: bad state or group. NotFoundError: unknown scope.
    """
    try:
        scoped, key, _ = resolve(policy, group)
    except NotFoundError as exc:  # the caller named it: bad input (the API checks first, for its 404)
        if "/" not in group:
            acks.resolve_group(policy, group)  # "group: expected one of the policy's routes (...)"
        raise InputError(exc.message) from None
    ledger = _ledger(store)
    current = plan(ledger.history(scoped.scope), scoped, report, at)
    try:
        event = acks.acknowledge(current, scoped, group=key, state=state, by=by, at=at, comment=comment)
    except acks.AcknowledgementRefused as refused:
        ledger.record(scoped.scope, [refused.event], [refusal_draft(refused.event)], now=_wall())
        raise
    payload = ack_payload(event, report.report_id)
    draft = EvidenceDraft(kind=KIND_ACK, actor=by, subject=EvidenceSubject(status=event.state.value), payload=payload)
    ledger.record(scoped.scope, [event], [draft], now=_wall())
    return payload


def parse_matchers(texts: Sequence[str]) -> list[Matcher]:
    """``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` (Alertmanager syntax)."""
    out: list[Matcher] = []
    for text in texts:
        for op, is_regex, is_equal in (
            ("=~", True, True),
            ("!~", True, False),
            ("!=", False, False),
            ("=", False, True),
        ):
            if op in text:
                name, _, value = text.partition(op)
                try:
                    out.append(
                        Matcher.model_validate(
                            {"name": name.strip(), "value": value.strip(), "is_regex": is_regex, "is_equal": is_equal}
                        )
                    )
                except ValidationError as exc:
                    raise InputError(f"matcher {text!r}: {validation_problem(exc)}") from None
                break
        else:
            raise InputError(f"matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex")
    return out


def add_silence(
    store: Store,
    scope: str,
    matchers: Sequence[str],
    *,
    starts_at: datetime,
    ends_at: datetime,
    by: str,
    comment: str,
    at: datetime,
) -> SilenceAdded:
    event = acks.add_silence(
        parse_matchers(matchers), starts_at=starts_at, ends_at=ends_at, created_by=by, comment=comment, at=at
    )
    draft = EvidenceDraft(
        kind=KIND_SILENCE, actor=by, subject=EvidenceSubject(status="created"), payload=event.model_dump(mode="json")
    )
    _ledger(store).record(scope, [event], [draft], now=_wall())
    return event


def list_silences(store: Store, scope: str, *, now: datetime) -> list[dict[str, Any]]:
    history = _ledger(store).history(scope)
    rows = []
    for event in history:
        if isinstance(event, SilenceAdded):
            rows.append(
                {
                    "silence_id": event.silence_id,
                    "state": acks.silence_state(history, event.silence_id, now),
                    "matchers": [m.describe() for m in event.matchers],
                    "starts_at": iso(event.starts_at),
                    "ends_at": iso(event.ends_at),
                    "created_by": event.created_by,
                    "comment": event.comment,
                }
            )
    return rows


def expire_silence(store: Store, scope: str, silence_id: str, *, by: str, at: datetime) -> SilenceExpired:
    ledger = _ledger(store)
    event = acks.expire_silence(ledger.history(scope), silence_id, by=by, at=at)
    draft = EvidenceDraft(
        kind=KIND_SILENCE, actor=by, subject=EvidenceSubject(status="expired"), payload=event.model_dump(mode="json")
    )
    ledger.record(scope, [event], [draft], now=_wall())
    return event


# --- the HTTP API's acknowledgements and open escalations -----------------------------------------

#: how many recorded reports (newest first) are searched for a given report id
MAX_REPORT_SCAN = 200
#: how many acknowledgement records (newest first, the caller's) are searched to replay one
MAX_ACK_SCAN = 200


def recorded_report(store: Store, *, report_id: str | None = None, scan_limit: int = MAX_REPORT_SCAN) -> SlaReport:
    """The newest recorded report (``endpoint-remediation-sla-report`` evidence, written by
    ``ringward sla report`` and the scheduled run), or the newest one with ``report_id``.

    The API resolves reports this way rather than from a client-named path: what a caller can
    acknowledge is only ever what the server itself evaluated and recorded.

    Raises:
        NotFoundError: no recorded report (with that id among the newest ``scan_limit``).
    """
    before: int | None = None
    seen = 0
    while seen < scan_limit:
        page = store.search_evidence(
            EvidenceQuery(kind=KIND_REPORT, before_id=before, limit=min(50, scan_limit - seen), with_total=False)
        )
        for record in page.items:
            seen += 1
            document = record.payload.get("report")
            if report_id is not None and record.payload.get("report_id") != report_id:
                continue
            if not isinstance(document, dict):
                continue
            try:
                return SlaReport.model_validate(document)
            except ValidationError as exc:
                raise InputError(f"evidence record {record.id}: report: {validation_problem(exc)}") from None
        if page.next_before_id is None or not page.items:
            break
        before = page.next_before_id
    if report_id is None:
        raise NotFoundError("no SLA report is recorded yet (run `ringward sla report` or the sla-escalation flow)")
    raise NotFoundError(f"report_id: no recorded SLA report {report_id!r} among the newest {scan_limit}")


def resolve(policy: SlaPolicy, group: str) -> tuple[SlaPolicy, str, str]:
    """``route_id`` (of the remediation scope) or ``<scope>/<route_id>`` of any scope the policy
    has (remediation, ``incidents``, health) -> (that scope's policy, group key, the route's owner).

    Raises:
        NotFoundError: no such scope or route.
    """
    scope, _, route_id = group.rpartition("/")
    scoped = policy.for_scope(scope) if scope else policy
    if scoped is None:
        known = ", ".join(f"{policy.scope}/{r}" for r in sorted(policy.routes))
        raise NotFoundError(
            f"group: no route {group!r}: scope {scope!r} is not the policy's ({', '.join(policy.scopes)}; "
            f"routes: {known})"
        )
    if route_id not in scoped.routes:
        known = ", ".join(sorted(scoped.routes)) or "none"
        raise NotFoundError(f"group: no route {group!r} in scope {scoped.scope} (routes: {known})")
    return scoped, acks.resolve_group(scoped, route_id), scoped.routes[route_id].owner


def route_of(policy: SlaPolicy, group: str) -> tuple[str, str | None]:
    """``route_id`` or ``<scope>/<route_id>`` -> (group key, the route's owner).

    Raises:
        NotFoundError: no such route in the policy's scopes.
    """
    _, key, owner = resolve(policy, group)
    return key, owner


def current_report(store: Store, policy: SlaPolicy, scope: str, *, now: datetime,
                   report_id: str | None = None) -> SlaReport:
    """The report a decision on ``scope``'s groups is taken against: the remediation scope's newest
    recorded report (or the one named); the incidents' live clocks at ``now``; the newest recorded
    health evaluation. A client never names a file.

    Raises:
        NotFoundError: nothing recorded (yet). InputError: a report id for the live incident clocks.
    """
    if scope == policy.scope:
        return recorded_report(store, report_id=report_id)
    if policy.incidents is not None and scope == policy.incidents.scope:
        if report_id is not None:
            raise InputError("report_id: incident groups are decided against the live incident clocks; omit it")
        return incident_report_now(store, policy, now=now)
    if policy.health is not None and scope == policy.health.scope:
        from ringward.core.sla.health import health_report
        from ringward.operations.sla.health_ops import recorded_health

        return health_report(recorded_health(store))
    raise NotFoundError(f"scope {scope!r} is not one of the policy's ({', '.join(policy.scopes)})")


# --- incidents as work items ---------------------------------------------------------------------


def incident_report_now(store: Store, policy: SlaPolicy, *, now: datetime,
                        generated_by: str = "ringward-incidents") -> SlaReport:
    """Every not-closed incident's clocks at ``now`` as a report (:mod:`ringward.core.sla.incidents`).

    Raises:
        ConfigError: the policy has no ``incidents`` section.
    """
    from ringward.core.sla.incidents import incident_report
    from ringward.operations.incidents import incident_ops

    if policy.incidents is None:
        raise ConfigError("routing policy: no incidents section; incidents are not fed to the SLA engine")
    return incident_report(incident_ops.list_incidents(store), now=now,
                           at_risk_fraction=policy.incidents.at_risk_fraction, generated_by=generated_by)


def run_incident_cycle(
    store: Store,
    policy: SlaPolicy,
    config: ConnectorConfig,
    *,
    now: datetime,
    interval: timedelta = DEFAULT_SCHEDULE,
    claim_window: bool = True,
    actor: str = "ringward-sla",
    flow_run_id: str | None = None,
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: DeliveryHooks | None = None,
    record_report: bool = True,
) -> tuple[SlaReport, CycleResult]:
    """One cycle over the incidents' clocks (their own scope and run key): the report at ``now``
    (recorded as ``incident-sla-report``), then notify and escalate as :func:`run_cycle` does.

    Raises:
        ConfigError: the policy has no ``incidents`` section, or names unconfigured receivers.
    """
    report = incident_report_now(store, policy, now=now, generated_by=actor)
    scoped = policy.incident_policy
    assert scoped is not None
    if record_report:
        _record_report(store, report, actor, flow_run_id, kind=INCIDENT_REPORT_KIND)
    result = run_cycle(store, scoped, report, config, now=now, interval=interval, claim_window=claim_window,
                       actor=actor, flow_run_id=flow_run_id, lookups=lookups, hooks=hooks)
    return report, result


def refuse_acknowledgement(
    store: Store, policy: SlaPolicy, *, group: str, state: str, by: str, at: datetime, reason: str
) -> AckRefused:
    """Record a refused acknowledgement (``ack-refused`` history row + evidence) and return it.
    The same refusal twice at the same instant is recorded once."""
    scoped, key, _ = resolve(policy, group)
    try:
        chosen = AckState(state)
    except ValueError:
        raise InputError(f"acknowledgement_state must be one of: {', '.join(s.value for s in AckState)}") from None
    event = AckRefused(at=at.astimezone(UTC), group_key=key, state=chosen, by=by, reason=reason)
    with contextlib.suppress(StoreConflictError):  # this very refusal is already on record
        _ledger(store).record(scoped.scope, [event], [refusal_draft(event)], now=_wall())
    return event


def acknowledge_checked(
    store: Store,
    policy: SlaPolicy,
    report: SlaReport,
    *,
    group: str,
    state: str,
    by: str,
    at: datetime,
    comment: str | None = None,
    is_admin: bool = False,
) -> tuple[dict[str, Any], bool]:
    """:func:`acknowledge` as the API does it: the route's owner, a member of its group, the
    policy's ``admins`` and (``is_admin``) an admin token may act; anyone else is refused and the
    refusal recorded. Idempotent: the same decision by the same actor at the same instant returns
    the recorded payload again (``replayed``) instead of failing on the duplicate. A later repeat
    of ``acknowledged`` renews the acknowledgement (state table in :mod:`ringward.core.sla.acks`).
    Returns (payload, replayed).

    Raises:
        NotFoundError: unknown group. AcknowledgementRefused: not owner/member/admin (recorded).
        StateError: no open incident / acknowledgement not required. InputError: bad state.
    """
    scoped, key, owner = resolve(policy, group)
    if is_admin and by not in scoped.admins:
        scoped = with_admin(scoped, by)
    try:
        chosen = AckState(state)
    except ValueError:
        raise InputError(f"acknowledgement_state must be one of: {', '.join(s.value for s in AckState)}") from None
    if not scoped.may_act(owner or "", by):
        reason = f"{by} is not {owner or 'the route owner'}, a member of it, or an admin"
        refused = refuse_acknowledgement(store, scoped, group=key, state=chosen.value, by=by, at=at, reason=reason)
        raise acks.AcknowledgementRefused(f"acknowledgement refused: {reason}", refused)
    wanted = acknowledgement_id_for(key, chosen.value, by, at)
    history = _ledger(store).history(scoped.scope)
    if any(isinstance(e, Acknowledged) and e.acknowledgement_id == wanted for e in history):
        before: int | None = None
        for _ in range(max(1, MAX_ACK_SCAN // 50)):
            query = EvidenceQuery(kind=KIND_ACK, actor=by, before_id=before, limit=50, with_total=False)
            page = store.search_evidence(query)
            for record in page.items:
                if record.payload.get("acknowledgement_id") == wanted:
                    return dict(record.payload), True
            if page.next_before_id is None:
                break
            before = page.next_before_id
    payload = acknowledge(store, scoped, report, group=key, state=chosen.value, by=by, at=at, comment=comment)
    return payload, False


def with_admin(policy: SlaPolicy, name: str) -> SlaPolicy:
    """``policy`` with ``name`` among its admins (an admin API token acts as a policy admin).
    Only ``admins`` changes, so the copy's cached routes and calendars stay right."""
    return policy.model_copy(update={"admins": (*policy.admins, name)})


def open_escalations(store: Store, policy: SlaPolicy, report: SlaReport, *, now: datetime) -> dict[str, Any]:
    """The open incidents at ``now`` (from the recorded history; nothing is written), per owner.
    ``policy`` is the scope's policy (:meth:`SlaPolicy.for_scope`)."""
    current = plan(_ledger(store).history(policy.scope), policy, report, now)
    by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for incident in current.incidents:
        by_owner[incident.owner].append(incident.model_dump(mode="json"))
    return {
        "scope": policy.scope,
        "at": iso(now),
        "report_id": report.report_id,
        "incident_count": len(current.incidents),
        "owners": dict(sorted(by_owner.items())),
    }
