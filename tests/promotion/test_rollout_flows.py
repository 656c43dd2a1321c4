"""Rollout steps as Prefect flow runs on a real Prefect server: request -> approve -> execute ->
audit, each returning the CLI's result and recording evidence with its flow run id; a refused step
fails its flow run with the same one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows._common import run_flow
from ringward.cli.main import run
from ringward.core.errors import ExecutionReplayError
from ringward.core.promotion import rollout as ro
from tests.promotion.conftest import RolloutWorld, later

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def _iso(hours: float) -> str:
    return later(hours).isoformat()


def test_request_approve_execute_audit_as_flow_runs(
    prefect_server: None, rollout_world: RolloutWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.promotion_rollout import audit_flow, execute_flow

    w = rollout_world
    captured = w.capture()
    # the CLI's --prefect path
    capsys.readouterr()
    try:
        run(["rollout", "request-promotion", captured["output_dir"], "--target-ring", "broad", "--requester", "alice",
             "--signing-key", str(w.keys.promotion_pem), "--trust-root", str(w.keys.trust_root), "--at",
             _iso(0.1), "--prefect", "--json"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    requested = json.loads(capsys.readouterr().out)
    assert requested["approval_reused"] is False
    assert w.store.get_evidence(int(requested["evidence"]["evidence_id"])).flow_run_id

    w.approve(requested["approval_id"])
    params = {"request_path": requested["request_path"], "approval_id": requested["approval_id"], "actor": "carol",
              "trust_root": str(w.keys.trust_root), "now": _iso(0.3)}
    executed = run_flow(execute_flow, params=params)
    assert executed["ring_advancement"]["to"] == "broad"
    record = w.store.get_evidence(int(executed["evidence"]["evidence_id"]))
    assert record.kind == ro.KIND_EXECUTION and record.flow_run_id

    # a refused step ends its flow run Failed with the refusal as data; run_flow re-raises it as itself
    state = execute_flow(params={**params, "output": str(w.work / "again")}, return_state=True)
    assert state.is_failed() and "already executed" in str(state.message)
    refusal = state.result(raise_on_failure=False)
    assert refusal["refused"] and refusal["errors"][0]["code"] == "already-executed"
    assert refusal["errors"][0]["exit_code"] == 1
    with pytest.raises(ExecutionReplayError, match="already executed"):
        run_flow(execute_flow, params={**params, "output": str(w.work / "again")})
    assert not (w.work / "again").exists()

    audited = run_flow(audit_flow, params={"record_path": executed["execution_path"], "output": str(w.work / "audit"),
                                           "actor": "soc"})
    assert audited["audited_id"] == executed["execution_id"]
    assert (w.work / "audit" / ro.PROMOTION_AUDIT_FILE).is_file()
    assert w.store.get_evidence(int(audited["evidence"]["evidence_id"])).flow_run_id


def test_flow_and_in_process_record_the_same_execution(prefect_server: None, rollout_world: RolloutWorld) -> None:
    from flows.promotion_rollout import rollback_flow

    w = rollout_world
    _, _, executed = w.promoted()
    rr = w.request_rollback(executed["execution_path"])
    w.approve(rr["approval_id"], actor="frank")
    rolled = run_flow(rollback_flow, params={"execution_path": executed["execution_path"],
                                             "approval_id": rr["approval_id"], "actor": "erin",
                                             "trust_root": str(w.keys.trust_root), "now": _iso(0.5)})
    doc = json.loads(Path(rolled["rollback_path"]).read_bytes())
    assert doc["rollback_id"] == rolled["rollback_id"] and doc["ring_rollback"]["to"] == "pilot"
    view = w.ops().show_rollout(w.store, rolled["rollback_id"])
    assert view["current_status"] == "rolled_back"


def test_cli_prefect_refused_replay_is_one_line(prefect_server: None, rollout_world: RolloutWorld) -> None:
    """`rollout execute --prefect` replaying an executed approval: exit 1, the one-line error last on
    stderr, as in-process, and no traceback (nor Prefect's `NoneType: None`) in the run's logs."""
    from prefect.settings import PREFECT_API_URL

    w = rollout_world
    _, requested, _ = w.promoted()
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    argv = ["rollout", "execute", requested["request_path"], "--approval", requested["approval_id"], "--actor",
            "carol", "--trust-root", str(w.keys.trust_root), "--at", _iso(0.35), "--output", str(w.work / "again")]
    done = subprocess.run([sys.executable, "-m", "ringward", *argv, "--prefect"], env=env, capture_output=True,
                          text=True, timeout=300, check=False, cwd=w.work)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: approval ") and "already executed" in last, output[-3000:]
    assert "Traceback" not in output and "NoneType: None" not in output, output[-3000:]
    assert not (w.work / "again").exists()
