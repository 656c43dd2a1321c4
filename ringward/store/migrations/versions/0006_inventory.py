"""Reserved: inventory schema (filled in by the work that needs it; a no-op until then).

Revision ID: 0006_inventory
Revises: 0005_search_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006_inventory"
down_revision: str | Sequence[str] | None = "0005_search_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
