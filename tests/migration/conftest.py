from __future__ import annotations

from tests.store.dbfixtures import db_url, store  # noqa: F401
