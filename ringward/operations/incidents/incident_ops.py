"""What ``ringward incident ...`` and the incident flows run (no Prefect here).

Every transition is one decision: the record's compare-and-set on ``incidents.records`` (and, for
an open, on ``incidents.dedup``) plus its evidence record (``incident-opened``,
``incident-acknowledged``, ``incident-updated``, ``incident-closed``) in one transaction. Opening
is idempotent by dedup key: while the incident of a key is not closed, opening again returns it
(``opened: false``); after its close the key opens a new generation that supersedes it (there is no
reopen, see :mod:`ringward.core.incidents.record`).

The breach report evaluates every not-closed incident's clocks at ``now``
(:func:`ringward.core.incidents.clocks.breaches`); with a connector config it delivers one event per
(incident, clock, level) through the connector platform. A notice is recorded in
``incidents.notices`` only once delivered, so a re-run sends nothing again, and a failed send is
retried by the next run; the platform's delivery ledger de-duplicates by the same event id too.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from ringward.core.errors import (
    EvidenceIntegrityError,
    InputError,
    NotFoundError,
    StoreConflictError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.incidents import record as model
from ringward.core.incidents.clocks import DEFAULT_AT_RISK_FRACTION, SlaBreach, breaches, clocks
from ringward.core.incidents.record import (
    DisclosureField,
    IncidentLinks,
    IncidentRecord,
    IncidentSeverity,
    IncidentState,
    IncidentType,
)
from ringward.store.incidents.state import (
    DEDUP_NAMESPACE,
    NOTICES_NAMESPACE,
    RECORDS_NAMESPACE,
    Change,
    IncidentStateRepository,
)

if TYPE_CHECKING:
    from connectors.secrets import SecretLookup
    from ringward.core.delivery.config import ConnectorConfig
    from ringward.core.delivery.event import ConnectorEvent
    from ringward.operations.delivery.delivery_ops import DeliveryHooks
    from ringward.store import Store

KIND_OPENED: Final = "incident-opened"
KIND_ACKNOWLEDGED: Final = "incident-acknowledged"
KIND_UPDATED: Final = "incident-updated"
KIND_CLOSED: Final = "incident-closed"
KIND_BREACH_DELIVERY: Final = "incident-breach-delivery"
DECISION_SCHEMA: Final = "ringward.incident-decision.v1"
BREACHES_SCHEMA: Final = "ringward.incident-breaches.v1"
BREACH_EVENT_SOURCE: Final = "ringward_incident_breach"
MAX_ATTEMPTS: Final = 3


def repo(store: Store) -> IncidentStateRepository:
    return IncidentStateRepository(store)


# --- parsing at the boundary --------------------------------------------------------------------------------


def parse_type(text: str) -> IncidentType:
    try:
        return IncidentType(text)
    except ValueError:
        raise InputError(f"--type: expected one of {', '.join(t.value for t in IncidentType)}, "
                         f"found {text!r}") from None


def parse_severity(text: str) -> IncidentSeverity:
    try:
        return IncidentSeverity(text.lower())
    except ValueError:
        raise InputError(f"--severity: expected one of {', '.join(s.value for s in IncidentSeverity)}, "
                         f"found {text!r}") from None


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise InputError(f"--at: expected a time with a UTC offset, found {now.isoformat()}")
    return now.astimezone(UTC)


# --- reads ------------------------------------------------------------------------------------------------


def _parse(value: Any, where: str) -> IncidentRecord:
    try:
        return IncidentRecord.model_validate(value)
    except ValidationError as exc:
        raise EvidenceIntegrityError(f"stored incident {where} is not a valid ringward.incident.v1: "
                                     f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc


def get(store: Store, incident_id: str) -> tuple[IncidentRecord, int]:
    """The incident and its row version.

    Raises:
        NotFoundError: no such incident.
    """
    entry = repo(store).get(RECORDS_NAMESPACE, incident_id)
    if entry is None:
        raise NotFoundError(f"incident {incident_id!r}: not found (see `ringward incident list`)")
    return _parse(entry.value, incident_id), entry.version


def list_incidents(store: Store, *, only_open: bool = False) -> builtins.list[IncidentRecord]:
    """Every incident (``only_open``: not closed), oldest first."""
    found = [_parse(e.value, e.key) for e in repo(store).list(RECORDS_NAMESPACE)]
    if only_open:
        found = [i for i in found if i.state is not IncidentState.CLOSED]
    return sorted(found, key=lambda i: (i.opened_at, i.incident_id))


def show(store: Store, incident_id: str, *, now: datetime) -> dict[str, Any]:
    incident, _ = get(store, incident_id)
    return {**incident.document(), "clocks": [c.model_dump(mode="json") for c in clocks(incident, _aware(now))]}


# --- decisions ------------------------------------------------------------------------------------------


def _draft(kind: str, incident: IncidentRecord, *, action: str, actor: str, changed: dict[str, Any],
           flow_run_id: str | None) -> EvidenceDraft:
    return EvidenceDraft(
        kind=kind, actor=actor, flow_run_id=flow_run_id,
        subject=EvidenceSubject(status=incident.state.value, success=True),
        payload={"schema_version": DECISION_SCHEMA, "action": action, "incident_id": incident.incident_id,
                 "type": incident.type.value, "severity": incident.severity.value, "state": incident.state.value,
                 "changed": changed, "incident": incident.document()})


@dataclass(frozen=True)
class OpenPlan:
    """An open decided but not yet written: ``existing`` set = nothing to write (idempotent re-run)."""

    incident: IncidentRecord
    existing: bool
    changes: tuple[Change, ...] = ()
    draft: EvidenceDraft | None = None


def plan_open(store: Store, *, type: IncidentType, severity: IncidentSeverity, summary: str,
              reporter: str | None, links: IncidentLinks, dedup_key: str | None, actor: str, now: datetime,
              disclosure_window_days: int = model.DEFAULT_DISCLOSURE_WINDOW_DAYS,
              flow_run_id: str | None = None) -> OpenPlan:
    """Decide an open (what :func:`open_incident` writes; the KEV check writes it inside its own
    transaction). Bad fields raise ``InputError`` naming the option."""
    when = _aware(now)
    if not summary.strip() or "\n" in summary or "\r" in summary:
        raise InputError("--summary: expected one non-empty line")
    if len(summary.strip()) > 1000:
        raise InputError(f"--summary: at most 1000 characters, found {len(summary.strip())}")
    if reporter is not None and not reporter.strip():
        raise InputError("--reporter: expected a non-empty name (or leave it out)")
    model.refuse_credentials(summary, "--summary")
    model.refuse_credentials(reporter, "--reporter")
    if dedup_key is not None and not 1 <= len(dedup_key) <= 400:
        raise InputError(f"--dedup-key: expected 1..400 characters, found {len(dedup_key)}")
    if not 1 <= disclosure_window_days <= 365:
        raise InputError(f"--disclosure-window-days: expected 1..365, found {disclosure_window_days}")
    key = dedup_key or model.default_dedup_key(type=type, severity=severity, summary=summary, reporter=reporter,
                                               links=links, opened_at=when)
    state = repo(store)
    pointer = state.get(DEDUP_NAMESPACE, key)
    generation, supersedes = 1, None
    if pointer is not None:
        current, _ = get(store, pointer.value["incident_id"])
        if current.state is not IncidentState.CLOSED:
            return OpenPlan(incident=current, existing=True)
        generation, supersedes = current.generation + 1, current.incident_id
    incident = model.open_incident(dedup_key=key, generation=generation, supersedes=supersedes, type=type,
                                   severity=severity, summary=summary, reporter=reporter, links=links, actor=actor,
                                   now=when, disclosure_window_days=disclosure_window_days)
    if state.get(RECORDS_NAMESPACE, incident.incident_id) is not None:  # a pointer lost by hand: never overwrite
        raise EvidenceIntegrityError(f"incident {incident.incident_id} exists but {DEDUP_NAMESPACE}/{key} does not "
                                     "point at it; the incident state was altered")
    changes: tuple[Change, ...] = (
        (DEDUP_NAMESPACE, key, {"incident_id": incident.incident_id, "generation": generation},
         0 if pointer is None else pointer.version),
        (RECORDS_NAMESPACE, incident.incident_id, incident.document(), 0),
    )
    draft = _draft(KIND_OPENED, incident, action="open", actor=actor, flow_run_id=flow_run_id,
                   changed={"generation": generation, "supersedes": supersedes})
    return OpenPlan(incident=incident, existing=False, changes=changes, draft=draft)


def plan_note(store: Store, dedup_key: str, *, note: str, actor: str, now: datetime,
              flow_run_id: str | None = None) -> tuple[Change, EvidenceDraft] | None:
    """An ``update`` note on the not-closed incident of ``dedup_key`` (what another domain's decision
    writes inside its own transaction, e.g. the KEV check when VEX resolves a match), or None when no
    such incident is open."""
    pointer = repo(store).get(DEDUP_NAMESPACE, dedup_key)
    if pointer is None:
        return None
    incident, version = get(store, pointer.value["incident_id"])
    if incident.state is IncidentState.CLOSED:
        return None
    decided = model.update(incident, actor=actor, now=_aware(now), note=note[:4000], disclosure={})
    draft = _draft(KIND_UPDATED, decided, action="update", actor=actor, flow_run_id=flow_run_id,
                   changed={"note": decided.updates[-1].note, "disclosure": {}, "previous_disclosure": {}})
    return (RECORDS_NAMESPACE, incident.incident_id, decided.document(), version), draft


def _result(incident: IncidentRecord, *, changed: bool, evidence_id: int | None, now: datetime) -> dict[str, Any]:
    return {"changed": changed, "evidence_id": evidence_id, "incident": incident.document(),
            "breaches": [b.model_dump(mode="json") for b in breaches(incident, now)]}


def open_incident(store: Store, *, type: IncidentType, severity: IncidentSeverity, summary: str,
                  reporter: str | None = None, links: IncidentLinks | None = None, dedup_key: str | None = None,
                  actor: str, now: datetime, disclosure_window_days: int = model.DEFAULT_DISCLOSURE_WINDOW_DAYS,
                  flow_run_id: str | None = None) -> dict[str, Any]:
    """Open (or return the incident already open for the dedup key: ``changed`` false)."""
    when = _aware(now)
    for attempt in range(MAX_ATTEMPTS):
        plan = plan_open(store, type=type, severity=severity, summary=summary, reporter=reporter,
                         links=links or IncidentLinks(), dedup_key=dedup_key, actor=actor, now=when,
                         disclosure_window_days=disclosure_window_days, flow_run_id=flow_run_id)
        if plan.existing or plan.draft is None:
            return _result(plan.incident, changed=False, evidence_id=None, now=when)
        try:
            (record,) = repo(store).decide(plan.changes, [plan.draft], actor=actor, now=when)
        except StoreConflictError:  # a concurrent open of the same key: re-read, it is now the existing one
            if attempt == MAX_ATTEMPTS - 1:
                raise
            continue
        return _result(plan.incident, changed=True, evidence_id=record.id, now=when)
    raise AssertionError("unreachable")  # pragma: no cover


def _transition(store: Store, incident_id: str, kind: str, action: str, *, actor: str, now: datetime,
                flow_run_id: str | None, apply: Any) -> dict[str, Any]:
    when = _aware(now)
    incident, version = get(store, incident_id)
    decided: IncidentRecord | None = apply(incident, when)
    if decided is None:
        return _result(incident, changed=False, evidence_id=None, now=when)
    last = decided.updates[-1]
    changed = {"note": last.note, "disclosure": {k: v.isoformat() for k, v in last.disclosure.items()},
               "previous_disclosure": {k: v.isoformat() if v else None for k, v in last.previous_disclosure.items()}}
    draft = _draft(kind, decided, action=action, actor=actor, flow_run_id=flow_run_id, changed=changed)
    (record,) = repo(store).decide([(RECORDS_NAMESPACE, incident_id, decided.document(), version)], [draft],
                                   actor=actor, now=when)
    return _result(decided, changed=True, evidence_id=record.id, now=when)


def acknowledge(store: Store, incident_id: str, *, actor: str, now: datetime,
                flow_run_id: str | None = None) -> dict[str, Any]:
    return _transition(store, incident_id, KIND_ACKNOWLEDGED, "ack", actor=actor, now=now, flow_run_id=flow_run_id,
                       apply=lambda i, when: model.acknowledge(i, actor=actor, now=when))


def update(store: Store, incident_id: str, *, actor: str, now: datetime, note: str | None = None,
           disclosure: Mapping[DisclosureField, datetime] | None = None,
           flow_run_id: str | None = None) -> dict[str, Any]:
    if note is not None and len(note) > 4000:
        raise InputError(f"--note: at most 4000 characters, found {len(note)}")
    model.refuse_credentials(note, "--note")
    return _transition(store, incident_id, KIND_UPDATED, "update", actor=actor, now=now, flow_run_id=flow_run_id,
                       apply=lambda i, when: model.update(i, actor=actor, now=when, note=note,
                                                          disclosure=dict(disclosure or {})))


def close(store: Store, incident_id: str, *, actor: str, now: datetime, resolution: str,
          flow_run_id: str | None = None) -> dict[str, Any]:
    if len(resolution) > 4000:
        raise InputError(f"--resolution: at most 4000 characters, found {len(resolution)}")
    model.refuse_credentials(resolution, "--resolution")
    return _transition(store, incident_id, KIND_CLOSED, "close", actor=actor, now=now, flow_run_id=flow_run_id,
                       apply=lambda i, when: model.close(i, actor=actor, now=when, resolution=resolution))


# --- breaches -----------------------------------------------------------------------------------------------


def breach_report(store: Store, *, now: datetime,
                  at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION) -> dict[str, Any]:
    """Every not-closed incident's breached and at-risk clocks at ``now`` (a read: no evidence)."""
    when = _aware(now)
    if not 0 < at_risk_fraction <= 1:
        raise InputError(f"--at-risk-fraction: expected 0 < f <= 1, found {at_risk_fraction}")
    found: list[SlaBreach] = []
    incidents = list_incidents(store, only_open=True)
    for incident in incidents:
        found.extend(breaches(incident, when, at_risk_fraction))
    return {"schema_version": BREACHES_SCHEMA, "generated_at": when.isoformat(), "incidents_checked": len(incidents),
            "breached": sum(1 for b in found if b.state.value == "breached"),
            "at_risk": sum(1 for b in found if b.state.value == "at-risk"),
            "breaches": [b.model_dump(mode="json") for b in found]}


def notice_key(breach: dict[str, Any]) -> str:
    """The idempotency key of one notice: (incident, clock, level)."""
    return f"{breach['incident_id']}|{breach['clock']}|{breach['state']}"


def breach_event(breach: dict[str, Any], incident: IncidentRecord, now: datetime) -> ConnectorEvent:
    from ringward.core.delivery.event import ConnectorEvent, Severity

    level = {IncidentSeverity.CRITICAL: Severity.CRITICAL, IncidentSeverity.HIGH: Severity.ERROR,
             IncidentSeverity.MEDIUM: Severity.WARNING, IncidentSeverity.LOW: Severity.INFO}[incident.severity]
    if breach["state"] == "at-risk" and level in (Severity.CRITICAL, Severity.ERROR):
        level = Severity.WARNING
    hours = breach["target_seconds"] / 3600
    verb = "BREACHED" if breach["state"] == "breached" else "at risk"
    return ConnectorEvent(
        event_id=f"incident-breach:{breach['incident_id']}:{breach['clock']}:{breach['state']}",
        event_type=f"ringward.incident.sla.{breach['state']}", created_at=now, severity=level,
        title=f"Incident {incident.incident_id} ({incident.severity.value} {incident.type.value}): "
              f"{breach['clock']} clock {verb}"[:250],
        summary=(f"{incident.summary}\nTarget {hours:g} h, due {breach['due_at']}; observed "
                 f"{breach['observed_seconds'] / 3600:.1f} h; overdue {breach['overdue_seconds'] / 3600:.1f} h; "
                 f"state {incident.state.value}.")[:8000],
        source="ringward-incidents", session_id=incident.incident_id,
        channel=incident.links.channels[0] if incident.links.channels else None,
        attributes={"incident_id": incident.incident_id, "type": incident.type.value,
                    "severity": incident.severity.value, "incident_state": incident.state.value, **breach,
                    "links": incident.links.model_dump(mode="json")})


def load_config(path: Path) -> ConnectorConfig:
    from ringward.operations.delivery.delivery_ops import load_connector_config

    return load_connector_config(path)


def deliver_breaches(store: Store, config: ConnectorConfig, *, now: datetime, actor: str = "ringward-incidents",
                     providers: str = "all", lookups: Mapping[str, SecretLookup] | None = None,
                     flow_run_id: str | None = None, hooks: DeliveryHooks | None = None,
                     at_risk_fraction: float = DEFAULT_AT_RISK_FRACTION) -> dict[str, Any]:
    """The breach report, delivered: each (incident, clock, level) not yet delivered is sent once;
    delivered notices and the run summary are recorded in one transaction. ``result["ok"]`` false
    = a send failed (exit 1; the next run retries it)."""
    from ringward.operations.delivery.delivery_ops import deliver_events, new_run_id

    when = _aware(now)
    report = breach_report(store, now=when, at_risk_fraction=at_risk_fraction)
    state = repo(store)
    pending: list[tuple[dict[str, Any], ConnectorEvent]] = []
    skipped: list[str] = []
    incidents: dict[str, IncidentRecord] = {}
    for breach in report["breaches"]:
        key = notice_key(breach)
        if state.get(NOTICES_NAMESPACE, key) is not None:
            skipped.append(key)
            continue
        incident = incidents.get(breach["incident_id"]) or get(store, breach["incident_id"])[0]
        incidents[incident.incident_id] = incident
        pending.append((breach, breach_event(breach, incident, when)))
    sent: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    changes: list[Change] = []
    if pending:
        run_id = new_run_id("incident")
        runs = deliver_events([e for _, e in pending], config, store=store, providers=providers, lookups=lookups,
                              run_id=run_id, actor=actor, flow_run_id=flow_run_id, source=BREACH_EVENT_SOURCE,
                              hooks=hooks)
        for (breach, event), run in zip(pending, runs, strict=True):
            key = notice_key(breach)
            row: dict[str, Any] = {"key": key, "event_id": event.event_id, "delivery_evidence_id": run.evidence_id}
            if run.success:
                sent.append(row)
                changes.append((NOTICES_NAMESPACE, key, {**row, "delivered_at": when.isoformat(),
                                                         "clock": breach["clock"], "level": breach["state"]}, 0))
            else:
                failed.append({**row, "error": "; ".join(r.error or r.status.value for r in run.failed)[:1000]})
    result = {**report, "delivered": sent, "already_delivered": skipped, "failed": failed, "ok": not failed,
              "evidence_id": None}
    if pending:
        draft = EvidenceDraft(
            kind=KIND_BREACH_DELIVERY, actor=actor, flow_run_id=flow_run_id,
            subject=EvidenceSubject(status="delivered" if not failed else "failed", success=not failed),
            payload={"schema_version": "ringward.incident-breach-delivery.v1", "generated_at": when.isoformat(),
                     "delivered": sent, "already_delivered": skipped, "failed": failed,
                     "breaches": report["breaches"][:1000]})
        try:
            (record,) = state.decide(changes, [draft], actor=actor, now=when)
        except StoreConflictError:
            # a concurrent run recorded the same notices; the platform ledger kept the sends single
            changes = [c for c in changes if state.get(NOTICES_NAMESPACE, c[1]) is None]
            (record,) = state.decide(changes, [draft], actor=actor, now=when)
        result["evidence_id"] = record.id
    return result
