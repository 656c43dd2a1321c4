"""``ringward kev import`` and ``ringward kev check``.

``import``: the catalog is schema-checked (vendored CISA schema + the rules of
:mod:`ringward.core.advisories.kev`), its sha256, ``catalogVersion`` and ``dateReleased`` are
recorded as evidence (``kev-catalog-import``), and it replaces the stored catalog only when newer
-- compare-and-set on the row version read, so two concurrent imports cannot both win. An older
catalog is refused (``RollbackError``); the same catalog again is a no-op; the same version with
other bytes is a conflict (``VersionConflictError``).

``check``: verify the package, read its verified SBOM components, match them (the rule in
:mod:`ringward.core.advisories.kev`) against the stored KEV catalog, the published advisories and
the OpenVEX statements stored with the release. A finding without a later VEX ``not_affected`` /
``fixed`` statement **holds** every channel carrying the release -- the channels its signed channel
manifest names and any channel whose current release it is -- with the promotion domain's hold
(which blocks promotion requests and exports), records the ``kev-match-incident`` evidence record
and opens -- through the incidents domain -- one ``kev-match`` incident (critical, first-action SLA
4 h) per (vulnerability, package digest): a re-check reuses the incident still open for the pair
(dedup key ``kev-match:<vuln>:<digest>``), so a KEV match opens one incident however often it is
re-checked. When every finding is resolved, the holds this check placed for the release are lifted
(``kev-hold-released``) and each still-open ``kev-match`` incident of the release gets a note saying
which VEX statement resolved it (it stays open: closing is a person's decision); a hold somebody
else placed is never lifted. The bookkeeping (``advisories.kev-holds``), the decision record and
the incidents it opens or notes are one transaction; each channel hold / unhold is the channel
repository's own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from packageurl import PackageURL

from ringward.core.advisories.kev import (
    Finding,
    KevEntry,
    KnownAdvisory,
    ParsedCatalog,
    find_exposures,
    parse_catalog,
    parse_product_map,
)
from ringward.core.advisories.vex import RESOLVING, VexStatus, per_product, status_for
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import (
    EvidenceIntegrityError,
    InputError,
    RingwardError,
    RollbackError,
    StateError,
    VersionConflictError,
)
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.advisories.release import load_release
from ringward.operations.common.files import read_capped
from ringward.store.advisories.state import HOLDS_NAMESPACE, KEV_KEY, KEV_NAMESPACE, PUBLISHED_NAMESPACE

if TYPE_CHECKING:
    from ringward.store import Store

KIND_IMPORT: Final = "kev-catalog-import"
KIND_INCIDENT: Final = "kev-match-incident"
KIND_RELEASED: Final = "kev-hold-released"
KIND_CHECK: Final = "kev-check"
HOLD_MARK: Final = "[ringward kev check]"
MAX_CATALOG_FILE: Final = 64 * 1024 * 1024
MAX_MAP_FILE: Final = 4 * 1024 * 1024
DEFAULT_MAX_AGE: Final = timedelta(days=7)
INCIDENT_SLA_HOURS: Final = 4


def _repo(store: Store) -> Any:
    from ringward.operations.advisories.state_ops import repo

    return repo(store)


# --- import ------------------------------------------------------------------------------------------------


def import_catalog(store: Store, path: Path, *, actor: str, now: datetime,
                   max_age: timedelta = DEFAULT_MAX_AGE) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: KEV catalog file does not exist")
    data = read_capped(path, MAX_CATALOG_FILE, source=str(path))
    state = _repo(store)
    facts: dict[str, Any] = {"file": str(path)}
    try:
        parsed = parse_catalog(data, source=str(path))
        catalog = parsed.catalog
        facts.update(catalog_version=catalog.catalogVersion, date_released=catalog.dateReleased.isoformat(),
                     sha256=parsed.sha256, count=catalog.count)
        current = state.kev_catalog()
        previous = None if current is None else {k: current.value[k] for k in
                                                 ("catalog_version", "date_released", "sha256", "count")}
        if current is not None:
            held = (datetime.fromisoformat(current.value["date_released"]), current.value["catalog_version"])
            if catalog.position < held:
                raise RollbackError(
                    f"{path}: KEV catalog {catalog.catalogVersion} ({catalog.dateReleased.isoformat()}) is older than "
                    f"the stored {held[1]} ({held[0].isoformat()}); an older catalog never replaces a newer one")
            if catalog.position == held:
                if current.value["sha256"] == parsed.sha256:
                    return {"imported": False, "reason": "this catalog is already the stored one", **facts,
                            "warnings": _staleness(parsed, now, max_age)}
                raise VersionConflictError(
                    f"{path}: KEV catalog {catalog.catalogVersion} was imported with sha256 {current.value['sha256']}; "
                    f"this file has {parsed.sha256} (same version and release time, other bytes)")
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            _refusal(store, KIND_IMPORT, exc, actor=actor, now=now, payload=facts)
        raise
    entries = [e.stored() for e in catalog.vulnerabilities]
    facts["entries_sha256"] = entries_digest(entries)
    value = {"catalog_version": catalog.catalogVersion, "date_released": catalog.dateReleased.isoformat(),
             "sha256": parsed.sha256, "count": catalog.count, "imported_at": now.isoformat(), "imported_by": actor,
             "entries_sha256": facts["entries_sha256"], "entries": entries}
    warnings = _staleness(parsed, now, max_age)
    draft = EvidenceDraft(
        kind=KIND_IMPORT, actor=actor, subject=EvidenceSubject(status="imported", success=True),
        payload={"schema_version": "ringward.kev-catalog-import.v1", **facts, "size_bytes": parsed.size,
                 "previous": previous, "warnings": warnings, "title": catalog.title},
    )
    (record,) = state.decide([(KEV_NAMESPACE, KEV_KEY, value, 0 if current is None else current.version)], [draft],
                             actor=actor, now=now)
    return {"imported": True, **facts, "previous": previous, "warnings": warnings, "evidence_id": record.id}


def entries_digest(entries: list[dict[str, Any]]) -> str:
    """sha256 of the stored entries (canonical JSON): recorded at import, recomputed by every check,
    so entries edited in the database after the import are noticed."""
    import hashlib

    from ringward.core.common.jsonio import dumps_canonical

    return hashlib.sha256(dumps_canonical(entries)).hexdigest()


def _stored_entries(catalog: Any) -> list[KevEntry]:
    value = catalog.value
    found = entries_digest(value["entries"])
    if found != value.get("entries_sha256") or len(value["entries"]) != value.get("count"):
        raise EvidenceIntegrityError(
            f"stored KEV catalog {value.get('catalog_version')}: entries digest {found} / {len(value['entries'])} "
            f"entries, the import recorded {value.get('entries_sha256')} / {value.get('count')}; the stored catalog "
            "was altered after import -- re-import the catalog file")
    return [KevEntry.model_validate(e) for e in value["entries"]]


def _staleness(parsed: ParsedCatalog, now: datetime, max_age: timedelta) -> list[str]:
    age = now - parsed.catalog.dateReleased
    if age > max_age:
        return [f"catalog released {parsed.catalog.dateReleased.isoformat()} is {age.days} day(s) old "
                f"(older than {max_age.days} day(s)); import a fresh catalog"]
    return []


def _refusal(store: Store, kind: str, error: RingwardError, *, actor: str, now: datetime, payload: dict[str, Any],
             subject: EvidenceSubject | None = None) -> None:
    from ringward.operations.promotion.channel_ops import record_refusal

    record_refusal(store, kind, error, actor=actor, now=now, subject=subject or EvidenceSubject(), payload=payload)


# --- check -------------------------------------------------------------------------------------------------


def _product_map(path: Path | None) -> Any:
    if path is None:
        return None
    if not path.is_file():
        raise InputError(f"--product-map {path}: file does not exist")
    data = read_capped(path, MAX_MAP_FILE, source=str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise InputError(f"--product-map {path}: not YAML: {exc}") from exc
    else:
        try:
            raw = loads_strict(data, source=str(path))
        except RingwardError as exc:
            raise InputError(str(exc)) from exc
    return parse_product_map(raw, source=f"--product-map {path}")


def _hold_key(channel: str, digest: str) -> str:
    return f"{channel}|{digest}"


def check_release(store: Store, *, package: Path, trust_root: Path, actor: str, now: datetime,
                  product_map: Path | None = None, max_age: timedelta = DEFAULT_MAX_AGE) -> dict[str, Any]:
    """Match, then hold or release (see the module docstring). ``result["held"]`` true = exit 1."""
    from ringward.operations.advisories.vex_ops import stored_documents
    from ringward.operations.promotion.channel_ops import load_trust_root_file

    mapping = _product_map(product_map)
    root = load_trust_root_file(trust_root)
    state = _repo(store)
    context: dict[str, Any] = {"package_dir": str(package)}
    try:
        release = load_release(package, root, now=now)
        catalog = state.kev_catalog()
        if catalog is None:
            raise StateError("no KEV catalog imported; run `ringward kev import FILE` first")
        entries = _stored_entries(catalog)
    except RingwardError as exc:
        if not isinstance(exc, InputError):
            _refusal(store, KIND_CHECK, exc, actor=actor, now=now, payload=context)
        raise
    released_at = datetime.fromisoformat(catalog.value["date_released"])
    warnings = ([f"KEV catalog {catalog.value['catalog_version']} is {(now - released_at).days} day(s) old; import "
                 "a fresh one"] if now - released_at > max_age else [])
    advisories = [KnownAdvisory(advisory_id=e.value["advisory_id"], purl=e.value["purl"], range=e.value["range"],
                                cves=tuple(e.value["cves"]), severity=e.value["severity"])
                  for e in state.list(PUBLISHED_NAMESPACE)]
    docs = stored_documents(store, release.checksums_digest)
    exposed = []
    for doc in docs:
        for _key, statement, _when in per_product(doc):
            purl = (statement.products or ())[0].purl() if statement.products else None
            if purl and statement.status in (VexStatus.AFFECTED, VexStatus.UNDER_INVESTIGATION):
                exposed.append((PackageURL.from_string(purl), frozenset(statement.vulnerability.names())))
    components = release.components()
    findings = find_exposures(components, entries, product_map=mapping, advisories=advisories, vex_exposed=exposed)
    unresolved: list[Finding] = []
    resolved: list[dict[str, Any]] = []
    for finding in findings:
        latest = status_for(docs, finding.component.purl, set(finding.names))
        if latest is not None and latest.status in RESOLVING:
            resolved.append({**finding.document(), "vex_status": latest.status.value,
                             "vex_justification": latest.justification.value if latest.justification else None})
        else:
            unresolved.append(finding)
    channels = sorted(set(release.channel_names()) | set(_channels_at(store, release.version,
                                                                      release.checksums_digest)))
    summary = {
        "schema_version": "ringward.kev-check.v1",
        "package_dir": str(package), "release_version": release.version, "runtime": release.runtime,
        "release_digest": release.checksums_digest, "catalog_version": catalog.value["catalog_version"],
        "catalog_sha256": catalog.value["sha256"], "components": [c.purl_text for c in components],
        "matching_rule": "product-map | advisory | vex (ringward.core.advisories.kev)",
        "findings": [f.document() for f in unresolved], "resolved": resolved, "channels": channels,
        "warnings": warnings,
    }
    subject = EvidenceSubject(release_version=release.version, runtime=release.runtime)
    if unresolved:
        return _hold(store, state, release, unresolved, channels, summary, subject, actor=actor, now=now)
    return _release(store, state, release, summary, subject, actor=actor, now=now)


def _channels_at(store: Store, version: str, digest: str) -> list[str]:
    from ringward.operations.promotion.channel_ops import channels

    return channels(store).channels_at(version, digest)


def _hold(store: Store, state: Any, release: Any, unresolved: list[Finding], channels: list[str],
          summary: dict[str, Any], subject: EvidenceSubject, *, actor: str, now: datetime) -> dict[str, Any]:
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    vulns = sorted({f.vulnerability for f in unresolved})
    reason = (f"KEV/advisory match on {release.runtime} {release.version} ({release.checksums_digest[:19]}): "
              f"{', '.join(vulns)[:300]} {HOLD_MARK}")
    repo = channel_repo(store)
    to_hold: list[str] = []
    already: dict[str, str] = {}
    changes = []
    for channel in channels:
        key = _hold_key(channel, release.checksums_digest)
        current = repo.get(channel)
        booked = state.get(HOLDS_NAMESPACE, key)
        if current.hold is None:
            to_hold.append(channel)
            hold_reason = reason
        else:
            already[channel] = current.hold.reason
            hold_reason = current.hold.reason
        value = {"channel": channel, "release_digest": release.checksums_digest, "release_version": release.version,
                 "vulnerabilities": vulns, "hold_reason": hold_reason,
                 "placed_by_check": current.hold is None or (booked is not None and booked.value["placed_by_check"]),
                 "at": now.isoformat()}
        changes.append((HOLDS_NAMESPACE, key, value, 0 if booked is None else booked.version))
    plans = _incident_plans(store, release, unresolved, channels, reason, actor=actor, now=now)
    incident = {"type": "kev-match", "severity": "critical", "opened_at": now.isoformat(),
                "first_action_sla_hours": INCIDENT_SLA_HOURS,
                "first_action_due": (now + timedelta(hours=INCIDENT_SLA_HOURS)).isoformat(),
                "playbook": "KEV match: confirm not a false positive; if real follow the dependency playbook; "
                            "if false positive add a VEX not_affected statement with its justification",
                "incidents": [{"incident_id": p.incident.incident_id, "vulnerability": vuln,
                               "dedup_key": p.incident.dedup_key, "opened": not p.existing,
                               "state": p.incident.state.value} for vuln, p in plans]}
    draft = EvidenceDraft(kind=KIND_INCIDENT, actor=actor,
                          subject=subject.model_copy(update={"status": "opened", "success": False}),
                          payload={**summary, "incident": incident, "held_channels": to_hold,
                                   "already_held": already, "hold_reason": reason})
    # the hold bookkeeping, this record and every incident it opens: one transaction
    incident_changes = [c for _, p in plans for c in p.changes]
    incident_drafts = [p.draft for _, p in plans if p.draft is not None]
    record, *_ = state.decide([*changes, *incident_changes], [draft, *incident_drafts], actor=actor, now=now)
    held_now = []
    for channel in to_hold:
        try:
            repo.hold(channel, actor=actor, reason=reason, now=now)
            held_now.append(channel)
        except StateError:  # held meanwhile by someone else: the channel is held, which is what matters
            meanwhile = repo.get(channel).hold
            already[channel] = meanwhile.reason if meanwhile is not None else "held concurrently"
    return {**summary, "held": True, "incident": incident, "held_channels": held_now, "already_held": already,
            "released_channels": [], "evidence_id": record.id}


def _incident_plans(store: Store, release: Any, unresolved: list[Finding], channels: list[str], reason: str, *,
                    actor: str, now: datetime) -> list[tuple[str, Any]]:
    """One ``kev-match`` incident (critical) per (vulnerability, package digest), opened through the
    incidents domain; one already open for the same pair is reused (its dedup key), one closed is
    superseded by a new generation."""
    from ringward.core.incidents.record import IncidentLinks, IncidentSeverity, IncidentType, kev_dedup_key
    from ringward.operations.incidents.incident_ops import plan_open

    by_vuln: dict[str, list[Finding]] = {}
    for finding in unresolved:
        by_vuln.setdefault(finding.vulnerability, []).append(finding)
    plans: list[tuple[str, Any]] = []
    for vuln, found in sorted(by_vuln.items()):
        names = set().union(*(f.names for f in found)) | {vuln}
        cves = tuple(sorted(n for n in names if n.startswith("CVE-")))
        others = tuple(sorted(n for n in names if not n.startswith("CVE-")))
        try:
            links = IncidentLinks(cves=cves, advisories=others, packages=(release.checksums_digest,),
                                  channels=tuple(channels))
        except ValueError:  # a name the incident links cannot carry (odd advisory id): keep the digest
            links = IncidentLinks(packages=(release.checksums_digest,), channels=tuple(channels))
        components = ", ".join(sorted({f.component.purl_text for f in found}))
        summary = f"KEV match {vuln} in {release.runtime} {release.version}: {components}"[:1000]
        plans.append((vuln, plan_open(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                                      summary=summary, reporter=None, links=links,
                                      dedup_key=kev_dedup_key(vuln, release.checksums_digest), actor=actor,
                                      now=now)))
    return plans


def _incident_notes(store: Store, release: Any, summary: dict[str, Any], *, actor: str, now: datetime
                    ) -> list[tuple[Any, Any]]:
    """A note on each still-open ``kev-match`` incident of this release whose finding VEX resolved
    (the incident stays open: closing it is a person's decision)."""
    from ringward.core.incidents.record import kev_dedup_key
    from ringward.operations.incidents.incident_ops import plan_note

    notes = []
    for finding in sorted(summary["resolved"], key=lambda f: f["vulnerability"]):
        planned = plan_note(store, kev_dedup_key(finding["vulnerability"], release.checksums_digest),
                            note=f"kev check: VEX {finding['vex_status']} resolves {finding['vulnerability']} on "
                                 f"{finding['component']}; the channel holds this check placed are lifted",
                            actor=actor, now=now)
        if planned is not None:
            notes.append(planned)
    return notes


def _release(store: Store, state: Any, release: Any, summary: dict[str, Any], subject: EvidenceSubject, *,
             actor: str, now: datetime) -> dict[str, Any]:
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    repo = channel_repo(store)
    suffix = "|" + release.checksums_digest
    booked = [e for e in state.list(HOLDS_NAMESPACE) if e.key.endswith(suffix)]
    if not booked:
        record = store.append(EvidenceDraft(kind=KIND_CHECK, actor=actor,
                                            subject=subject.model_copy(update={"status": "clear", "success": True}),
                                            payload=summary), now=now)
        return {**summary, "held": False, "held_channels": [], "released_channels": [], "evidence_id": record.id}
    others = {e.key for e in state.list(HOLDS_NAMESPACE)} - {e.key for e in booked}
    to_release = []
    for entry in booked:
        channel = entry.value["channel"]
        current = repo.get(channel)
        still_ours = (entry.value["placed_by_check"] and current.hold is not None
                      and current.hold.reason == entry.value["hold_reason"])
        other_release_holds = any(k.startswith(channel + "|") for k in others)
        if still_ours and not other_release_holds:
            to_release.append(channel)
    notes = _incident_notes(store, release, summary, actor=actor, now=now)
    draft = EvidenceDraft(kind=KIND_RELEASED, actor=actor,
                          subject=subject.model_copy(update={"status": "released", "success": True}),
                          payload={**summary, "released_channels": to_release,
                                   "kept_holds": sorted({e.value["channel"] for e in booked} - set(to_release)),
                                   "incidents_noted": [change[1] for change, _ in notes]})
    # the holds' bookkeeping, this record and a note on each still-open kev-match incident: one transaction
    record, *_ = state.decide([*[(HOLDS_NAMESPACE, e.key, None, e.version) for e in booked],
                               *[change for change, _ in notes]], [draft, *[d for _, d in notes]], actor=actor,
                              now=now)
    released = []
    for channel in to_release:
        try:
            repo.unhold(channel, actor=actor, reason=f"VEX resolves every finding on {release.version} {HOLD_MARK}",
                        now=now)
            released.append(channel)
        except StateError:  # lifted meanwhile
            pass
    return {**summary, "held": False, "held_channels": [], "released_channels": released, "evidence_id": record.id}


# --- re-check every channel's current release (what a scheduled run does when a catalog arrives) ------


MAX_PACKAGE_SEARCH_DEPTH: Final = 3


def index_packages(root: Path, *, max_depth: int = MAX_PACKAGE_SEARCH_DEPTH) -> dict[str, Path]:
    """``sha256:<checksums.txt digest>`` -> package directory, for every package under ``root``
    (a directory holding ``checksums.txt``; symbolic links are not followed)."""
    import hashlib
    import os

    if not root.is_dir():
        raise InputError(f"--packages {root}: not a directory")
    found: dict[str, Path] = {}
    base_depth = len(root.parts)
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        if len(here.parts) - base_depth >= max_depth:
            dirs[:] = []
        if "checksums.txt" in files and not (here / "checksums.txt").is_symlink():
            data = read_capped(here / "checksums.txt", 4 * 1024 * 1024, source=str(here / "checksums.txt"))
            found.setdefault("sha256:" + hashlib.sha256(data).hexdigest(), here)
    return found


def recheck_channels(store: Store, *, packages: Path, trust_root: Path, actor: str, now: datetime,
                     product_map: Path | None = None) -> dict[str, Any]:
    """``kev check`` for the current release of every channel, located under ``packages`` by the
    digest the channel state records. A channel whose release cannot be found is reported
    unchecked (never silently passed). ``result["ok"]`` false = exit 1."""
    from ringward.operations.promotion.channel_ops import channels as channel_repo

    index = index_packages(packages)
    releases: dict[str, list[str]] = {}
    unchecked: dict[str, str] = {}
    for state in channel_repo(store).list():
        if state.current is None:
            continue
        releases.setdefault(state.current.digest, []).append(state.channel)
    results = []
    for digest, names in sorted(releases.items()):
        path = index.get(digest)
        if path is None:
            for name in names:
                unchecked[name] = f"no package with checksums digest {digest} under {packages}"
            continue
        try:
            result = check_release(store, package=path, trust_root=trust_root, actor=actor, now=now,
                                   product_map=product_map)
        except RingwardError as exc:
            for name in names:
                unchecked[name] = f"{type(exc).__name__}: {exc.message}"
            continue
        results.append({"channels": sorted(names), "package_dir": str(path), "release_version":
                        result["release_version"], "held": result["held"], "findings": result["findings"],
                        "held_channels": result["held_channels"], "released_channels": result["released_channels"],
                        "evidence_id": result["evidence_id"]})
    held = any(r["held"] for r in results)
    return {"schema_version": "ringward.kev-recheck.v1", "ok": not held and not unchecked, "releases": results,
            "unchecked": unchecked}
