"""``ringward inventory ingest``: a provider payload -> ``cavra.endpoint-observations.v1`` + evidence.

The raw payload is read once (capped), its SHA-256 taken, parsed strictly and normalised
(:mod:`ringward.core.inventory.normalise`). A payload that cannot be normalised is still kept: an
evidence bundle with the raw bytes and a refusal record (status ``refused``) naming provider,
record index and field, then the one-line error (exit 2).

A good payload becomes the observations file (line layout, so reconcile streams it), the
ingestion record ``cavra.endpoint-inventory-ingestion.v1`` and its summary, written atomically into
``--output`` and into an evidence bundle with the raw payload. The record carries both digests
(raw payload, normalised observations) and is appended insert-or-skip by the content id
``inventory_id``: ingesting identical content again is the same single record (``duplicate``).

Differences from the reference: ``observed_at`` defaults to the newest clock the payload reports
(then now), so identical payloads get identical ids; the ingestion record links the observations
file by digest instead of embedding every endpoint (a million endpoints would not fit a record);
warnings are capped at :data:`MAX_WARNINGS` with a count of the rest.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.errors import InputError, MalformedDocumentError
from ringward.core.evidence.records import EvidenceSubject
from ringward.core.inventory.normalise import NormalisedInventory, normalise
from ringward.core.inventory.observations import (
    INGESTION_CONTROLS,
    INGESTION_FILE,
    INGESTION_MD,
    INGESTION_SCHEMA,
    INGESTION_SIGNER,
    KIND_INGESTION,
    OBSERVATIONS_FILE,
    OBSERVATIONS_SCHEMA,
    PRODUCT,
    PROVIDERS,
    UNKNOWN_TARGET,
    format_timestamp,
    inventory_id,
    render_observations,
)
from ringward.operations.common.files import check_input_path, read_capped
from ringward.operations.inventory.common import append_bundle, evidence_ref, write_output_dir

if TYPE_CHECKING:
    from ringward.store import Store

RESULT_SCHEMA = "ringward.inventory-ingest-result.v1"
#: largest provider payload read (a Jamf or Graph export of a very large fleet)
MAX_SOURCE_BYTES = 512 * 1024 * 1024
#: file name of the raw payload inside the evidence bundle
RAW_PAYLOAD_FILE = "source-payload.json"
MAX_WARNINGS = 200
DEFAULT_SOFTWARE = ("cavra-runtime",)
#: default parent of output directories (under the current directory)
DEFAULT_OUTPUT_DIR = "endpoint-inventory"


def _check_channel(channel: str | None) -> str | None:
    if channel is None:
        return None
    from ringward.core.promotion.channels import check_channel_name

    check_channel_name(channel)
    return channel


def _observed_at(flag: datetime | None, normalised: NormalisedInventory, now: datetime) -> str:
    if flag is not None:
        return format_timestamp(flag)
    if normalised.observed_at:
        return normalised.observed_at
    clocks = [c for e in normalised.endpoints for c in (e.last_inventory_at, e.last_checkin_at, e.last_seen_at) if c]
    return max(clocks) if clocks else format_timestamp(now)


def render_markdown(record: dict[str, Any]) -> bytes:
    lines = [
        f"# Endpoint inventory ingestion {record['inventory_id']}",
        "",
        f"- provider: {record['provider']}",
        f"- channel: {record['channel'] or 'unassigned'}",
        f"- observed at: {record['observed_at']}",
        f"- endpoints: {record['endpoint_count']} (versions reported: {record['version_count']}, "
        f"checksums reported: {record['checksum_count']}, without target: {record['missing_target_count']})",
        f"- deployment targets: {', '.join(record['deployment_targets']) or '-'}",
        f"- raw payload sha256: {record['raw_payload_sha256']}",
        f"- observations sha256: {record['normalised_sha256']}",
        "",
    ]
    if record["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in record["warnings"]] + [""]
    return "\n".join(lines).encode("utf-8")


def _refuse(store: Store, error: InputError, *, raw: bytes, raw_sha256: str, provider: str, channel: str | None,
            source: Path, actor: str, now: datetime, flow_run_id: str | None) -> None:
    """Keep the raw payload and the reason as evidence, then let the error reach the caller."""
    payload = {
        "schema_version": "ringward.refusal.v1",
        "metadata_kind": KIND_INGESTION,
        "refused": True,
        "error": {"code": error.code, "type": type(error).__name__, "message": error.message},
        "provider": provider,
        "channel": channel,
        "source": str(source),
        "raw_payload_sha256": raw_sha256,
        "raw_payload_bytes": len(raw),
    }
    append_bundle(store, KIND_INGESTION, actor=actor, payload=payload, files={RAW_PAYLOAD_FILE: raw},
                  subject=EvidenceSubject(provider=provider, channel=channel, status="refused", success=False),
                  flow_run_id=flow_run_id, now=now)


def ingest_inventory(
    store: Store,
    *,
    source: Path,
    provider: str,
    now: datetime,
    actor: str,
    channel: str | None = None,
    observed_at: datetime | None = None,
    software: tuple[str, ...] = DEFAULT_SOFTWARE,
    output: Path | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Normalise ``source`` and record it (see the module docstring).

    Raises:
        InputError: unknown provider, unreadable source, invalid JSON or a malformed record (the
            raw payload is recorded first whenever it could be read).
    """
    if provider not in PROVIDERS:
        raise InputError(f"--provider: expected one of {', '.join(PROVIDERS)}, found {provider!r}")
    _check_channel(channel)
    check_input_path(source, option="SOURCE")
    raw = read_capped(source, MAX_SOURCE_BYTES, source=f"SOURCE {source}")
    raw_sha256 = hashlib.sha256(raw).hexdigest()
    try:
        try:
            payload = loads_strict(raw, source=f"{provider} inventory {source}", max_bytes=MAX_SOURCE_BYTES)
        except MalformedDocumentError as exc:  # a bad export is the caller's input, not a verified artifact
            raise InputError(exc.message) from exc
        normalised = normalise(provider, payload, software=software)
        if channel is None and normalised.channel is not None:
            from ringward.core.promotion.channels import check_channel_name

            check_channel_name(normalised.channel, option=f"{provider} inventory payload: channel")
    except InputError as exc:
        _refuse(store, exc, raw=raw, raw_sha256=raw_sha256, provider=provider, channel=channel, source=source,
                actor=actor, now=now, flow_run_id=flow_run_id)
        raise
    del payload
    channel = channel or normalised.channel
    observed = _observed_at(observed_at, normalised, now)
    endpoints = [e.document() for e in normalised.endpoints]
    content_id = inventory_id(provider, channel, observed, endpoints)
    header = {"schema_version": OBSERVATIONS_SCHEMA, "product": PRODUCT, "provider": provider, "channel": channel,
              "observed_at": observed, "source": source.name, "inventory_id": content_id}
    observations = b"".join(render_observations(header, endpoints))
    normalised_sha256 = hashlib.sha256(observations).hexdigest()
    warnings = list(normalised.warnings)
    if len(warnings) > MAX_WARNINGS:
        warnings = [*warnings[:MAX_WARNINGS], f"... and {len(warnings) - MAX_WARNINGS} more warnings"]
    targets = sorted({e["deployment_target"] for e in endpoints})
    record = {
        "schema_version": INGESTION_SCHEMA,
        "inventory_id": content_id,
        "provider": provider,
        "created_at": format_timestamp(now),
        "observed_at": observed,
        "channel": channel,
        "source": source.name,
        "source_schema_version": normalised.source_schema_version,
        "endpoint_count": len(endpoints),
        "deployment_targets": targets,
        "missing_target_count": sum(1 for e in endpoints if e["deployment_target"] == UNKNOWN_TARGET),
        "version_count": sum(1 for e in endpoints if e.get("installed_version")),
        "checksum_count": sum(1 for e in endpoints if e.get("binary_sha256")),
        "inventory": {"file": OBSERVATIONS_FILE, "sha256": normalised_sha256, "schema_version": OBSERVATIONS_SCHEMA},
        "raw_payload_sha256": raw_sha256,
        "raw_payload_bytes": len(raw),
        "normalised_sha256": normalised_sha256,
        "controls": list(INGESTION_CONTROLS),
        "warnings": warnings,
    }
    ingestion_json = dumps_document(record)
    files = {OBSERVATIONS_FILE: observations, INGESTION_FILE: ingestion_json, INGESTION_MD: render_markdown(record)}
    evidence_payload = {
        "schema_version": "cavra.evidence.metadata.v1",
        "metadata_kind": KIND_INGESTION,
        "session_id": content_id,
        "created_at": record["created_at"],
        "signer": INGESTION_SIGNER,
        "decision_count": 0,
        "blocked_count": 0,
        "approval_required_count": 0,
        **{k: record[k] for k in ("inventory_id", "provider", "channel", "observed_at", "endpoint_count",
                                  "deployment_targets", "missing_target_count", "version_count", "checksum_count",
                                  "warnings", "raw_payload_sha256", "raw_payload_bytes", "normalised_sha256",
                                  "source_schema_version")},
    }
    from ringward.store.inventory.repo import InventoryRepository, ingestion_key

    repo = InventoryRepository(store)
    existing = repo.ingestion_record_id(content_id)
    created = None
    if existing is None:
        subject = EvidenceSubject(provider=provider, channel=channel, status="ingested", success=True,
                                  deployment_target=targets[0] if len(targets) == 1 else None)
        created = append_bundle(store, KIND_INGESTION, actor=actor, payload=evidence_payload,
                                files={**files, RAW_PAYLOAD_FILE: raw}, subject=subject, flow_run_id=flow_run_id,
                                now=now, import_key=ingestion_key(content_id))
        if created is None:  # a concurrent ingest of the same content won
            existing = repo.ingestion_record_id(content_id)
    target_dir = output or Path(DEFAULT_OUTPUT_DIR) / content_id
    written = write_output_dir(target_dir, files, identical=OBSERVATIONS_FILE)
    evidence = evidence_ref(created) if created is not None else {"evidence_id": str(existing)}
    return {
        "schema_version": RESULT_SCHEMA,
        "status": "ingested" if created is not None else "duplicate",
        "inventory_id": content_id,
        "provider": provider,
        "channel": channel,
        "observed_at": observed,
        "endpoint_count": record["endpoint_count"],
        "deployment_targets": targets,
        "missing_target_count": record["missing_target_count"],
        "version_count": record["version_count"],
        "checksum_count": record["checksum_count"],
        "raw_payload_sha256": raw_sha256,
        "normalised_sha256": normalised_sha256,
        "warnings": warnings,
        "output_dir": str(target_dir),
        "output": written,
        "observations": str(target_dir / OBSERVATIONS_FILE),
        "evidence": evidence,
    }
