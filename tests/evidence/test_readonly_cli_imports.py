"""Read-only commands stay light: on a store already at the head revision, `evidence search`,
`approval list` and `channel status` import neither Alembic (the migration check reads
``alembic_version`` and compares it with the head named in the version files) nor Prefect, the
HTTP stack, the API server or the SQLAlchemy ORM. Checked by the set of modules a fresh interpreter loaded -- not by
wall-clock time, which a busy machine would make flaky."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import open_store

#: packages a read-only command must not import (the store's tables are SQLAlchemy Core: no ORM, no SQLModel)
HEAVY = ("alembic", "prefect", "fastapi", "starlette", "httpx", "uvicorn", "anyio", "polars", "duckdb", "sqlmodel",
         "sqlalchemy.orm")

PROBE = """
import json, sys
from ringward.cli.main import run
code = 0
try:
    run(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

COMMANDS = [
    ["evidence", "search", "--kind", "release-package-verification", "--json"],
    ["evidence", "search", "--since", "2026-01-01", "--total", "exact"],
    ["approval", "list", "--json"],
    ["channel", "status", "--json"],
]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'home' / 'ringward.db'}"
    with open_store(url) as store:  # migrated here, so the commands find it at head
        store.append(
            EvidenceDraft(kind="release-package-verification", actor="t", subject=EvidenceSubject(), payload={"a": 1})
        )
    return url


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c[:2]) + (" " + c[2] if len(c) > 2 else "") for c in COMMANDS])
def test_read_only_commands_import_no_migration_tool_flow_engine_or_web_stack(
    argv: list[str], store_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "modules.json"
    env = {
        **os.environ,
        "RINGWARD_HOME": str(tmp_path / "home"),
        "RINGWARD_DATABASE_URL": store_url,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), done.stderr
    heavy = sorted({name for name in result["modules"] if name in HEAVY or name.split(".")[0] in HEAVY} & set(HEAVY)
                   | {name.split(".")[0] for name in result["modules"]} & set(HEAVY))
    assert heavy == [], f"{' '.join(argv)} imported {heavy}"


def test_an_outdated_store_is_still_migrated_on_open(tmp_path: Path) -> None:
    """The cheap check must not skip a real upgrade: a store stamped at an older revision is
    brought to head by the next command (which then may import Alembic)."""
    import sqlalchemy as sa
    from alembic import command

    from ringward.store.db import alembic_config, known_revisions

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with open_store(url) as store, store.writing() as conn:
        command.downgrade(alembic_config(conn), "0004_rollout_steps")
        names = {row[0] for row in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
        assert "ix_evidence_provider_id" not in names and "ix_evidence_created_at" in names
    with open_store(url) as store, store.reading() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == known_revisions()[0]
        names = {row[0] for row in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
        assert "ix_evidence_provider_id" in names
