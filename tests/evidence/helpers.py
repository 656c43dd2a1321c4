"""Running `ringward` in-process (fast) and as a real subprocess (no traceback ever)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ringward.cli.main import run


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``ringward ARGS`` in this process (uses the current environment)."""
    capsys.readouterr()
    try:
        run(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return Result(code, captured.out, captured.err)


def cli_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "ringward", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


def one_error_line(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
