"""The console entry point switches Prefect's outbound telemetry off before any command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ringward.settings import PREFECT_TELEMETRY_OFF


def test_entry_point_forces_prefect_telemetry_off() -> None:
    script = (
        "import json, os\n"
        "from ringward.cli.main import run\n"
        "try:\n"
        "    run(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps({{k: os.environ.get(k) for k in {sorted(PREFECT_TELEMETRY_OFF)!r}}}))\n"
    )
    env = {**os.environ, "DO_NOT_TRACK": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                         check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == PREFECT_TELEMETRY_OFF


def test_every_group_has_the_same_plain_help_style() -> None:
    from click.testing import CliRunner

    from ringward.cli.main import COMMAND_GROUPS, cli

    runner = CliRunner()
    for group in sorted(COMMAND_GROUPS):
        result = runner.invoke(cli, [group, "--help"], prog_name="ringward")
        assert result.exit_code == 0, (group, result.output)
        assert result.output.startswith(f"Usage: ringward {group}"), (group, result.output[:200])
        assert "╭" not in result.output and "Options:" in result.output, group
