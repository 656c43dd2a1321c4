"""`ringward connectors ...` as a user runs it: exit codes 0/1/2, one-line errors, no tracebacks,
no Prefect import on the in-process path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.conftest import make_event, write_config
from tests.connectors.fault_server import Fault, FaultServer


def ringward(
    *args: str, home: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RINGWARD_HOME": str(home), **(extra_env or {})}
    env.pop("RINGWARD_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "ringward", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def workspace(tmp_path: Path, fault_server: FaultServer) -> dict[str, Any]:
    ok, rejecting = fault_server.route(), fault_server.route().script(default=Fault.of(401, "Invalid token"))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(make_event().to_document()))
    config = write_config(
        tmp_path / "connectors.yaml",
        {"name": "fleet", "provider": "linux", "url": ok.url},
        {"name": "ticketing", "provider": "linux", "url": rejecting.url},
    )
    return {"home": tmp_path / "home", "event": event, "config": config, "ok": ok, "rejecting": rejecting}


def test_deliver_exit_codes_history_and_dashboard(workspace: dict[str, Any]) -> None:
    home, event, config = workspace["home"], str(workspace["event"]), str(workspace["config"])
    done = ringward("connectors", "deliver", event, "--config", config, "--provider", "fleet", home=home)
    assert done.returncode == 0, done.stderr
    assert "DELIVERED: event evt-promotion-0001 (evidence 1)" in done.stdout
    failed = ringward("connectors", "deliver", event, "--config", config, "--json", home=home)
    assert failed.returncode == 1
    result = json.loads(failed.stdout)
    assert result["schema_version"] == "cavra.connector.delivery.v1" and result["success"] is False
    statuses = {d["destination"]: d["status"] for d in result["deliveries"]}
    assert statuses == {"fleet": "already-delivered", "ticketing": "rejected"}
    assert len(workspace["ok"].requests) == 1

    history = json.loads(ringward("connectors", "history", "--no-success", "--json", home=home).stdout)
    assert [(i["destination"], i["state"], i["status_code"]) for i in history["items"]] == [
        ("ticketing", "rejected", 401)
    ]
    dashboard = ringward("connectors", "dashboard", home=home)
    assert dashboard.returncode == 0 and dashboard.stdout.startswith("WARNING: 2 deliveries, 1 failed")
    assert "HTTP 401" in dashboard.stdout
    markdown = ringward("connectors", "dashboard", "--markdown", home=home).stdout
    assert markdown.startswith("# Connector delivery dashboard — WARNING")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("deliver", "missing.json"), ("missing.json: file not found",)),
        (("deliver", "{event}", "--provider", "splunk"), ("not configured or is disabled: splunk",)),
        (("deliver", "{bad_event}"), ("bad.json: invalid JSON",)),
        (
            ("deliver", "{event}", "--config", "{bad_config}"),
            (
                "bad.yaml: 2 problems: providers[0].url: not an https URL",
                "providers[1].signing_secret: webhook needs credentials",
            ),
        ),
        (("enable", "nobody"), ("destination nobody is not disabled",)),
        (("history", "--success", "--no-success"), ("mutually exclusive",)),
    ],
)
def test_bad_input_is_one_line_exit_2(
    workspace: dict[str, Any],
    tmp_path: Path,
    args: tuple[str, ...],
    fragments: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process through the console-script entry point (``ringward.cli.main.run``)."""
    from ringward.cli.main import run

    monkeypatch.setenv("RINGWARD_HOME", str(workspace["home"]))
    bad_event = tmp_path / "bad.json"
    bad_event.write_text("{nope")
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(
        "providers:\n  - {name: a, provider: linux, url: 'http://10.1.2.3/x'}\n"
        "  - {name: b, provider: webhook, url: 'https://h.example.com/x'}\n"
    )
    values = {"event": str(workspace["event"]), "bad_event": str(bad_event), "bad_config": str(bad_config)}
    argv = [a.format(**values) for a in args]
    if argv[0] == "deliver" and "--config" not in argv:
        argv += ["--config", str(workspace["config"])]
    with pytest.raises(SystemExit) as exited:
        run(["connectors", *argv])
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "connectors": {
                    "splunk": {"url": "http://splunk.example.com", "token": "t"},
                    "slack": {"url": "https://hooks.slack.com/services/T/B/X"},
                }
            }
        )
    )
    done = ringward("connectors", "validate", "--config", str(config), home=tmp_path / "h")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: connectors.splunk.url: not an https URL (plain http is allowed only for loopback hosts)",
        "error: connectors.splunk.token: must be a secret reference env:NAME or prefect-secret:NAME "
        "(secrets are never inline)",
        "error: connectors.slack.url: a slack webhook URL is a credential; "
        "reference it as env:NAME or prefect-secret:NAME",
    ]


def test_test_event_redeliver_and_no_prefect_import(workspace: dict[str, Any]) -> None:
    home, config = workspace["home"], str(workspace["config"])
    done = ringward("connectors", "test", "--provider", "fleet", "--config", config, "--json", home=home)
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["event_type"] == "ringward.connector.test" and result["event_id"].startswith(
        "ringward-test-"
    )
    body = json.loads(workspace["ok"].requests[-1].body)
    assert body["event"]["summary"] == "This is a connectivity test from Ringward. No action is needed."
    redeliver = ringward("connectors", "redeliver", "--config", config, "--json", home=home)
    assert redeliver.returncode == 0 and json.loads(redeliver.stdout)["due"] == 0
    probe = (
        "import sys\nfrom ringward.cli.main import run\n"
        "try:\n    run(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('prefect' in sys.modules, code)\n"
    )
    env = {**os.environ, "RINGWARD_HOME": str(home)}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "connectors",
            "deliver",
            str(workspace["event"]),
            "--config",
            config,
            "--provider",
            "fleet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.stdout.strip().splitlines()[-1] == "False 0", out.stdout + out.stderr
