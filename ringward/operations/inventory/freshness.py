"""``ringward inventory freshness``: how old each scope's inventory is, per host and per source.

Reads the ingestion records (evidence kind ``endpoint-inventory-ingestion``, status ``ingested``),
newest first, filtered by provider and channel in the store, up to ``max_records`` (default
5,000; the reference stopped at 500); per scope the newest is evaluated with its hosts' two clocks,
read from the ingestion's evidence bundle (checked against the record's digest first; a missing or
altered bundle is a warning and the scope is judged on its age alone). The report is written into
an evidence bundle and recorded. Then each scope's and source's state (healthy / warning / critical)
is compared with the stored one: only a change is written -- compare-and-set, together with its
``endpoint-inventory-freshness-change`` record in one transaction -- so a cron evaluating every 15
minutes emits one event per change, not one per run. A lost compare-and-set (a concurrent
evaluation) is re-read: if the other run already recorded this state, nothing more is written.

:func:`notify_freshness_changes` then delivers one connector notification per change (healthy ->
warning -> critical -> healthy, a source going silent and delivering again) through the connector
platform, remembering the last notified state per scope (compare-and-set): never twice for one
state, again on recovery, retried by the next evaluation when a delivery failed.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.common.jsonio import dumps_document
from ringward.core.errors import InputError, StoreConflictError
from ringward.core.evidence.query import MAX_PAGE_SIZE, EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.core.inventory.freshness import (
    FRESHNESS_FILE,
    FRESHNESS_MD,
    FRESHNESS_SIGNER,
    KIND_FRESHNESS,
    KIND_FRESHNESS_CHANGE,
    HostClock,
    Ingestion,
    ScopeRule,
    Thresholds,
    evaluate,
    states,
)
from ringward.core.inventory.observations import KIND_INGESTION, OBSERVATIONS_FILE, PROVIDERS, format_timestamp
from ringward.operations.inventory.common import append_bundle, evidence_ref

if TYPE_CHECKING:
    from ringward.store import Store

RESULT_SCHEMA = "ringward.inventory-freshness-result.v1"
DEFAULT_MAX_RECORDS = 5000
#: most host clocks read from one ingestion's bundle
MAX_HOSTS_PER_INGESTION = 2_000_000


def _ingestions(store: Store, *, provider: str | None, channel: str | None, max_records: int
                ) -> list[tuple[Ingestion, EvidenceRecord]]:
    out: list[tuple[Ingestion, EvidenceRecord]] = []
    before: int | None = None
    while len(out) < max_records:
        page = store.search_evidence(EvidenceQuery(
            kind=KIND_INGESTION, status="ingested", provider=provider, channel=channel, before_id=before,
            limit=min(MAX_PAGE_SIZE, max_records - len(out)), with_total=False))
        for record in page.items:
            p = record.payload
            out.append((Ingestion(
                inventory_id=str(p.get("inventory_id")), provider=p.get("provider"), channel=p.get("channel"),
                observed_at=str(p.get("observed_at")), deployment_targets=tuple(p.get("deployment_targets") or ()),
                endpoint_count=int(p.get("endpoint_count") or 0),
                missing_target_count=int(p.get("missing_target_count") or 0)), record))
        if page.next_before_id is None:
            break
        before = page.next_before_id
    return out


def _host_clocks(record: EvidenceRecord) -> list[HostClock] | str:
    """The hosts of an ingestion from its bundle, or the reason they cannot be read."""
    from ringward.operations.inventory.observations_file import stream_document
    from ringward.settings import evidence_root

    artifact = next((a for a in record.artifacts if a.name == OBSERVATIONS_FILE), None)
    if record.bundle_dir is None or artifact is None:
        return "has no observations file in its evidence bundle"
    path = evidence_root() / record.bundle_dir / OBSERVATIONS_FILE
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        return f"observations file unreadable ({exc.strerror})"
    if digest != artifact.sha256:
        return "observations file does not match its recorded digest"
    clocks: list[HostClock] = []
    try:
        fast = _host_clocks_columnar(path)
        if fast is not None:
            return fast
        for event, value in stream_document(path):
            if event != "endpoint":
                continue
            if len(clocks) >= MAX_HOSTS_PER_INGESTION:
                break
            seen = value.get("last_seen_at")
            clocks.append(HostClock(
                endpoint_id=str(value.get("endpoint_id")), deployment_target=str(value.get("deployment_target")),
                last_checkin_at=value.get("last_checkin_at") or seen,
                last_inventory_at=value.get("last_inventory_at") or seen))
    except InputError as exc:
        return f"observations file unreadable ({exc.message})"
    return clocks


def _host_clocks_columnar(path: Path) -> list[HostClock] | None:
    """The hosts of a file in Ringward's line layout, decoded by polars (a million hosts in seconds);
    None for any other layout or a file the columnar pass cannot take whole."""
    import polars as pl

    from ringward.core.inventory.observations import ENDPOINT_INDENT
    from ringward.operations.inventory.observations_file import line_layout

    layout = line_layout(path)
    if layout is None:
        return None
    if layout.empty:
        return []
    names = ("endpoint_id", "deployment_target", "last_checkin_at", "last_inventory_at", "last_seen_at")
    try:
        frame = (pl.scan_csv(path, has_header=False, separator="\x01", quote_char=None, new_columns=["line"],
                             skip_rows=layout.header_lines, schema={"line": pl.String})
                 .filter(pl.col("line").str.starts_with(ENDPOINT_INDENT + "{"))
                 .select(pl.col("line").str.strip_chars_end(",").str.json_decode(
                     pl.Struct({n: pl.String for n in names})).alias("e"))
                 .unnest("e").collect())
    except pl.exceptions.PolarsError:
        return None
    def present(name: str) -> pl.Expr:  # "" is absent, as in the streaming reader
        return pl.when(pl.col(name) != "").then(pl.col(name))

    frame = frame.select(
        "endpoint_id", "deployment_target",
        pl.coalesce(present("last_checkin_at"), present("last_seen_at")).alias("checkin"),
        pl.coalesce(present("last_inventory_at"), present("last_seen_at")).alias("inventory"))
    return [HostClock(str(e), str(t), c, i) for e, t, c, i in frame.iter_rows()]


def render_markdown(report: dict[str, Any]) -> bytes:
    lines = [f"# Endpoint inventory freshness {report['report_id']}", "",
             f"- alert level: **{report['alert_level']}** (max {report['max_age_hours']}h, critical "
             f"{report['critical_age_hours']}h)", "",
             "| scope | observed at | age h | severity | hosts stale |", "|---|---|---:|---|---:|"]
    for row in report["latest_ingestions"]:
        hosts = row["hosts"] or {}
        stale = hosts.get("inventory_warning_count", 0) + hosts.get("inventory_critical_count", 0)
        lines.append(f"| {row['provider']}/{row['channel']}/{row['deployment_target']} | {row['observed_at']} | "
                     f"{row['age_hours']} | {row['severity']} | {stale if row['hosts'] is not None else '-'} |")
    lines += ["", "## Alerts", ""] + [f"- {a['severity']}: {a['message']}" for a in report["alerts"]]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _record_changes(store: Store, report: dict[str, Any], record: EvidenceRecord, *, actor: str, now: datetime,
                    flow_run_id: str | None) -> list[dict[str, Any]]:
    from ringward.store.inventory.repo import FRESHNESS_NAMESPACE, InventoryRepository

    repo = InventoryRepository(store)
    changes = []
    for key, severity in sorted(states(report).items()):
        for _ in range(5):
            entry = store.state.get(FRESHNESS_NAMESPACE, key)
            previous = entry.value.get("severity") if entry is not None else "healthy"
            if previous == severity and entry is not None:
                break
            value = {"severity": severity, "report_id": report["report_id"], "evidence_id": record.id,
                     "since": report["created_at"]}
            change = {"state": key, "from": previous, "to": severity, "report_id": report["report_id"],
                      "report_evidence_id": record.id, "at": report["created_at"]}
            provider, _, rest = key.partition(":")[2].partition("/")
            draft = EvidenceDraft(
                kind=KIND_FRESHNESS_CHANGE, actor=actor, flow_run_id=flow_run_id,
                subject=EvidenceSubject(provider=provider, channel=rest.split("/")[0] or None, status=severity,
                                        success=severity == "healthy"),
                payload={"schema_version": "ringward.endpoint-inventory-freshness-change.v1", **change})
            if previous == severity:  # first evaluation of a healthy scope: store the baseline, no event
                try:
                    store.state.put(FRESHNESS_NAMESPACE, key, value, actor=actor, now=now, expected_version=0)
                except StoreConflictError:
                    continue
                break
            try:
                event = repo.transition(key, value, expected_version=entry.version if entry else 0, draft=draft,
                                        actor=actor, now=now)
            except StoreConflictError:
                continue  # another evaluation moved it: re-read and decide again
            changes.append({**change, "evidence_id": str(event.id)})
            break
    return changes


def evaluate_freshness(
    store: Store,
    *,
    now: datetime,
    actor: str,
    thresholds: Thresholds,
    rules: tuple[ScopeRule, ...] = (),
    provider: str | None = None,
    channel: str | None = None,
    deployment_target: str | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
    host_clocks: bool = True,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Evaluate, record the report, record state changes (see the module docstring)."""
    if provider is not None and provider not in PROVIDERS:
        raise InputError(f"--provider: expected one of {', '.join(PROVIDERS)}, found {provider!r}")
    if channel is not None:
        from ringward.core.promotion.channels import check_channel_name

        check_channel_name(channel)
    if not 1 <= max_records <= 1_000_000:
        raise InputError(f"--max-records: expected 1..1000000, found {max_records}")
    pairs = _ingestions(store, provider=provider, channel=channel, max_records=max_records)
    ingestions = [i for i, _ in pairs]
    records = {i.inventory_id: r for i, r in pairs}
    warnings: list[str] = []
    hosts: dict[str, list[HostClock]] = {}
    if host_clocks:
        from ringward.core.inventory.freshness import select_latest

        for inventory in sorted({i.inventory_id for i in select_latest(ingestions,
                                                                         deployment_target=deployment_target).values()}):
            clocks = _host_clocks(records[inventory])
            if isinstance(clocks, str):
                warnings.append(f"inventory {inventory}: {clocks}; host clocks not evaluated")
            else:
                hosts[inventory] = clocks
    report = evaluate(ingestions, now=now, default=thresholds, rules=rules, provider=provider, channel=channel,
                      deployment_target=deployment_target, hosts=hosts, warnings=warnings)
    payload = {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": KIND_FRESHNESS,
        "session_id": report["report_id"],
        "created_at": report["created_at"],
        "signer": FRESHNESS_SIGNER,
        "decision_count": 0,
        "blocked_count": report["summary"]["critical_count"],
        "approval_required_count": 0,
        **{k: report[k] for k in ("report_id", "alert_level", "max_age_hours", "critical_age_hours", "scope",
                                  "summary", "sources")},
        "alert_count": len(report["alerts"]),
        "warning_count": report["summary"]["warning_count"],
        "critical_count": report["summary"]["critical_count"],
        "latest_ingestions": report["latest_ingestions"][:500],
        "alerts": report["alerts"][:500],
    }
    report_json = dumps_document(report)
    record = append_bundle(
        store, KIND_FRESHNESS, actor=actor, payload=payload, now=now, flow_run_id=flow_run_id,
        files={FRESHNESS_FILE: report_json, FRESHNESS_MD: render_markdown(report)},
        subject=EvidenceSubject(provider=provider, channel=channel, deployment_target=deployment_target,
                                status=report["alert_level"], success=report["alert_level"] == "healthy"),
    )
    assert record is not None
    changes = _record_changes(store, report, record, actor=actor, now=now, flow_run_id=flow_run_id)
    return {
        "schema_version": RESULT_SCHEMA,
        "report_id": report["report_id"],
        "alert_level": report["alert_level"],
        "summary": report["summary"],
        "alerts": report["alerts"],
        "latest_ingestions": report["latest_ingestions"],
        "sources": report["sources"],
        "warnings": report["warnings"],
        "changes": changes,
        "report": report,
        "evidence": evidence_ref(record),
    }



# --- notifications: one connector notification per state change ------------------------------------------------

#: what each scope's and source's last *notified* state is (the state itself is in ``inventory-freshness``)
NOTIFY_NAMESPACE = "inventory-freshness-notified"
NOTIFY_SOURCE = "endpoint_inventory_freshness_notification"
NOTIFY_SCHEMA = "ringward.inventory-freshness-notification-result.v1"
EVENT_PREFIX = "ringward.inventory.freshness"


def freshness_event(key: str, state: dict[str, Any], version: int, previous: str, now: datetime) -> Any:
    """The connector event of state ``key`` moving from ``previous`` to ``state["severity"]``.

    Its id is stable for that change (state key, the state's version, the new severity), so a
    notification that failed is retried under the same id and the delivery log sends it once.
    Event types: ``ringward.inventory.freshness.<warning|critical|healthy>`` for a scope,
    ``...freshness.source-silent`` / ``...freshness.source-resumed`` for a whole source.
    """
    from ringward.core.delivery.event import ConnectorEvent, Severity

    severity = str(state.get("severity") or "healthy")
    kind, _, name = key.partition(":")
    parts = name.split("/")
    channel = parts[1] if len(parts) > 1 and parts[1] != "unassigned" else None
    if kind == "source":
        event_type = f"{EVENT_PREFIX}.source-resumed" if severity == "healthy" else f"{EVENT_PREFIX}.source-silent"
        title = (f"Inventory source {name} is delivering again" if severity == "healthy"
                 else f"Inventory source {name} is silent ({severity})")
    else:
        event_type = f"{EVENT_PREFIX}.{severity}"
        title = f"Inventory freshness {name}: {previous} -> {severity}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return ConnectorEvent(
        event_id=f"inventory-freshness:{digest}:{version}:{severity}",
        event_type=event_type, created_at=now, title=title[:250],
        severity={"critical": Severity.CRITICAL, "warning": Severity.WARNING}.get(severity, Severity.INFO),
        summary=(f"{'Source' if kind == 'source' else 'Scope'} {name} changed from {previous} to {severity} at "
                 f"{state.get('since')} (freshness report {state.get('report_id')}, evidence "
                 f"{state.get('evidence_id')})."),
        source="ringward-inventory-freshness", session_id=str(state.get("report_id") or "") or None,
        channel=channel, deployment_target=parts[2] if kind == "scope" and len(parts) > 2 else None,
        attributes={"state": key, "kind": kind, "name": name, "from": previous, "to": severity,
                    "since": state.get("since"), "report_id": state.get("report_id"),
                    "report_evidence_id": state.get("evidence_id")})


def notify_freshness_changes(store: Store, config: Any, *, now: datetime, actor: str, providers: str = "all",
                             lookups: Any = None, flow_run_id: str | None = None, hooks: Any = None) -> dict[str, Any]:
    """Deliver one notification per state change not yet notified, through the connector platform.

    Each scope's and source's current state (recorded by :func:`evaluate_freshness`) is compared with
    the state last notified for it (namespace :data:`NOTIFY_NAMESPACE`; absent means healthy, so a
    scope first seen healthy is never announced). A difference is delivered; once delivered (or when
    no destination's routing selects it) the notified state is set by compare-and-set. So the same
    state is never notified twice, a recovery is notified again, and a delivery that failed is retried
    by the next evaluation under the same event id (the delivery log never sends one twice). A state
    that changed and changed back between two notifications is not announced (nothing to act on).
    ``result["ok"]`` is false when a delivery failed.
    """
    from ringward.operations.delivery.delivery_ops import deliver_events, new_run_id
    from ringward.store.inventory.repo import FRESHNESS_NAMESPACE

    notified = {entry.key: entry for entry in store.state.list(NOTIFY_NAMESPACE)}
    pending: list[tuple[str, Any, Any, Any]] = []
    for entry in store.state.list(FRESHNESS_NAMESPACE):
        value = entry.value if isinstance(entry.value, dict) else {}
        told = notified.get(entry.key)
        previous = str((told.value or {}).get("severity") or "healthy") if told is not None else "healthy"
        if value.get("severity") == previous:
            continue
        pending.append((entry.key, entry, told, freshness_event(entry.key, value, entry.version, previous, now)))
    delivered: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    if pending:
        runs = deliver_events([event for *_, event in pending], config, store=store, providers=providers,
                              lookups=lookups, run_id=new_run_id("freshness"), actor=actor, flow_run_id=flow_run_id,
                              source=NOTIFY_SOURCE, hooks=hooks)
        for (key, entry, told, event), run in zip(pending, runs, strict=True):
            row = {"state": key, "from": event.attributes["from"], "to": event.attributes["to"],
                   "event_id": event.event_id, "event_type": event.event_type,
                   "delivery_evidence_id": run.evidence_id,
                   "destinations": [r.destination for r in run.results]}
            if not (run.success or (not run.results and run.filtered)):
                failed.append({**row, "error": "; ".join(r.error or r.status.value for r in run.failed)[:1000]})
                continue
            # a lost compare-and-set: a concurrent evaluation notified it, the delivery log kept the send single
            with contextlib.suppress(StoreConflictError):
                store.state.put(NOTIFY_NAMESPACE, key,
                                {"severity": event.attributes["to"], "event_id": event.event_id,
                                 "state_version": entry.version, "notified_at": format_timestamp(now),
                                 "delivery_evidence_id": run.evidence_id, "destinations": row["destinations"]},
                                actor=actor, now=now, expected_version=told.version if told is not None else 0)
            delivered.append(row)
    return {"schema_version": NOTIFY_SCHEMA, "pending": len(pending), "delivered": delivered, "failed": failed,
            "ok": not failed}
