"""A reference (CAVRA) installation written field by field from cavra-spec §5, §6 and §7.2.

Independent of Ringward's migration code on purpose (no import from ``ringward.core.migration``):
the stores are written the way the reference's own store classes write them, so the importer is
tested against the spec, not against itself.

- §6 ``EvidenceMetadataStore``: ``{"items": [...]}`` sorted by session_id, indent 2, sorted keys;
  upsert adds the envelope ``schema_version "cavra.evidence.metadata.v1"``, ``product "CAVRA"``
  (caller keys win). CLI path ``.cavra/evidence/metadata.json``, API ``.cavra/api/evidence-metadata.json``.
- §6 ``SQLiteEvidenceMetadataStore``: table ``evidence_metadata`` (columns below), migration 001's
  indexes and ``schema_migrations``; payload ``json.dumps(item, sort_keys=True)``; CLI default
  ``.cavra/evidence/metadata.db``.
- §5.4 ``ApprovalStore``: ``{"items": [...]}`` indent 2, sorted keys at ``.cavra/api/approvals.json``;
  ``SQLiteApprovalStore``: table ``approvals`` (columns below, indexes on state, approver_group,
  requested_at), upsert ``INSERT ... ON CONFLICT(approval_id) DO UPDATE``.
- §7.2 connector file ``.cavra/connectors.json`` or YAML.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

T0 = datetime(2026, 11, 2, 9, 30, 0, 123456, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """``datetime.isoformat()`` of an aware UTC time: ``+00:00`` offset and microseconds, as the reference writes."""
    return moment.isoformat()


# --- §6 evidence metadata ------------------------------------------------------------------------


def envelope(item: dict[str, Any]) -> dict[str, Any]:
    """What ``upsert`` stores: the envelope added, the caller's keys winning."""
    return {"schema_version": "cavra.evidence.metadata.v1", "product": "CAVRA", **item}


def rollout_metadata(n: int) -> dict[str, Any]:
    """A ``managed-endpoint-rollout`` item (§4.9 capture-rollout, indexed)."""
    rollout_id = f"mer_{hashlib.sha256(f'rollout-{n}'.encode()).hexdigest()[:12]}"
    return envelope(
        {
            "session_id": rollout_id,
            "created_at": iso(T0 + timedelta(minutes=n)),
            "signer": "release-manager",
            "decision_count": 0,
            "blocked_count": 0,
            "approval_required_count": 1,
            "metadata_kind": "managed-endpoint-rollout",
            "bundle_dir": f".cavra/release/rollout/{rollout_id}",
            "rollout_id": rollout_id,
            "rollout_status": "captured",
            "environment": "production",
            "deployment_targets": ["macos-jamf-arm64-workstation", "windows-intune-amd64-workstation"],
            "current_ring": "canary",
            "target_ring": "pilot",
            "release": {"version": f"v1.2.{n}", "commit": "0" * 40, "repository": "example/go-runtime"},
        }
    )


def promotion_execution_metadata(n: int, approval_id: str) -> dict[str, Any]:
    """A ``rollout-promotion-execution`` item (§4.12)."""
    execution_id = "rpe_" + hashlib.sha256(f"rpr_{n}:{approval_id}".encode()).hexdigest()[:12]
    return envelope(
        {
            "session_id": execution_id,
            "created_at": iso(T0 + timedelta(hours=1, minutes=n)),
            "signer": "release-manager",
            "decision_count": 1,
            "blocked_count": 0,
            "approval_required_count": 0,
            "metadata_kind": "rollout-promotion-execution",
            "rollout_status": "promoted",
            "promotion_execution_status": "executed",
            "environment": "production",
            "deployment_targets": ["linux-fleet-amd64-server"],
            "current_ring": "pilot",
            "target_ring": "broad",
            "approval_id": approval_id,
            "approval_state": "approved",
            "request_id": f"rpr_{n}",
            "evidence_refs": [f"approval://{approval_id}"],
        }
    )


def connector_delivery_metadata(n: int) -> dict[str, Any]:
    """A ``release-connector-delivery`` item (§7.5): session id ``rcd-<slug>-<sha[:12]>``."""
    event_id = f"rpe_{n:012d}"
    generated_at = iso(T0 + timedelta(hours=2, minutes=n))
    digest = hashlib.sha256(f"{event_id}|{generated_at}|slack,splunk".encode()).hexdigest()[:12]
    return envelope(
        {
            "session_id": f"rcd-{event_id}-{digest}",
            "created_at": generated_at,
            "signer": "release_governance_promotion",
            "decision_count": 0,
            "blocked_count": 1,
            "approval_required_count": 0,
            "metadata_kind": "release-connector-delivery",
            "connector_delivery_source": "release_governance_promotion",
            "event_id": event_id,
            "event_type": "cavra.release.promotion",
            "delivery_success": False,
            "providers": ["slack", "splunk"],
            "failed_providers": ["splunk"],
            "attempt_count": 4,
            "max_attempt_count": 3,
            "status_codes": [200, 503],
        }
    )


def session_bundle_metadata(n: int) -> dict[str, Any]:
    """A session evidence bundle's item: no ``metadata_kind`` (§6 catalogue note)."""
    return envelope(
        {
            "session_id": f"session-{n:04d}",
            "created_at": iso(T0 + timedelta(hours=3, minutes=n)),
            "signer": "ai-agent",
            "decision_count": 5,
            "blocked_count": 2,
            "approval_required_count": 1,
        }
    )


def write_metadata_json(path: Path, items: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(items, key=lambda i: i.get("session_id", "") if isinstance(i, dict) else "")
    path.write_text(json.dumps({"items": ordered}, indent=2, sort_keys=True))
    return path


EVIDENCE_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS evidence_metadata (
    session_id TEXT PRIMARY KEY,
    created_at TEXT,
    signer TEXT,
    decision_count INTEGER NOT NULL,
    blocked_count INTEGER NOT NULL,
    approval_required_count INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_evidence_metadata_created_at ON evidence_metadata(created_at);
CREATE INDEX IF NOT EXISTS idx_evidence_metadata_signer ON evidence_metadata(signer);
CREATE INDEX IF NOT EXISTS idx_evidence_metadata_blocked_count ON evidence_metadata(blocked_count);
"""


def write_metadata_sqlite(path: Path, items: list[dict[str, Any]]) -> Path:
    """The SQLite store after ``cavra evidence migrate`` (001 applied) and one upsert per item."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(EVIDENCE_SCHEMA_SQL)
        conn.execute(
            "INSERT OR IGNORE INTO schema_migrations (id, applied_at) VALUES (?, ?)",
            ("001_evidence_metadata_indexes.sql", iso(T0)),
        )
        for item in items:
            conn.execute(
                """INSERT INTO evidence_metadata
                   (session_id, created_at, signer, decision_count, blocked_count, approval_required_count, payload)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(session_id) DO UPDATE SET created_at=excluded.created_at, signer=excluded.signer,
                     decision_count=excluded.decision_count, blocked_count=excluded.blocked_count,
                     approval_required_count=excluded.approval_required_count, payload=excluded.payload""",
                (
                    item["session_id"],
                    item.get("created_at"),
                    item.get("signer"),
                    int(item.get("decision_count", 0)),
                    int(item.get("blocked_count", 0)),
                    int(item.get("approval_required_count", 0)),
                    json.dumps(item, sort_keys=True),
                ),
            )
        conn.commit()
    finally:
        conn.close()
    return path


# --- §5 approvals --------------------------------------------------------------------------------


def approval(
    state: str = "pending",
    *,
    n: int = 0,
    approver_group: str = "Change Advisory Board",
    requested_by: str = "release-manager",
) -> dict[str, Any]:
    """A ``cavra.approval.v1`` record as ``create_approval_request`` (+ a decision) leaves it."""
    approval_id = "apr_" + uuid.UUID(int=n + 1).hex[-12:]
    rollout_id = f"mer_{n:012d}"
    decision_id = f"rpr_{n}:decision"
    requested_at = T0 + timedelta(minutes=n)
    decision = {
        "decision_id": decision_id,
        "session_id": rollout_id,
        "action_type": "release_promote_endpoint_rollout",
        "approver_group": approver_group,
        "metadata": {"target_ring": "broad", "current_ring": "pilot"},
        "evidence_refs": [f"rollout://{rollout_id}"],
    }
    item: dict[str, Any] = {
        "approval_id": approval_id,
        "decision_id": decision_id,
        "session_id": rollout_id,
        "correlation_id": f"corr-{n}",
        "state": "pending",
        "approver_group": approver_group,
        "requested_by": requested_by,
        "requested_at": iso(requested_at),
        "expires_at": iso(requested_at + timedelta(hours=24)),
        "decision": decision,
        "history": [{"event": "requested", "actor": requested_by, "timestamp": iso(requested_at), "reason": None}],
        "evidence_refs": [f"approval://{approval_id}", f"rollout://{rollout_id}"],
    }
    if state == "pending":
        return item
    decided_at = iso(requested_at + timedelta(minutes=30))
    actor = "cab-chair"
    if state == "break_glass":
        item.update(
            {
                "state": "break_glass",
                "break_glass": True,
                "break_glass_reason": "sev1 outage",
                "expires_at": iso(requested_at + timedelta(hours=4)),
                "decided_by": actor,
                "decided_at": decided_at,
                "decision_reason": "sev1 outage",
            }
        )
        item["history"] += [
            {
                "event": "approved",
                "actor": actor,
                "timestamp": decided_at,
                "reason": "sev1 outage",
                "external_ref": None,
            },
            {"event": "break_glass", "actor": actor, "timestamp": decided_at, "reason": "sev1 outage"},
        ]
        return item
    item.update(
        {
            "state": state,
            "decided_by": actor,
            "decided_at": decided_at,
            "decision_reason": f"{state} at CAB",
            "external_ref": f"CHG{n:07d}",
        }
    )
    item["history"].append(
        {
            "event": state,
            "actor": actor,
            "timestamp": decided_at,
            "reason": f"{state} at CAB",
            "external_ref": f"CHG{n:07d}",
        }
    )
    return item


def write_approvals_json(path: Path, items: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"items": items}, indent=2, sort_keys=True))
    return path


APPROVALS_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    session_id TEXT,
    state TEXT NOT NULL,
    approver_group TEXT NOT NULL,
    requested_by TEXT,
    requested_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    external_ref TEXT,
    break_glass INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_approvals_state ON approvals(state);
CREATE INDEX IF NOT EXISTS idx_approvals_approver_group ON approvals(approver_group);
CREATE INDEX IF NOT EXISTS idx_approvals_requested_at ON approvals(requested_at);
"""


def write_approvals_sqlite(path: Path, items: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(APPROVALS_SCHEMA_SQL)
        for item in items:
            conn.execute(
                """INSERT INTO approvals (approval_id, decision_id, session_id, state, approver_group, requested_by,
                     requested_at, expires_at, decided_by, decided_at, external_ref, break_glass, payload)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(approval_id) DO UPDATE SET decision_id=excluded.decision_id,
                     session_id=excluded.session_id, state=excluded.state, approver_group=excluded.approver_group,
                     requested_by=excluded.requested_by, requested_at=excluded.requested_at,
                     expires_at=excluded.expires_at, decided_by=excluded.decided_by,
                     decided_at=excluded.decided_at, external_ref=excluded.external_ref,
                     break_glass=excluded.break_glass, payload=excluded.payload""",
                (
                    item["approval_id"],
                    item["decision_id"],
                    item.get("session_id"),
                    item["state"],
                    item["approver_group"],
                    item.get("requested_by"),
                    item["requested_at"],
                    item["expires_at"],
                    item.get("decided_by"),
                    item.get("decided_at"),
                    item.get("external_ref"),
                    1 if item.get("break_glass") else 0,
                    json.dumps(item, sort_keys=True),
                ),
            )
        conn.commit()
    finally:
        conn.close()
    return path


# --- §7.2 connectors -----------------------------------------------------------------------------

#: secrets written in clear in the reference file: none of them may appear anywhere after import
LITERAL_SECRETS = (
    "dd-api-key-in-clear-0123456789",
    "https://hooks.slack.com/services/T000/B000/slack-secret-path",
    "Bearer sn-basic-in-clear",
    "x-auth-in-clear-4242",
)


def connector_config() -> dict[str, Any]:
    """A ``{"connectors": {...}}`` file using every §7.2 spelling: *_env names, inline secrets,
    headers, a CI-trigger provider Ringward has no connector for, and a jira entry without a project."""
    return {
        "connectors": {
            "splunk": {
                "url": "https://splunk.example.com:8088/services/collector/event",
                "token_env": "SPLUNK_HEC_TOKEN",
                "index": "release_audit",
                "headers": {"X-Splunk-Request-Channel": "not-a-secret", "X-Auth-Token": LITERAL_SECRETS[3]},
            },
            "datadog": {
                "url": "https://http-intake.logs.datadoghq.eu/api/v2/logs",
                "api_key": LITERAL_SECRETS[0],
                "service": "cavra",
            },
            "slack": {"url": LITERAL_SECRETS[1], "title": "Release governance"},
            "servicenow": {
                "url_env": "SN_URL",
                "authorization": LITERAL_SECRETS[2],
            },
            "webhook": {"url": "https://hooks.example.com/cavra", "enabled": False},
            "github": {
                "url": "https://api.github.com/repos/example/go-runtime/dispatches",
                "token_env": "GITHUB_TOKEN",
                "event_type": "cavra_runtime_event",
            },
            "jira": {"url": "https://example.atlassian.net/rest/api/2/issue", "token_env": "JIRA_TOKEN"},
        }
    }


def write_connectors(root: Path, document: dict[str, Any], *, yaml_format: bool = False) -> Path:
    cavra = root / ".cavra"
    cavra.mkdir(parents=True, exist_ok=True)
    if yaml_format:
        path = cavra / "connectors.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    else:
        path = cavra / "connectors.json"
        path.write_text(json.dumps(document, indent=2))
    return path


# --- a whole installation ------------------------------------------------------------------------


def clean_connector_config() -> dict[str, Any]:
    """A connector file every entry of which Ringward can take (secrets only as *_env names)."""
    return {
        "providers": {
            "splunk": {
                "url": "https://splunk.example.com:8088/services/collector/event",
                "token_env": "SPLUNK_HEC_TOKEN",
                "index": "release_audit",
            },
            "teams": {"url_env": "TEAMS_WEBHOOK_URL"},
        }
    }


def build_installation(
    root: Path, *, evidence: int = 4, approvals: int = 5, connectors: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A reference project at ``root`` with all four stores and a connector file.

    The CLI JSON store and the SQLite store hold overlapping items (users index into both: the
    same item must be imported once); the API store holds one more. Returns what was written.
    """
    states = ("pending", "approved", "denied", "expired", "break_glass")
    approval_items = [approval(states[n % len(states)], n=n) for n in range(approvals)]
    metadata = [rollout_metadata(n) for n in range(evidence)]
    metadata.append(promotion_execution_metadata(0, approval_items[1]["approval_id"]))
    metadata.append(connector_delivery_metadata(0))
    metadata.append(session_bundle_metadata(0))
    cavra = root / ".cavra"
    write_metadata_json(cavra / "evidence" / "metadata.json", metadata[: len(metadata) - 1])
    write_metadata_sqlite(cavra / "evidence" / "metadata.db", metadata[2:])
    write_metadata_json(cavra / "api" / "evidence-metadata.json", [session_bundle_metadata(1)])
    write_approvals_json(cavra / "api" / "approvals.json", approval_items[:3])
    write_approvals_sqlite(cavra / "api" / "approvals.db", approval_items[2:])
    write_connectors(root, connectors if connectors is not None else connector_config())
    return {
        "metadata": [*metadata, session_bundle_metadata(1)],
        "approvals": approval_items,
    }
