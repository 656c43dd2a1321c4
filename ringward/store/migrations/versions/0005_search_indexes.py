"""Search indexes: every evidence search filter is served by an index, newest first.

0001 indexed eight of the fifteen filters. This adds one ``(<column>, id)`` index for each of
the other seven columns, so a search on any filter alone walks its index backwards in id
order and stops after one page instead of scanning and sorting the table, and replaces the
plain ``created_at`` index by ``(created_at, id)``: a ``created_from``/``created_to`` window is
turned into an id range with two index-only lookups (``created_at`` never decreases along the
chain), which every ``(<column>, id)`` index then serves without a sort. The ``success`` filter
gets the same index although it has two values: ``success = false`` is the rare one people look
for. Planner statistics are refreshed at the end (the store also keeps them current after bulk
appends; see ``ringward.store.core.Store.refresh_statistics``).

Revision ID: 0005_search_indexes
Revises: 0004_rollout_steps
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_search_indexes"
down_revision: str | Sequence[str] | None = "0004_rollout_steps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (index name, columns); the same list is declared on ``evidence_table`` in ringward/store/tables.py
SEARCH_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ix_evidence_actor_id", ("actor", "id")),
    ("ix_evidence_flow_run_id", ("flow_run_id", "id")),
    ("ix_evidence_runtime_id", ("runtime", "id")),
    ("ix_evidence_channel_id", ("channel", "id")),
    ("ix_evidence_approval_state_id", ("approval_state", "id")),
    ("ix_evidence_execution_status_id", ("execution_status", "id")),
    ("ix_evidence_provider_id", ("provider", "id")),
    ("ix_evidence_success_id", ("success", "id")),
    ("ix_evidence_created_at_id", ("created_at", "id")),
)


def upgrade() -> None:
    for name, columns in SEARCH_INDEXES:
        op.create_index(name, "evidence_record", list(columns))
    op.drop_index("ix_evidence_created_at", table_name="evidence_record")
    bind = op.get_bind()
    # statistics of an empty table would tell the planner it stays tiny; appends refresh them later
    if bind.exec_driver_sql("SELECT 1 FROM evidence_record LIMIT 1").first() is not None:
        if bind.dialect.name == "sqlite":
            bind.exec_driver_sql("PRAGMA analysis_limit = 0")  # every row: a sample misjudges NULL-heavy columns
        bind.exec_driver_sql("ANALYZE evidence_record")


def downgrade() -> None:
    op.create_index("ix_evidence_created_at", "evidence_record", ["created_at"])
    for name, _ in reversed(SEARCH_INDEXES):
        op.drop_index(name, table_name="evidence_record")
