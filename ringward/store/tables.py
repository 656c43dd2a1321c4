"""SQLModel tables of the Ringward store.

These classes describe rows; they never leave ``ringward.store`` (repositories convert them to
the core's pydantic records at the boundary). The schema itself is owned by the Alembic
migrations in ``ringward/store/migrations``; a test checks the two agree.

Times are stored through :class:`UTCDateTime`: always UTC, fixed-width text on SQLite (so text
order is time order) and ``timestamptz`` on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


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


class EvidenceRow(SQLModel, table=True):
    """One link of the evidence chain. ``id`` is the chain position (1, 2, ...)."""

    __tablename__ = "evidence_record"
    __table_args__ = (
        sa.Index("ix_evidence_kind_status_target_id", "kind", "status", "deployment_target", "id"),
        sa.Index("ix_evidence_kind_id", "kind", "id"),
        sa.Index("ix_evidence_status_id", "status", "id"),
        sa.Index("ix_evidence_target_id", "deployment_target", "id"),
        sa.Index("ix_evidence_ring_id", "ring", "id"),
        sa.Index("ix_evidence_environment_id", "environment", "id"),
        sa.Index("ix_evidence_release_version_id", "release_version", "id"),
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

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(max_length=128)
    actor: str = Field(max_length=256)
    created_at: datetime = Field(sa_type=UTCDateTime)
    flow_run_id: str | None = Field(default=None, max_length=128)
    release_version: str | None = Field(default=None, max_length=256)
    runtime: str | None = Field(default=None, max_length=256)
    channel: str | None = Field(default=None, max_length=256)
    ring: str | None = Field(default=None, max_length=256)
    deployment_target: str | None = Field(default=None, max_length=256)
    environment: str | None = Field(default=None, max_length=256)
    status: str | None = Field(default=None, max_length=256)
    approval_id: str | None = Field(default=None, max_length=256)
    approval_state: str | None = Field(default=None, max_length=256)
    execution_status: str | None = Field(default=None, max_length=256)
    provider: str | None = Field(default=None, max_length=256)
    success: bool | None = None
    #: canonical JSON text of the payload (exactly the bytes ``payload_sha256`` covers)
    payload: str = Field(sa_type=sa.Text)
    payload_sha256: str = Field(max_length=64)
    bundle_dir: str | None = Field(default=None, max_length=1024)
    #: canonical JSON list of {name, sha256, size_bytes}
    artifacts: str = Field(sa_type=sa.Text)
    previous_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)
    #: idempotency key of an imported item (``metadata:<kind>:<payload sha256>``), unique: an
    #: import is insert-or-skip by it, so no race records an item twice. Outside the hash chain.
    import_key: str | None = Field(default=None, max_length=256)


class EvidenceHeadRow(SQLModel, table=True):
    """The single row naming the chain head; appends lock it, verify compares against it."""

    __tablename__ = "evidence_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_id: int
    last_hash: str = Field(max_length=64)
    last_created_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApprovalRow(SQLModel, table=True):
    """An approval request and its current state (``version`` is the compare-and-swap counter)."""

    __tablename__ = "approval"
    __table_args__ = (
        sa.Index("ix_approval_state_created", "state", "created_at"),
        sa.Index("ix_approval_created", "created_at"),
        sa.Index("ix_approval_target", "target"),
        sa.Index("ix_approval_subject_digest", "subject_digest"),
    )

    approval_id: str = Field(primary_key=True, max_length=64)
    action: str = Field(max_length=128)
    subject_digest: str = Field(max_length=71)
    target: str = Field(max_length=256)
    requester: str = Field(max_length=256)
    approver_group: str | None = Field(default=None, max_length=256)
    quorum: int
    state: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, max_length=1024)
    decision_reason: str | None = Field(default=None, sa_type=sa.Text)
    consumed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consumed_by: str | None = Field(default=None, max_length=256)
    execution_ref: str | None = Field(default=None, max_length=256)
    #: "ringward" (requested here) or "import" (from a reference approvals.json)
    origin: str = Field(max_length=16)
    note: str | None = Field(default=None, sa_type=sa.Text)
    #: imported reference record, kept verbatim for export (JSON text)
    imported: str | None = Field(default=None, sa_type=sa.Text)
    version: int


class ApprovalDecisionRow(SQLModel, table=True):
    """One decision on an approval: a vote, a denial, a revocation, an expiry or the consumption."""

    __tablename__ = "approval_decision"
    __table_args__ = (
        sa.UniqueConstraint("approval_id", "actor", "decision", name="uq_approval_decision_actor"),
        sa.Index("ix_approval_decision_approval", "approval_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(max_length=64, foreign_key="approval.approval_id")
    actor: str = Field(max_length=256)
    decision: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    evidence_id: int | None = None


class ApiTokenRow(SQLModel, table=True):
    """An API token: only its SHA-256 is kept; ``name`` is the caller identity it grants."""

    __tablename__ = "api_token"
    __table_args__ = (
        sa.UniqueConstraint("name", name="uq_api_token_name"),
        sa.UniqueConstraint("token_sha256", name="uq_api_token_token_sha256"),
    )

    token_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)
    token_sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: str = Field(max_length=256)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: str | None = Field(default=None, max_length=256)


class StateEntryRow(SQLModel, table=True):
    """Generic key/value state (high-water marks, suppression state), compare-and-set by version."""

    __tablename__ = "kv_state"

    namespace: str = Field(primary_key=True, max_length=128)
    key: str = Field(primary_key=True, max_length=512)
    value: str = Field(sa_type=sa.Text)
    version: int
    updated_at: datetime = Field(sa_type=UTCDateTime)
    updated_by: str = Field(max_length=256)


evidence_table: sa.Table = EvidenceRow.__table__  # type: ignore[attr-defined]
evidence_head_table: sa.Table = EvidenceHeadRow.__table__  # type: ignore[attr-defined]
approval_table: sa.Table = ApprovalRow.__table__  # type: ignore[attr-defined]
approval_decision_table: sa.Table = ApprovalDecisionRow.__table__  # type: ignore[attr-defined]
api_token_table: sa.Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
kv_state_table: sa.Table = StateEntryRow.__table__  # type: ignore[attr-defined]


# --- sla ---

#: the SLA history (append-only, ``ringward.store.sla.ledger``): one row per event, in order; a
#: unique ``event_key`` makes each send claim, outcome, acknowledgement and silence happen once
sla_event_table = sa.Table(
    "sla_event",
    SQLModel.metadata,
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
    SQLModel.metadata,
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
