"""Inventory freshness (cavra-spec §8.3, fixed per §11): pure rules.

Per scope (provider, channel, deployment target) the newest ingestion is chosen by parsed time
(the reference compared strings, so mixed ``Z`` / ``+00:00`` sorted wrongly) and its age set
against that scope's thresholds (``--max-age`` / ``--critical-age``, overridden per scope by
``provider/channel/target=MAX,CRITICAL`` rules, ``*`` matching anything). Inside that ingestion every
host has two clocks: last check-in and last inventory (staleness uses the inventory clock; a host
that checks in but whose inventory is stale is counted apart, it is the one an MDM hides). A whole
source (provider + channel) that has delivered nothing for the thresholds is an alert of its own.
The report (``cavra.endpoint-inventory-freshness.v1``, reference fields and ``report_id`` formula) is
evidence; state changes per scope are detected by the operation against the stored state.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ringward.core.errors import InputError
from ringward.core.inventory.observations import UNKNOWN_TARGET, format_timestamp, parse_timestamp

FRESHNESS_SCHEMA = "cavra.endpoint-inventory-freshness.v1"
FRESHNESS_FILE = "endpoint-inventory-freshness.json"
FRESHNESS_MD = "endpoint-inventory-freshness.md"
KIND_FRESHNESS = "endpoint-inventory-freshness-report"
KIND_FRESHNESS_CHANGE = "endpoint-inventory-freshness-change"
FRESHNESS_SIGNER = "endpoint-inventory-freshness"
FRESHNESS_CONTROLS = (
    "endpoint-inventory-age-compared-to-sla",
    "latest-ingestion-selected-by-provider-channel-target",
    "public-safe-alert-metadata-only",
    "private-connectors-required-for-source-refresh",
    "host-check-in-and-inventory-clocks-compared",
    "silent-sources-alerted",
)
SEVERITIES = ("healthy", "warning", "critical")
UNKNOWN_PROVIDER = "unknown"
UNASSIGNED = "unassigned"
#: endpoint ids listed per scope as examples of stale hosts
HOST_EXAMPLES = 10


def worst(severities: Iterable[str]) -> str:
    return max(severities, key=SEVERITIES.index, default="healthy")


@dataclass(frozen=True)
class Thresholds:
    max_age: timedelta
    critical_age: timedelta

    def __post_init__(self) -> None:
        if self.max_age < timedelta(hours=1):
            raise InputError(f"--max-age: expected at least 1h, found {self.max_age}")
        if self.critical_age < self.max_age:
            raise InputError(f"--critical-age: expected at least --max-age ({self.max_age}), "
                             f"found {self.critical_age}")

    def severity(self, age: timedelta) -> str:
        if age >= self.critical_age:
            return "critical"
        if age >= self.max_age:
            return "warning"
        return "healthy"

    def document(self) -> dict[str, float]:
        return {"max_age_hours": _hours(self.max_age), "critical_age_hours": _hours(self.critical_age)}


@dataclass(frozen=True)
class ScopeRule:
    """``provider/channel/target=MAX,CRITICAL``; ``*`` (or an omitted trailing part) matches anything."""

    provider: str
    channel: str
    target: str
    thresholds: Thresholds

    def matches(self, scope: tuple[str, str, str]) -> bool:
        return all(p in ("*", v) for p, v in zip((self.provider, self.channel, self.target), scope, strict=True))

    def specificity(self) -> int:
        return sum(p != "*" for p in (self.provider, self.channel, self.target))

    def document(self) -> dict[str, Any]:
        return {"scope": f"{self.provider}/{self.channel}/{self.target}", **self.thresholds.document()}


_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")


def _duration(text: str, where: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise InputError(f"{where}: expected a duration like 12h or 2d, found {text!r}")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def parse_scope_rule(text: str) -> ScopeRule:
    """``jamf/stable/*=12h,24h`` -> :class:`ScopeRule`.

    Raises:
        InputError: naming ``--scope-threshold`` and what was expected.
    """
    where = f"--scope-threshold {text!r}"
    scope, sep, limits = text.partition("=")
    parts = scope.strip().split("/") if scope.strip() else []
    if not sep or not 1 <= len(parts) <= 3 or any(not p for p in parts):
        raise InputError(f"{where}: expected PROVIDER[/CHANNEL[/TARGET]]=MAX,CRITICAL (e.g. jamf/stable/*=12h,24h)")
    values = limits.split(",")
    if len(values) != 2:
        raise InputError(f"{where}: expected two durations MAX,CRITICAL after '='")
    parts += ["*"] * (3 - len(parts))
    return ScopeRule(parts[0], parts[1], parts[2],
                     Thresholds(_duration(values[0], where), _duration(values[1], where)))


def thresholds_for(scope: tuple[str, str, str], default: Thresholds, rules: Sequence[ScopeRule]) -> Thresholds:
    """The most specific matching rule's thresholds (later rules win ties), else ``default``."""
    best: ScopeRule | None = None
    for rule in rules:
        if rule.matches(scope) and (best is None or rule.specificity() >= best.specificity()):
            best = rule
    return best.thresholds if best is not None else default


@dataclass(frozen=True)
class Ingestion:
    """What freshness needs of one ingestion record."""

    inventory_id: str
    provider: str | None
    channel: str | None
    observed_at: str
    deployment_targets: tuple[str, ...]
    endpoint_count: int
    missing_target_count: int


@dataclass(frozen=True, slots=True)
class HostClock:
    endpoint_id: str
    deployment_target: str
    last_checkin_at: str | None
    last_inventory_at: str | None


@dataclass
class _HostCounts:
    hosts: int = 0
    inventory_warning: int = 0
    inventory_critical: int = 0
    checkin_warning: int = 0
    checkin_critical: int = 0
    without_inventory_clock: int = 0
    checking_in_with_stale_inventory: int = 0
    examples: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {"host_count": self.hosts, "inventory_warning_count": self.inventory_warning,
                "inventory_critical_count": self.inventory_critical, "checkin_warning_count": self.checkin_warning,
                "checkin_critical_count": self.checkin_critical,
                "without_inventory_clock_count": self.without_inventory_clock,
                "checking_in_with_stale_inventory_count": self.checking_in_with_stale_inventory,
                "stale_inventory_examples": list(self.examples)}


def _hours(value: timedelta) -> float:
    return round(value.total_seconds() / 3600, 2)


def scope_key(scope: tuple[str, str, str]) -> str:
    return "/".join(scope)


def scopes_of(ingestion: Ingestion) -> list[tuple[str, str, str]]:
    provider = ingestion.provider or UNKNOWN_PROVIDER
    channel = ingestion.channel or UNASSIGNED
    return [(provider, channel, t or UNKNOWN_TARGET) for t in (ingestion.deployment_targets or (UNKNOWN_TARGET,))]


def select_latest(ingestions: Iterable[Ingestion], *, deployment_target: str | None = None
                  ) -> dict[tuple[str, str, str], Ingestion]:
    """The newest ingestion per scope, by parsed ``observed_at`` (an unparsable time loses to any
    parsable one; ties keep the first seen, i.e. the newest record)."""
    latest: dict[tuple[str, str, str], Ingestion] = {}
    for ingestion in ingestions:
        when = parse_timestamp(ingestion.observed_at)
        for scope in scopes_of(ingestion):
            if deployment_target is not None and scope[2] != deployment_target:
                continue
            kept = latest.get(scope)
            if kept is None:
                latest[scope] = ingestion
                continue
            kept_when = parse_timestamp(kept.observed_at)
            if when is not None and (kept_when is None or when > kept_when):
                latest[scope] = ingestion
    return dict(sorted(latest.items()))


def _host_counts(hosts: Iterable[HostClock], thresholds: Thresholds, now: datetime) -> _HostCounts:
    counts = _HostCounts()
    for host in hosts:
        counts.hosts += 1
        inventory = parse_timestamp(host.last_inventory_at)
        checkin = parse_timestamp(host.last_checkin_at)
        checkin_severity = "healthy" if checkin is None else thresholds.severity(max(timedelta(0), now - checkin))
        counts.checkin_warning += checkin_severity == "warning"
        counts.checkin_critical += checkin_severity == "critical"
        if inventory is None:
            counts.without_inventory_clock += 1
            continue
        severity = thresholds.severity(max(timedelta(0), now - inventory))
        if severity == "healthy":
            continue
        counts.inventory_warning += severity == "warning"
        counts.inventory_critical += severity == "critical"
        if checkin is not None and checkin_severity == "healthy":
            counts.checking_in_with_stale_inventory += 1
        if len(counts.examples) < HOST_EXAMPLES:
            counts.examples.append(host.endpoint_id)
    return counts


def report_id(scope: Mapping[str, Any], thresholds: Thresholds, created_at: str, inventory_ids: Iterable[str]) -> str:
    """``eif_`` + sha256(json{scope, thresholds, created_at, sorted inventory ids}, sorted)[:12] (reference)."""
    body = {"scope": dict(scope), "thresholds": thresholds.document(), "created_at": created_at,
            "inventory_ids": sorted(set(inventory_ids))}
    return "eif_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def evaluate(
    ingestions: Sequence[Ingestion],
    *,
    now: datetime,
    default: Thresholds,
    rules: Sequence[ScopeRule] = (),
    provider: str | None = None,
    channel: str | None = None,
    deployment_target: str | None = None,
    hosts: Mapping[str, Sequence[HostClock]] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The freshness report over ``ingestions`` (already filtered by provider/channel, newest first).

    ``hosts`` maps an inventory id to its endpoints' clocks (absent: host clocks not evaluated).
    """
    created_at = format_timestamp(now)
    latest = select_latest(ingestions, deployment_target=deployment_target)
    rows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    out_warnings = list(warnings)
    for scope, ingestion in latest.items():
        thresholds = thresholds_for(scope, default, rules)
        where = scope_key(scope)
        observed = parse_timestamp(ingestion.observed_at)
        if observed is None:
            age_hours: float | None = None
            severity = "warning"
            message = f"Endpoint inventory timestamp is invalid for {where}."
        else:
            age = max(timedelta(0), now - observed)
            age_hours = _hours(age)
            severity = thresholds.severity(age)
            message = (f"Latest endpoint inventory for {where} is within SLA." if severity == "healthy"
                       else f"Latest endpoint inventory for {where} is {age_hours}h old.")
        row: dict[str, Any] = {
            "inventory_id": ingestion.inventory_id, "provider": scope[0], "channel": scope[1],
            "deployment_target": scope[2], "observed_at": ingestion.observed_at, "age_hours": age_hours,
            "severity": severity, "endpoint_count": ingestion.endpoint_count,
            "missing_target_count": ingestion.missing_target_count, **thresholds.document(), "message": message,
        }
        if severity != "healthy":
            alerts.append({"kind": "scope-age", "scope": where, "severity": severity, "message": message,
                           "inventory_id": ingestion.inventory_id})
        clocks = (hosts or {}).get(ingestion.inventory_id)
        if clocks is not None:
            counts = _host_counts((h for h in clocks if h.deployment_target == scope[2]), thresholds, now)
            row["hosts"] = counts.document()
            stale = counts.inventory_warning + counts.inventory_critical
            if stale:
                alerts.append({
                    "kind": "host-inventory-age", "scope": where, "severity": "warning",
                    "inventory_id": ingestion.inventory_id,
                    "message": f"{stale} of {counts.hosts} endpoints in {where} have not reported inventory for "
                               f"{_hours(thresholds.max_age)}h or more ({counts.inventory_critical} beyond "
                               f"{_hours(thresholds.critical_age)}h; {counts.checking_in_with_stale_inventory} "
                               "still check in).",
                })
        else:
            row["hosts"] = None
        if ingestion.missing_target_count:
            alerts.append({"kind": "missing-targets", "scope": where, "severity": "warning",
                           "inventory_id": ingestion.inventory_id,
                           "message": f"Endpoint inventory {ingestion.inventory_id} includes endpoints with missing "
                                      "deployment targets."})
        rows.append(row)
    sources = _sources(ingestions, now=now, default=default, rules=rules)
    for source in sources:
        if source["severity"] != "healthy":
            alerts.append({"kind": "source-silent", "scope": source["source"], "severity": source["severity"],
                           "message": source["message"]})
    if not rows:
        message = "no endpoint inventory ingestion records matched the freshness scope"
        out_warnings.append(message)
        alerts.append({"kind": "no-ingestions", "scope": "/".join(p or "*" for p in (provider, channel,
                                                                                        deployment_target)),
                       "severity": "warning", "message": message})
    alert_level = worst(a["severity"] for a in alerts)
    scope_doc = {"provider": provider, "channel": channel, "deployment_target": deployment_target}
    return {
        "schema_version": FRESHNESS_SCHEMA,
        "report_id": report_id(scope_doc, default, created_at, (r["inventory_id"] for r in rows)),
        "created_at": created_at,
        "alert_level": alert_level,
        **default.document(),
        "scope": scope_doc,
        "scope_thresholds": [rule.document() for rule in rules],
        "summary": {
            "scope_count": len(rows),
            "ingestion_count": len(ingestions),
            "healthy_count": sum(r["severity"] == "healthy" for r in rows),
            "warning_count": sum(r["severity"] == "warning" for r in rows),
            "critical_count": sum(r["severity"] == "critical" for r in rows),
            "missing_target_count": sum(r["missing_target_count"] for r in rows),
            "source_count": len(sources),
            "silent_source_count": sum(s["severity"] != "healthy" for s in sources),
            "stale_host_count": sum((r["hosts"] or {}).get("inventory_warning_count", 0)
                                    + (r["hosts"] or {}).get("inventory_critical_count", 0) for r in rows),
        },
        "latest_ingestions": rows,
        "sources": sources,
        "alerts": alerts,
        "controls": list(FRESHNESS_CONTROLS),
        "warnings": out_warnings,
    }


def _sources(ingestions: Sequence[Ingestion], *, now: datetime, default: Thresholds,
             rules: Sequence[ScopeRule]) -> list[dict[str, Any]]:
    """Per source (provider + channel): the newest ingestion of any target, and how long it has been silent."""
    newest: dict[tuple[str, str], datetime | None] = {}
    for ingestion in ingestions:
        key = (ingestion.provider or UNKNOWN_PROVIDER, ingestion.channel or UNASSIGNED)
        when = parse_timestamp(ingestion.observed_at)
        current = newest.get(key)
        if key not in newest or (when is not None and (current is None or when > current)):
            newest[key] = when
    out = []
    for (provider, channel), when in sorted(newest.items()):
        thresholds = thresholds_for((provider, channel, "*"), default, rules)
        name = f"{provider}/{channel}"
        if when is None:
            severity, age_hours = "warning", None
            message = f"Source {name} has no ingestion with a valid timestamp."
        else:
            age = max(timedelta(0), now - when)
            severity, age_hours = thresholds.severity(age), _hours(age)
            message = (f"Source {name} delivered inventory {age_hours}h ago." if severity == "healthy"
                       else f"Source {name} has been silent for {age_hours}h (last inventory at "
                            f"{format_timestamp(when)}).")
        out.append({"source": name, "provider": provider, "channel": channel,
                    "last_observed_at": None if when is None else format_timestamp(when), "age_hours": age_hours,
                    "severity": severity, "message": message, **thresholds.document()})
    return out


def states(report: Mapping[str, Any]) -> dict[str, str]:
    """State key -> severity for change detection: ``scope:<p/c/t>`` and ``source:<p/c>``."""
    out = {f"scope:{r['provider']}/{r['channel']}/{r['deployment_target']}": worst(
        [r["severity"]] + [a["severity"] for a in report["alerts"]
                           if a.get("scope") == f"{r['provider']}/{r['channel']}/{r['deployment_target']}"])
        for r in report["latest_ingestions"]}
    out.update({f"source:{s['source']}": s["severity"] for s in report["sources"]})
    return out
