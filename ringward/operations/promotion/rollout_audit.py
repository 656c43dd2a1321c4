"""Audit export of a recorded promotion execution or rollback (SIEM/ITSM payloads, checksummed)
and its optional delivery through the connectors (package-internal; see
:mod:`ringward.operations.promotion.rollout_ops`)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringward.core.common.jsonio import dumps_document, loads_strict
from ringward.core.errors import (
    BindingMismatchError,
    InputError,
    StateError,
)
from ringward.core.evidence.records import EvidenceSubject
from ringward.core.promotion import rollout as ro
from ringward.operations.promotion.rollout_base import (
    MAX_FILE_BYTES,
    PROMOTION_DELIVERY_SOURCE,
    ROLLBACK_DELIVERY_SOURCE,
    _check_output,
    _current_state,
    _evidence_ref,
    _publish,
    _read,
    _record,
    _stage,
    ledger,
    refusals,
    utc_now,
)
from ringward.store.promotion.executions_repo import RolloutStep

if TYPE_CHECKING:
    from ringward.store import Store


# --- audit -----------------------------------------------------------------------------------------------


def _load_audited(path: Path) -> tuple[Path, bytes, dict[str, Any], bool]:
    """An execution or rollback record (file or its directory): (file, bytes, document, is_rollback)."""
    if path.is_dir():
        for name in (ro.ROLLBACK_EXECUTION_FILE, ro.PROMOTION_EXECUTION_FILE):
            if (path / name).is_file():
                path = path / name
                break
    data = _read(path, what="execution record")
    raw = loads_strict(data, source=path.name, max_bytes=MAX_FILE_BYTES)
    schema = raw.get("schema_version") if isinstance(raw, dict) else None
    if schema == ro.ROLLBACK_EXECUTION_SCHEMA:
        ro.parse_document(data, ro.RollbackExecution, source=path.name)
        return path, data, raw, True
    if schema == ro.PROMOTION_EXECUTION_SCHEMA:
        ro.parse_document(data, ro.PromotionExecution, source=path.name)
        return path, data, raw, False
    raise InputError(f"{path}: expected a {ro.PROMOTION_EXECUTION_SCHEMA} or {ro.ROLLBACK_EXECUTION_SCHEMA} "
                     f"record, found schema_version {schema!r}")


def audit_connector_event(event: dict[str, Any]) -> Any:
    """The audit event as a connector event; its id is the execution (or rollback) id, so the
    delivery log delivers each execution's audit once per destination."""
    from ringward.core.delivery.event import ConnectorEvent, Severity

    rollback = event["schema_version"] == ro.ROLLBACK_AUDIT_SCHEMA
    event_id = event["rollback_id"] if rollback else event["execution_id"]
    ring_text = f"{event['current_ring']} -> {event['target_ring']}"
    title = (f"Rollout {event['rollout_id']} rolled back {ring_text}" if rollback
             else f"Rollout {event['rollout_id']} promoted {ring_text}")
    summary = (
        f"{'Rollback' if rollback else 'Promotion'} {event_id} of release {event['release'].get('version')} "
        f"in {event.get('environment')} under change {event['change_record']}, approval {event['approval_id']}"
        + (f"; reason: {event.get('rollback_reason')}" if rollback else "")
        + ("; BREAK GLASS" if event.get("break_glass") else "")
    )
    return ConnectorEvent(
        event_id=event_id,
        event_type=event["event_type"],
        created_at=ro.parse_iso(event["timestamp"], where="audit event timestamp"),
        severity=Severity.CRITICAL if rollback else Severity.ERROR,
        title=title[:250],
        summary=summary[:8000],
        source="ringward",
        release_version=event["release"].get("version"),
        ring=event["target_ring"],
        environment=event.get("environment"),
        session_id=event_id,
        actor=(event.get("raw_rollback") or event.get("raw_execution") or {}).get("executed_by"),
        attributes=event,
    )


def audit(
    store: Store,
    *,
    record_path: Path,
    output: Path,
    actor: str,
    deliver_config: Path | None = None,
    provider: str = "all",
    splunk_index: str = "cavra",
    datadog_service: str = "cavra",
    itsm_project_key: str = "CAVRA",
    now: datetime | None = None,
    flow_run_id: str | None = None,
    hooks: Any = None,
) -> dict[str, Any]:
    """Export the audit event of a recorded execution or rollback with the per-provider payloads
    (checksummed), and with ``deliver_config`` deliver it through the connector platform."""
    moment = now or utc_now()
    config = None
    if deliver_config is not None:
        from ringward.operations.delivery import delivery_ops
        config = delivery_ops.load_connector_config(deliver_config)
        delivery_ops.select_destinations(config, provider)
    file, data, raw, rollback = _load_audited(record_path)
    out = _check_output(output)
    record_id = raw["rollback_id"] if rollback else raw["execution_id"]
    context: dict[str, Any] = {"record_id": record_id, "rollout_id": raw.get("rollout_id")}
    with refusals(store, "audit", actor=actor, now=moment, flow_run_id=flow_run_id, context=context):
        rows = ledger(store).by_ref(record_id, step="rollback" if rollback else "execution")
        if not rows:
            raise StateError(f"{file}: {record_id} is not recorded in this store; only recorded executions are audited")
        found = hashlib.sha256(data).hexdigest()
        if rows[0].document_sha256 != found:
            raise BindingMismatchError(f"{file}: sha256 {found}, but {record_id} was recorded with "
                                       f"{rows[0].document_sha256} (the record was altered)")
        event = ro.rollback_audit_event(raw) if rollback else ro.promotion_audit_event(raw)
        audit_file = ro.ROLLBACK_AUDIT_FILE if rollback else ro.PROMOTION_AUDIT_FILE
        documents = {audit_file: event, **ro.audit_provider_files(
            event, splunk_index=splunk_index, datadog_service=datadog_service, itsm_project_key=itsm_project_key)}
        files = {name: dumps_document(doc) for name, doc in documents.items()}
        _publish(_stage(out, files, checksums=True), out)
        try:
            current = rows[0]
            latest = _current_state(store, current.rollout_id) or current
            payload = ro.metadata_item(
                ro.KIND_AUDIT, f"audit-{record_id}", ro.iso(moment), actor, audited_id=record_id,
                rollout_id=current.rollout_id, event_type=event["event_type"], output_dir=str(out),
                files={name: hashlib.sha256(body).hexdigest() for name, body in files.items()},
            )
            _, evidence = _record(
                store,
                RolloutStep(rollout_id=current.rollout_id, step="audit", ref_id=record_id, parent_ref=record_id,
                            actor=actor, environment=current.environment, ring=latest.ring, status=latest.status,
                            release_version=current.release_version, approval_id=None, path=str(out)),
                kind=ro.KIND_AUDIT, payload=payload,
                subject=EvidenceSubject(release_version=current.release_version, ring=current.ring,
                                        environment=current.environment, status="audit-exported"),
                files=files, now=moment, flow_run_id=flow_run_id,
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    result: dict[str, Any] = {
        "valid": True,
        "audited_id": record_id,
        "kind": "rollback" if rollback else "promotion",
        "event_type": event["event_type"],
        "output_dir": str(out),
        "files": sorted([*files, ro.CHECKSUMS_FILE]),
        "evidence": _evidence_ref(evidence),
    }
    if config is not None:
        from ringward.operations.delivery import delivery_ops
        kwargs: dict[str, Any] = {"hooks": hooks} if hooks is not None else {}
        run = delivery_ops.deliver_event(
            audit_connector_event(event), config, store=store, providers=provider, actor=actor,
            flow_run_id=flow_run_id, source=ROLLBACK_DELIVERY_SOURCE if rollback else PROMOTION_DELIVERY_SOURCE,
            **kwargs,
        )
        result["delivery"] = {
            "event_id": run.event.event_id,
            "success": run.success,
            "evidence_id": run.evidence_id,
            "deliveries": run.summary_rows(),
        }
        result["valid"] = run.success
    return result
