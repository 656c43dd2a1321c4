"""Evidence import key: a nullable, unique ``import_key`` on ``evidence_record`` so an import is
insert-or-skip by key in the append transaction (concurrent imports record each item once).

Backfill: records an import of a reference ``metadata.json`` made before this revision get the
key that import would give them now, ``metadata:<kind>:<payload sha256>``. They are recognised as
an import writes them -- a JSON object payload with a non-empty string ``session_id`` whose kind
is its ``metadata_kind`` (``session-evidence`` when absent), with no bundle and no artifacts.
When concurrent imports already recorded an item more than once, only the first record (lowest
id) gets the key; the later copies stay in the chain as they are (the chain is append-only).
The key is outside the hash chain: no record hash changes.

Revision ID: 0003_evidence_import_key
Revises: 0002_connector_delivery
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_evidence_import_key"
down_revision: str | Sequence[str] | None = "0002_connector_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: kind an import gives a reference item without ``metadata_kind`` (as of this revision)
SESSION_KIND = "session-evidence"
BATCH = 2000


def _import_key(
    kind: str, payload_sha256: str, payload_text: str, bundle_dir: str | None, artifacts: str
) -> str | None:
    """The key of a record an import wrote, or None when the record is not one."""
    if bundle_dir is not None or artifacts != "[]":
        return None
    try:
        payload = json.loads(payload_text)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    session_id = payload.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        return None
    if payload.get("metadata_kind", SESSION_KIND) != kind:
        return None
    return f"metadata:{kind}:{payload_sha256}"


def upgrade() -> None:
    op.add_column("evidence_record", sa.Column("import_key", sa.String(256), nullable=True))

    conn = op.get_bind()
    record = sa.table(
        "evidence_record",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("payload", sa.Text()),
        sa.column("payload_sha256", sa.String()),
        sa.column("bundle_dir", sa.String()),
        sa.column("artifacts", sa.Text()),
        sa.column("import_key", sa.String()),
    )
    seen: set[str] = set()
    last = 0
    while True:  # keyset batches in id order: the first record of each item wins the key
        rows = conn.execute(
            sa.select(
                record.c.id,
                record.c.kind,
                record.c.payload_sha256,
                record.c.payload,
                record.c.bundle_dir,
                record.c.artifacts,
            )
            .where(record.c.id > last, record.c.payload.like('%"session_id"%'))
            .order_by(record.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        updates = []
        for row_id, kind, digest, payload, bundle_dir, artifacts in rows:
            key = _import_key(kind, digest, payload, bundle_dir, artifacts)
            if key is not None and key not in seen:
                seen.add(key)
                updates.append({"b_id": row_id, "b_key": key})
        if updates:
            conn.execute(
                record.update().where(record.c.id == sa.bindparam("b_id")).values(import_key=sa.bindparam("b_key")),
                updates,
            )
        last = rows[-1][0]

    op.create_index("uq_evidence_record_import_key", "evidence_record", ["import_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_evidence_record_import_key", table_name="evidence_record")
    with op.batch_alter_table("evidence_record") as batch:
        batch.drop_column("import_key")
