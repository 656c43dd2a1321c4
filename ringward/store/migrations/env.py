"""Alembic environment for the Ringward store.

Ringward runs migrations itself (``ringward.store.db.migrate``) on a connection it has already
locked, passed in ``config.attributes["connection"]``; there is no ``alembic.ini``. To write a
new migration by hand, add ``versions/NNNN_name.py`` with ``down_revision`` set to the current
head (see ``versions/0001_initial.py``).
"""

from __future__ import annotations

from alembic import context

from ringward.store.tables import METADATA

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only Ringward drives these migrations
    raise RuntimeError("ringward migrations run through ringward.store.db.migrate(), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=METADATA,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
