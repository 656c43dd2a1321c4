"""`ringward rollout audit --deliver`: the audit event goes through the connector platform to a
real loopback Splunk HEC, once per destination per execution; the drill-down shows the delivery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer

from connectors.auth import TOKENS
from ringward.cli.main import run
from ringward.core.promotion import rollout as ro
from tests.promotion.conftest import RolloutWorld

HEC_TOKEN = "hec-rollout-audit-token-8d1e4c"
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def _fresh_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    TOKENS.clear()
    monkeypatch.setenv("RW_ROLLOUT_HEC", HEC_TOKEN)


def _config(tmp_path: Path, server: HTTPServer) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({
        "defaults": {"timeout_seconds": 2, "budget_seconds": 5, "max_attempts": 2, "backoff_base_seconds": 0},
        "providers": [{"name": "soc-splunk", "provider": "splunk", "url": server.url_for("/services/collector/event"),
                       "token": "env:RW_ROLLOUT_HEC"}],
    }))
    return path


def _audit(
    capsys: pytest.CaptureFixture[str], record: str, output: Path, config: Path
) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    try:
        run(["rollout", "audit", record, "--output", str(output), "--deliver", str(config), "--json"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, json.loads(captured.out)


def test_audit_delivery_is_idempotent_per_execution(
    rollout_world: RolloutWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    w = rollout_world
    captured, _, executed = w.promoted()
    config = _config(tmp_path, httpserver)
    code, first = _audit(capsys, executed["execution_path"], w.work / "audit-1", config)
    assert code == 0 and first["delivery"]["success"] is True  # type: ignore[index]
    assert [d["status"] for d in first["delivery"]["deliveries"]] == ["delivered"]  # type: ignore[index]
    (request, _), = httpserver.log
    sent = json.loads(request.get_data())
    assert sent["event"]["event_type"] == ro.PROMOTION_AUDIT_EVENT_TYPE
    assert sent["event"]["event_id"] == executed["execution_id"]
    assert sent["event"]["attributes"]["schema_version"] == ro.PROMOTION_AUDIT_SCHEMA
    assert HEC_TOKEN not in json.dumps(w.store.get_evidence(first["delivery"]["evidence_id"]).payload)  # type: ignore[index]

    code, second = _audit(capsys, executed["output_dir"], w.work / "audit-2", config)
    assert code == 0 and second["delivery"]["success"] is True  # type: ignore[index]
    assert [d["status"] for d in second["delivery"]["deliveries"]] == ["already-delivered"]  # type: ignore[index]
    assert len(httpserver.log) == 1  # nothing sent twice

    view = w.ops().show_rollout(w.store, captured["rollout_id"])
    execution = view["promotions"][0]["executions"][0]
    states = [d["state"] for d in execution["deliveries"] if "destination" in d]
    assert states == ["succeeded"]
    records = [d for d in execution["deliveries"] if "evidence" in d]
    assert len(records) == 2 and all(r["evidence"]["kind"] == "release-connector-delivery" for r in records)
    assert len(execution["audits"]) == 2


def test_rollback_audit_is_delivered_as_a_rollback_event(
    rollout_world: RolloutWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    w = rollout_world
    _, _, executed = w.promoted()
    rr = w.request_rollback(executed["execution_path"])
    w.approve(rr["approval_id"], actor="frank")
    rolled = w.rollback(executed["execution_path"], rr["approval_id"])
    code, result = _audit(capsys, rolled["rollback_path"], w.work / "audit-rb", _config(tmp_path, httpserver))
    assert code == 0 and result["kind"] == "rollback"
    (request, _), = httpserver.log
    event = json.loads(request.get_data())["event"]
    assert event["event_type"] == ro.ROLLBACK_AUDIT_EVENT_TYPE and event["severity"] == "critical"
    assert event["attributes"]["rollback_reason"] == "crash loop on pilot laptops"


def test_failed_delivery_exits_1_and_keeps_the_export(
    rollout_world: RolloutWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "nope", "code": 6}, status=403)
    w = rollout_world
    _, _, executed = w.promoted()
    code, result = _audit(capsys, executed["execution_path"], w.work / "audit-x", _config(tmp_path, httpserver))
    assert code == 1 and result["delivery"]["success"] is False  # type: ignore[index]
    assert (w.work / "audit-x" / "checksums.txt").is_file()
