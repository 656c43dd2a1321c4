"""Connector delivery operations: what ``ringward connectors ...`` runs in-process and what the
Prefect tasks wrap. No Prefect here; a ``prefect-secret:`` resolver is handed in from ``tasks/``.

Every delivery run ends in one evidence record per event (kind ``release-connector-delivery``,
payload ``cavra.connector.delivery.v1``-compatible, every configured secret scrubbed out), and
the delivery log (``ringward.store.delivery.delivery_log``) holds per-key state, attempts and the event
for redelivery. The CLI path (:func:`deliver_event`) and the flow path
(:func:`deliver_to_destination` per key, then :func:`record_delivery_evidence`) build the
evidence with the same function.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from connectors.engine import DeliveryEngine, EngineReport, utc_now
from connectors.secrets import SecretLookup, SecretResolver, resolve_destinations
from ringward.core.common.redaction import SecretScrubber
from ringward.core.delivery.config import ConnectorConfig, DestinationConfig, parse_connector_config
from ringward.core.delivery.event import ConnectorEvent, make_test_event, parse_event
from ringward.core.delivery.results import (
    DELIVERY_EVIDENCE_KIND,
    DeliveryState,
    DeliveryStatus,
    DestinationResult,
    dashboard_document,
    delivery_evidence_payload,
    history_document,
)
from ringward.core.errors import ConnectorConfigError, InputError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.common.files import read_capped

if TYPE_CHECKING:
    from ringward.store import Store
    from ringward.store.delivery.delivery_log import DeliveryLog

#: caps on input files
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class DeliveryHooks:
    """Injectable time, randomness and transport (tests and benchmarks)."""

    clock: Clock = utc_now
    sleep: Sleep = time.sleep
    rng: random.Random | None = None
    transport: httpx.BaseTransport | None = None
    flush_interval: float = 0.05


@dataclass
class DeliveryRun:
    """One event's delivery in one run."""

    event: ConnectorEvent
    results: list[DestinationResult]
    filtered: list[str]
    payload: dict[str, Any]
    evidence_id: int | None = None

    @property
    def success(self) -> bool:
        return bool(self.payload["delivery_success"])

    @property
    def failed(self) -> list[DestinationResult]:
        return [r for r in self.results if not r.success]

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "destination": r.destination,
                "provider": r.provider,
                "status": r.status.value,
                "status_code": r.status_code,
                "attempts": r.attempt_count,
                "external_ref": r.external_ref,
                "error": r.error,
            }
            for r in self.results
        ]


@dataclass
class RedeliveryReport:
    """What one redelivery run did.

    ``due`` counts failed deliveries and stalled claims (expired lease) taken up, ``stalled`` the
    latter; ``held`` counts deliveries a live claim of another run holds (listed held, or found
    held when this run claimed them): they are neither sent nor failures.
    """

    expired: int = 0
    due: int = 0
    stalled: int = 0
    runs: list[DeliveryRun] = field(default_factory=list)
    skipped_unconfigured: list[str] = field(default_factory=list)
    #: due keys whose event is not in the log (nothing to resend)
    missing_events: list[str] = field(default_factory=list)
    #: keys held by a live claim when the queue was read (not among the due ones)
    held_elsewhere: list[str] = field(default_factory=list)

    def _count(self, status: Callable[[DestinationResult], bool]) -> int:
        return sum(1 for run in self.runs for r in run.results if status(r))

    @property
    def delivered(self) -> int:
        """Deliveries this run sent and the receiver took."""
        return self._count(lambda r: r.success and r.status is not DeliveryStatus.ALREADY_DELIVERED)

    @property
    def already_delivered(self) -> int:
        """Due deliveries another run completed before this one claimed them (nothing sent)."""
        return self._count(lambda r: r.status is DeliveryStatus.ALREADY_DELIVERED)

    @property
    def held(self) -> int:
        return len(self.held_elsewhere) + self._count(lambda r: r.status is DeliveryStatus.IN_FLIGHT)

    @property
    def still_failing(self) -> int:
        return self._count(lambda r: not r.success and r.status is not DeliveryStatus.IN_FLIGHT)

    def summary(self) -> dict[str, Any]:
        """The stable report document (CLI ``--json``, the redeliver-failed flow)."""
        return {
            "due": self.due,
            "stalled": self.stalled,
            "expired": self.expired,
            "delivered": self.delivered,
            "already_delivered": self.already_delivered,
            "held": self.held,
            "still_failing": self.still_failing,
            "skipped_unconfigured": self.skipped_unconfigured,
            "missing_events": self.missing_events,
            "evidence_ids": [r.evidence_id for r in self.runs],
        }

    def summary_line(self) -> str:
        missing = f", {len(self.missing_events)} without a stored event" if self.missing_events else ""
        return (
            f"due {self.due} ({self.stalled} stalled), delivered {self.delivered}, held {self.held}, "
            f"still failing {self.still_failing}, expired {self.expired}{missing}"
        )


def now_utc() -> datetime:
    """The current UTC time (flows and tasks use this, never the connectors package directly)."""
    return utc_now()


def new_run_id(prefix: str = "cli") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# --- inputs ------------------------------------------------------------------------------------------


def load_connector_config(path: Path) -> ConnectorConfig:
    """Read and validate a connector file (YAML, or JSON by ``.json``).

    Raises:
        InputError: unreadable file.
        ConnectorConfigError: every problem with its path (messages name the file).
    """
    data = read_capped(path, MAX_CONFIG_BYTES, source=str(path))
    # relative paths inside the file (artifact_root, private_queue directory) are relative to the file
    return parse_connector_config(data, source=str(path), base_dir=str(path.absolute().parent))


def load_event_file(path: Path, *, now: datetime) -> ConnectorEvent:
    """Read an event file (``ringward.connector.event.v1`` or a reference ``cavra.*`` event)."""
    data = read_capped(path, MAX_EVENT_BYTES, source=str(path))
    return parse_event(data, source=path.name, now=now)


def select_destinations(config: ConnectorConfig, provider: str) -> tuple[DestinationConfig, ...]:
    selected = config.select(provider)
    if not selected:
        raise ConnectorConfigError("no enabled destination is configured")
    return selected


# --- delivering ----------------------------------------------------------------------------------------


def _log(store: Store) -> DeliveryLog:
    # imported on use: reading and validating files must not pay for the ORM (CLI start-up time)
    from ringward.store.delivery.delivery_log import DeliveryLog

    return DeliveryLog(store)


def _engine(store: Store, run_id: str, hooks: DeliveryHooks) -> DeliveryEngine:
    return DeliveryEngine(
        _log(store),
        run_id=run_id,
        clock=hooks.clock,
        sleep=hooks.sleep,
        rng=hooks.rng,
        transport=hooks.transport,
        flush_interval=hooks.flush_interval,
    )


def _deliver(
    events: Sequence[ConnectorEvent],
    config: ConnectorConfig,
    selected: tuple[DestinationConfig, ...],
    *,
    store: Store,
    run_id: str,
    lookups: Mapping[str, SecretLookup] | None,
    hooks: DeliveryHooks,
) -> tuple[EngineReport, SecretScrubber]:
    resolver = SecretResolver(lookups)
    resolved, errors = resolve_destinations(config, selected, resolver=resolver)
    kinds = {d.name: d.provider for d in selected}
    config_errors = {name: (kinds[name], error) for name, error in errors.items()}
    engine = _engine(store, run_id, hooks)
    report = engine.deliver(events, resolved, config_errors=config_errors)
    return report, resolver.scrubber


def evidence_draft(
    event: ConnectorEvent,
    results: Sequence[DestinationResult],
    *,
    run_id: str,
    generated_at: datetime,
    scrubber: SecretScrubber,
    actor: str,
    flow_run_id: str | None,
    source: str,
    filtered: Sequence[str] = (),
) -> EvidenceDraft:
    """The evidence record for one event's run (the same for the CLI and the flow path)."""
    payload = delivery_evidence_payload(
        event, results, generated_at=generated_at, run_id=run_id, source=source, filtered=filtered
    )
    draft = _draft(event, results, payload, actor=actor, flow_run_id=flow_run_id)
    # one scan of the canonical encoding the draft made anyway (the JSON-escaped form of each
    # secret is a needle too); strings are scrubbed one by one only when something is there
    if len(scrubber) and scrubber.found_in(draft.payload_bytes().decode("utf-8")):
        _scrub_delivery_strings(payload, scrubber)
        draft = _draft(event, results, payload, actor=actor, flow_run_id=flow_run_id)
        if scrubber.found_in(draft.payload_bytes().decode("utf-8")):
            # a secret outside the delivery strings (an event field echoing a credential):
            # scrub every string of the record rather than store it
            payload = scrubber.scrub_value(payload)
            draft = _draft(event, results, payload, actor=actor, flow_run_id=flow_run_id)
    return draft


def _draft(
    event: ConnectorEvent,
    results: Sequence[DestinationResult],
    payload: dict[str, Any],
    *,
    actor: str,
    flow_run_id: str | None,
) -> EvidenceDraft:
    kinds = {r.provider for r in results}
    return EvidenceDraft(
        kind=DELIVERY_EVIDENCE_KIND,
        actor=actor,
        subject=EvidenceSubject(
            provider=next(iter(kinds)) if len(kinds) == 1 else None,
            success=bool(payload["delivery_success"]),
            status="delivered" if payload["delivery_success"] else "failed",
            release_version=event.release_version,
            channel=event.channel,
            ring=event.ring,
            environment=event.environment,
            deployment_target=event.deployment_target,
        ),
        flow_run_id=flow_run_id,
        payload=payload,
    )


def _scrub_delivery_strings(payload: dict[str, Any], scrubber: SecretScrubber) -> None:
    """Scrub, in place, every string of the record that came from outside Ringward's own values
    (errors, response excerpts, receiver references, URLs and headers). The engine already scrubbed
    them per destination; this pass applies every secret of the run to every destination's strings."""
    for delivery in payload["delivery"]["deliveries"]:
        for key in ("error", "external_ref"):
            if isinstance(delivery.get(key), str):
                delivery[key] = scrubber.scrub(delivery[key])
        request = delivery.get("request")
        if request:
            request["url"] = scrubber.scrub(request["url"])
            request["headers"] = {k: scrubber.scrub(v) for k, v in request["headers"].items()}
        for attempt in delivery["attempts"]:
            if attempt.get("error"):
                attempt["error"] = scrubber.scrub(attempt["error"])
            if attempt.get("calls"):
                attempt["calls"] = [scrubber.scrub(call) for call in attempt["calls"]]


def deliver_events(
    events: Sequence[ConnectorEvent],
    config: ConnectorConfig,
    *,
    store: Store,
    providers: str = "all",
    lookups: Mapping[str, SecretLookup] | None = None,
    run_id: str | None = None,
    actor: str = "ringward",
    flow_run_id: str | None = None,
    source: str = "ringward_connector_delivery",
    hooks: DeliveryHooks | None = None,
) -> list[DeliveryRun]:
    """Deliver events to the selected destinations concurrently; one evidence record per event.

    Raises:
        ConnectorConfigError: ``providers`` names an unknown or disabled destination.
        InputError: duplicate event ids in one run.
    """
    hooks = hooks or DeliveryHooks()
    if len({e.event_id for e in events}) != len(events):
        raise InputError("events: the same event id appears twice in one delivery run")
    selected = select_destinations(config, providers)
    run_id = run_id or new_run_id()
    report, scrubber = _deliver(
        events, config, selected, store=store, run_id=run_id, lookups=lookups, hooks=hooks
    )
    generated_at = hooks.clock()
    runs: list[DeliveryRun] = []
    drafts: list[EvidenceDraft] = []
    for event in events:
        results = report.results[event.event_id]
        filtered = report.filtered[event.event_id]
        draft = evidence_draft(
            event,
            results,
            run_id=run_id,
            generated_at=generated_at,
            scrubber=scrubber,
            actor=actor,
            flow_run_id=flow_run_id,
            source=source,
            filtered=filtered,
        )
        drafts.append(draft)
        runs.append(DeliveryRun(event, results, filtered, draft.payload))
    records = store.append_many(drafts, now=generated_at)
    for run, record in zip(runs, records, strict=True):
        run.evidence_id = record.id
    return runs


def deliver_event(
    event: ConnectorEvent, config: ConnectorConfig, *, store: Store, **kwargs: Any
) -> DeliveryRun:
    """Deliver one event (the CLI's in-process path); see :func:`deliver_events`."""
    (run,) = deliver_events([event], config, store=store, **kwargs)
    return run


def deliver_to_destination(
    event: ConnectorEvent,
    config: ConnectorConfig,
    destination: str,
    *,
    store: Store,
    run_id: str,
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: DeliveryHooks | None = None,
) -> DestinationResult | None:
    """Deliver one event to one destination without writing evidence (the flow's task body).

    The result lists every attempt ``run_id`` made for the key, so when a Prefect task run is
    retried (same run id) its final result tells the truth about all of its tries.

    Returns:
        the result, or None when the destination's routing filter rejects the event.
    """
    hooks = hooks or DeliveryHooks()
    selected = select_destinations(config, destination)
    if len(selected) != 1:
        raise ConnectorConfigError(f"destination {destination!r} must name exactly one destination")
    report, _scrubber = _deliver(
        [event], config, selected, store=store, run_id=run_id, lookups=lookups, hooks=hooks
    )
    results = report.results[event.event_id]
    if not results:
        return None
    result = results[0]
    attempts = _log(store).run_attempts(result.key, run_id)
    if len(attempts) > result.attempt_count:
        renumbered = tuple(a.model_copy(update={"number": n}) for n, a in enumerate(attempts, start=1))
        result = result.model_copy(update={"attempts": renumbered, "started_at": renumbered[0].started_at})
    return result


def run_scrubber(
    config: ConnectorConfig, destinations: Sequence[str], lookups: Mapping[str, SecretLookup] | None
) -> SecretScrubber:
    """A scrubber holding every secret the named destinations reference (unresolvable ones skipped)."""
    resolver = SecretResolver(lookups)
    wanted = [d for d in config.providers if d.name in set(destinations)]
    resolve_destinations(config, tuple(wanted), resolver=resolver)
    return resolver.scrubber


def record_delivery_evidence(
    event: ConnectorEvent,
    results: Sequence[DestinationResult],
    *,
    store: Store,
    run_id: str,
    scrubber: SecretScrubber,
    actor: str = "ringward",
    flow_run_id: str | None = None,
    source: str = "ringward_connector_delivery",
    filtered: Sequence[str] = (),
    now: datetime | None = None,
) -> DeliveryRun:
    """Write the evidence record of results gathered elsewhere (the flow path)."""
    generated_at = now or utc_now()
    draft = evidence_draft(
        event,
        results,
        run_id=run_id,
        generated_at=generated_at,
        scrubber=scrubber,
        actor=actor,
        flow_run_id=flow_run_id,
        source=source,
        filtered=filtered,
    )
    record = store.append(draft, now=generated_at)
    return DeliveryRun(event, list(results), list(filtered), draft.payload, record.id)


def send_test_event(config: ConnectorConfig, provider: str, *, store: Store, **kwargs: Any) -> DeliveryRun:
    """Deliver a harmless ``ringward.connector.test`` event to the selected destinations."""
    hooks: DeliveryHooks = kwargs.get("hooks") or DeliveryHooks()
    selected = select_destinations(config, provider)
    event = make_test_event(destination=",".join(d.name for d in selected), now=hooks.clock())
    return deliver_event(
        event, config, store=store, providers=provider, source="ringward_connector_test", **kwargs
    )


def redeliver_due(
    config: ConnectorConfig,
    *,
    store: Store,
    limit: int = 1000,
    lookups: Mapping[str, SecretLookup] | None = None,
    run_id: str | None = None,
    actor: str = "ringward-redelivery",
    flow_run_id: str | None = None,
    hooks: DeliveryHooks | None = None,
) -> RedeliveryReport:
    """Retry failed (retryable) deliveries that are due, and take over stalled claims (a run that
    died or hung holding a key past its lease), inside their redelivery window.

    Every delivery goes through the log's compare-and-swap claim, so when two redeliveries run at
    once exactly one sends each key; the other reports it ``held``. A stalled key is resent with
    the event as first stored (same event id, so the same idempotency headers): a receiver that
    already took it de-duplicates. Deliveries past their window are marked ``expired``; deliveries
    to destinations no longer in ``config`` are left alone and listed. Time is ``hooks.clock``.
    """
    hooks = hooks or DeliveryHooks()
    log = _log(store)
    now = hooks.clock()
    report = RedeliveryReport(expired=log.expire_overdue(now=now))
    due = log.due(now=now, limit=limit)
    due_keys = {e.key for e in due}
    report.held_elsewhere = [str(k) for k in log.held(now=now, limit=limit) if k not in due_keys]
    report.due = len(due)
    report.stalled = sum(1 for e in due if e.state is DeliveryState.IN_PROGRESS)
    if not due:
        return report
    configured = {d.name: d for d in config.providers if d.enabled}
    by_destination: dict[str, list[str]] = {}
    for entry in due:
        if entry.destination not in configured:
            report.skipped_unconfigured.append(f"{entry.event_id} -> {entry.destination}")
            continue
        by_destination.setdefault(entry.destination, []).append(entry.event_id)
    events = log.load_events([e for ids in by_destination.values() for e in ids])
    run_id = run_id or new_run_id("redeliver")
    # group destinations by the exact set of events each needs, then deliver each group once
    groups: dict[tuple[str, ...], list[str]] = {}
    for destination, ids in by_destination.items():
        report.missing_events.extend(f"{i} -> {destination}" for i in ids if i not in events)
        present = tuple(sorted(i for i in ids if i in events))
        if present:
            groups.setdefault(present, []).append(destination)
    for wanted, destinations in groups.items():
        runs = deliver_events(
            [events[i] for i in wanted],
            config,
            store=store,
            providers=",".join(destinations),
            lookups=lookups,
            run_id=run_id,
            actor=actor,
            flow_run_id=flow_run_id,
            source="ringward_connector_redelivery",
            hooks=hooks,
        )
        report.runs.extend(runs)
    return report


# --- reading -----------------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def delivery_history(
    store: Store,
    *,
    provider: str | None = None,
    event_id: str | None = None,
    success: bool | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The history document; each item also says whether it is a stalled claim (``in_progress``
    with its lease expired at ``now``: redelivery takes it over) and when its claim's lease ends."""
    now = now or datetime.now(UTC)
    log = _log(store)
    entries, total = log.history(provider=provider, event_id=event_id, success=success, limit=limit, offset=offset)
    document = history_document(entries, total=total, limit=max(1, min(limit, 500)), offset=max(0, offset))
    leases = log.leases([e.key for e in entries if e.state is DeliveryState.IN_PROGRESS])
    for item, entry in zip(document["items"], entries, strict=True):
        lease = leases.get(entry.key)
        item["lease_until"] = _iso(lease) if lease is not None else None
        item["stalled"] = lease is not None and lease < now
    return document


def delivery_dashboard(store: Store, *, now: datetime | None = None) -> dict[str, Any]:
    """The dashboard document; ``stalled`` counts claims whose lease expired at ``now`` (a run died
    holding them) per destination and in all, and any makes the dashboard at least a warning."""
    now = now or datetime.now(UTC)
    log = _log(store)
    stats, event_types = log.stats()
    document = dashboard_document(
        stats,
        event_types=event_types,
        disabled_destinations=log.disabled_destinations(),
        now=now,
    )
    stalled = log.stalled_counts(now=now)
    alerts = []
    for row in document["providers"]:
        row["stalled"] = stalled.get((row["provider"], row["destination"]), 0)
        if row["stalled"]:
            alerts.append(
                f"Destination {row['destination']} has {row['stalled']} stalled deliveries (claim lease "
                "expired without an outcome); `ringward connectors redeliver` takes them over"
            )
    document["stalled"] = sum(stalled.values())
    if alerts:
        document["alerts"] = (alerts + document["alerts"])[:25]
        if document["alert_level"] == "healthy":
            document["alert_level"] = "warning"
    return document


def dashboard_markdown(dashboard: dict[str, Any]) -> str:
    """The dashboard as a Markdown page (Prefect artifact, ``--markdown``)."""
    rate = dashboard["success_rate"]
    lines = [
        f"# Connector delivery dashboard — {dashboard['alert_level'].upper()}",
        "",
        f"Generated {dashboard['generated_at']}: {dashboard['total']} deliveries, "
        f"{dashboard['success']} succeeded, {dashboard['failed']} failed, "
        + (f"{dashboard['stalled']} stalled, " if dashboard.get("stalled") else "")
        + f"success rate {'n/a' if rate is None else f'{rate:.2%}'}.",
        "",
        "| destination | provider | total | ok | failed | rate | attempts | last delivery | last error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in dashboard["providers"]:
        prate = "n/a" if p["success_rate"] is None else f"{p['success_rate']:.1%}"
        error = (p["last_error"] or "").replace("|", "\\|")[:160]
        name = p["destination"] + (" (disabled)" if p["disabled"] else "")
        lines.append(
            f"| {name} | {p['provider']} | {p['total']} | {p['success']} | {p['failed']} | {prate} | "
            f"{p['attempt_count']} | {p['last_delivery_at'] or ''} | {error} |"
        )
    if dashboard["alerts"]:
        lines += ["", "## Alerts", ""] + [f"- {a}" for a in dashboard["alerts"]]
    return "\n".join(lines) + "\n"


def enable_destination(store: Store, name: str, *, now: datetime | None = None) -> int:
    """Re-enable a destination disabled by HTTP 410; returns deliveries queued for redelivery.

    Raises:
        InputError: the destination is not disabled.
    """
    queued = _log(store).enable_destination(name, now=now or datetime.now(UTC))
    if queued < 0:
        raise InputError(f"destination {name} is not disabled")
    return queued


def exit_status(runs: Sequence[DeliveryRun]) -> int:
    """0 when every delivery succeeded (or was already delivered), else 1."""
    return 0 if runs and all(r.success for r in runs) else 1
