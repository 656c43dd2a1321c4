"""Fixtures for the incidents domain: a store per backend (SQLite and PostgreSQL), virtual time
and the CLI run in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from connectors.auth import TOKENS
from ringward.cli.main import run
from tests.store.dbfixtures import db_url, store  # noqa: F401

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HEC_TOKEN = "hec-incident-token-9f3e11"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def _hec_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    TOKENS.clear()
    monkeypatch.setenv("RW_INCIDENT_HEC", HEC_TOKEN)
    yield
    TOKENS.clear()


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(tmp_path / "evidence"))
    monkeypatch.setenv("RINGWARD_ACTOR", "secops")
    return db_url


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """Run ``ringward ARGS``; (exit code, parsed JSON stdout or the text, stderr)."""
    capsys.readouterr()
    try:
        run(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    try:
        parsed: Any = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        parsed = out
    return code, parsed, err


def connectors_config(path: Path, server: HTTPServer) -> Path:
    path.write_text(yaml.safe_dump({
        "defaults": {"timeout_seconds": 2, "budget_seconds": 5, "max_attempts": 1, "backoff_base_seconds": 0},
        "providers": [{"name": "soc-splunk", "provider": "splunk", "url": server.url_for("/services/collector/event"),
                       "token": "env:RW_INCIDENT_HEC"}],
    }))
    return path
