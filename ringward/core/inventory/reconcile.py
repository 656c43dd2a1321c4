"""Desired (signed endpoint deployment manifest) vs observed (endpoint observations): cavra-spec §8.4.

The rules live here, pure: :func:`version_relation`, :func:`is_stale`, the drift item builders and
:func:`summarise`, plus :class:`ReconcileLoop`, a streaming per-endpoint engine (bounded memory:
only drift items are kept). ``ringward.operations.inventory.engine`` runs the same rules columnar
over a million endpoints; a parametrised test proves both give identical reports.

Differences from the reference, on purpose:

- versions compare by SemVer precedence (``v1.2.3`` == ``1.2.3``; build metadata does not order); an
  observed version that is not SemVer is drift (the reference compared strings); each version drift
  says whether the endpoint is ``behind`` or ``ahead`` of the release, or ``not-semver``;
- timestamps must be RFC 3339 with a zone (:data:`~ringward.core.inventory.observations.RFC3339_PATTERN`);
  anything else is an unparsable ``last_seen_at`` and therefore stale (as in the reference);
- checksums compare case-insensitively;
- per-target counts (``summary.targets``) so remediation can key on release, target and drift class;
- ``unknown_target_count`` counts distinct unknown targets, ``unknown_target_endpoint_count`` endpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ringward.core.common.versions import version_or_none
from ringward.core.errors import InputError
from ringward.core.inventory.observations import endpoint_json, parse_timestamp, streamed_id

RECONCILIATION_SCHEMA = "cavra.endpoint-reconciliation.v1"
RECONCILIATION_FILE = "managed-endpoint-reconciliation.json"
RECONCILIATION_MD = "managed-endpoint-reconciliation.md"
KIND_RECONCILIATION = "managed-endpoint-reconciliation"
RECONCILIATION_SIGNER = "endpoint-reconciliation"
RECONCILIATION_CONTROLS = (
    "signed-endpoint-deployment-manifest-compared",
    "observed-endpoint-inventory-normalized",
    "runtime-version-drift-detected",
    "binary-checksum-drift-detected",
    "stale-endpoint-observations-flagged",
)
DEFAULT_STALE_AFTER = timedelta(hours=24)
MIN_STALE_AFTER = timedelta(hours=1)

MISSING = "missing_observation"
VERSION_DRIFT = "version_drift"
BINARY_DRIFT = "binary_drift"
STALE = "stale_observation"
UNKNOWN = "unknown_deployment_target"


@dataclass(frozen=True)
class DesiredTarget:
    id: str
    binary_sha256: str


@dataclass(frozen=True)
class DesiredState:
    """The signed manifest's release and targets (targets sorted by id, as the reference walks them)."""

    version: str
    commit: str
    repository: str | None
    targets: tuple[DesiredTarget, ...]

    @property
    def target_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.targets)


def version_relation(expected: str, observed: str) -> str | None:
    """None when ``observed`` is the expected release by SemVer precedence, else ``behind``,
    ``ahead`` or ``not-semver``. A manifest version that is not SemVer compares as text."""
    want = version_or_none(expected)
    have = version_or_none(observed)
    if want is None:
        return None if observed == expected else "not-semver"
    if have is None:
        return "not-semver"
    if have == want:
        return None
    return "behind" if have < want else "ahead"


def version_relations(expected: str, observed: Iterable[str]) -> dict[str, str | None]:
    """:func:`version_relation` for each distinct observed version (the columnar engine maps these)."""
    return {value: version_relation(expected, value) for value in set(observed)}


def is_stale(last_seen_at: str | None, *, now: datetime, stale_after: timedelta) -> bool:
    """Present and (unparsable, or older than ``stale_after`` at ``now``); absent is never stale."""
    if not last_seen_at:
        return False
    seen = parse_timestamp(last_seen_at)
    return seen is None or now - seen > stale_after


def stale_cutoff(now: datetime, stale_after: timedelta) -> datetime:
    """Parsed times strictly before this are stale (the columnar engine's form of :func:`is_stale`)."""
    return now - stale_after


# --- drift items (one builder per type, shared by both engines) -------------------------------------------


def missing_item(target: DesiredTarget, version: str) -> dict[str, Any]:
    return {
        "type": MISSING,
        "severity": "critical",
        "deployment_target": target.id,
        "expected_version": version,
        "expected_binary_sha256": target.binary_sha256,
        "message": f"No observed endpoints reported for deployment target {target.id}.",
    }


def endpoint_item(
    target: DesiredTarget,
    version: str,
    *,
    endpoint_id: str | None,
    observed_version: str | None,
    observed_sha: str | None,
    last_seen_at: str | None,
    relation: str | None,
    binary_drift: bool,
    stale: bool,
) -> dict[str, Any]:
    types = [t for t, on in ((VERSION_DRIFT, relation is not None), (BINARY_DRIFT, binary_drift), (STALE, stale))
             if on]
    item = {
        "type": ",".join(types),
        "severity": "critical" if relation is not None or binary_drift else "warning",
        "endpoint_id": endpoint_id,
        "deployment_target": target.id,
        "expected_version": version,
        "observed_version": observed_version,
        "expected_binary_sha256": target.binary_sha256,
        "observed_binary_sha256": observed_sha,
        "last_seen_at": last_seen_at,
        "message": f"Endpoint {endpoint_id} is not aligned with deployment target {target.id}.",
    }
    if relation is not None:
        item["version_relation"] = relation
    return item


def unknown_item(*, endpoint_id: str | None, target: str, observed_version: str | None) -> dict[str, Any]:
    return {
        "type": UNKNOWN,
        "severity": "warning",
        "endpoint_id": endpoint_id,
        "deployment_target": target,
        "observed_version": observed_version,
        "message": f"Endpoint {endpoint_id} reports deployment target {target}, which is not in the signed manifest.",
    }


# --- counting -----------------------------------------------------------------------------------------------


@dataclass
class TargetCounts:
    observed: int = 0
    compliant: int = 0
    version_drift: int = 0
    binary_drift: int = 0
    stale: int = 0

    def as_dict(self, target: str) -> dict[str, Any]:
        return {"deployment_target": target, "observed_endpoint_count": self.observed,
                "compliant_endpoint_count": self.compliant, "version_drift_count": self.version_drift,
                "binary_drift_count": self.binary_drift, "stale_endpoint_count": self.stale}


@dataclass(frozen=True)
class Reconciliation:
    """What both engines produce; :func:`report_body` turns it into the report's decision fields."""

    reconciliation_id: str
    observed_endpoint_count: int
    targets: Mapping[str, TargetCounts]
    drift_items: tuple[dict[str, Any], ...]
    unknown_targets: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        """The report's ``summary`` (counted once over the drift items, then a fresh copy per call)."""
        cached: dict[str, Any] | None = self.__dict__.get("_summary")
        if cached is None:
            cached = self._summarise()
            object.__setattr__(self, "_summary", cached)
        return {**cached, "targets": [dict(row) for row in cached["targets"]]}

    def _summarise(self) -> dict[str, Any]:
        drifted = missing = unknown = 0
        for item in self.drift_items:
            kind = item["type"]
            if kind == MISSING:
                missing += 1
            elif kind == UNKNOWN:
                unknown += 1
            if item["severity"] == "critical" and item.get("endpoint_id") is not None:
                drifted += 1
        return {
            "desired_target_count": len(self.targets),
            "observed_endpoint_count": self.observed_endpoint_count,
            "compliant_endpoint_count": sum(c.compliant for c in self.targets.values()),
            "drifted_endpoint_count": drifted,
            "missing_target_count": missing,
            "unknown_target_count": len(self.unknown_targets),
            "unknown_target_endpoint_count": unknown,
            "stale_endpoint_count": sum(c.stale for c in self.targets.values()),
            "version_drift_count": sum(c.version_drift for c in self.targets.values()),
            "binary_drift_count": sum(c.binary_drift for c in self.targets.values()),
            "targets": [counts.as_dict(t) for t, counts in self.targets.items()],
        }

    def alert_level(self) -> str:
        summary = self.summary()
        if summary["drifted_endpoint_count"] or summary["missing_target_count"]:
            return "critical"
        if summary["stale_endpoint_count"] or summary["unknown_target_count"]:
            return "warning"
        return "healthy"

    def drift_status(self) -> str:
        return "aligned" if self.alert_level() == "healthy" else "drift_detected"


def assemble(
    desired: DesiredState,
    *,
    reconciliation_id: str,
    observed_endpoint_count: int,
    targets: Mapping[str, TargetCounts],
    target_items: Mapping[str, list[dict[str, Any]]],
    unknown_items: Iterable[tuple[str, int, dict[str, Any]]],
) -> Reconciliation:
    """Drift items in the report's order: each desired target (sorted) -- its missing item or its
    endpoints' items in file order -- then unknown-target items by target, then file order."""
    items: list[dict[str, Any]] = []
    for target in desired.targets:
        if targets[target.id].observed == 0:
            items.append(missing_item(target, desired.version))
        else:
            items.extend(target_items.get(target.id, ()))
    ordered_unknown = sorted(unknown_items, key=lambda entry: (entry[0], entry[1]))
    items.extend(item for _, _, item in ordered_unknown)
    return Reconciliation(reconciliation_id, observed_endpoint_count, dict(targets), tuple(items),
                          tuple(sorted({target for target, _, _ in ordered_unknown})))


def _present(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Partial:
    """One partition's share of a reconciliation (endpoints ``first_index ..`` in file order): what
    :func:`merge` adds up across partitions (the Dask path)."""

    observed: int
    targets: dict[str, TargetCounts]
    target_items: dict[str, list[tuple[int, dict[str, Any]]]]
    unknown: list[tuple[str, int, dict[str, Any]]]


def merge(desired: DesiredState, partials: Iterable[Partial], *, reconciliation_id: str) -> Reconciliation:
    """The reconciliation of a whole file from its partitions' partials (any order)."""
    counts = {t.id: TargetCounts() for t in desired.targets}
    items: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    unknown: list[tuple[str, int, dict[str, Any]]] = []
    observed = 0
    for partial in partials:
        observed += partial.observed
        for target, part in partial.targets.items():
            total = counts[target]
            total.observed += part.observed
            total.compliant += part.compliant
            total.version_drift += part.version_drift
            total.binary_drift += part.binary_drift
            total.stale += part.stale
        for target, entries in partial.target_items.items():
            items.setdefault(target, []).extend(entries)
        unknown.extend(partial.unknown)
    ordered = {target: [item for _, item in sorted(entries, key=lambda e: e[0])] for target, entries in items.items()}
    return assemble(desired, reconciliation_id=reconciliation_id, observed_endpoint_count=observed, targets=counts,
                    target_items=ordered, unknown_items=unknown)


@dataclass
class ReconcileLoop:
    """The per-endpoint engine: feed endpoints in file order, then :meth:`finish`. Holds only the
    drift items and one digest, so memory does not grow with compliant endpoints. ``first_index``
    is the file position of the first endpoint fed (a partition's offset; see :meth:`partial`)."""

    desired: DesiredState
    observed_at: str
    now: datetime
    stale_after: timedelta = DEFAULT_STALE_AFTER
    first_index: int = 0
    #: False for a partition: the id covers the whole file, so whoever reads it whole computes it
    compute_id: bool = True
    _count: int = 0
    _targets: dict[str, DesiredTarget] = field(default_factory=dict)
    _counts: dict[str, TargetCounts] = field(default_factory=dict)
    _items: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    _unknown: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    _relations: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._targets = {t.id: t for t in self.desired.targets}
        self._counts = {t.id: TargetCounts() for t in self.desired.targets}
        self._id_parts = _IdStream(self.desired, self.observed_at) if self.compute_id else None

    def add(self, endpoint: Mapping[str, Any], *, line: str | None = None) -> None:
        """One endpoint; ``line`` is its serialisation when the caller already has it (the file's line)."""
        index = self.first_index + self._count
        self._count += 1
        if self._id_parts is not None:
            self._id_parts.add(line if line is not None else endpoint_json(endpoint))
        target_id = _present(endpoint.get("deployment_target")) or _present(endpoint.get("target_id"))
        if target_id is None:
            return
        observed_version = _present(endpoint.get("installed_version")) or _present(endpoint.get("version"))
        endpoint_id = endpoint.get("endpoint_id")
        target = self._targets.get(target_id)
        if target is None:
            self._unknown.append((target_id, index, unknown_item(endpoint_id=endpoint_id, target=target_id,
                                                                  observed_version=observed_version)))
            return
        counts = self._counts[target_id]
        counts.observed += 1
        observed_sha = _present(endpoint.get("binary_sha256")) or _present(endpoint.get("installed_binary_sha256"))
        relation = None
        if observed_version is not None and self.desired.version:
            if observed_version not in self._relations:
                self._relations[observed_version] = version_relation(self.desired.version, observed_version)
            relation = self._relations[observed_version]
        binary_drift = bool(observed_sha and target.binary_sha256
                            and observed_sha.lower() != target.binary_sha256.lower())
        last_seen = _present(endpoint.get("last_seen_at"))
        stale = is_stale(last_seen, now=self.now, stale_after=self.stale_after)
        if relation is None and not binary_drift and not stale:
            counts.compliant += 1
            return
        counts.version_drift += relation is not None
        counts.binary_drift += binary_drift
        counts.stale += stale
        self._items.setdefault(target_id, []).append((index, endpoint_item(
            target, self.desired.version, endpoint_id=endpoint_id, observed_version=observed_version,
            observed_sha=observed_sha, last_seen_at=last_seen, relation=relation, binary_drift=binary_drift,
            stale=stale)))

    def partial(self) -> Partial:
        return Partial(self._count, self._counts, self._items, self._unknown)

    def finish(self) -> Reconciliation:
        if self._id_parts is None:
            raise ValueError("a partition's loop has no reconciliation id; merge its partial()")
        return merge(self.desired, [self.partial()], reconciliation_id=self._id_parts.finish())


class _IdStream:
    """``mer_`` + sha256(json{version, commit, observed_at, endpoints}, sorted)[:12], fed line by line."""

    def __init__(self, desired: DesiredState, observed_at: str) -> None:
        self._hash = hashlib.sha256()
        self._first = True
        prefix, self._suffix = reconciliation_id_frame(reconciliation_id_fields(desired, observed_at))
        self._hash.update(prefix)

    def add(self, line: str) -> None:
        self._hash.update((line if self._first else ", " + line).encode())
        self._first = False

    def finish(self) -> str:
        self._hash.update(self._suffix)
        return "mer_" + self._hash.hexdigest()[:12]


def reconciliation_id_fields(desired: DesiredState, observed_at: str) -> dict[str, Any]:
    return {"version": desired.version, "commit": desired.commit, "observed_at": observed_at}


def reconciliation_id_frame(fields: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The bytes before and after the endpoint list in the id's preimage (see :func:`streamed_id`)."""
    marker = "\x00ENDPOINTS\x00"
    probe = _frame_text(fields, marker)
    before, after = probe.split(marker)
    return before.encode(), after.encode()


def _frame_text(fields: Mapping[str, Any], marker: str) -> str:
    parts = []
    for key in sorted([*fields, "endpoints"]):
        value = marker if key == "endpoints" else json.dumps(fields[key], sort_keys=True)
        parts.append(f"{json.dumps(key)}: {'[' + value + ']' if key == 'endpoints' else value}")
    return "{" + ", ".join(parts) + "}"


def reconciliation_id(desired: DesiredState, observed_at: str, endpoints: Iterable[Mapping[str, Any]]) -> str:
    return streamed_id("mer_", reconciliation_id_fields(desired, observed_at), (endpoint_json(e) for e in endpoints))


def reconcile(
    desired: DesiredState,
    endpoints: Iterable[Mapping[str, Any]],
    *,
    observed_at: str,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> Reconciliation:
    """Reconcile ``endpoints`` (streamed) against ``desired``."""
    loop = ReconcileLoop(desired, observed_at, now, stale_after)
    for endpoint in endpoints:
        loop.add(endpoint)
    return loop.finish()


def check_stale_after(value: timedelta) -> timedelta:
    if value < MIN_STALE_AFTER:
        raise InputError(f"--stale-after: expected at least {MIN_STALE_AFTER}, found {value}")
    return value

