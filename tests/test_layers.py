"""The import-layer rules of the design, checked by import-linter's contracts in pyproject.toml,
plus a direct check that the pure core imports no framework."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {"prefect", "httpx", "sqlmodel", "sqlalchemy", "fastapi", "typer", "click", "uvicorn", "alembic"}


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: " in done.stdout and " broken" in done.stdout
    assert "0 broken" in done.stdout


def test_core_imports_no_framework() -> None:
    offenders = []
    for path in (ROOT / "ringward" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN_IN_CORE]
    assert not offenders, offenders
