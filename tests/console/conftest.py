"""Fixtures for console tests: a per-test Ringward home (default SQLite store) and a loopback HTTP
destination for connector deliveries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.fault_server import FaultServer
from tests.store.dbfixtures import db_url  # noqa: F401


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()
