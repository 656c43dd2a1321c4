from tests.connectors.conftest import fault_server  # noqa: F401
from tests.store.dbfixtures import db_url, store  # noqa: F401
