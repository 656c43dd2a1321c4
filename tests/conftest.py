"""Session-wide fixtures: an isolated Ringward/Prefect home and one shared Prefect test server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("homes")
    saved = {k: os.environ.get(k) for k in ("RINGWARD_HOME", "PREFECT_HOME", "RINGWARD_DATABASE_URL")}
    os.environ["RINGWARD_HOME"] = str(home / "ringward")
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ.pop("RINGWARD_DATABASE_URL", None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_server(_isolated_homes: None) -> Iterator[None]:
    """One Prefect test server per session (it takes ~30 s to start on 2 cores)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # heartbeats cost ~1 s per flow run; they only matter for zombie detection in production
    with prefect_test_harness(server_startup_timeout=240), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture
def ringward_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-test Ringward home (state directory, default SQLite store, evidence root)."""
    home = tmp_path / "ringward-home"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.delenv("RINGWARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("RINGWARD_EVIDENCE_ROOT", raising=False)
    return home


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the PostgreSQL test database, or a visible skip when none is reachable."""
    url = os.environ.get("RINGWARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {url}: {exc}")
    return url
