"""Rollout ledger: one row per rollout step, written with its evidence record; a unique
``unique_key`` makes each promotion execution and each execution's rollback happen once.

Revision ID: 0004_rollout_steps
Revises: 0003_evidence_import_key
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ringward.store.tables import UTCDateTime

revision: str = "0004_rollout_steps"
down_revision: str | Sequence[str] | None = "0003_evidence_import_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollout_step",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(128), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("ref_id", sa.String(128), nullable=False),
        sa.Column("parent_ref", sa.String(128), nullable=True),
        sa.Column("unique_key", sa.String(256), nullable=True),
        sa.Column("environment", sa.String(128), nullable=True),
        sa.Column("ring", sa.String(128), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("release_version", sa.String(256), nullable=True),
        sa.Column("approval_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("document_sha256", sa.String(64), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.UniqueConstraint("unique_key", name="uq_rollout_step_unique_key"),
    )
    op.create_index("ix_rollout_step_rollout", "rollout_step", ["rollout_id", "id"])
    op.create_index("ix_rollout_step_ref", "rollout_step", ["ref_id"])
    op.create_index("ix_rollout_step_step_created", "rollout_step", ["step", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_rollout_step_step_created", table_name="rollout_step")
    op.drop_index("ix_rollout_step_ref", table_name="rollout_step")
    op.drop_index("ix_rollout_step_rollout", table_name="rollout_step")
    op.drop_table("rollout_step")
