"""SLA history: ``sla_event``, the append-only ledger of send claims, send outcomes,
acknowledgements and silences (``ringward.store.sla.ledger``); a unique ``event_key`` makes each
happen once even with two schedulers in the same window.

Revision ID: 0007_sla
Revises: 0006_inventory
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ringward.store.tables import UTCDateTime

revision: str = "0007_sla"
down_revision: str | Sequence[str] | None = "0006_inventory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sla_event",
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
    )
    op.create_index("ix_sla_event_scope_id", "sla_event", ["scope", "id"])


def downgrade() -> None:
    op.drop_index("ix_sla_event_scope_id", table_name="sla_event")
    op.drop_table("sla_event")
