"""``ringward inventory pull``: read a fleet from Jamf Pro, Microsoft Graph (Intune) or Fleet and ingest it.

Three steps, so a Prefect flow can run each as a coarse task (one per batch of pages, never one per
host) and the CLI runs the same functions in-process (:func:`pull_inventory`):

1. :func:`plan_pull` -- resolve the source from the connector configuration (secrets resolved at
   run time, never recorded), read its cursor (:mod:`.pull_state`) and decide: a **full** read (the
   first one, ``--full``, the last full read older than ``full_every``, or an unusable snapshot) or
   an **incremental** one (only hosts whose inventory clock is at or after the cursor minus
   :data:`OVERLAP`; the vendors' filters: Jamf RSQL ``general.reportDate=ge=``, Graph
   ``$filter=lastSyncDateTime ge``, Fleet ``order_key=detail_updated_at&after=``).
2. :func:`fetch_batch` -- read up to ``batch_pages`` pages from a JSON continuation through
   :mod:`connectors.inventory_pull` (retries only for network errors, 408, 429 and 5xx, honouring
   ``Retry-After``; 401 is a one-line configuration error), spooling each page's raw answer and
   records under ``<home>/inventory-pull/spool/<run>``.
3. :func:`finish_pull` -- merge the pages into the last snapshot by vendor id (incremental) or take
   them whole (full), write the fleet in the vendor's own document shape and hand it to the
   existing ingestion (:func:`ringward.operations.inventory.ingest.ingest_inventory`: the existing
   normalisers, content-addressed ids, the raw payload kept as evidence), then record the pull
   (``ringward.inventory-pull.v1``: pages with URL, digest, size, attempts; the raw pages themselves
   up to :data:`MAX_EVIDENCE_PAGE_BYTES`) together with the new cursor, compare-and-set.

A failed step records a failed pull (the error, the calls made so far) and raises its one-line error.
No credential, token or secret-bearing header reaches a record, a file, a log line or an error: every
value the run resolved or received is scrubbed (``SecretScrubber``) before anything is kept.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict

from connectors.inventory_pull import PullHttp, PullSource, RetryPolicy, open_pager, resolve_pull_source
from connectors.inventory_pull.sources import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, check_provider, pager_class
from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.common.redaction import SecretScrubber
from ringward.core.errors import InputError, RingwardError, StoreConflictError, TransportError
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.inventory.observations import OBSERVATIONS_FILE, format_timestamp
from ringward.operations.inventory import pull_state
from ringward.operations.inventory.common import evidence_ref
from ringward.operations.inventory.ingest import DEFAULT_SOFTWARE, MAX_SOURCE_BYTES

if TYPE_CHECKING:
    from connectors.secrets import SecretLookup
    from ringward.store import Store

RESULT_SCHEMA = "ringward.inventory-pull-result.v1"
PULL_SCHEMA = "ringward.inventory-pull.v1"
KIND_PULL = "endpoint-inventory-pull"
PULL_SIGNER = "endpoint-inventory-pull"
PULL_FILE = "inventory-pull.json"
PULL_MD = "inventory-pull.md"
#: the combined vendor document handed to ingestion (its name is the ingestion's ``source``)
COMBINED_FILE = "pulled-inventory.json"
#: an incremental read starts this long before the cursor (clocks written while a read was paging)
OVERLAP = timedelta(minutes=10)
DEFAULT_FULL_EVERY = timedelta(hours=24)
DEFAULT_BATCH_PAGES = 10
DEFAULT_MAX_HOSTS = 1_000_000
#: pages one pull may read (a runaway pagination ends here)
MAX_PAGES = 100_000
#: raw page bytes kept in the pull's evidence bundle (beyond: digests and sizes only)
MAX_EVIDENCE_PAGE_BYTES = 16 * 1024 * 1024
#: spool directories of runs that died are removed after this long
STALE_SPOOL = timedelta(days=1)


@dataclass(frozen=True)
class PullHooks:
    """Injectable waits, randomness, transport and retry policy (tests)."""

    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random | None = None


class PullPlan(BaseModel):
    """What a pull will do; JSON-safe (passed between Prefect tasks), never holding a secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    provider: str
    source: str
    config_path: str
    base_url: str
    mode: str
    full_reason: str | None
    since: str | None
    cursor_before: str | None
    state_version: int
    spool: str
    page_size: int
    batch_pages: int
    max_hosts: int
    channel: str | None
    software: list[str]
    actor: str
    started_at: datetime
    start: dict[str, Any]


def _load_config(path: Path) -> Any:
    from ringward.operations.delivery.delivery_ops import load_connector_config

    return load_connector_config(path)


def _source(plan_or_path: str, provider: str, name: str | None,
            lookups: Mapping[str, SecretLookup] | None) -> PullSource:
    path = Path(plan_or_path)
    return resolve_pull_source(_load_config(path), provider, name, lookups=lookups, config_label=str(path))


def _http(source: PullSource, hooks: PullHooks) -> PullHttp:
    return PullHttp(source.label, source.dest.scrubber, policy=hooks.policy, sleep=hooks.sleep,
                    rng=hooks.rng or random.Random(), transport=hooks.transport)  # noqa: S311 - jitter


def _clean_stale_spools(root: Path, now: datetime) -> None:
    if not root.is_dir():
        return
    limit = (now - STALE_SPOOL).timestamp()
    for entry in root.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < limit:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def plan_pull(
    store: Store,
    *,
    config_path: Path,
    provider: str,
    now: datetime,
    actor: str,
    source: str | None = None,
    channel: str | None = None,
    software: tuple[str, ...] = DEFAULT_SOFTWARE,
    full: bool = False,
    full_every: timedelta = DEFAULT_FULL_EVERY,
    page_size: int | None = None,
    batch_pages: int = DEFAULT_BATCH_PAGES,
    max_hosts: int = DEFAULT_MAX_HOSTS,
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: PullHooks | None = None,
) -> PullPlan:
    """Resolve the source, read its cursor, choose full or incremental (see the module docstring).

    Raises:
        InputError: bad option; ConfigError (and subclasses): bad or missing connector
            configuration, a pull source that cannot be used, an unresolvable secret.
    """
    check_provider(provider)
    if channel is not None:
        from ringward.core.promotion.channels import check_channel_name

        check_channel_name(channel)
    if not software or not all(isinstance(s, str) and s.strip() for s in software):
        raise InputError("--software: expected at least one non-empty software name")
    size = DEFAULT_PAGE_SIZE[provider] if page_size is None else page_size
    if not 1 <= size <= MAX_PAGE_SIZE[provider]:
        raise InputError(f"--page-size: expected 1..{MAX_PAGE_SIZE[provider]} for {provider}, found {size}")
    if not 1 <= batch_pages <= 1000:
        raise InputError(f"--batch-pages: expected 1..1000, found {batch_pages}")
    if not 1 <= max_hosts <= 10_000_000:
        raise InputError(f"--max-hosts: expected 1..10000000, found {max_hosts}")
    pull_source = _source(str(config_path), provider, source, lookups)
    stored = pull_state.read_cursor(store, provider, pull_source.name)
    mode, reason, since = "full", None, None
    if full:
        reason = "--full"
    elif stored is None or stored.cursor is None:
        reason = "first pull of this source"
    elif stored.last_full_at is None or _older(stored.last_full_at, now - full_every):
        reason = f"last full read at {stored.last_full_at or 'never'} (a full read every {_span(full_every)})"
    elif (problem := pull_state.snapshot_problem(stored.snapshot)) is not None:
        reason = problem
    else:
        mode = "incremental"
        cursor = _parse(stored.cursor)
        assert cursor is not None
        since = format_timestamp((cursor - OVERLAP).replace(microsecond=0))
    run_id = f"pull-{now.astimezone(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    spool_root = pull_state.pull_root() / "spool"
    _clean_stale_spools(spool_root, now)
    spool = spool_root / run_id
    spool.mkdir(parents=True, exist_ok=False)
    with _http(pull_source, hooks or PullHooks()) as http:
        start = open_pager(pull_source, http, page_size=size, since=since).first()
    return PullPlan(
        run_id=run_id, provider=provider, source=pull_source.name, config_path=str(Path(config_path).absolute()),
        base_url=pull_source.shown_url, mode=mode, full_reason=reason, since=since,
        cursor_before=None if stored is None else stored.cursor, state_version=0 if stored is None else stored.version,
        spool=str(spool), page_size=size, batch_pages=batch_pages, max_hosts=max_hosts, channel=channel,
        software=list(software), actor=actor, started_at=now, start={"index": 0, "hosts": 0, "at": start})


def _parse(text: str | None) -> datetime | None:
    from connectors.inventory_pull.pages import parse_time

    return parse_time(text)


def _older(text: str, limit: datetime) -> bool:
    moment = _parse(text)
    return moment is None or moment < limit


def _span(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours:g}h"


def _page_name(index: int) -> str:
    return f"page-{index:05d}"


def fetch_batch(
    store: Store,
    plan: PullPlan,
    continuation: dict[str, Any],
    *,
    now: datetime,
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: PullHooks | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Read up to ``plan.batch_pages`` pages from ``continuation`` into the spool.

    Returns ``{"pages": [...], "next": continuation | None, "hosts": fetched so far, "waits": [...]}``.

    Raises:
        ConfigError: the source refused the credentials (401/403) or the request (4xx);
        TransportError: retries exhausted; InputError: more hosts than ``plan.max_hosts``.
        Each after recording the failed pull.
    """
    hooks = hooks or PullHooks()
    source = _source(plan.config_path, plan.provider, plan.source, lookups)
    spool = Path(plan.spool)
    index = int(continuation.get("index", 0))
    hosts = int(continuation.get("hosts", 0))
    at: dict[str, Any] | None = continuation.get("at")
    summaries: list[dict[str, Any]] = []
    with _http(source, hooks) as http:
        pager = open_pager(source, http, page_size=plan.page_size, since=plan.since)
        try:
            for _ in range(plan.batch_pages):
                if at is None:
                    break
                page = pager.fetch(at)
                index += 1
                hosts += len(page.records)
                if index > MAX_PAGES:
                    raise TransportError(f"{source.label}: more than {MAX_PAGES} pages; the pagination does not end")
                if hosts > plan.max_hosts:
                    raise InputError(f"{source.label}: more than {plan.max_hosts} hosts; raise --max-hosts "
                                     "if the fleet is that large")
                name = _page_name(index)
                (spool / f"{name}.json").write_bytes(page.raw)
                (spool / f"{name}.records.json").write_bytes(json.dumps(page.records).encode("utf-8"))
                summaries.append({"index": index, "url": page.url, "records": len(page.records),
                                  "bytes": len(page.raw), "sha256": hashlib.sha256(page.raw).hexdigest(),
                                  "attempts": page.attempts, "total": page.total, "detail_calls": page.detail_calls,
                                  "scrubbed": page.scrubbed, "warnings": list(page.warnings)})
                at = page.next
        except RingwardError as exc:
            record_failure(store, plan, exc, scrubber=source.dest.scrubber, calls=http.calls, now=now,
                           flow_run_id=flow_run_id)
            raise
    return {"pages": summaries, "next": None if at is None else {"index": index, "hosts": hosts, "at": at},
            "hosts": hosts, "waits": list(http.waits), "calls": len(http.calls)}


def _fetched_records(plan: PullPlan, pages: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
    spool = Path(plan.spool)
    out = []
    for page in pages:
        data = (spool / f"{_page_name(page['index'])}.records.json").read_bytes()
        out.append((page["index"], json.loads(data)))
    return out


def finish_pull(
    store: Store,
    plan: PullPlan,
    batches: list[dict[str, Any]],
    *,
    now: datetime,
    flow_run_id: str | None = None,
    lookups: Mapping[str, SecretLookup] | None = None,
) -> dict[str, Any]:
    """Merge, ingest, record the pull and its cursor (see the module docstring).

    Raises:
        StoreConflictError: another pull of the source recorded its cursor first (its inventory is
            ingested anyway), or the snapshot an incremental read builds on changed.
        InputError: the fleet is not ingestible (the raw payload is kept by ingestion as evidence).
    """
    from ringward.operations.inventory.ingest import ingest_inventory

    source = _source(plan.config_path, plan.provider, plan.source, lookups)
    scrubber = source.dest.scrubber
    pages = [p for batch in batches for p in batch["pages"]]
    cls = pager_class(plan.provider)
    stored = pull_state.read_cursor(store, plan.provider, plan.source)
    try:
        fleet: dict[str, dict[str, Any]] = {}
        if plan.mode == "incremental":
            if stored is None or stored.version != plan.state_version or stored.snapshot is None:
                raise StoreConflictError(
                    f"inventory pull {plan.provider}/{plan.source}: the cursor changed since this run started; "
                    "the next run continues from the recorded one")
            document = loads_strict(pull_state.read_snapshot(stored.snapshot, cap=MAX_SOURCE_BYTES),
                                    source="inventory pull snapshot", max_bytes=MAX_SOURCE_BYTES)
            for host in cls.records_of(document) or []:
                key = cls.record_key(host)
                if key is not None:
                    fleet[key] = host
        fetched = 0
        newest: datetime | None = None
        for index, records in _fetched_records(plan, pages):
            for position, host in enumerate(records):
                key = cls.record_key(host)
                if key is None:
                    raise TransportError(f"{source.label}: page {index} record {position} has no "
                                         f"{cls.id_field}; it cannot be merged into the fleet")
                fleet[key] = host
                fetched += 1
                clock = cls.clock_of(host)
                if clock is not None and (newest is None or clock > newest):
                    newest = clock
        if len(fleet) > plan.max_hosts:
            raise InputError(f"{source.label}: {len(fleet)} hosts, more than {plan.max_hosts}; raise --max-hosts")
        combined = json.dumps(cls.combine(fleet.values()), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8")
        if len(combined) > MAX_SOURCE_BYTES:
            raise InputError(f"{source.label}: the fleet is {len(combined)} bytes as one document, more than "
                             f"{MAX_SOURCE_BYTES}")
        spool = Path(plan.spool)
        (spool / COMBINED_FILE).write_bytes(combined)
        staged = spool / "ingested"
        ingestion = ingest_inventory(store, source=spool / COMBINED_FILE, provider=plan.provider, now=now,
                                     actor=plan.actor, channel=plan.channel, software=tuple(plan.software),
                                     output=staged, flow_run_id=flow_run_id)
        ingestion = _place_output(ingestion, staged, ingestion["inventory_id"])
        at_now = now.astimezone(UTC)
        cursor_after = plan.cursor_before
        if newest is not None:
            candidate = min(newest, at_now)  # a device clock in the future never moves the cursor past now
            previous = _parse(plan.cursor_before)
            if previous is None or candidate > previous:
                cursor_after = _iso(candidate)
        snapshot = pull_state.write_snapshot(plan.provider, plan.source, combined)
        value = {"cursor": cursor_after, "mode": plan.mode, "pulled_at": _iso(at_now),
                 "last_full_at": _iso(at_now) if plan.mode == "full" else (stored.last_full_at if stored else None),
                 "snapshot": snapshot, "host_count": len(fleet), "inventory_id": ingestion["inventory_id"],
                 "run_id": plan.run_id}
        document = _pull_document(plan, pages, status="pulled", now=now, fetched=fetched, host_count=len(fleet),
                                  cursor_after=cursor_after, ingestion=ingestion, snapshot=snapshot)
        draft = _draft(plan, document, pages, scrubber=scrubber, now=now, flow_run_id=flow_run_id, success=True)
        try:
            (record,) = pull_state.record(store, plan.provider, plan.source, value, expected_version=plan.state_version,
                                          drafts=[draft], actor=plan.actor, now=now)
        except BaseException:
            if draft.bundle_dir:
                from ringward.settings import evidence_root

                shutil.rmtree(evidence_root() / draft.bundle_dir, ignore_errors=True)
            current = pull_state.read_cursor(store, plan.provider, plan.source)
            if current is None or current.snapshot is None or current.snapshot.get("file") != snapshot["file"]:
                pull_state.remove_snapshot(snapshot)  # unless the pull that won wrote the same fleet
            raise
        if stored is not None:
            pull_state.remove_snapshot(stored.snapshot, keep=snapshot)
    except RingwardError as exc:
        record_failure(store, plan, exc, scrubber=scrubber, calls=[], now=now, flow_run_id=flow_run_id,
                       pages=pages)
        raise
    finally:
        shutil.rmtree(plan.spool, ignore_errors=True)
    return {
        "schema_version": RESULT_SCHEMA,
        "status": "pulled",
        "run_id": plan.run_id,
        "provider": plan.provider,
        "source": plan.source,
        "base_url": plan.base_url,
        "mode": plan.mode,
        "full_reason": plan.full_reason,
        "since": plan.since,
        "cursor": {"before": plan.cursor_before, "after": cursor_after},
        "page_count": len(pages),
        "hosts_fetched": fetched,
        "host_count": len(fleet),
        "warnings": [w for p in pages for w in p["warnings"]][:200],
        "ingestion": ingestion,
        "inventory_id": ingestion["inventory_id"],
        "observations": ingestion["observations"],
        "evidence": evidence_ref(record),
    }


def _iso(moment: datetime) -> str:
    return format_timestamp(moment)


def _place_output(ingestion: dict[str, Any], staged: Path, inventory_id: str) -> dict[str, Any]:
    """Move the ingestion's output directory out of the spool to ``<pull root>/observations/<id>``
    (kept when one with the same observations is there already)."""
    final = pull_state.pull_root() / "observations" / inventory_id
    final.parent.mkdir(parents=True, exist_ok=True)
    current = final / OBSERVATIONS_FILE
    if current.is_file() and current.read_bytes() == (staged / OBSERVATIONS_FILE).read_bytes():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    return {**ingestion, "output_dir": str(final), "observations": str(final / OBSERVATIONS_FILE)}


def _pull_document(plan: PullPlan, pages: list[dict[str, Any]], *, status: str, now: datetime, fetched: int,
                   host_count: int | None, cursor_after: str | None, ingestion: dict[str, Any] | None = None,
                   snapshot: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                   calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "schema_version": PULL_SCHEMA,
        "run_id": plan.run_id,
        "status": status,
        "provider": plan.provider,
        "source": plan.source,
        "base_url": plan.base_url,
        "channel": plan.channel,
        "software": plan.software,
        "mode": plan.mode,
        "full_reason": plan.full_reason,
        "since": plan.since,
        "cursor_before": plan.cursor_before,
        "cursor_after": cursor_after,
        "started_at": _iso(plan.started_at),
        "finished_at": _iso(now),
        "page_size": plan.page_size,
        "page_count": len(pages),
        "hosts_fetched": fetched,
        "host_count": host_count,
        "pages": pages,
        "calls": calls or [],
        "snapshot": snapshot,
        "ingestion": None if ingestion is None else {
            k: ingestion.get(k) for k in ("status", "inventory_id", "endpoint_count", "observed_at", "channel",
                                          "raw_payload_sha256", "normalised_sha256", "evidence")},
        "error": error,
        "controls": ["credentials-resolved-at-run-time-never-recorded", "raw-vendor-pages-kept-as-evidence",
                     "existing-normalisers-and-ingestion-used", "cursor-compare-and-set"],
    }


def _markdown(document: dict[str, Any]) -> bytes:
    lines = [f"# Inventory pull {document['run_id']}", "",
             f"- source: {document['provider']} / {document['source']} ({document['base_url']})",
             f"- status: **{document['status']}**, mode {document['mode']}"
             + (f" ({document['full_reason']})" if document["full_reason"] else ""),
             f"- pages: {document['page_count']}, hosts fetched: {document['hosts_fetched']}, fleet: "
             f"{document['host_count'] if document['host_count'] is not None else '-'}",
             f"- cursor: {document['cursor_before'] or '-'} -> {document['cursor_after'] or '-'}"]
    if document["ingestion"]:
        lines.append(f"- ingestion: {document['ingestion']['status']} {document['ingestion']['inventory_id']}")
    if document["error"]:
        lines.append(f"- error: {document['error']['message']}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _draft(plan: PullPlan, document: dict[str, Any], pages: list[dict[str, Any]], *, scrubber: SecretScrubber,
           now: datetime, flow_run_id: str | None, success: bool) -> EvidenceDraft:
    from ringward.operations.inventory.common import write_bundle

    kept = 0
    files: dict[str, bytes] = {}
    spool = Path(plan.spool)
    for page in pages:
        path = spool / f"{_page_name(page['index'])}.json"
        if kept + page["bytes"] > MAX_EVIDENCE_PAGE_BYTES or not path.is_file():
            page["kept"] = False
            continue
        files[f"{_page_name(page['index'])}.json"] = path.read_bytes()
        kept += page["bytes"]
        page["kept"] = True
    document = scrubber.scrub_value(document) if scrubber.found_in(json.dumps(document)) else document
    files[PULL_FILE] = dumps_document(document)
    files[PULL_MD] = _markdown(document)
    payload = {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": KIND_PULL,
        "session_id": plan.run_id,
        "created_at": _iso(now),
        "signer": PULL_SIGNER,
        "decision_count": 0,
        "blocked_count": 0 if success else 1,
        "approval_required_count": 0,
        **{k: document[k] for k in ("run_id", "status", "provider", "source", "base_url", "mode", "full_reason",
                                    "since", "cursor_before", "cursor_after", "page_count", "hosts_fetched",
                                    "host_count", "error")},
        "inventory_id": (document["ingestion"] or {}).get("inventory_id"),
        "pages_kept": sum(1 for p in pages if p.get("kept")),
    }
    draft, _ = write_bundle(KIND_PULL, actor=plan.actor, payload=payload, files=files, now=now,
                            flow_run_id=flow_run_id,
                            subject=EvidenceSubject(provider=plan.provider, channel=plan.channel,
                                                    status=document["status"], success=success))
    return draft


def record_failure(store: Store, plan: PullPlan, exc: RingwardError, *, scrubber: SecretScrubber,
                   calls: list[dict[str, Any]], now: datetime, flow_run_id: str | None,
                   pages: list[dict[str, Any]] | None = None) -> None:
    """Record a failed pull (best effort: a failure to record never hides the pull's own error)."""
    pages = pages if pages is not None else _spooled_pages(plan)
    error = {"code": exc.code, "type": type(exc).__name__, "message": scrubber.scrub(exc.message)}
    document = _pull_document(plan, pages, status="failed", now=now, fetched=sum(p["records"] for p in pages),
                              host_count=None, cursor_after=plan.cursor_before, error=error, calls=calls)
    try:
        draft = _draft(plan, document, pages, scrubber=scrubber, now=now, flow_run_id=flow_run_id, success=False)
        store.append(draft, now=now)
    except (RingwardError, OSError):  # pragma: no cover - the store is down as well: the error still reaches the user
        return
    finally:
        shutil.rmtree(plan.spool, ignore_errors=True)


def _spooled_pages(plan: PullPlan) -> list[dict[str, Any]]:
    spool = Path(plan.spool)
    out: list[dict[str, Any]] = []
    for path in sorted(spool.glob("page-*.json")):
        if path.name.endswith(".records.json"):
            continue
        data = path.read_bytes()
        records = spool / path.name.replace(".json", ".records.json")
        try:
            count = len(json.loads(records.read_bytes())) if records.is_file() else 0
        except ValueError:
            count = 0
        out.append({"index": int(path.stem.split("-")[1]), "url": None, "records": count, "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "attempts": None, "total": None,
                    "detail_calls": 0, "scrubbed": False, "warnings": []})
    return out


def pull_inventory(
    store: Store,
    *,
    config_path: Path,
    provider: str,
    now: datetime,
    actor: str,
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: PullHooks | None = None,
    flow_run_id: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Plan, fetch every batch, finish: the CLI's in-process pull (options as :func:`plan_pull`)."""
    plan = plan_pull(store, config_path=config_path, provider=provider, now=now, actor=actor, lookups=lookups,
                     hooks=hooks, **options)
    batches = []
    continuation: dict[str, Any] | None = plan.start
    try:
        while continuation is not None:
            batch = fetch_batch(store, plan, continuation, now=now, lookups=lookups, hooks=hooks,
                                flow_run_id=flow_run_id)
            batches.append(batch)
            continuation = batch["next"]
    except BaseException:
        shutil.rmtree(plan.spool, ignore_errors=True)
        raise
    result = finish_pull(store, plan, batches, now=now, flow_run_id=flow_run_id, lookups=lookups)
    result["waits"] = [w for b in batches for w in b["waits"]]
    return result

