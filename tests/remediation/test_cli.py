"""The `ringward remediation` commands end to end: exit codes 0 / 1 (refused, recorded) / 2 (bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer

from tests.inventory.conftest import cli
from tests.remediation.conftest import RemediationWorld, at


def _at(hours: float) -> list[str]:
    return ["--at", at(hours).isoformat()]


def test_cli_request_execute_handoff_status(rw: RemediationWorld, capsys: pytest.CaptureFixture[str],
                                            httpserver: HTTPServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    report = str(rw.reconciliation())
    trust = ["--trust-root", str(rw.keys.trust_root)]
    base = ["remediation", "request", report, "--requester", "alice", "--signing-key", str(rw.keys.remediation_pem),
            *trust]
    code, _, err = cli(capsys, *base, "--strategy", "sideways")
    assert code == 2 and err.startswith("error: --strategy") and "Traceback" not in err
    code, _, err = cli(capsys, "remediation", "request", report, "--requester", "alice", "--signing-key",
                       str(rw.keys.promotion_pem), *trust, *_at(3))
    assert code == 1 and "remediation-role key" in err
    code, out, _ = cli(capsys, *base, *_at(3), "--json")
    assert code == 0
    requested = json.loads(out)
    code, out, _ = cli(capsys, *base, *_at(3.1))
    assert code == 0 and out.startswith(f"ATTACHED: request {requested['request_id']}")

    config = tmp_path / "connectors.yaml"
    monkeypatch.setenv("RW_HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    config.write_text(yaml.safe_dump({"providers": [{"name": "hook", "provider": "webhook",
                                                     "url": httpserver.url_for("/hook"),
                                                     "signing_secret": "env:RW_HOOK_SECRET"}]}))
    handoff = ["remediation", "handoff", requested["request"], "--provider", "webhook", "--config", str(config),
               "--actor", "carol"]
    code, _, err = cli(capsys, *handoff, *_at(3.2))
    assert code == 1 and "handoff refused before approval" in err and httpserver.log == []

    execute = ["remediation", "execute", requested["request"], "--approval", requested["approval_id"], "--actor",
               "carol", *trust]
    code, _, err = cli(capsys, *execute, *_at(3.3))
    assert code == 1 and "expected approved" in err
    rw.approve(requested["approval_id"], now=at(3.4))
    code, out, _ = cli(capsys, *execute, *_at(3.5), "--json")
    assert code == 0 and json.loads(out)["execution_status"] == "recorded"
    code, _, err = cli(capsys, *execute, *_at(3.6))
    assert code == 1 and "already executed" in err

    code, out, _ = cli(capsys, *handoff, *_at(4), "--json")
    assert code == 0
    handed = json.loads(out)
    assert handed["statuses"] == {"webhook": "delivered"} and len(httpserver.log) == 1
    status = ["remediation", "status", handed["handoff_id"], "--provider", "webhook", "--actor", "ops"]
    code, out, _ = cli(capsys, *status, "--status", "completed", *_at(5))
    assert code == 0 and out.startswith("STATUS completed")
    code, _, err = cli(capsys, *status, "--status", "queued", *_at(6))
    assert code == 1 and "completed is final" in err
    code, _, err = cli(capsys, *status, "--status", "finished", *_at(6))
    assert code == 2 and "status must be one of" in err
