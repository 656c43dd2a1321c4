"""A store populated through the domains' real operations (and, for the two records only a long
pipeline writes, the repositories those pipelines use with the payload shape they record)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.incidents.record import IncidentSeverity, IncidentType
from ringward.core.inventory.reconcile import KIND_RECONCILIATION
from ringward.operations.approvals.approval_ops import request_approval
from ringward.operations.delivery import delivery_ops
from ringward.operations.evidence.evidence_ops import record_verification, verify_evidence
from ringward.operations.incidents.incident_ops import open_incident
from ringward.operations.promotion.channel_ops import hold_channel
from ringward.operations.promotion.rollout_base import ledger
from ringward.operations.release.release_ops import KIND_VERIFY, record_result
from ringward.operations.sla.sla_ops import KIND_PLAN
from ringward.store import Store
from ringward.store.promotion.executions_repo import RolloutStep
from tests.connectors.conftest import FakeClock, config_of, make_event
from tests.connectors.fault_server import Fault, FaultServer

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def verify_results() -> None:
    """cavra-runtime 1.4.1: invalid then re-verified valid (latest wins); 1.4.2: invalid."""
    record_result(KIND_VERIFY, {"valid": False, "errors": [{"code": "checksum", "message": "old"}]}, valid=False,
                  version="1.4.1", runtime="cavra-runtime", actor="ci")
    record_result(KIND_VERIFY, {"valid": True, "errors": []}, valid=True, version="1.4.1", runtime="cavra-runtime",
                  actor="ci")
    record_result(KIND_VERIFY, {"valid": False, "errors": [{"code": "signature-invalid",
                                                            "message": "release.sig | does not verify"}]},
                  valid=False, version="1.4.2", runtime="cavra-runtime", actor="ci")


def deliveries(store: Store, server: FaultServer) -> None:
    good, bad = server.route(), server.route().script(default=Fault.of(401, "Invalid token"))
    config = config_of({"name": "siem-good", "provider": "linux", "url": good.url},
                       {"name": "siem-bad", "provider": "linux", "url": bad.url})
    clock = FakeClock(NOW - timedelta(minutes=10))
    hooks = delivery_ops.DeliveryHooks(clock=clock, sleep=clock.sleep, rng=random.Random(7), flush_interval=0.01)
    delivery_ops.deliver_events([make_event("evt-console-1")], config, store=store, hooks=hooks)


def rollout(store: Store, rollout_id: str, ring: str, status: str) -> None:
    step = RolloutStep(rollout_id=rollout_id, step="capture", ref_id=rollout_id, actor="release-manager",
                       environment="production", ring=ring, status=status, release_version="1.4.1",
                       unique_key=f"capture:{rollout_id}")
    draft = EvidenceDraft(kind="rollout-capture", actor="release-manager", payload={"rollout_id": rollout_id},
                          subject=EvidenceSubject(ring=ring, status=status, release_version="1.4.1"))
    ledger(store).record(step, draft, now=NOW - timedelta(hours=1))


def reconciliation(store: Store, channel: str, drift_status: str, drifted: int) -> None:
    payload: dict[str, Any] = {"metadata_kind": KIND_RECONCILIATION, "drift_status": drift_status,
                               "alert_level": "critical" if drifted else "healthy",
                               "release": {"version": "1.4.1"}, "observed_at": "2026-12-06T08:00:00Z",
                               "channel": channel, "drifted_endpoint_count": drifted, "missing_target_count": 0,
                               "stale_endpoint_count": 1}
    store.append(EvidenceDraft(kind=KIND_RECONCILIATION, actor="ringward-inventory", payload=payload,
                               subject=EvidenceSubject(channel=channel, status=drift_status,
                                                       success=drift_status == "aligned")))


def sla_cycle(store: Store, scope: str, open_by_owner: dict[str, list[dict[str, Any]]]) -> None:
    payload = {"scope": scope, "at": "2026-12-06T08:55:00Z", "open_incidents_by_owner": open_by_owner, "sent": [],
               "failed": []}
    store.append(EvidenceDraft(kind=KIND_PLAN, actor="ringward-sla", payload=payload,
                               subject=EvidenceSubject(status="nothing-sent", success=True)))


def populate(store: Store, server: FaultServer) -> None:
    verify_results()
    request_approval(store, action="channel.promote", subject_digest=DIGEST, target="channel:stable",
                     requester="alice", now=NOW - timedelta(hours=1))
    # expired before NOW: not pending any more
    request_approval(store, action="channel.promote", subject_digest=DIGEST, target="channel:beta",
                     requester="bob", now=NOW - timedelta(days=10), expires_in=timedelta(hours=1))
    hold_channel(store, "stable", reason="KEV match | CVE-2026-0001", actor="security", now=NOW - timedelta(hours=2))
    deliveries(store, server)
    rollout(store, "ro-pilot-1", "pilot", "verified")
    rollout(store, "ro-broad-1", "broad", "promoted")
    reconciliation(store, "stable", "drifted", 3)
    reconciliation(store, "stable", "aligned", 0)  # newer: stable is aligned now
    reconciliation(store, "beta", "drifted", 2)
    sla_cycle(store, "fleet", {"team-a": [{"group_key": "g1", "state": "open", "acknowledged_by": None, "level": 2,
                                           "acknowledgement_slo_state": "breached", "alerts": [{}, {}]}]})
    open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.CRITICAL,
                  summary="KEV match on cavra-runtime 1.4.2", actor="ringward-kev", now=NOW - timedelta(hours=5))
    record_verification(store, verify_evidence(store, check_files=True), actor="auditor")
