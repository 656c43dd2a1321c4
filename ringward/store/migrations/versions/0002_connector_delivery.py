"""Connector delivery log: deliveries keyed by (event id, provider, destination) with their attempts
(JSON), delivered events (for redelivery) and destination state (disabled after HTTP 410).

Revision ID: 0002_connector_delivery
Revises: 0001_initial
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ringward.store.tables import UTCDateTime

revision: str = "0002_connector_delivery"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connector_delivery",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("first_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("succeeded_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_after", UTCDateTime(), nullable=True),
        sa.Column("redeliver_until", UTCDateTime(), nullable=True),
        sa.Column("external_ref", sa.String(256), nullable=True),
        sa.Column("attempts", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("event_id", "provider", "destination", name="uq_connector_delivery_key"),
    )
    op.create_index("ix_connector_delivery_state_next", "connector_delivery", ["state", "next_attempt_after"])
    op.create_index(
        "ix_connector_delivery_dest_updated", "connector_delivery", ["provider", "destination", "updated_at"]
    )
    op.create_index("ix_connector_delivery_updated", "connector_delivery", ["updated_at"])

    op.create_table(
        "connector_event",
        sa.Column("event_id", sa.String(256), primary_key=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("event_sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )

    op.create_table(
        "connector_destination",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("connector_destination")
    op.drop_table("connector_event")
    op.drop_index("ix_connector_delivery_updated", table_name="connector_delivery")
    op.drop_index("ix_connector_delivery_dest_updated", table_name="connector_delivery")
    op.drop_index("ix_connector_delivery_state_next", table_name="connector_delivery")
    op.drop_table("connector_delivery")
