"""Tables of the Ringward store (SQLAlchemy Core).

Rows never leave ``ringward.store``: repositories convert them to the core's pydantic records at the
boundary. The schema itself is owned by the Alembic
migrations in ``ringward/store/migrations``; a test checks the two agree.

Times are stored through :class:`UTCDateTime`: always UTC, fixed-width text on SQLite (so text
order is time order) and ``timestamptz`` on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

#: every table of the Ringward store (plain SQLAlchemy Core: no ORM is imported, which keeps a
#: read-only CLI call fast); domain stores that declare their own tables register them here too
METADATA = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; naive values are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; expected a UTC-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite keeps text: drop the offset so every row has the same fixed-width form
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: One link of the evidence chain. ``id`` is the chain position (1, 2, ...).
evidence_table = sa.Table(
    "evidence_record",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(128), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("flow_run_id", sa.String(128), nullable=True),
    sa.Column("release_version", sa.String(256), nullable=True),
    sa.Column("runtime", sa.String(256), nullable=True),
    sa.Column("channel", sa.String(256), nullable=True),
    sa.Column("ring", sa.String(256), nullable=True),
    sa.Column("deployment_target", sa.String(256), nullable=True),
    sa.Column("environment", sa.String(256), nullable=True),
    sa.Column("status", sa.String(256), nullable=True),
    sa.Column("approval_id", sa.String(256), nullable=True),
    sa.Column("approval_state", sa.String(256), nullable=True),
    sa.Column("execution_status", sa.String(256), nullable=True),
    sa.Column("provider", sa.String(256), nullable=True),
    sa.Column("success", sa.Boolean(), nullable=True),
    #: canonical JSON text of the payload (exactly the bytes ``payload_sha256`` covers)
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("bundle_dir", sa.String(1024), nullable=True),
    #: canonical JSON list of {name, sha256, size_bytes}
    sa.Column("artifacts", sa.Text(), nullable=False),
    sa.Column("previous_hash", sa.String(64), nullable=False),
    sa.Column("record_hash", sa.String(64), nullable=False),
    #: idempotency key of an imported item (``metadata:<kind>:<payload sha256>``), unique: an
    #: import is insert-or-skip by it, so no race records an item twice. Outside the hash chain.
    sa.Column("import_key", sa.String(256), nullable=True),
    sa.Index("ix_evidence_kind_status_target_id", "kind", "status", "deployment_target", "id"),
    sa.Index("ix_evidence_kind_id", "kind", "id"),
    sa.Index("ix_evidence_status_id", "status", "id"),
    sa.Index("ix_evidence_target_id", "deployment_target", "id"),
    sa.Index("ix_evidence_ring_id", "ring", "id"),
    sa.Index("ix_evidence_environment_id", "environment", "id"),
    sa.Index("ix_evidence_release_version_id", "release_version", "id"),
    sa.Index("ix_evidence_release_version_channel_id", "release_version", "channel", "id"),
    sa.Index("ix_evidence_approval_id", "approval_id", "id"),
    # 0005: one index per remaining filter; time windows become id ranges via (created_at, id)
    sa.Index("ix_evidence_actor_id", "actor", "id"),
    sa.Index("ix_evidence_flow_run_id", "flow_run_id", "id"),
    sa.Index("ix_evidence_runtime_id", "runtime", "id"),
    sa.Index("ix_evidence_channel_id", "channel", "id"),
    sa.Index("ix_evidence_approval_state_id", "approval_state", "id"),
    sa.Index("ix_evidence_execution_status_id", "execution_status", "id"),
    sa.Index("ix_evidence_provider_id", "provider", "id"),
    sa.Index("ix_evidence_success_id", "success", "id"),
    sa.Index("ix_evidence_created_at_id", "created_at", "id"),
    sa.Index("ix_evidence_payload_sha256", "payload_sha256"),
    sa.UniqueConstraint("previous_hash", name="uq_evidence_record_previous_hash"),
    sa.UniqueConstraint("record_hash", name="uq_evidence_record_record_hash"),
    # NULL for records that were not imported: NULLs never collide (SQLite and PostgreSQL)
    sa.Index("uq_evidence_record_import_key", "import_key", unique=True),
)

#: The single row naming the chain head; appends lock it, verify compares against it.
evidence_head_table = sa.Table(
    "evidence_head",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("last_id", sa.Integer(), nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("last_created_at", UTCDateTime(), nullable=True),
)

#: An approval request and its current state (``version`` is the compare-and-swap counter).
approval_table = sa.Table(
    "approval",
    METADATA,
    sa.Column("approval_id", sa.String(64), primary_key=True),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("subject_digest", sa.String(71), nullable=False),
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("requester", sa.String(256), nullable=False),
    sa.Column("approver_group", sa.String(256), nullable=True),
    sa.Column("quorum", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("decided_by", sa.String(1024), nullable=True),
    sa.Column("decision_reason", sa.Text(), nullable=True),
    sa.Column("consumed_at", UTCDateTime(), nullable=True),
    sa.Column("consumed_by", sa.String(256), nullable=True),
    sa.Column("execution_ref", sa.String(256), nullable=True),
    #: "ringward" (requested here) or "import" (from a reference approvals.json)
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    #: imported reference record, kept verbatim for export (JSON text)
    sa.Column("imported", sa.Text(), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Index("ix_approval_state_created", "state", "created_at"),
    sa.Index("ix_approval_created", "created_at"),
    sa.Index("ix_approval_target", "target"),
    sa.Index("ix_approval_subject_digest", "subject_digest"),
)

#: One decision on an approval: a vote, a denial, a revocation, an expiry or the consumption.
approval_decision_table = sa.Table(
    "approval_decision",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("approval_id", sa.String(64), sa.ForeignKey("approval.approval_id"), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("evidence_id", sa.Integer(), nullable=True),
    sa.UniqueConstraint("approval_id", "actor", "decision", name="uq_approval_decision_actor"),
    sa.Index("ix_approval_decision_approval", "approval_id", "id"),
)

#: An API token: only its SHA-256 is kept; ``name`` is the caller identity it grants.
api_token_table = sa.Table(
    "api_token",
    METADATA,
    sa.Column("token_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", sa.String(256), nullable=True),
    sa.UniqueConstraint("name", name="uq_api_token_name"),
    sa.UniqueConstraint("token_sha256", name="uq_api_token_token_sha256"),
)

#: Generic key/value state (high-water marks, suppression state), compare-and-set by version.
kv_state_table = sa.Table(
    "kv_state",
    METADATA,
    sa.Column("namespace", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
)


# --- sla ---

#: the SLA history (append-only, ``ringward.store.sla.ledger``): one row per event, in order; a
#: unique ``event_key`` makes each send claim, outcome, acknowledgement and silence happen once
sla_event_table = sa.Table(
    "sla_event",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(128), nullable=False),
    sa.Column("event_key", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("group_key", sa.String(300), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Column("evidence_id", sa.Integer(), nullable=True),
    sa.Column("document", sa.Text(), nullable=False),
    sa.UniqueConstraint("event_key", name="uq_sla_event_event_key"),
    sa.Index("ix_sla_event_scope_id", "scope", "id"),
)


# --- inventory ---

#: signed inventory webhooks accepted by ``POST /webhooks/inventory/{source}``
#: (``ringward.store.inventory.receipts``): one row per ``webhook-id`` per source, so a replay is
#: refused after a restart too; ``status`` received -> dispatched | ingested | rejected, and a row
#: still ``received`` after a crash is re-ingested from ``raw_path`` (``ringward inventory recover-webhooks``)
webhook_receipt_table = sa.Table(
    "webhook_receipt",
    METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("webhook_id", sa.String(256), nullable=False),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(256), nullable=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("body_bytes", sa.Integer(), nullable=False),
    sa.Column("raw_path", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("evidence_id", sa.Integer(), nullable=True),
    sa.Column("inventory_id", sa.String(128), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("source", "webhook_id", name="uq_webhook_receipt_source_webhook_id"),
    sa.Index("ix_webhook_receipt_status_id", "status", "id"),
)
