"""Owner digests and suppression trends (§9.14), pure functions of plans and recorded plan records.

- **Owner digest** (``cavra.endpoint_remediation_sla.escalation_owner_digest.v1``): every open
  incident of every scope at ``now``, grouped by the route's owner, with what is waiting for a
  retry and what was suppressed. D1 unresolved = an open incident (triggered, or acknowledged
  but not resolved; the reference counted recurrence decisions instead). D2 retries are the sends
  failing right now: waiting for their backoff (``retry of ...`` / ``retry attempts exhausted``)
  or capped (``maximum_retry_attempts``). D3 alert level: critical when an owner has a triggered
  (unacknowledged) incident, warning when every open one is acknowledged or only retries wait.
  ``retryable_count``: failed sends due again now; ``waiting_retry_count``: in their backoff;
  ``capped_retry_count``: past ``retry.max_attempts`` (waiting for the repeat interval).
  D4 ``digest_id`` = ``erslaescdigest-`` + sha256(``<scopes>|<window start>``)[:16]: every
  evaluation in one digest window (a day by default) has the same id, whatever the reports (the
  reference hashed the generation time: a new id every evaluation).
- **Suppression trends** (``cavra.endpoint_remediation_sla.escalation_suppression_trend.v1``):
  every suppression of the recorded cycle plans in ``[since, until)``, categorised, counted per
  bucket (a day by default). T1 a suppression is an *event* once per (bucket, scope, group,
  receiver, subject, code): the same silence muting the same alert every 5 minutes is one event
  a day, not 288 (the reference deduplicated per recurrence plan). T2 categories:
  silence, maintenance_window, owner_calendar (deferred / escalated past), maximum_recurrence,
  maximum_retry, acknowledged, closed (resolved / dismissed), superseded_rung, other.
  T3 ``direction`` per category compares the last two buckets (up / down / flat).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ringward.core.errors import InputError
from ringward.core.sla.engine import IncidentState, Plan, SuppressionCode, iso
from ringward.core.sla.policy import SlaPolicy

DIGEST_SCHEMA = "cavra.endpoint_remediation_sla.escalation_owner_digest.v1"
TREND_SCHEMA = "cavra.endpoint_remediation_sla.escalation_suppression_trend.v1"
MAX_ROUTES = 25
MAX_LATEST = 25

CATEGORY = {
    SuppressionCode.SILENCED.value: "silence",
    SuppressionCode.MAINTENANCE.value: "maintenance_window",
    SuppressionCode.DEFERRED.value: "owner_calendar",
    SuppressionCode.ESCALATED_PAST.value: "owner_calendar",
    SuppressionCode.MAX_RECURRENCES.value: "maximum_recurrence",
    SuppressionCode.MAX_RETRIES.value: "maximum_retry",
    SuppressionCode.ACKNOWLEDGED.value: "acknowledged",
    SuppressionCode.CLOSED.value: "closed",
    SuppressionCode.SUPERSEDED.value: "superseded_rung",
}
CATEGORIES = (
    "silence",
    "maintenance_window",
    "owner_calendar",
    "maximum_recurrence",
    "maximum_retry",
    "acknowledged",
    "closed",
    "superseded_rung",
    "other",
)


def _owner_of(policy: SlaPolicy | None, group_key: str) -> str:
    route_id = group_key.rsplit("/", 1)[-1]
    if policy is None or route_id not in policy.routes:
        return "-"
    return policy.routes[route_id].owner


def owner_digest(
    plans: Sequence[tuple[Plan, SlaPolicy]], *, now: datetime, window: timedelta = timedelta(days=1)
) -> dict[str, Any]:
    """The digest of open incidents per owner over ``plans`` (one per scope), rules D1-D4."""
    if now.tzinfo is None:
        raise InputError("now: expected a time with a UTC offset")
    now = now.astimezone(UTC)
    seconds = max(1, int(window.total_seconds()))
    epoch = int(now.timestamp())
    window_start = datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)
    owners: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"route_count": 0, "triggered_count": 0, "acknowledged_count": 0,
                 "acknowledgement_breach_count": 0, "retry_count": 0, "suppressed_count": 0,
                 "providers": Counter(), "routes": []}
    )
    retryable = waiting_retry = capped = 0
    for result, policy in plans:
        for incident in result.incidents:
            entry = owners[incident.owner]
            entry["route_count"] += 1
            is_triggered = incident.state is IncidentState.TRIGGERED
            entry["triggered_count" if is_triggered else "acknowledged_count"] += 1
            if incident.acknowledgement_slo_state.value == "breached":
                entry["acknowledgement_breach_count"] += 1
            route = policy.routes.get(incident.route_id)
            for receiver in route.receivers if route is not None else ():
                entry["providers"][receiver] += 1
            entry["routes"].append({
                "scope": result.scope,
                "group_key": incident.group_key,
                "plan_id": incident.plan_id,
                "state": incident.state.value,
                "triggered_at": iso(incident.triggered_at),
                "escalation_level": incident.level,
                "next_rung_at": iso(incident.next_rung_at) if incident.next_rung_at else None,
                "acknowledged_by": incident.acknowledged_by,
                "acknowledgement_slo_state": incident.acknowledgement_slo_state.value,
                "resolution_slo_state": incident.resolution_slo_state.value,
                "review_state": incident.review_state,
                "item_count": len(incident.alerts),
                "items": list(incident.alerts[:10]),
            })
        for notification in result.notifications:
            if notification.attempt > 1:  # a failed send due again now
                owners[notification.owner]["retry_count"] += 1
                retryable += 1
        for waiting in result.waiting:
            if waiting.detail.startswith("retry of"):  # a failed send waiting for its backoff
                owners[_owner_of(policy, waiting.group_key)]["retry_count"] += 1
                waiting_retry += 1
        for suppression in result.suppressions:
            owner = _owner_of(policy, suppression.group_key)
            if owner in owners:
                owners[owner]["suppressed_count"] += 1
            if suppression.code is SuppressionCode.MAX_RETRIES:  # failing sends past the retry cap
                owners[owner]["retry_count"] += 1
                capped += 1
    rows = []
    for name, entry in owners.items():
        entry["routes"].sort(key=lambda r: (r["state"] != "triggered", r["triggered_at"], r["group_key"]))
        rows.append({
            "owner": name,
            **{k: v for k, v in entry.items() if k not in ("providers", "routes")},
            "providers": dict(sorted(entry["providers"].items())),
            "routes": entry["routes"][:MAX_ROUTES],
            "omitted_route_count": max(0, len(entry["routes"]) - MAX_ROUTES),
        })
    rows.sort(key=lambda r: (-r["triggered_count"], -r["route_count"], r["owner"]))
    unresolved = sum(r["route_count"] for r in rows)
    triggered = sum(r["triggered_count"] for r in rows)
    level = "critical" if triggered else "warning" if unresolved or waiting_retry or retryable or capped else "healthy"
    scopes = ",".join(sorted({p.scope for p, _ in plans}))
    digest_id = "erslaescdigest-" + hashlib.sha256(f"{scopes}|{iso(window_start)}".encode()).hexdigest()[:16]
    return {
        "schema_version": DIGEST_SCHEMA,
        "digest_id": digest_id,
        "generated_at": iso(now),
        "window_start": iso(window_start),
        "scopes": sorted({p.scope for p, _ in plans}),
        "report_ids": {p.scope: p.report_id for p, _ in plans},
        "alert_level": level,
        "blocked_count": unresolved,
        "approval_required_count": unresolved,
        "summary": {
            "owner_count": len(rows),
            "unresolved_route_count": unresolved,
            "triggered_count": triggered,
            "retryable_count": retryable,
            "waiting_retry_count": waiting_retry,
            "capped_retry_count": capped,
        },
        "owners": rows,
    }


def _bucket(at: datetime, start: datetime, size: timedelta) -> datetime:
    steps = int((at - start) / size)
    return start + size * steps


def suppression_trends(
    records: Sequence[Mapping[str, Any]],
    *,
    since: datetime,
    until: datetime,
    bucket: timedelta = timedelta(days=1),
    owners: Mapping[str, str] | None = None,
    truncated: bool = False,
) -> dict[str, Any]:
    """Suppression trends over recorded cycle plans (``endpoint-remediation-sla-notification-plan``
    payloads: ``scope``, ``at``, ``suppressed``), rules T1-T3. ``owners`` maps a group key's route
    to its owner (``<scope>/<route>`` -> owner).

    Raises:
        InputError: naive or inverted bounds, a bucket under a minute.
    """
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise InputError(f"{name}: expected a time with a UTC offset")
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    if until <= since:
        raise InputError(f"until: {iso(until)} is not after since {iso(since)}")
    if bucket < timedelta(minutes=1):
        raise InputError("bucket: expected at least 1 minute")
    owners = owners or {}
    seen: set[tuple[Any, ...]] = set()
    events: list[dict[str, Any]] = []
    observations = 0
    for payload in records:
        try:
            at = datetime.fromisoformat(str(payload["at"]).replace("Z", "+00:00")).astimezone(UTC)
        except (KeyError, ValueError):
            continue  # not a cycle plan record
        if not since <= at < until:
            continue
        scope = str(payload.get("scope", "-"))
        for row in payload.get("suppressed") or ():
            if not isinstance(row, Mapping):
                continue
            observations += 1
            start = _bucket(at, since, bucket)
            group = str(row.get("group_key", "-"))
            identity = (start, scope, group, row.get("receiver"), row.get("subject"), row.get("code"))
            if identity in seen:
                continue
            seen.add(identity)
            events.append({
                "bucket": start,
                "at": at,
                "scope": scope,
                "group_key": group,
                "owner": owners.get(group, "-"),
                "receiver": row.get("receiver") or "-",
                "subject": row.get("subject"),
                "code": row.get("code"),
                "category": CATEGORY.get(str(row.get("code")), "other"),
                "detail": str(row.get("detail", ""))[:300],
            })
    starts: list[datetime] = []
    cursor = since
    while cursor < until and len(starts) < 10_000:
        starts.append(cursor)
        cursor += bucket
    per_bucket: dict[datetime, Counter[str]] = {s: Counter() for s in starts}
    for event in events:
        per_bucket.setdefault(event["bucket"], Counter())[event["category"]] += 1
    buckets = [
        {"start": iso(s), "total": sum(c.values()), "categories": {k: c[k] for k in CATEGORIES if c[k]}}
        for s, c in sorted(per_bucket.items())
    ]
    direction: dict[str, dict[str, Any]] = {}
    if len(buckets) >= 2:
        previous, latest = per_bucket[starts[-2]], per_bucket[starts[-1]]
        for category in CATEGORIES:
            before, now_count = previous[category], latest[category]
            if before or now_count:
                trend = "up" if now_count > before else "down" if now_count < before else "flat"
                direction[category] = {"previous": before, "latest": now_count, "direction": trend}
    events.sort(key=lambda e: (e["at"], e["group_key"]), reverse=True)
    key = f"{iso(since)}|{iso(until)}|{int(bucket.total_seconds())}"
    return {
        "schema_version": TREND_SCHEMA,
        "trend_id": "erslaesctrend-" + hashlib.sha256(key.encode()).hexdigest()[:16],
        "since": iso(since),
        "until": iso(until),
        "bucket_seconds": int(bucket.total_seconds()),
        "suppression_event_count": len(events),
        "observation_count": observations,
        "records_truncated": truncated,
        "category_counts": dict(Counter(e["category"] for e in events).most_common()),
        "owner_counts": dict(Counter(e["owner"] for e in events).most_common()),
        "receiver_counts": dict(Counter(e["receiver"] for e in events).most_common()),
        "buckets": buckets,
        "direction": direction,
        "latest_events": [{**e, "bucket": iso(e["bucket"]), "at": iso(e["at"])} for e in events[:MAX_LATEST]],
    }
