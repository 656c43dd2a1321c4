"""Initial schema: evidence chain, approvals and their decisions, API tokens, key/value state.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ringward.store.tables import UTCDateTime

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64

_SUBJECT_COLUMNS = (
    "release_version",
    "runtime",
    "channel",
    "ring",
    "deployment_target",
    "environment",
    "status",
    "approval_id",
    "approval_state",
    "execution_status",
    "provider",
)


def upgrade() -> None:
    op.create_table(
        "evidence_record",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(128), nullable=True),
        *[sa.Column(name, sa.String(256), nullable=True) for name in _SUBJECT_COLUMNS],
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("bundle_dir", sa.String(1024), nullable=True),
        sa.Column("artifacts", sa.Text(), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("previous_hash", name="uq_evidence_record_previous_hash"),
        sa.UniqueConstraint("record_hash", name="uq_evidence_record_record_hash"),
    )
    for name, columns in (
        ("ix_evidence_kind_status_target_id", ("kind", "status", "deployment_target", "id")),
        ("ix_evidence_kind_id", ("kind", "id")),
        ("ix_evidence_status_id", ("status", "id")),
        ("ix_evidence_target_id", ("deployment_target", "id")),
        ("ix_evidence_ring_id", ("ring", "id")),
        ("ix_evidence_environment_id", ("environment", "id")),
        ("ix_evidence_release_version_id", ("release_version", "id")),
        ("ix_evidence_approval_id", ("approval_id", "id")),
        ("ix_evidence_created_at", ("created_at",)),
        ("ix_evidence_payload_sha256", ("payload_sha256",)),
    ):
        op.create_index(name, "evidence_record", list(columns))

    head = op.create_table(
        "evidence_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_created_at", UTCDateTime(), nullable=True),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH, "last_created_at": None}])

    op.create_table(
        "approval",
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
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("imported", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_approval_state_created", "approval", ["state", "created_at"])
    op.create_index("ix_approval_created", "approval", ["created_at"])
    op.create_index("ix_approval_target", "approval", ["target"])
    op.create_index("ix_approval_subject_digest", "approval", ["subject_digest"])

    op.create_table(
        "approval_decision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("approval_id", sa.String(64), sa.ForeignKey("approval.approval_id"), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("approval_id", "actor", "decision", name="uq_approval_decision_actor"),
    )
    op.create_index("ix_approval_decision_approval", "approval_decision", ["approval_id", "id"])

    op.create_table(
        "api_token",
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

    op.create_table(
        "kv_state",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kv_state")
    op.drop_table("api_token")
    op.drop_index("ix_approval_decision_approval", table_name="approval_decision")
    op.drop_table("approval_decision")
    op.drop_table("approval")
    op.drop_table("evidence_head")
    op.drop_table("evidence_record")
