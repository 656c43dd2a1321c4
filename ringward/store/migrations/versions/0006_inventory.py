"""Inventory: ``webhook_receipt``, the signed inventory webhooks accepted per source (replay
refusal by a unique ``(source, webhook_id)``; crash recovery from the stored raw body).

Revision ID: 0006_inventory
Revises: 0005_search_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ringward.store.tables import UTCDateTime

revision: str = "0006_inventory"
down_revision: str | Sequence[str] | None = "0005_search_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_receipt",
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
    )
    op.create_index("ix_webhook_receipt_status_id", "webhook_receipt", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_receipt_status_id", table_name="webhook_receipt")
    op.drop_table("webhook_receipt")
