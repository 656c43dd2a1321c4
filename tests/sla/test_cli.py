"""`ringward sla ...` as a user runs it (subprocess): the breached handoff escalates from the owner
to release governance and stops at an acknowledgement; exit codes 0/1/2; one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringward.cli.main import run
from tests.connectors.conftest import write_config
from tests.connectors.fault_server import FaultServer
from tests.connectors.test_cli import ringward
from tests.sla.factory import handoff, status
from tests.sla.test_time_travel import BREACH, ladder_policy


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(ringward_home: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """The real entry point in-process (a subprocess per call costs seconds on this shared box)."""

    def invoke(*args: str, home: Path | None = None) -> Done:
        capsys.readouterr()
        try:
            run(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return Done(code, out, err)

    return invoke


def _iso(minutes: int) -> str:
    return (BREACH + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def test_demo_breach_escalates_to_governance_and_stops_at_an_ack(
    tmp_path: Path, fault_server: FaultServer, cli: Any
) -> None:
    home = tmp_path / "home"
    ringward = cli
    routes = {n: fault_server.route() for n in ("slack-ops", "pager-ops", "jira-gov")}
    config = write_config(
        tmp_path / "connectors.yaml", *({"name": n, "provider": "linux", "url": r.url} for n, r in routes.items())
    )
    policy = tmp_path / "routing.yaml"
    policy.write_text(yaml.safe_dump(ladder_policy()))
    inputs = tmp_path / "handoffs"
    inputs.mkdir()
    h = handoff(1, created_at=BREACH - timedelta(hours=48))  # breaches exactly at BREACH
    (inputs / "handoff.json").write_text(h.model_dump_json())
    (inputs / "status.json").write_text(status(h, "in_progress", BREACH - timedelta(hours=40)).model_dump_json())
    report = tmp_path / "report.json"

    done = ringward(
        "sla", "report", "--handoffs", str(inputs), "--at", _iso(0), "--output", str(report), "--json", home=home
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    assert document["alert_level"] == "critical"
    assert document["work_items"][0]["sla_state"] == "breached"
    assert json.loads(report.read_text())["report_id"] == document["report_id"]

    common = ["--policy", str(policy), "--config", str(config), "--json"]
    notified = ringward("sla", "notify", str(report), *common, "--at", _iso(1), home=home)
    assert notified.returncode == 0, notified.stderr
    assert [(r["receiver"], r["reason"]) for r in json.loads(notified.stdout)["sent"]] == [
        ("slack-ops", "first_notification")
    ]
    owner = ringward("sla", "escalate", str(report), *common, "--at", _iso(2), home=home)
    assert [(r["receiver"], r["level"]) for r in json.loads(owner.stdout)["sent"]] == [("pager-ops", "owner")]
    governance = ringward("sla", "escalate", str(report), *common, "--at", _iso(61), home=home)
    summary = json.loads(governance.stdout)
    assert [(r["receiver"], r["level"]) for r in summary["sent"]] == [("jira-gov", "governance")]
    assert summary["open_incidents_by_owner"]["endpoint-ops"][0]["acknowledgement_slo_state"] == "breached"

    refused = ringward(
        "sla",
        "ack",
        "critical",
        "--report",
        str(report),
        "--policy",
        str(policy),
        "--by",
        "mallory",
        "--at",
        _iso(70),
        home=home,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: acknowledgement refused: mallory is not endpoint-ops, a member of it, or an admin "
        "(the refusal is recorded)"
    )
    acked = ringward(
        "sla",
        "ack",
        "critical",
        "--report",
        str(report),
        "--policy",
        str(policy),
        "--by",
        "alice",
        "--at",
        _iso(71),
        home=home,
    )
    assert acked.returncode == 0 and acked.stdout.startswith("ACKNOWLEDGED: endpoint-remediation/critical by alice")
    later = ringward("sla", "escalate", str(report), *common, "--at", _iso(4 * 60 + 5), home=home)
    assert json.loads(later.stdout)["sent"] == []
    reminder = ringward("sla", "notify", str(report), *common, "--at", _iso(4 * 60 + 6), home=home)
    held = json.loads(reminder.stdout)
    assert held["sent"] == [] and any(s["code"] == "acknowledged" for s in held["suppressed"])
    assert [len(r.requests) for r in routes.values()] == [1, 1, 1]

    added = ringward(
        "sla",
        "silence",
        "add",
        "channel=stable",
        "--policy",
        str(policy),
        "--duration",
        "2h",
        "--comment",
        "freeze",
        "--by",
        "alice",
        "--at",
        _iso(300),
        "--json",
        home=home,
    )
    silence_id = json.loads(added.stdout)["silence_id"]
    listed = ringward("sla", "silence", "list", "--policy", str(policy), "--at", _iso(301), "--json", home=home)
    assert [(s["silence_id"], s["state"]) for s in json.loads(listed.stdout)["silences"]] == [(silence_id, "active")]
    expired = ringward(
        "sla", "silence", "expire", silence_id, "--policy", str(policy), "--by", "alice", "--at", _iso(302), home=home
    )
    assert expired.returncode == 0 and expired.stdout.strip() == f"EXPIRED: {silence_id}"
    again = ringward("sla", "silence", "expire", silence_id, "--policy", str(policy), "--at", _iso(303), home=home)
    assert again.returncode == 1 and "already expired" in again.stderr


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, cli: Any) -> None:
    home = tmp_path / "home"
    policy = tmp_path / "routing.yaml"
    policy.write_text("rules:\n  - rule_id: a\n    alert_levels: [urgent]\n")
    ok = tmp_path / "ok.yaml"
    ok.write_text("default_providers: [slack]\n")
    # the installed console entry point, as a subprocess, for the first two; the rest in-process is the same code
    cases = [
        (["sla", "report", "--handoffs", str(tmp_path), "--at", "2026-03-04T08:00:00"], "has no UTC offset"),
        (["sla", "report", "--handoffs", str(tmp_path), "--warning", "50h"], "warning_hours must be less than"),
        (["sla", "report"], "handoffs: give handoff files"),
        (["sla", "silence", "list", "--policy", str(policy)], "rules.0.alert_levels.0"),
        (["sla", "silence", "list", "--policy", str(tmp_path / "missing.yaml")], "file not found"),
        (["sla", "silence", "add", "owner=x", "--policy", str(ok), "--comment", "c"], "exactly one of --duration"),
        (
            ["sla", "silence", "add", "colour=red", "--policy", str(ok), "--comment", "c", "--duration", "1h"],
            "matcher 'colour=red'",
        ),
        (
            ["sla", "silence", "add", "owner=x", "--policy", str(ok), "--comment", " ", "--duration", "1h"],
            "comment: say why",
        ),
        (
            ["sla", "ack", "nope", "--report", str(tmp_path / "missing.json"), "--policy", str(ok), "--by", "a"],
            "file not found",
        ),
    ]
    for n, (args, message) in enumerate(cases):
        done = ringward(*args, home=home) if n < 2 else cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
