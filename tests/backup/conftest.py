from tests.store.dbfixtures import db_url, store  # noqa: F401
