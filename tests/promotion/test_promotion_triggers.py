"""Event-triggered promotion deployments end to end on the session's Prefect server: the
deployments of deployments/serve.py are served by a Runner in a background thread, the in-process
CLI emits the events (``RINGWARD_EMIT_EVENTS=1``), and the triggered flow runs are awaited through
the API (bounded; the box is busy).

- ``ringward.promotion.executed`` / ``ringward.rollback.executed`` -> the audit runs by itself
  (files next to the record, delivered once through ``RINGWARD_CONNECTORS``);
- ``ringward.approval.decided`` (approved rollout promotion) -> ``execute-on-approval`` executes it
  as ringward-automation; the same event again ends Completed "already executed", one execution;
- decisions that are not an approved rollout promotion are Completed no-op runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from pytest_httpserver import HTTPServer

# imported at collection, not under capsys: Prefect binds its console log handler to the stderr of
# the moment it sets logging up, and a capsys stream is closed after its test
from deployments.serve import build_deployments
from flows.events import emit_if_configured
from flows.promotion_automation import audit_on_execution_flow, execute_on_approval_flow
from ringward.cli.main import run
from ringward.core.approvals.rules import Decision
from ringward.core.promotion import rollout as ro
from ringward.operations.approvals.approval_ops import decide_approval, request_approval
from ringward.operations.promotion.automation import approval_decided_event
from ringward.store.promotion.executions_repo import RolloutLedger
from tests.promotion.conftest import RolloutWorld, later

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

HEC_TOKEN = "hec-trigger-audit-token-3f9a1b"
#: a triggered run starts a fresh Python process (Prefect + Ringward imports) on a shared 2-core box
RUN_TIMEOUT_S = 240.0


# --- serving the triggered deployments --------------------------------------------------------------


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _runs_of(deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with _client() as client:
        return list(client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        ))


def wait_for_final_runs(deployment_id: UUID, count: int, timeout: float = RUN_TIMEOUT_S) -> list[Any]:
    """The deployment's flow runs once ``count`` of them reached a final state (oldest first)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs_of(deployment_id)
        final = [r for r in runs if r.state is not None and r.state.is_final()]
        if len(final) >= count:
            return final
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} final run(s) of deployment {deployment_id} expected within {timeout} s, "
                                 f"found {[(r.name, r.state.name if r.state else None) for r in runs]}")
        time.sleep(1.0)


@contextmanager
def serving(names: set[str], environ: dict[str, str]) -> Iterator[dict[str, UUID]]:
    """Serve the named deployments of deployments/serve.py (their triggers included) from a Runner
    in a background thread; yields deployment name -> id. Runs the deployments already had (an
    earlier `prefect deploy --all` leaves scheduled runs nobody executes) are deleted first."""
    from prefect.runner import Runner

    deployments = [d for d in build_deployments(environ=environ) if d.name in names]
    assert {d.name for d in deployments} == names
    runner = Runner(name=f"ringward-triggers-{time.monotonic_ns()}", query_seconds=1, pause_on_shutdown=False,
                    limit=4)
    ids: dict[str, UUID] = {}
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            for deployment in deployments:
                ids[deployment.name] = await runner.aadd_deployment(deployment)
            with _client() as client:
                for deployment_id in ids.values():
                    for stale in _runs_of(deployment_id):
                        client.delete_flow_run(stale.id)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            raise
        ready.set()
        await runner.start()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(asyncio.run, main()), daemon=True,
                              name="ringward-trigger-runner")
    thread.start()
    assert ready.wait(120), "the runner did not register its deployments"
    if failure:
        raise failure[0]
    try:
        yield ids
    finally:
        for _ in range(100):  # start() sets the loop and `started` shortly after registration
            if runner.started and runner._loop is not None:
                break
            time.sleep(0.1)
        if runner._loop is not None:
            asyncio.run_coroutine_threadsafe(runner.astop(), runner._loop).result(timeout=60)
        thread.join(timeout=60)
        with _client() as client:  # leave no enabled trigger behind for later tests
            for deployment_id in ids.values():
                client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")


# --- helpers ---------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    try:
        run(list(argv))
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "warning" not in captured.err, captured.err  # the event was sent
    result: dict[str, Any] = json.loads(captured.out)
    assert "warnings" not in result, result["warnings"]
    return result


def _iso(hours: float) -> str:
    return later(hours).isoformat()


@pytest.fixture
def events_on(monkeypatch: pytest.MonkeyPatch, rollout_world: RolloutWorld) -> RolloutWorld:
    """The CLI emits events (the harness configures Prefect through its settings, not the env); the
    worker environment the triggered flows default from."""
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "1")
    monkeypatch.setenv("RINGWARD_TRUST_ROOT", str(rollout_world.keys.trust_root))
    for name in ("RINGWARD_CONNECTORS", "RINGWARD_WINDOWS", "RINGWARD_AUTOMATION_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    return rollout_world


def _message(state: Any) -> str:
    return str(state.message or "")


def _steps(w: RolloutWorld, rollout_id: str, step: str) -> list[Any]:
    return [s for s in RolloutLedger(w.store).for_rollout(rollout_id) if s.step == step]


# --- tests -----------------------------------------------------------------------------------------


def test_executed_events_trigger_the_audit(
    prefect_server: None, events_on: RolloutWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    config = tmp_path / "connectors.yaml"
    config.write_text(yaml.safe_dump({
        "defaults": {"timeout_seconds": 5, "budget_seconds": 20, "max_attempts": 2, "backoff_base_seconds": 0},
        "providers": [{"name": "soc-splunk", "provider": "splunk",
                       "url": httpserver.url_for("/services/collector/event"), "token": "env:RW_TRIGGER_HEC"}],
    }))
    monkeypatch.setenv("RW_TRIGGER_HEC", HEC_TOKEN)
    monkeypatch.setenv("RINGWARD_CONNECTORS", str(config))
    w = events_on
    captured = w.capture()
    requested = w.request(captured["output_dir"])
    w.approve(requested["approval_id"])

    with serving({"audit-on-promotion-executed", "audit-on-rollback-executed"}, {}) as ids:
        executed = cli(capsys, "rollout", "execute", requested["request_path"], "--approval", requested["approval_id"],
                       "--actor", "carol", "--trust-root", str(w.keys.trust_root), "--at", _iso(0.3), "--json")
        (audit_run,) = wait_for_final_runs(ids["audit-on-promotion-executed"], 1)
        assert audit_run.state.is_completed(), audit_run.state
        assert audit_run.parameters == {"record_path": executed["execution_path"]}
        out = Path(executed["output_dir"])
        audit_dir = out.parent / f"{out.name}-audit"
        assert (audit_dir / ro.PROMOTION_AUDIT_FILE).is_file() and (audit_dir / ro.CHECKSUMS_FILE).is_file()
        (audit,) = _steps(w, captured["rollout_id"], "audit")
        assert audit.ref_id == executed["execution_id"] and audit.actor == "ringward-automation"
        assert w.store.get_evidence(audit.evidence_id).flow_run_id  # recorded by the triggered run
        (request, _), = httpserver.log
        assert json.loads(request.get_data())["event"]["event_id"] == executed["execution_id"]

        rollback_request = w.request_rollback(executed["execution_path"])
        w.approve(rollback_request["approval_id"], actor="frank", at=later(0.45))
        rolled = cli(capsys, "rollout", "rollback", executed["execution_path"], "--approval",
                     rollback_request["approval_id"], "--actor", "erin", "--trust-root", str(w.keys.trust_root),
                     "--at", _iso(0.5), "--json")
        (rollback_audit_run,) = wait_for_final_runs(ids["audit-on-rollback-executed"], 1)
        assert rollback_audit_run.state.is_completed(), rollback_audit_run.state
        out = Path(rolled["output_dir"])
        assert (out.parent / f"{out.name}-audit" / ro.ROLLBACK_AUDIT_FILE).is_file()
        audited = sorted(s.ref_id for s in _steps(w, captured["rollout_id"], "audit"))
        assert audited == sorted([executed["execution_id"], rolled["rollback_id"]])
        assert len(httpserver.log) == 2
        # one run per event: the promotion's audit did not run again
        assert len(_runs_of(ids["audit-on-promotion-executed"])) == 1


def test_execute_on_approval_executes_once(
    prefect_server: None, events_on: RolloutWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    w = events_on
    captured = w.capture()
    with serving({"execute-on-approval"}, {"RINGWARD_EXECUTE_ON_APPROVAL": "1"}) as ids:
        # real time from here on: the triggered execution runs "now"
        requested = cli(capsys, "rollout", "request-promotion", captured["output_dir"], "--target-ring", "broad",
                        "--requester", "alice", "--signing-key", str(w.keys.promotion_pem), "--trust-root",
                        str(w.keys.trust_root), "--output", str(w.work / "request"), "--json")
        decided = cli(capsys, "approval", "approve", requested["approval_id"], "--actor", "bob", "--reason",
                      "CAB approved", "--json")
        assert decided["state"] == "approved"
        (first,) = wait_for_final_runs(ids["execute-on-approval"], 1)
        assert first.state.is_completed(), first.state
        assert _message(first.state).startswith("executed rpe_"), first.state.message
        (execution,) = _steps(w, captured["rollout_id"], "execution")
        assert execution.actor == "ringward-automation" and execution.approval_id == requested["approval_id"]
        assert Path(execution.path or "") == w.work / execution.ref_id  # next to the request
        document = json.loads((w.work / execution.ref_id / ro.PROMOTION_EXECUTION_FILE).read_bytes())
        assert document["executed_by"] == "ringward-automation" and document["approval"]["decided_by"] == "bob"
        approval = w.store.approvals.get(requested["approval_id"])
        assert approval.consumed_at is not None and approval.execution_ref == execution.ref_id

        # the same decision announced again: consumed once, the second run says so and succeeds
        assert emit_if_configured(*approval_decided_event(approval, decided_by="bob", decision="approve")) is None
        runs = wait_for_final_runs(ids["execute-on-approval"], 2)
        (second,) = [r for r in runs if r.id != first.id]
        assert second.state.is_completed(), second.state
        assert "already executed" in _message(second.state), second.state.message
        assert len(_steps(w, captured["rollout_id"], "execution")) == 1
        assert not [r for r in w.ops().show_rollout(w.store, captured["rollout_id"])["refusals"]
                    if r["step"] == "execution"]


def test_other_decisions_are_no_op_runs(
    prefect_server: None, events_on: RolloutWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The triggered flows called directly: nothing to execute ends Completed with the reason; an
    audit already exported to its default place is not exported again."""
    w = events_on
    now = datetime.now(UTC)
    captured = w.capture()
    pending = w.request(captured["output_dir"], at=now, quorum=2)
    w.approve(pending["approval_id"], at=now)
    state = execute_on_approval_flow(approval_id=pending["approval_id"], return_state=True)
    assert state.is_completed() and "pending (1/2 approvals)" in _message(state), state.message
    decide_approval(w.store, pending["approval_id"], decision=Decision.DENY, actor="dave", reason="no", now=now)
    state = execute_on_approval_flow(approval_id=pending["approval_id"], state="approved", return_state=True)
    assert state.is_completed() and "denied" in _message(state), state.message  # the store decides, not the event

    other = request_approval(w.store, action="promote-ring", subject_digest="sha256:" + "1" * 64, target="pilot",
                             requester="alice")
    decide_approval(w.store, other.approval_id, decision=Decision.APPROVE, actor="bob", reason="ok")
    state = execute_on_approval_flow(approval_id=other.approval_id, return_state=True)
    assert state.is_completed() and "not a rollout promotion" in _message(state), state.message
    assert not _steps(w, captured["rollout_id"], "execution")

    audited = w.capture(rollout_id="production-audit-1")
    requested = w.request(audited["output_dir"])
    w.approve(requested["approval_id"])
    executed = w.execute(requested["request_path"], requested["approval_id"])
    first = audit_on_execution_flow(record_path=executed["execution_path"], return_state=True)
    assert first.is_completed() and "not delivered" in _message(first), first.message
    again = audit_on_execution_flow(record_path=executed["execution_path"], return_state=True)
    assert again.is_completed() and "already exported" in _message(again), again.message
    assert len(_steps(w, executed["rollout_id"], "audit")) == 1
