"""The operator console: one page of current state per domain, read from the store.

Each page is what one stable-key Prefect artifact shows (``console-releases``, ``console-channels``,
...; the ``ringward-overview`` page links them). Everything here is a read through the domains'
own operations and repositories -- no table of its own, no evidence written -- and rendering is a
pure function of the gathered :class:`Console`, so it is tested without Prefect.

A page whose read fails (a record that no longer parses, a store error) is published as
``unavailable`` with the one-line reason instead of taking the other pages down with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ringward.core.errors import RingwardError

if TYPE_CHECKING:
    from ringward.core.evidence.records import EvidenceRecord
    from ringward.store import Store

OVERVIEW_KEY = "ringward-overview"

#: page name -> (artifact key, title); the order is the overview's
PAGES: dict[str, tuple[str, str]] = {
    "releases": ("console-releases", "Release verification"),
    "channels": ("console-channels", "Channels"),
    "approvals": ("console-approvals", "Pending approvals"),
    "rollouts": ("console-rollouts", "Rollouts by ring"),
    "fleet": ("console-fleet", "Fleet drift"),
    "escalations": ("console-escalations", "Open SLA escalations"),
    "incidents": ("console-incidents", "Open incidents"),
    "deliveries": ("console-deliveries", "Connector delivery health"),
    "evidence": ("console-evidence", "Evidence chain"),
}

#: the newest evidence records of one kind read to find the latest per package / channel / scope
DEFAULT_SCAN_RECORDS = 2000
#: rows one page lists at most (the page says how many it left out)
DEFAULT_ROW_LIMIT = 200
MAX_ROW_LIMIT = 500

Level = Literal["ok", "attention", "empty", "unavailable"]
Cell = str | int | None


class ConsolePage(BaseModel):
    """One console page: a headline, a table and notes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    key: str
    title: str
    #: ``empty``: nothing recorded yet; ``attention``: something an operator should look at
    level: Level
    #: one line: what the page says at a glance (also the overview's line)
    summary: str
    columns: tuple[str, ...] = ()
    rows: tuple[dict[str, Cell], ...] = ()
    #: rows that exist but were not listed (row limit)
    omitted: int = Field(default=0, ge=0)
    notes: tuple[str, ...] = ()


class Console(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    generated_at: datetime
    store: str
    pages: tuple[ConsolePage, ...]

    def page(self, name: str) -> ConsolePage:
        for page in self.pages:
            if page.name == name:
                return page
        raise KeyError(name)

    def unavailable(self) -> list[str]:
        return [p.name for p in self.pages if p.level == "unavailable"]


# --- helpers ----------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _page(name: str, level: Level, summary: str, columns: tuple[str, ...] = (),
          rows: list[dict[str, Cell]] | None = None, *, omitted: int = 0,
          notes: list[str] | None = None) -> ConsolePage:
    key, title = PAGES[name]
    return ConsolePage(name=name, key=key, title=title, level=level, summary=summary, columns=columns,
                       rows=tuple(rows or ()), omitted=omitted, notes=tuple(notes or ()))


def _latest_per(store: Store, kind: str, group: Callable[[EvidenceRecord], str | None], *,
                scan_records: int, **filters: Any) -> tuple[list[EvidenceRecord], bool]:
    """The newest record of ``kind`` per group key, newest first, reading at most ``scan_records``
    records (keyset pages). Returns (records, whether the scan stopped before the oldest)."""
    from ringward.core.evidence.query import MAX_PAGE_SIZE, EvidenceQuery

    seen: dict[str, EvidenceRecord] = {}
    read, before = 0, None
    while read < scan_records:
        query = EvidenceQuery(kind=kind, before_id=before, limit=min(MAX_PAGE_SIZE, scan_records - read),
                              with_total=False, **filters)
        page = store.search_evidence(query)
        for record in page.items:
            key = group(record)
            if key is not None and key not in seen:
                seen[key] = record
        read += len(page.items)
        if page.next_before_id is None:
            return list(seen.values()), False
        before = page.next_before_id
    return list(seen.values()), True


def _cut(rows: list[dict[str, Cell]], limit: int) -> tuple[list[dict[str, Cell]], int]:
    return rows[:limit], max(0, len(rows) - limit)


def _first_error(payload: dict[str, Any]) -> str | None:
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, dict):
            return f"{first.get('code', 'error')}: {str(first.get('message', ''))[:200]}"
        return str(first)[:200]
    error = payload.get("error")
    if isinstance(error, dict):
        return f"{error.get('code', 'error')}: {str(error.get('message', ''))[:200]}"
    return None


# --- pages --------------------------------------------------------------------------------------------------


def releases_page(store: Store, *, limit: int, scan_records: int) -> ConsolePage:
    """The latest ``verify-package`` result per package (runtime + version)."""
    from ringward.operations.release.release_ops import KIND_VERIFY

    def package(record: EvidenceRecord) -> str:
        return f"{record.subject.runtime or '?'}@{record.subject.release_version or '?'}"

    records, truncated = _latest_per(store, KIND_VERIFY, package, scan_records=scan_records)
    if not records:
        return _page("releases", "empty", "Nothing yet: no package has been verified.")
    rows: list[dict[str, Cell]] = []
    for r in records:
        refused = bool(r.payload.get("refused"))
        valid = r.subject.success is True and not refused
        rows.append({"runtime": r.subject.runtime, "version": r.subject.release_version,
                     "status": "refused" if refused else ("VALID" if valid else "INVALID"),
                     "verified_at": _iso(r.created_at), "actor": r.actor, "evidence_id": r.id,
                     "first_error": None if valid else _first_error(r.payload)})
    invalid = sum(1 for row in rows if row["status"] != "VALID")
    shown, omitted = _cut(rows, limit)
    notes = [f"Only the newest {scan_records} verification records were read; older packages are not listed."] \
        if truncated else []
    return _page("releases", "attention" if invalid else "ok",
                 f"{len(rows)} package(s): {len(rows) - invalid} valid, {invalid} invalid or refused.",
                 ("runtime", "version", "status", "verified_at", "actor", "evidence_id", "first_error"),
                 shown, omitted=omitted, notes=notes)


def channels_page(store: Store, *, limit: int) -> ConsolePage:
    """Every channel's high-water mark, current release and hold."""
    from ringward.operations.promotion.channel_status import channel_status

    channels = channel_status(store)["channels"]
    if not channels:
        return _page("channels", "empty", "Nothing yet: no channel has a release or a hold.")
    rows: list[dict[str, Cell]] = []
    for c in channels:
        high, current, hold = c.get("high_water"), c.get("current"), c.get("hold")
        allowance = c.get("rollback_allowance")
        rows.append({
            "channel": c["channel"],
            "high_water": None if high is None else high["version"],
            "high_water_digest": None if high is None else str(high["digest"])[:19],
            "current": None if current is None else current["version"],
            "held": "HELD" if hold else "no",
            "hold": None if not hold else f"by {hold['actor']} since {hold['at']}: {str(hold['reason'])[:200]}",
            "rollback_allowed_to": None if not allowance else allowance["to_version"],
        })
    held = sum(1 for row in rows if row["held"] == "HELD")
    shown, omitted = _cut(rows, limit)
    return _page("channels", "attention" if held else "ok", f"{len(rows)} channel(s), {held} held.",
                 ("channel", "high_water", "high_water_digest", "current", "held", "hold", "rollback_allowed_to"),
                 shown, omitted=omitted)


def approvals_page(store: Store, *, now: datetime, limit: int) -> ConsolePage:
    """Approvals pending at ``now`` (expired ones are not pending, even before anyone writes that down)."""
    from ringward.core.approvals.rules import ApprovalState
    from ringward.operations.approvals.approval_ops import list_approvals

    approvals, total = list_approvals(store, state=ApprovalState.PENDING, now=now, limit=min(limit, MAX_ROW_LIMIT))
    if not approvals:
        return _page("approvals", "empty", "Nothing yet: no approval is pending.")
    rows: list[dict[str, Cell]] = [{
        "approval_id": a.approval_id, "action": a.action, "target": a.target, "requester": a.requester,
        "approver_group": a.approver_group, "votes": f"{len(a.votes)}/{a.quorum}",
        "requested_at": _iso(a.created_at), "expires_at": _iso(a.expires_at),
    } for a in approvals]
    return _page("approvals", "attention", f"{total} approval(s) pending.",
                 ("approval_id", "action", "target", "requester", "approver_group", "votes", "requested_at",
                  "expires_at"), rows, omitted=max(0, total - len(rows)))


def rollouts_page(store: Store, *, limit: int) -> ConsolePage:
    """Every rollout's state after its latest step, grouped by ring."""
    from ringward.operations.promotion.rollout_queries import list_rollouts
    from ringward.store.promotion.executions_repo import StepFilter

    listed = list_rollouts(store, StepFilter(), limit=min(limit, MAX_ROW_LIMIT))
    items = listed["items"]
    if not items:
        return _page("rollouts", "empty", "Nothing yet: no rollout has been captured.")
    rows: list[dict[str, Cell]] = [{
        "ring": i["ring"] or "(none)", "rollout_id": i["rollout_id"], "status": i["status"],
        "release_version": i["release_version"], "environment": i["environment"], "last_step": i["step"],
        "at": i["created_at"], "approval_id": i["approval_id"],
    } for i in items]
    rows.sort(key=lambda r: (str(r["ring"]), str(r["rollout_id"])))
    rings = sorted({str(r["ring"]) for r in rows})
    total = int(listed["total"])
    return _page("rollouts", "ok", f"{total} rollout(s) across {len(rings)} ring(s): {', '.join(rings)}.",
                 ("ring", "rollout_id", "status", "release_version", "environment", "last_step", "at",
                  "approval_id"), rows, omitted=max(0, total - len(rows)))


def fleet_page(store: Store, *, limit: int, scan_records: int) -> ConsolePage:
    """The latest inventory reconciliation per channel."""
    from ringward.core.inventory.reconcile import KIND_RECONCILIATION

    records, truncated = _latest_per(store, KIND_RECONCILIATION, lambda r: r.subject.channel or "(no channel)",
                                     scan_records=scan_records)
    if not records:
        return _page("fleet", "empty", "Nothing yet: no fleet reconciliation has run.")
    rows: list[dict[str, Cell]] = []
    for r in records:
        p = r.payload
        release = p.get("release") if isinstance(p.get("release"), dict) else {}
        refused = bool(p.get("refused"))
        rows.append({
            "channel": r.subject.channel or "(no channel)",
            "drift_status": "refused" if refused else p.get("drift_status", r.subject.status),
            "alert_level": p.get("alert_level"),
            "release": release.get("version") if release else r.subject.release_version,
            "drifted": p.get("drifted_endpoint_count"), "missing": p.get("missing_target_count"),
            "stale": p.get("stale_endpoint_count"),
            "observed_at": p.get("observed_at"), "reconciled_at": _iso(r.created_at), "evidence_id": r.id,
            "error": _first_error(p) if refused else None,
        })
    drifted = sum(1 for row in rows if row["drift_status"] != "aligned")
    shown, omitted = _cut(rows, limit)
    notes = [f"Only the newest {scan_records} reconciliation records were read."] if truncated else []
    return _page("fleet", "attention" if drifted else "ok",
                 f"{len(rows)} channel(s) reconciled: {len(rows) - drifted} aligned, {drifted} drifted or refused.",
                 ("channel", "drift_status", "alert_level", "release", "drifted", "missing", "stale", "observed_at",
                  "reconciled_at", "evidence_id", "error"), shown, omitted=omitted, notes=notes)


def escalations_page(store: Store, *, limit: int, scan_records: int) -> ConsolePage:
    """Open SLA escalations as of the latest recorded SLA cycle of each scope."""
    from ringward.operations.sla.sla_ops import KIND_PLAN

    def scope(record: EvidenceRecord) -> str | None:
        value = record.payload.get("scope")
        return str(value) if value is not None else None

    records, truncated = _latest_per(store, KIND_PLAN, scope, scan_records=scan_records)
    if not records:
        return _page("escalations", "empty", "Nothing yet: no SLA cycle has run.")
    rows: list[dict[str, Cell]] = []
    for r in records:
        by_owner = r.payload.get("open_incidents_by_owner") or {}
        for owner, incidents in sorted(by_owner.items()):
            for i in incidents:
                rows.append({
                    "scope": r.payload.get("scope"), "owner": owner, "group_key": i.get("group_key"),
                    "state": i.get("state"), "acknowledged_by": i.get("acknowledged_by"), "rung": i.get("level"),
                    "ack_slo": i.get("acknowledgement_slo_state"), "items": len(i.get("alerts") or ()),
                    "as_of": r.payload.get("at") or _iso(r.created_at),
                })
    scopes = ", ".join(sorted(str(r.payload.get("scope")) for r in records))
    notes = [f"Only the newest {scan_records} SLA cycle records were read."] if truncated else []
    if not rows:
        return _page("escalations", "ok", f"No open escalations (latest cycle of scope(s) {scopes}).", notes=notes)
    shown, omitted = _cut(rows, limit)
    return _page("escalations", "attention", f"{len(rows)} open escalation(s) in scope(s) {scopes}.",
                 ("scope", "owner", "group_key", "state", "acknowledged_by", "rung", "ack_slo", "items", "as_of"),
                 shown, omitted=omitted, notes=notes)


def incidents_page(store: Store, *, now: datetime, limit: int) -> ConsolePage:
    """Incidents not closed, with their breached and at-risk response clocks at ``now``."""
    from ringward.operations.incidents.incident_ops import breach_report, list_incidents

    incidents = list_incidents(store, only_open=True)
    if not incidents:
        return _page("incidents", "empty", "Nothing yet: no incident is open.")
    clocks: dict[str, list[str]] = {}
    for b in breach_report(store, now=now)["breaches"]:
        clocks.setdefault(b["incident_id"], []).append(f"{b['clock']} {b['state']}")
    rows: list[dict[str, Cell]] = [{
        "incident_id": i.incident_id, "severity": i.severity.value, "type": i.type.value, "state": i.state.value,
        "opened_at": _iso(i.opened_at), "acknowledged_by": i.acknowledged_by,
        "clocks": "; ".join(clocks.get(i.incident_id, [])) or "on time", "summary": i.summary[:200],
    } for i in sorted(incidents, key=lambda i: (i.opened_at, i.incident_id), reverse=True)]
    breached = sum(1 for row in rows if row["clocks"] != "on time")
    shown, omitted = _cut(rows, limit)
    return _page("incidents", "attention",
                 f"{len(rows)} open incident(s), {breached} with a clock breached or at risk.",
                 ("incident_id", "severity", "type", "state", "opened_at", "acknowledged_by", "clocks", "summary"),
                 shown, omitted=omitted)


def deliveries_page(store: Store, *, now: datetime, limit: int) -> ConsolePage:
    """The connector delivery dashboard: per destination totals, failures, stalled claims, alerts."""
    from ringward.operations.delivery.delivery_ops import delivery_dashboard

    dashboard = delivery_dashboard(store, now=now)
    if not dashboard["total"] and not dashboard["providers"]:
        return _page("deliveries", "empty", "Nothing yet: no connector delivery has been made.")
    rows: list[dict[str, Cell]] = []
    for p in dashboard["providers"]:
        rate = p["success_rate"]
        rows.append({
            "destination": p["destination"] + (" (disabled)" if p["disabled"] else ""), "provider": p["provider"],
            "total": p["total"], "ok": p["success"], "failed": p["failed"], "stalled": p.get("stalled", 0),
            "success_rate": "n/a" if rate is None else f"{rate:.1%}", "last_delivery_at": p["last_delivery_at"],
            "last_error": (p["last_error"] or None) and str(p["last_error"])[:200],
        })
    rate = dashboard["success_rate"]
    level = str(dashboard["alert_level"])
    shown, omitted = _cut(rows, limit)
    return _page("deliveries", "ok" if level == "healthy" else "attention",
                 f"{level.upper()}: {dashboard['total']} deliveries, {dashboard['failed']} failed, "
                 f"success rate {'n/a' if rate is None else f'{rate:.1%}'}.",
                 ("destination", "provider", "total", "ok", "failed", "stalled", "success_rate", "last_delivery_at",
                  "last_error"), shown, omitted=omitted, notes=[str(a) for a in dashboard["alerts"]][:25])


def evidence_page(store: Store) -> ConsolePage:
    """The chain head, the last ``verify-evidence-chain`` result and the last head proven intact."""
    from ringward.core.evidence.query import EvidenceQuery
    from ringward.operations.evidence.evidence_ops import VERIFICATION_KIND

    head = store.head()
    if head.last_id == 0:
        return _page("evidence", "empty", "Nothing yet: the evidence chain has no records.")
    last = store.search_evidence(EvidenceQuery(kind=VERIFICATION_KIND, limit=1, with_total=False)).items
    good = store.search_evidence(EvidenceQuery(kind=VERIFICATION_KIND, success=True, limit=1, with_total=False)).items
    rows: list[dict[str, Cell]] = [{"item": "chain head", "record_id": head.last_id, "at": _iso(head.last_created_at),
                                    "detail": f"hash {head.last_hash[:16]}…"}]
    if not last:
        return _page("evidence", "attention",
                     f"Chain head at record {head.last_id}; never verified: run verify-evidence-chain.",
                     ("item", "record_id", "at", "detail"), rows)
    latest = last[0]
    p = latest.payload
    ok = bool(p.get("ok"))
    breaks = p.get("first_break") or {}
    rows.append({"item": "last verification", "record_id": latest.id, "at": _iso(latest.created_at),
                 "detail": (f"INTACT through record {p.get('head_id')} ({p.get('records_checked')} records, "
                            f"{p.get('bundles_checked')} bundles)") if ok
                 else (f"BROKEN at record {breaks.get('record_id', '?')}: {breaks.get('check', '?')} expected "
                       f"{str(breaks.get('expected', ''))[:80]}, found {str(breaks.get('found', ''))[:80]}")})
    if good:
        gp = good[0].payload
        rows.append({"item": "last verified head", "record_id": gp.get("head_id"), "at": _iso(good[0].created_at),
                     "detail": f"hash {str(gp.get('head_hash', ''))[:16]}…"})
        if gp.get("checkpoint_head_id") is not None:
            rows.append({"item": "last verified checkpoint", "record_id": gp.get("checkpoint_head_id"),
                         "at": _iso(good[0].created_at), "detail": f"signed by key {gp.get('checkpoint_key_id')}"})
    verified_through = good[0].payload.get("head_id") if good else None
    unverified = head.last_id - int(verified_through) if isinstance(verified_through, int) else head.last_id
    summary = (f"INTACT through record {verified_through} at last verification; {unverified} record(s) since."
               if ok else f"BROKEN at last verification ({_iso(latest.created_at)}).")
    return _page("evidence", "ok" if ok else "attention", summary, ("item", "record_id", "at", "detail"), rows)


# --- the console ------------------------------------------------------------------------------------------


def gather_console(store: Store, *, now: datetime, limit: int = DEFAULT_ROW_LIMIT,
                   scan_records: int = DEFAULT_SCAN_RECORDS) -> Console:
    """Read every page at ``now``. A page whose read raises a Ringward error is ``unavailable``."""
    from ringward.core.errors import InputError

    if now.tzinfo is None:
        raise InputError("now: expected a time with a UTC offset")
    if not 1 <= limit <= MAX_ROW_LIMIT:
        raise InputError(f"limit: expected 1..{MAX_ROW_LIMIT}, found {limit}")
    if scan_records < 1:
        raise InputError(f"scan_records: expected >= 1, found {scan_records}")
    now = now.astimezone(UTC)
    readers: dict[str, Callable[[], ConsolePage]] = {
        "releases": lambda: releases_page(store, limit=limit, scan_records=scan_records),
        "channels": lambda: channels_page(store, limit=limit),
        "approvals": lambda: approvals_page(store, now=now, limit=limit),
        "rollouts": lambda: rollouts_page(store, limit=limit),
        "fleet": lambda: fleet_page(store, limit=limit, scan_records=scan_records),
        "escalations": lambda: escalations_page(store, limit=limit, scan_records=scan_records),
        "incidents": lambda: incidents_page(store, now=now, limit=limit),
        "deliveries": lambda: deliveries_page(store, now=now, limit=limit),
        "evidence": lambda: evidence_page(store),
    }
    pages = []
    for name, read in readers.items():
        try:
            pages.append(read())
        except RingwardError as exc:
            pages.append(_page(name, "unavailable", f"Unavailable: {exc.message[:300]}"))
    return Console(generated_at=now, store=store.label, pages=tuple(pages))


# --- rendering (pure) -------------------------------------------------------------------------------------


def _cell(value: Cell) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(columns: tuple[str, ...], rows: tuple[dict[str, Cell], ...]) -> Iterator[str]:
    yield "| " + " | ".join(columns) + " |"
    yield "|" + "---|" * len(columns)
    for row in rows:
        yield "| " + " | ".join(_cell(row.get(c)) for c in columns) + " |"


_BADGE: dict[str, str] = {"ok": "OK", "attention": "ATTENTION", "empty": "EMPTY", "unavailable": "UNAVAILABLE"}


def page_markdown(page: ConsolePage, *, generated_at: datetime) -> str:
    """The page as Markdown: title, status, summary, the table (grouped by ring for rollouts), notes."""
    lines = [f"# {page.title} — {_BADGE[page.level]}", "", f"As of {_iso(generated_at)}.", "", page.summary, ""]
    if page.rows:
        if page.name == "rollouts":
            columns = tuple(c for c in page.columns if c != "ring")
            for ring in sorted({str(r["ring"]) for r in page.rows}):
                lines += [f"## Ring {ring}", "", *_table(columns, tuple(r for r in page.rows if r["ring"] == ring)), ""]
        else:
            lines += [*_table(page.columns, page.rows), ""]
    if page.omitted:
        lines += [f"{page.omitted} more not listed (row limit).", ""]
    if page.notes:
        lines += ["## Notes", "", *[f"- {_cell(n)}" for n in page.notes], ""]
    return "\n".join(lines)


def page_table(page: ConsolePage) -> list[dict[str, str]]:
    """The page's rows as a table artifact (strings; one row saying why when there are none)."""
    if not page.rows:
        return [{"status": page.level, "summary": page.summary}]
    return [{c: "" if row.get(c) is None else str(row.get(c)) for c in page.columns} for row in page.rows]


def artifact_link(key: str, ui_url: str | None) -> str:
    """Where the UI shows the latest artifact of ``key`` (relative when the UI URL is unknown)."""
    return f"{(ui_url or '').rstrip('/')}/artifacts/key/{key}"


def overview_markdown(console: Console, *, ui_url: str | None = None) -> str:
    """The ``ringward-overview`` page: one line per page, linking it."""
    attention = [p for p in console.pages if p.level in ("attention", "unavailable")]
    lines = [f"# Ringward overview — {'ATTENTION' if attention else 'OK'}", "",
             f"As of {_iso(console.generated_at)}, store {_cell(console.store)}.", "",
             "| page | status | summary |", "|---|---|---|"]
    for p in console.pages:
        lines.append(f"| [{p.title}]({artifact_link(p.key, ui_url)}) | {_BADGE[p.level]} | {_cell(p.summary)} |")
    if attention:
        lines += ["", "Needs a look: " + ", ".join(p.title for p in attention) + "."]
    return "\n".join(lines) + "\n"
