"""Reserved: advisories schema (filled in by the work that needs it; a no-op until then).

Revision ID: 0008_advisories
Revises: 0007_sla
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0008_advisories"
down_revision: str | Sequence[str] | None = "0007_sla"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
