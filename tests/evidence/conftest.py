from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.dbfixtures import db_url, store  # noqa: F401


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    """RINGWARD_HOME / evidence root / database for in-process CLI runs; yields the evidence root."""
    home = tmp_path / "home"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(home / "evidence"))
    monkeypatch.setenv("RINGWARD_ACTOR", "auditor")
    monkeypatch.delenv("RINGWARD_SIGNING_KEY", raising=False)
    monkeypatch.delenv("RINGWARD_TRUST_ROOT", raising=False)
    yield home / "evidence"
