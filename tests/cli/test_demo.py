"""`ringward demo` (the README's first command) end to end, in its own process, in-process path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _demo(output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGWARD_", "PREFECT_API_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "ringward", "demo", "--output", str(output), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=output.parent,
        timeout=600,
        check=False,
    )


def test_demo_runs_every_step_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    output = tmp_path / "demo-output"
    done = _demo(output)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("3. verify-package: VALID") for line in lines)
    assert any(line.startswith("7. one flipped bit") and "INVALID [digest-mismatch]" in line for line in lines)
    assert any(line.startswith("8. rollback 1.1.0 -> 1.0.0: REFUSED") for line in lines)
    assert any(line.startswith("9. delivered event demo-verified-") and ": delivered ->" in line for line in lines)
    assert any(line.startswith("10. signed checkpoint") and line.endswith("INTACT") for line in lines)
    (queued,) = (output / "queue").glob("demo-verified-*.json")
    assert json.loads(queued.read_text())["event"]["event_type"] == "ringward.release.verified"
    checkpoint = json.loads((output / "checkpoint.json").read_text())
    assert checkpoint["schema_version"] == "ringward.evidence-checkpoint.v1" and checkpoint["signature"]

    # the chain can be re-verified later from the CLI against the signed checkpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGWARD_")}
    env["RINGWARD_HOME"] = str(output / "state")
    verify = subprocess.run(
        [sys.executable, "-m", "ringward", "evidence", "verify", "--checkpoint", str(output / "checkpoint.json"),
         "--trust-root", str(output / "trust-root.json")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    again = _demo(output)  # never clobbers an earlier run silently
    assert again.returncode == 2 and again.stderr.strip().startswith("error: ") and "--force" in again.stderr
