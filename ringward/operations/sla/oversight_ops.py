"""Owner reviews (§9.11), owner digests and suppression trends (§9.14), history and dashboard (§4.31).

- ``review``: the owner's decision on an escalated incident (:mod:`ringward.core.sla.reviews`),
  recorded as a history event and an ``endpoint-remediation-sla-escalation-review`` record; a
  refusal is recorded as for acknowledgements.
- ``digest``: every open incident of every scope at ``at`` per owner; ``deliver_digest`` sends each
  owner's digest to the owner's receivers once per digest window (a failed send is tried again on
  the next call; only a successful one counts, claimed per attempt so two callers send once).
- ``trends``: suppressions of the recorded cycle plans, per day and category.
- ``history`` / ``dashboard``: the ledger (``sla_event``), newest first, filtered in SQL, exact
  totals and keyset paging -- no 500-record cap, no string-sorted times (§11.11).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.event import Severity as EventSeverity
from ringward.core.errors import InputError, NotFoundError, StoreConflictError, validation_problem
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.sla import reviews
from ringward.core.sla.acks import AcknowledgementRefused, silence_state
from ringward.core.sla.digest import owner_digest, suppression_trends
from ringward.core.sla.engine import Plan, iso, plan
from ringward.core.sla.history import (
    Acknowledged,
    AckRefused,
    HistoryEvent,
    NotificationKind,
    Reason,
    SendFailed,
    SentOk,
    SilenceAdded,
    SilenceExpired,
)
from ringward.core.sla.policy import SlaPolicy
from ringward.core.sla.report import SlaReport
from ringward.operations.sla import sla_ops

if TYPE_CHECKING:
    from connectors.secrets import SecretLookup
    from ringward.core.delivery.config import ConnectorConfig
    from ringward.operations.delivery.delivery_ops import DeliveryHooks
    from ringward.store import Store

KIND_REVIEW = "endpoint-remediation-sla-escalation-review"
KIND_DIGEST = "endpoint-remediation-sla-escalation-owner-digest"
KIND_TREND = "endpoint-remediation-sla-escalation-suppression-trend"
SOURCE_DIGEST = "endpoint_remediation_sla_escalation_owner_digest"
HISTORY_SCHEMA = "cavra.endpoint_remediation_sla.notification_history.v1"
DASHBOARD_SCHEMA = "cavra.endpoint_remediation_sla.notification_dashboard.v1"
HISTORY_KINDS = ("sent-ok", "send-failed", "ack", "ack-refused", "silence", "silence-expired")
MAX_LIMIT = 500
#: recorded cycle plans read by ``trends`` (newest first); past it the result says ``records_truncated``
MAX_PLAN_RECORDS = 20_000
DIGEST_SCOPE_SUFFIX = ":digest"


def _ledger(store: Store) -> Any:
    from ringward.store.sla.ledger import SlaLedger

    return SlaLedger(store)


def _wall() -> datetime:
    return datetime.now(UTC)


# --- reviews -------------------------------------------------------------------------------------------


def review(
    store: Store,
    policy: SlaPolicy,
    report: SlaReport,
    *,
    group: str,
    state: str,
    by: str,
    at: datetime,
    plan_id: str | None = None,
    owner: str | None = None,
    provider: str | None = None,
    until: datetime | None = None,
    external_ref: str | None = None,
    comment: str | None = None,
    is_admin: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Record an owner review (rules of :mod:`ringward.core.sla.reviews`); ``report`` is the
    group's scope's (:func:`sla_ops.current_report`). Returns (the §9.11 record, replayed): the same
    review by the same person at the same instant is answered from its record, never twice.

    Raises:
        AcknowledgementRefused: not the owner, a member or an admin (recorded first).
        StateError: no open incident / plan_id not the open one. InputError: bad fields.
        NotFoundError: unknown group.
    """
    scoped, key, _ = sla_ops.resolve(policy, group)
    if is_admin and by not in scoped.admins:
        scoped = sla_ops.with_admin(scoped, by)
    ledger = _ledger(store)
    current = plan(ledger.history(scoped.scope), scoped, report, at)
    try:
        event, record = reviews.review(
            current, scoped, group=key, state=state, by=by, at=at, report_id=report.report_id, plan_id=plan_id,
            owner=owner, provider=provider, until=until, external_ref=external_ref, comment=comment,
        )
    except AcknowledgementRefused as refused:
        draft = sla_ops.refusal_draft(refused.event, extra={"review_state": state})
        with contextlib.suppress(StoreConflictError):  # this very refusal is already on record
            ledger.record(scoped.scope, [refused.event], [draft], now=_wall())
        raise
    draft = EvidenceDraft(kind=KIND_REVIEW, actor=by, subject=EvidenceSubject(status=record["review_state"]),
                          payload=record)
    try:
        ledger.record(scoped.scope, [event], [draft], now=_wall())
    except StoreConflictError:
        page = store.search_evidence(EvidenceQuery(kind=KIND_REVIEW, actor=by, limit=50, with_total=False))
        for item in page.items:
            if item.payload.get("review_id") == record["review_id"]:
                return dict(item.payload), True
        raise
    return record, False


# --- reports as of a time ------------------------------------------------------------------------------


def recorded_report_at(store: Store, at: datetime, *, scan_limit: int = 500) -> SlaReport | None:
    """The newest recorded remediation report generated at or before ``at`` (time travel), if any."""
    before: int | None = None
    seen = 0
    while seen < scan_limit:
        page = store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_REPORT, before_id=before, limit=50,
                                                   with_total=False))
        for record in page.items:
            seen += 1
            document = record.payload.get("report")
            if not isinstance(document, dict):
                continue
            try:
                report = SlaReport.model_validate(document)
            except ValidationError as exc:
                raise InputError(f"evidence record {record.id}: report: {validation_problem(exc)}") from None
            if report.generated_at <= at:
                return report
        if page.next_before_id is None or not page.items:
            break
        before = page.next_before_id
    return None


def plans_at(store: Store, policy: SlaPolicy, *, now: datetime,
             report: SlaReport | None = None) -> list[tuple[Plan, SlaPolicy]]:
    """The plan of every scope at ``now`` (nothing is written): remediation (``report``, else the
    newest recorded one not after ``now``), incidents (live clocks), health (newest recorded)."""
    ledger = _ledger(store)
    out: list[tuple[Plan, SlaPolicy]] = []
    chosen = report or recorded_report_at(store, now)
    if chosen is not None:
        out.append((plan(ledger.history(policy.scope), policy, chosen, now), policy))
    if policy.incident_policy is not None:
        incidents = sla_ops.incident_report_now(store, policy, now=now)
        out.append((plan(ledger.history(policy.incident_policy.scope), policy.incident_policy, incidents, now),
                    policy.incident_policy))
    if policy.health_policy is not None:
        from ringward.core.sla.health import health_report
        from ringward.operations.sla.health_ops import recorded_health

        try:
            health = health_report(recorded_health(store))
        except NotFoundError:
            health = None
        if health is not None and health.generated_at <= now:
            out.append((plan(ledger.history(policy.health_policy.scope), policy.health_policy, health, now),
                        policy.health_policy))
    return out


# --- owner digest --------------------------------------------------------------------------------------


def digest(store: Store, policy: SlaPolicy, *, now: datetime, report: SlaReport | None = None,
           window: timedelta = timedelta(days=1)) -> dict[str, Any]:
    """The owner digest at ``now`` over every scope (rules D1-D4 of :mod:`ringward.core.sla.digest`)."""
    return owner_digest(plans_at(store, policy, now=now, report=report), now=now, window=window)


def _digest_event(result: Mapping[str, Any], owner: Mapping[str, Any], key: str, now: datetime) -> ConnectorEvent:
    severity = EventSeverity.CRITICAL if owner["triggered_count"] else EventSeverity.WARNING
    lines = [
        f"- {r['group_key']}: {r['state']}, rung {r['escalation_level'] or '-'}, "
        f"ack SLO {r['acknowledgement_slo_state']}, {r['item_count']} item(s)"
        for r in owner["routes"]
    ]
    return ConnectorEvent(
        event_id=key,
        event_type="cavra.endpoint_remediation_sla.escalation_owner_digest",
        created_at=now,
        severity=severity,
        title=f"SLA digest for {owner['owner']}: {owner['triggered_count']} unacknowledged, "
              f"{owner['acknowledged_count']} acknowledged"[:250],
        summary=("\n".join(lines) or "No open escalation.")[:8000],
        source="ringward-sla",
        session_id=str(result["digest_id"]),
        attributes={"digest_id": result["digest_id"], "owner": owner["owner"], "window_start": result["window_start"],
                    "route_count": owner["route_count"], "retry_count": owner["retry_count"],
                    "routes": owner["routes"][:25]},
    )


def deliver_digest(
    store: Store,
    policy: SlaPolicy,
    config: ConnectorConfig,
    *,
    now: datetime,
    report: SlaReport | None = None,
    window: timedelta = timedelta(days=1),
    actor: str = "ringward-sla",
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: DeliveryHooks | None = None,
) -> dict[str, Any]:
    """Send each owner with open incidents its digest, to the owner's receivers, once per digest
    window: a (window, owner, receiver) with a successful send is skipped; a failed one is tried
    again (attempt n+1) on the next call; each attempt is claimed first, so two callers send once.
    Recorded in the ledger scope ``<scope>:digest`` with the digest evidence.
    """
    from ringward.operations.delivery.delivery_ops import deliver_events

    result = digest(store, policy, now=now, report=report, window=window)
    scope = policy.scope + DIGEST_SCOPE_SUFFIX
    ledger = _ledger(store)
    history = ledger.history(scope)
    sent: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    events: list[HistoryEvent] = []
    evidence_ids: list[int | None] = []
    for owner in result["owners"]:
        if not owner["route_count"]:
            continue
        group = f"{scope}/{owner['owner']}"
        for receiver in policy.receivers_of(owner["owner"]):
            base = f"{result['window_start']}|{owner['owner']}|{receiver}"
            mine = [e for e in history if isinstance(e, (SentOk, SendFailed)) and e.group_key == group
                    and e.receiver == receiver and e.epoch == result["window_start"]]
            if any(isinstance(e, SentOk) for e in mine):
                skipped.append({"owner": owner["owner"], "receiver": receiver, "reason": "already delivered"})
                continue
            attempt = 1 + sum(1 for e in mine if isinstance(e, SendFailed))
            key = "sla-digest-" + hashlib.sha256(f"{base}|{attempt}".encode()).hexdigest()[:24]
            if not ledger.claim_send(scope, result["window_start"], key, group_key=group, at=now, now=_wall()):
                skipped.append({"owner": owner["owner"], "receiver": receiver, "reason": "claimed elsewhere"})
                continue
            (run,) = deliver_events([_digest_event(result, owner, key, now)], config, store=store, providers=receiver,
                                    lookups=lookups, actor=actor, source=SOURCE_DIGEST, hooks=hooks)
            common = {"at": now, "key": key, "notification": NotificationKind.DIGEST, "group_key": group,
                      "route_id": owner["owner"], "receiver": receiver, "reason": Reason.OWNER_DIGEST,
                      "epoch": result["window_start"], "position": attempt}
            row = {"owner": owner["owner"], "receiver": receiver, "attempt": attempt, "evidence_id": run.evidence_id}
            if run.success:
                events.append(SentOk(delivery_ref=str(run.evidence_id), **common))
                sent.append(row)
            else:
                error = "; ".join(r.error or r.status.value for r in run.failed)[:2000]
                events.append(SendFailed(error=error, **common))
                failed.append({**row, "error": error})
            evidence_ids.append(run.evidence_id)
    result = {**result, "sent": sent, "failed": failed, "skipped": skipped}
    draft = EvidenceDraft(kind=KIND_DIGEST, actor=actor,
                          subject=EvidenceSubject(status=result["alert_level"], success=not failed),
                          payload=dict(result))
    records = ledger.record(scope, events, [draft], now=_wall(), evidence_ids=evidence_ids)
    result["evidence_id"] = records[0].id if records else None
    return result


# --- suppression trends --------------------------------------------------------------------------------


def trends(store: Store, policy: SlaPolicy | None, *, now: datetime, since: timedelta = timedelta(days=7),
           bucket: timedelta = timedelta(days=1), record: bool = False, actor: str = "ringward-sla",
           max_records: int = MAX_PLAN_RECORDS) -> dict[str, Any]:
    """Suppression trends of the recorded cycle plans in ``[now - since, now)`` (rules T1-T3).
    Read-only unless ``record``."""
    payloads: list[Mapping[str, Any]] = []
    before: int | None = None
    truncated = False
    start = now - since
    while True:
        page = store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_PLAN, before_id=before, limit=500,
                                                   with_total=False))
        for item in page.items:
            if len(payloads) >= max_records:
                truncated = True
                break
            payloads.append(item.payload)
        if truncated or page.next_before_id is None or not page.items:
            break
        before = page.next_before_id
    owners: dict[str, str] = {}
    if policy is not None:
        for scoped in (policy, policy.incident_policy, policy.health_policy):
            if scoped is not None:
                owners.update({f"{scoped.scope}/{rid}": r.owner for rid, r in scoped.routes.items()})
    result = suppression_trends(payloads, since=start, until=now, bucket=bucket, owners=owners, truncated=truncated)
    if record:
        draft = EvidenceDraft(kind=KIND_TREND, actor=actor, subject=EvidenceSubject(status="recorded"),
                              payload=result)
        result["evidence_id"] = store.append(draft).id
    return result


# --- history and dashboard (the ledger) ----------------------------------------------------------------


def _row(row: Any) -> dict[str, Any]:
    event = row.event
    out: dict[str, Any] = {"id": row.id, "scope": row.scope, "kind": row.kind, "group_key": row.group_key,
                           "at": iso(row.at), "recorded_at": iso(row.recorded_at),
                           "evidence_id": None if row.evidence_id is None else str(row.evidence_id)}
    if isinstance(event, (SentOk, SendFailed)):
        out.update(notification=event.notification.value, receiver=event.receiver, reason=event.reason.value,
                   position=event.position, alert_count=len(event.firing))
        if isinstance(event, SendFailed):
            out["error"] = event.error[:300]
    elif isinstance(event, Acknowledged):
        out.update(state=event.state.value, by=event.by, acknowledgement_id=event.acknowledgement_id,
                   review_state=event.review_state.value if event.review_state else None,
                   expires_at=iso(event.expires_at) if event.expires_at else None, via=event.via,
                   comment=event.comment)
    elif isinstance(event, AckRefused):
        out.update(state=event.state.value, by=event.by, reason=event.reason)
    elif isinstance(event, SilenceAdded):
        out.update(silence_id=event.silence_id, by=event.created_by, matchers=[m.describe() for m in event.matchers],
                   starts_at=iso(event.starts_at), ends_at=iso(event.ends_at), comment=event.comment)
    elif isinstance(event, SilenceExpired):
        out.update(silence_id=event.silence_id, by=event.by)
    return out


def history(
    store: Store,
    *,
    scopes: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    group: str | None = None,
    receiver: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    before_id: int | None = None,
) -> dict[str, Any]:
    """The SLA ledger newest first (envelope {schema_version, product, items, total, limit, offset}
    of §4.31, plus ``next_before_id`` for deep pages). ``limit`` is clamped to 1..500.

    Raises:
        InputError: an unknown kind.
    """
    for kind in kinds or ():
        if kind not in HISTORY_KINDS:
            raise InputError(f"--kind: expected one of {', '.join(HISTORY_KINDS)}, found {kind!r}")
    limit = max(1, min(limit, MAX_LIMIT))
    rows, total = _ledger(store).page(scopes=scopes, kinds=kinds, group_key=group, receiver=receiver, actor=actor,
                                      since=since, until=until, before_id=before_id, limit=limit,
                                      offset=max(0, offset))
    return {
        "schema_version": HISTORY_SCHEMA,
        "product": "ringward",
        "items": [_row(r) for r in rows],
        "total": total,
        "limit": limit,
        "offset": max(0, offset),
        "next_before_id": rows[-1].id if len(rows) == limit else None,
    }


def _newest_plan(store: Store, scope: str, *, scan: int = 200) -> dict[str, Any] | None:
    before: int | None = None
    seen = 0
    while seen < scan:
        page = store.search_evidence(EvidenceQuery(kind=sla_ops.KIND_PLAN, before_id=before, limit=50,
                                                   with_total=False))
        for item in page.items:
            seen += 1
            if item.payload.get("scope") == scope and not item.payload.get("skipped_window"):
                return dict(item.payload)
        if page.next_before_id is None or not page.items:
            return None
        before = page.next_before_id
    return None


def dashboard(store: Store, *, scopes: Sequence[str], now: datetime) -> dict[str, Any]:
    """Delivery, acknowledgement and escalation state from the ledger and the newest recorded
    plans (§4.31 notification / escalation dashboards in one): critical when a receiver's latest
    attempt failed or an incident waits unacknowledged, warning when something is suppressed or
    acknowledged but open, else healthy."""
    ledger = _ledger(store)
    receivers: dict[tuple[str, str], dict[str, Any]] = {}
    acks: Counter[str] = Counter()
    refused = 0
    silences_active = 0
    alerts: list[str] = []
    open_by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    suppressed = 0
    latest_reports: dict[str, Any] = {}
    for scope in scopes:
        events = ledger.history(scope)
        for event in events:
            if isinstance(event, (SentOk, SendFailed)):
                entry = receivers.setdefault((scope, event.receiver), {
                    "scope": scope, "receiver": event.receiver, "total": 0, "success": 0, "failed": 0,
                    "last_delivery_at": None, "last_failure_at": None, "failing": False})
                entry["total"] += 1
                if isinstance(event, SentOk):
                    entry["success"] += 1
                    entry["last_delivery_at"] = iso(event.at)
                    entry["failing"] = False
                else:
                    entry["failed"] += 1
                    entry["last_failure_at"] = iso(event.at)
                    entry["failing"] = True
            elif isinstance(event, Acknowledged):
                acks[event.review_state.value if event.review_state else event.state.value] += 1
            elif isinstance(event, AckRefused):
                refused += 1
            elif isinstance(event, SilenceAdded) and silence_state(events, event.silence_id, now) == "active":
                silences_active += 1
        newest = _newest_plan(store, scope)
        if newest is not None:
            latest_reports[scope] = {"report_id": newest.get("report_id"), "at": newest.get("at"),
                                     "suppressed_count": newest.get("suppressed_count", 0)}
            suppressed += int(newest.get("suppressed_count", 0))
            for owner, incidents in (newest.get("open_incidents_by_owner") or {}).items():
                for incident in incidents:
                    open_by_owner[owner].append({k: incident.get(k) for k in (
                        "group_key", "plan_id", "state", "level", "acknowledged_by", "acknowledgement_slo_state",
                        "triggered_at", "next_rung_at")})
    failing = [r for r in receivers.values() if r["failing"]]
    outstanding = [i for rows in open_by_owner.values() for i in rows if i["state"] == "triggered"]
    acknowledged_open = [i for rows in open_by_owner.values() for i in rows if i["state"] == "acknowledged"]
    for r in failing:
        alerts.append(f"{r['scope']}: the latest send to {r['receiver']} failed (at {r['last_failure_at']})")
    for i in outstanding:
        alerts.append(f"{i['group_key']}: unacknowledged since {i['triggered_at']} (rung {i['level'] or '-'})")
    if failing or outstanding:
        level = "critical"
    elif suppressed or acknowledged_open:
        level = "warning"
    else:
        level = "healthy"
    if not receivers and not latest_reports:
        alerts.append("No SLA notification history has been recorded.")
        level = "warning"
    totals = {"total": sum(r["total"] for r in receivers.values()),
              "success": sum(r["success"] for r in receivers.values()),
              "failed": sum(r["failed"] for r in receivers.values())}
    return {
        "schema_version": DASHBOARD_SCHEMA,
        "product": "ringward",
        "generated_at": iso(now),
        "scopes": list(scopes),
        "alert_level": level,
        "deliveries": {**totals, "success_rate": round(totals["success"] / totals["total"], 4)
                       if totals["total"] else 0.0},
        "receivers": sorted(receivers.values(), key=lambda r: (not r["failing"], r["scope"], r["receiver"])),
        "acknowledgements": dict(sorted(acks.items())),
        "refused_acknowledgement_count": refused,
        "active_silence_count": silences_active,
        "outstanding_acknowledgement_count": len(outstanding),
        "acknowledged_open_count": len(acknowledged_open),
        "suppressed_in_latest_plans": suppressed,
        "latest_plans": latest_reports,
        "open_incidents_by_owner": dict(sorted(open_by_owner.items())),
        "alerts": alerts[:25],
    }
