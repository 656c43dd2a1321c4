"""Fixtures shared by the multi-process tests of `ringward up`, workers and Dask."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.up import cluster as cl


@pytest.fixture(scope="module")
def databases(postgres_url: str) -> Iterator[cl.Databases]:
    """Fresh PostgreSQL databases for one module's cluster, dropped afterwards."""
    made = cl.Databases(postgres_url)
    try:
        yield made
    finally:
        made.drop_all()
