"""Delivery records: attempts, per-destination results, the ``cavra.connector.delivery.v1`` result,
the evidence payload, the delivery log entry and the dashboard. Pure: no I/O, time is a parameter.

Invariants:

- A delivery is keyed by (event id, provider, destination). Once one send of a key succeeded, no
  run sends it again (the store enforces this with a database claim; see ``ringward.store``).
- A result lists every attempt this run made, with timestamps, status and outcome, so the sum of
  recorded attempts equals the requests a receiver saw from this run.
- Every string in a result is redacted before it reaches a record (``ringward.core.common.redaction``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.policy import RETRYABLE_OUTCOMES, SUCCESS_OUTCOMES, Outcome

DELIVERY_RESULT_SCHEMA = "cavra.connector.delivery.v1"
DELIVERY_EVIDENCE_KIND = "release-connector-delivery"
DASHBOARD_SCHEMA = "cavra.release.connector_delivery_dashboard.v1"
HISTORY_SCHEMA = "cavra.release.connector_delivery_history.v1"
PRODUCT = "Ringward"


@dataclass(frozen=True, slots=True, order=True)
class DeliveryKey:
    """The idempotency key of one delivery."""

    event_id: str
    provider: str
    destination: str

    def __str__(self) -> str:
        return f"{self.event_id}|{self.provider}|{self.destination}"

    def digest(self) -> str:
        """Short stable digest (Prefect task keys, file names)."""
        return hashlib.sha256(str(self).encode("utf-8")).hexdigest()[:24]


class DeliveryStatus(StrEnum):
    """How one destination's delivery ended in one run."""

    DELIVERED = "delivered"
    QUEUED = "queued"
    EXISTS = "exists"  # search-before-create found the record of an earlier send
    ALREADY_DELIVERED = "already-delivered"  # a previous run succeeded; nothing sent
    IN_FLIGHT = "in-flight"  # another run holds the claim; nothing sent
    DESTINATION_DISABLED = "destination-disabled"  # disabled (410 earlier); nothing sent
    DISABLED = "disabled"  # this run got 410 and disabled the destination
    FAILED = "failed"  # retryable failure left for redelivery
    REJECTED = "rejected"  # final 4xx
    TOO_LARGE = "too-large"  # 413 on a single event
    CONFIG_ERROR = "config-error"  # the destination could not be prepared (secret missing, bad URL)


SUCCESS_STATUSES = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.QUEUED, DeliveryStatus.EXISTS, DeliveryStatus.ALREADY_DELIVERED}
)


class DeliveryState(StrEnum):
    """State of a delivery-log row (one per key)."""

    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retryable: the scheduled redelivery picks it up
    REJECTED = "rejected"  # final: only an explicit re-run sends again
    DISABLED = "disabled"  # the destination answered 410
    EXPIRED = "expired"  # retryable, but the redelivery window has passed


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    ALREADY_DELIVERED = "already-delivered"
    IN_FLIGHT = "in-flight"
    DESTINATION_DISABLED = "destination-disabled"


def status_for_outcome(outcome: Outcome) -> DeliveryStatus:
    return {
        Outcome.DELIVERED: DeliveryStatus.DELIVERED,
        Outcome.QUEUED: DeliveryStatus.QUEUED,
        Outcome.EXISTS: DeliveryStatus.EXISTS,
        Outcome.RETRY: DeliveryStatus.FAILED,
        Outcome.BUDGET_EXHAUSTED: DeliveryStatus.FAILED,
        Outcome.SPLIT: DeliveryStatus.FAILED,
        Outcome.TOO_LARGE: DeliveryStatus.TOO_LARGE,
        Outcome.DISABLED: DeliveryStatus.DISABLED,
        Outcome.REJECTED: DeliveryStatus.REJECTED,
    }[outcome]


def state_for_status(status: DeliveryStatus) -> DeliveryState:
    if status in SUCCESS_STATUSES:
        return DeliveryState.SUCCEEDED
    if status is DeliveryStatus.FAILED:
        return DeliveryState.FAILED
    if status is DeliveryStatus.DISABLED:
        return DeliveryState.DISABLED
    return DeliveryState.REJECTED


class AttemptRecord(BaseModel):
    """One request (or one transport failure) made for a delivery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=1)
    started_at: datetime
    completed_at: datetime
    outcome: Outcome
    status_code: int | None = None
    #: redacted one-line error (status text, response excerpt, transport error)
    error: str | None = None
    retry_after_seconds: float | None = None
    #: wait chosen before the next attempt (None for the last attempt)
    wait_seconds: float | None = None
    #: events carried by the request (batching providers)
    batch_size: int = Field(default=1, ge=1)
    #: the calls of a multi-call publication (Jamf, Intune), redacted: "step: METHOD url -> status"
    calls: tuple[str, ...] | None = None

    @property
    def sent(self) -> bool:
        """Whether a response came back (the receiver saw the request)."""
        return self.status_code is not None


class RequestSummary(BaseModel):
    """The redacted request shape recorded in evidence (method, URL, headers, body digest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body_sha256: str | None = None
    body_bytes: int | None = None


class DestinationResult(BaseModel):
    """The outcome of one key in one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    provider: str
    destination: str
    status: DeliveryStatus
    status_code: int | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    started_at: datetime
    completed_at: datetime
    error: str | None = None
    request: RequestSummary | None = None
    #: id the receiver gave (Jira issue key, ServiceNow number, PagerDuty dedup_key)
    external_ref: str | None = None

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(self.event_id, self.provider, self.destination)

    @property
    def success(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def retryable(self) -> bool:
        return self.status in (DeliveryStatus.FAILED, DeliveryStatus.IN_FLIGHT)

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)

    def to_reference(self) -> dict[str, Any]:
        """cavra-spec §7.4 delivery record plus Ringward's fields (attempts, outcome, destination)."""
        # one C-level pass; "calls" appears only for multi-call publications
        calls = any(a.calls is not None for a in self.attempts)
        dumped = self.model_dump(
            mode="json",
            include={"request": True, "attempts": True},
            exclude=None if calls else {"attempts": {"__all__": {"calls"}}},
        )
        return {
            "provider": self.provider,
            "destination": self.destination,
            "success": self.success,
            "status": self.status.value,
            "status_code": self.status_code,
            "attempt_count": self.attempt_count,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "error": self.error,
            "retryable": self.retryable,
            "external_ref": self.external_ref,
            "request": dumped["request"],
            "attempts": dumped["attempts"],
        }


def final_outcome_of(attempts: Sequence[AttemptRecord]) -> Outcome | None:
    return attempts[-1].outcome if attempts else None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:64] or "event"


def delivery_result(
    event: ConnectorEvent,
    results: Sequence[DestinationResult],
    *,
    generated_at: datetime,
    run_id: str,
    filtered: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``cavra.connector.delivery.v1`` result document for one event in one run."""
    ordered = sorted(results, key=lambda r: (r.provider, r.destination))
    return {
        "schema_version": DELIVERY_RESULT_SCHEMA,
        "product": PRODUCT,
        "event_type": event.event_type,
        "event_id": event.event_id,
        "event_sha256": event.digest(),
        "session_id": event.session_id or event.event_id,
        "generated_at": _iso(generated_at),
        "run_id": run_id,
        "success": bool(ordered) and all(r.success for r in ordered),
        "deliveries": [r.to_reference() for r in ordered],
        "filtered_destinations": sorted(filtered),
    }


def delivery_evidence_payload(
    event: ConnectorEvent,
    results: Sequence[DestinationResult],
    *,
    generated_at: datetime,
    run_id: str,
    source: str = "ringward_connector_delivery",
    filtered: Iterable[str] = (),
) -> dict[str, Any]:
    """The evidence payload (reference ``release-connector-delivery`` metadata, cavra-spec §7.5)."""
    result = delivery_result(event, results, generated_at=generated_at, run_id=run_id, filtered=filtered)
    providers = [d["destination"] for d in result["deliveries"]]
    failed = [d["destination"] for d in result["deliveries"] if not d["success"]]
    attempt_counts = [d["attempt_count"] for d in result["deliveries"]]
    digest = hashlib.sha256(
        f"{event.event_id}|{result['generated_at']}|{','.join(providers)}|{run_id}".encode()
    ).hexdigest()[:12]
    return {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": DELIVERY_EVIDENCE_KIND,
        "session_id": f"rcd-{_slug(event.event_id)}-{digest}",
        "created_at": result["generated_at"],
        "signer": source,
        "connector_delivery_source": source,
        "decision_count": 0,
        "blocked_count": len(failed),
        "approval_required_count": 0,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "delivery_success": result["success"],
        "providers": providers,
        "failed_providers": failed,
        "attempt_count": sum(attempt_counts),
        "max_attempt_count": max(attempt_counts, default=0),
        "status_codes": {d["destination"]: d["status_code"] for d in result["deliveries"]},
        "delivery": result,
    }


class DeliveryLogEntry(BaseModel):
    """One row of the delivery log (one per key), as the store returns it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    event_type: str
    provider: str
    destination: str
    state: DeliveryState
    attempt_count: int = 0
    run_count: int = 0
    status_code: int | None = None
    outcome: str | None = None
    error: str | None = None
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    succeeded_at: datetime | None = None
    next_attempt_after: datetime | None = None
    redeliver_until: datetime | None = None
    external_ref: str | None = None
    updated_at: datetime
    attempts: tuple[AttemptRecord, ...] = ()

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(self.event_id, self.provider, self.destination)

    @property
    def success(self) -> bool:
        return self.state is DeliveryState.SUCCEEDED

    def to_history_item(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "provider": self.provider,
            "destination": self.destination,
            "state": self.state.value,
            "success": self.success,
            "attempt_count": self.attempt_count,
            "run_count": self.run_count,
            "status_code": self.status_code,
            "outcome": self.outcome,
            "error": self.error,
            "first_attempt_at": _iso(self.first_attempt_at) if self.first_attempt_at else None,
            "last_attempt_at": _iso(self.last_attempt_at) if self.last_attempt_at else None,
            "succeeded_at": _iso(self.succeeded_at) if self.succeeded_at else None,
            "next_attempt_after": _iso(self.next_attempt_after) if self.next_attempt_after else None,
            "redeliver_until": _iso(self.redeliver_until) if self.redeliver_until else None,
            "external_ref": self.external_ref,
            "attempts": [a.model_dump(mode="json") for a in self.attempts],
        }


def history_document(
    entries: Sequence[DeliveryLogEntry], *, total: int, limit: int, offset: int
) -> dict[str, Any]:
    return {
        "schema_version": HISTORY_SCHEMA,
        "product": PRODUCT,
        "items": [e.to_history_item() for e in entries],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


class DestinationStats(BaseModel):
    """Delivery-log aggregates for one destination (the dashboard's rows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    destination: str
    total: int = 0
    success: int = 0
    failed: int = 0
    in_progress: int = 0
    attempt_count: int = 0
    #: failed deliveries of rollback events (they make the dashboard critical)
    rollback_failures: int = 0
    last_delivery_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


_FAILED_STATES = frozenset(
    {DeliveryState.FAILED, DeliveryState.REJECTED, DeliveryState.DISABLED, DeliveryState.EXPIRED}
)


def stats_from_entries(entries: Iterable[DeliveryLogEntry]) -> tuple[list[DestinationStats], dict[str, int]]:
    """Per-destination aggregates and event-type counts from log entries (the store computes the
    same figures in SQL)."""
    per: dict[tuple[str, str], dict[str, Any]] = {}
    event_types: dict[str, int] = {}
    latest: dict[tuple[str, str], datetime] = {}
    for entry in sorted(entries, key=lambda e: e.updated_at):
        key = (entry.provider, entry.destination)
        item = per.setdefault(key, {"provider": entry.provider, "destination": entry.destination})
        item["total"] = item.get("total", 0) + 1
        item["attempt_count"] = item.get("attempt_count", 0) + entry.attempt_count
        event_types[entry.event_type] = event_types.get(entry.event_type, 0) + 1
        if entry.state is DeliveryState.SUCCEEDED:
            item["success"] = item.get("success", 0) + 1
        elif entry.state is DeliveryState.IN_PROGRESS:
            item["in_progress"] = item.get("in_progress", 0) + 1
        else:
            item["failed"] = item.get("failed", 0) + 1
            if "rollback" in entry.event_type:
                item["rollback_failures"] = item.get("rollback_failures", 0) + 1
            if entry.error:
                item["last_error"] = entry.error
                item["last_error_at"] = entry.last_attempt_at
        if entry.last_attempt_at is not None and entry.last_attempt_at >= latest.get(
            key, entry.last_attempt_at
        ):
            latest[key] = entry.last_attempt_at
            item["last_delivery_at"] = entry.last_attempt_at
            item["last_status_code"] = entry.status_code
    return [DestinationStats(**per[k]) for k in sorted(per)], dict(sorted(event_types.items()))


def dashboard_document(
    stats: Sequence[DestinationStats],
    *,
    event_types: dict[str, int],
    disabled_destinations: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    """Success rate, failing destinations and the last error per destination.

    Alert level (reference rule, cavra-spec §4.31): critical when a failed delivery's event type
    contains ``rollback`` or a destination is disabled; warning for other failures or an empty
    history; healthy otherwise.
    """
    rows = sorted(stats, key=lambda s: (s.provider, s.destination))
    total = sum(s.total for s in rows)
    success = sum(s.success for s in rows)
    failed = sum(s.failed for s in rows)
    alerts: list[str] = []
    critical = any(s.rollback_failures for s in rows) or bool(disabled_destinations)
    for name, reason in sorted(disabled_destinations.items()):
        alerts.append(f"Destination {name} is disabled: {reason}")
    failing = [s for s in rows if s.failed]
    for s in failing:
        alerts.append(
            f"Destination {s.destination} has {s.failed} failed deliveries; last error: {s.last_error}"
        )
    if total == 0:
        alerts.append("No connector delivery history has been persisted.")
    level = "critical" if critical else ("warning" if failed or total == 0 else "healthy")
    providers = []
    for s in rows:
        providers.append(
            {
                "provider": s.provider,
                "destination": s.destination,
                "total": s.total,
                "success": s.success,
                "failed": s.failed,
                "in_progress": s.in_progress,
                "success_rate": round(s.success / s.total, 4) if s.total else None,
                "attempt_count": s.attempt_count,
                "last_delivery_at": _iso(s.last_delivery_at) if s.last_delivery_at else None,
                "last_status_code": s.last_status_code,
                "last_error": s.last_error,
                "last_error_at": _iso(s.last_error_at) if s.last_error_at else None,
                "disabled": s.destination in disabled_destinations,
            }
        )
    return {
        "schema_version": DASHBOARD_SCHEMA,
        "product": PRODUCT,
        "generated_at": _iso(now),
        "alert_level": level,
        "total": total,
        "success": success,
        "failed": failed,
        "in_progress": sum(s.in_progress for s in rows),
        "success_rate": round(success / total, 4) if total else None,
        "failing_destinations": sorted(s.destination for s in failing),
        "disabled_destinations": dict(sorted(disabled_destinations.items())),
        "providers": providers,
        "event_types": dict(sorted(event_types.items())),
        "alerts": alerts[:25],
    }


@dataclass(frozen=True)
class Completion:
    """What the ledger records when a claimed delivery ends in a run."""

    result: DestinationResult
    #: earliest time a redelivery may try again (failed deliveries)
    next_attempt_after: datetime | None = None
    #: how long after the first attempt redelivery keeps trying
    redeliver_window_seconds: float = 86400.0


def completion_values(
    *,
    attempt_count: int,
    first_attempt_at: datetime | None,
    last_attempt_at: datetime | None,
    status_code: int | None,
    external_ref: str | None,
    completion: Completion,
    now: datetime,
) -> dict[str, Any]:
    """The delivery-log fields after ``completion``, from the row's current values (one rule for
    every ledger implementation; attempts of this completion are numbered after ``attempt_count``)."""
    result = completion.result
    first = first_attempt_at or (result.attempts[0].started_at if result.attempts else None)
    state = state_for_status(result.status)
    failed = state is DeliveryState.FAILED
    return {
        "state": state,
        "attempt_count": attempt_count + len(result.attempts),
        "status_code": result.status_code if result.attempts else status_code,
        "outcome": result.status.value,
        "error": result.error,
        "first_attempt_at": first,
        "last_attempt_at": result.attempts[-1].completed_at if result.attempts else last_attempt_at,
        "succeeded_at": now if state is DeliveryState.SUCCEEDED else None,
        "next_attempt_after": (completion.next_attempt_after or now) if failed else None,
        "redeliver_until": (first or now) + timedelta(seconds=completion.redeliver_window_seconds)
        if failed
        else None,
        "external_ref": result.external_ref or external_ref,
        "updated_at": now,
    }


def completed_entry(entry: DeliveryLogEntry, completion: Completion, now: datetime) -> DeliveryLogEntry:
    """The delivery-log entry after ``completion`` (see :func:`completion_values`)."""
    values = completion_values(
        attempt_count=entry.attempt_count,
        first_attempt_at=entry.first_attempt_at,
        last_attempt_at=entry.last_attempt_at,
        status_code=entry.status_code,
        external_ref=entry.external_ref,
        completion=completion,
        now=now,
    )
    renumbered = tuple(
        a.model_copy(update={"number": entry.attempt_count + n})
        for n, a in enumerate(completion.result.attempts, start=1)
    )
    return entry.model_copy(update={**values, "attempts": entry.attempts + renumbered})


def is_success_outcome(outcome: Outcome) -> bool:
    return outcome in SUCCESS_OUTCOMES


def is_retryable_outcome(outcome: Outcome) -> bool:
    return outcome in RETRYABLE_OUTCOMES
