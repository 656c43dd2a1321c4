"""Shell completion (click's, documented in docs/operations.md) reaches lazily loaded groups."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _complete(words: str, cword: int, shell: str = "bash") -> list[str]:
    env = {
        **os.environ,
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
        "_RINGWARD_COMPLETE": f"{shell}_complete",
    }
    out = subprocess.run(
        [sys.executable, "-m", "ringward"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if "," in line]


def test_groups_complete() -> None:
    assert _complete("ringward rel", 1) == ["release"]


def test_commands_of_a_lazy_group_complete() -> None:
    assert _complete("ringward release verify-p", 2) == ["verify-package"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_generated(shell: str) -> None:
    env = {**os.environ, "_RINGWARD_COMPLETE": f"{shell}_source"}
    out = subprocess.run(
        [sys.executable, "-m", "ringward"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert "_RINGWARD_COMPLETE" in out.stdout
