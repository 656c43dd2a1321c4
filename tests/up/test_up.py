"""The issue's "done means": `ringward up` as a subprocess (free ports, a tmp home) serves every
deployment with its schedule / trigger, a verify-package run started from its deployment through the
Prefect REST API (as the UI's Run button does) completes with its artifacts, every event-triggered
deployment fires on its event and its run completes, `ringward status` reports it all, and SIGTERM
stops every process it started (flow runs included): no orphans.

One `ringward up` serves the whole module (a Prefect server takes ~20-60 s to start on 2 cores)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deployments.catalog import CATALOG
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.common.supervisor import alive, descendants, free_port
from ringward.operations.trust.keys import generate_keypair, save_trust_root
from tests.release.simulator import NOW, ReleaseSimulator

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 420
RUN_TIMEOUT_S = 300
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Up:
    process: subprocess.Popen[str]
    home: Path
    prefect_api: str
    api_url: str
    banner: str
    sim: ReleaseSimulator
    trust_root: Path
    work: Path

    def rest(self) -> PrefectRest:
        return PrefectRest(self.prefect_api)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RINGWARD_"))}
    env.update({"PREFECT_RUNNER_POLL_FREQUENCY": "2", "RINGWARD_EXECUTE_ON_APPROVAL": "1", **extra})
    return env


def _read_until_up(process: subprocess.Popen[str], timeout_s: float) -> str:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if line.startswith("Ctrl-C"):
            return "".join(seen)
    raise AssertionError(f"ringward up did not come up (rc={process.poll()}): {''.join(seen)[-2000:]}")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("up")
    home = work / "home"
    home.mkdir()
    sim = ReleaseSimulator(work / "sim")
    # the home's own trust root: what a triggered verification uses when the event carries none
    trust_root = home / "trust-root.json"
    save_trust_root(trust_root, sim.trust_root(), overwrite=False)
    (home / "packages").mkdir()  # the released-packages folder KEV re-checks read (switches kev-recheck on)
    # the inventory automation's remediation key (its presence switches inventory-automation-on-ingest on)
    generate_keypair(home / "remediation-key.pem", home / "remediation-key.pub")
    port, prefect_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ringward.cli.main", "up", "--home", str(home), "--port", str(port),
         "--prefect-port", str(prefect_port), "--timeout", str(STARTUP_TIMEOUT_S)],
        cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = _read_until_up(process, STARTUP_TIMEOUT_S + 30)
        yield Up(process, home, f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{port}", banner, sim,
                 trust_root, work)
    finally:
        if process.poll() is None:
            for pid in [process.pid, *descendants(process.pid)]:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=30)


def _wait_run(client: PrefectRest, flow_run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = client.flow_run(flow_run_id)
        if (run.get("state") or {}).get("type") in TERMINAL:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} still {run.get('state')} after {RUN_TIMEOUT_S}s")


def _settled_tasks(client: PrefectRest, flow_run_id: str) -> dict[str, str]:
    """Task run name -> state type, once every state is final (the server records them from events,
    asynchronously)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        # a task run whose first state has not been recorded yet has state null: still pending
        states = {t["name"]: (t.get("state") or {}).get("type", "PENDING") for t in client.task_runs(flow_run_id)}
        if (states and set(states.values()) <= TERMINAL) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def _wait_triggered(client: PrefectRest, deployment: str, flow: str, since: datetime) -> dict[str, Any]:
    """The first run of ``deployment`` created after ``since`` (the automation's), once it has finished."""
    deployment_id = client.deployment_by_name(flow, deployment)["id"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = client._post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}},
                                                  "sort": "EXPECTED_START_TIME_DESC", "limit": 10})
        fresh = [r for r in runs if datetime.fromisoformat(r["created"]) >= since]
        if fresh:
            return _wait_run(client, fresh[-1]["id"])
        time.sleep(1)
    raise AssertionError(f"no run of {flow}/{deployment} was triggered within {RUN_TIMEOUT_S}s")


def _emit(client: PrefectRest, name: str, resource: str, payload: dict[str, Any]) -> datetime:
    now = datetime.now(UTC)
    client.emit_event({"id": str(uuid.uuid4()), "occurred": now.isoformat(), "event": name,
                       "resource": {"prefect.resource.id": resource}, "payload": payload})
    return now - timedelta(seconds=1)


def test_up_prints_the_urls_and_a_first_admin_token(up: Up) -> None:
    assert f"Prefect UI    {up.prefect_api.removesuffix('/api')}" in up.banner
    assert f"Ringward API  {up.api_url}" in up.banner
    (token_line,) = [line for line in up.banner.splitlines() if "admin token" in line]
    token = token_line.split()[-1]
    import httpx

    assert httpx.get(up.api_url + "/healthz").status_code == 200
    assert httpx.get(up.api_url + "/evidence", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.get(up.api_url + "/evidence", headers={"Authorization": "Bearer nope"}).status_code == 401
    # stored hashed: the secret appears nowhere in the home
    for path in up.home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert token.encode() not in path.read_bytes(), path
    assert "redeliver-failed: off until" in up.banner
    state = json.loads((up.home / "up.json").read_text())
    assert state["pid"] == up.process.pid and state["prefect_api_url"] == up.prefect_api


def test_every_part_runs_under_the_home_with_telemetry_off(up: Up) -> None:
    state = json.loads((up.home / "up.json").read_text())
    assert set(state["pids"]) == {"prefect-server", "ringward-api", "runner"}
    for name, pid in state["pids"].items():
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
        assert environ["RINGWARD_HOME"] == str(up.home), name
        assert environ["PREFECT_HOME"] == str(up.home / "prefect"), name
        assert environ["PREFECT_API_URL"] == up.prefect_api, name
        assert environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and environ["DO_NOT_TRACK"] == "1", name
    assert (up.home / "prefect" / "prefect.db").is_file()  # the embedded server's SQLite lives in the home
    server_log = (up.home / "logs" / "prefect-server.log").read_text()
    assert "telemetry" not in server_log.lower(), server_log[-2000:]


def test_every_deployment_is_listed_with_its_schedule_or_trigger(up: Up) -> None:
    with up.rest() as client:
        views = {v.name: v for v in client.overview()}
    assert set(views) == {d.name for d in CATALOG}
    for deployment in CATALOG:
        view = views[deployment.name]
        assert len(view.schedules) == len(deployment.schedules), view
        assert len(view.triggers) == len(deployment.triggers), view
        for trigger, shown in zip(deployment.triggers, view.triggers, strict=True):
            assert shown == f"on {trigger.event}", view  # execute-on-approval is opted in for this test
    assert views["redeliver-failed"].schedules == ("every 300s (inactive)",)  # no connectors.yaml yet
    assert views["verify-evidence-chain-daily"].schedules == ("cron 15 3 * * * UTC",)
    assert views["verify-evidence-chain-daily"].next_run is not None


def test_a_verify_run_started_from_its_deployment_completes_with_its_artifacts(up: Up) -> None:
    package = up.sim.package("1.2.3")
    with up.rest() as client:
        deployment = client.deployment_by_name("verify-package", "verify-package")
        run = client.create_flow_run(deployment["id"], {"package_dir": str(package), "now": NOW.isoformat()})
        final = _wait_run(client, run["id"])
        assert final["state"]["type"] == "COMPLETED", final["state"]
        keys = {a["key"] for a in client.artifacts(run["id"])}
        tasks = _settled_tasks(client, run["id"])
    assert {"package-verification", "package-verification-families"} <= keys
    assert tasks and set(tasks.values()) == {"COMPLETED"}, tasks
    # the evidence went to the home's store (not ./.ringward of some working directory)
    assert list((up.home / "evidence").rglob("checksums.txt"))
    assert not (up.work / ".ringward").exists()


def test_a_failed_integrity_family_is_a_failed_task(up: Up) -> None:
    package = up.sim.package("1.2.4")
    up.sim.flip_bit(package / "bin" / sorted(p.name for p in (package / "bin").iterdir())[0])
    with up.rest() as client:
        deployment = client.deployment_by_name("verify-package", "verify-package")
        run = client.create_flow_run(deployment["id"], {"package_dir": str(package), "now": NOW.isoformat()})
        final = _wait_run(client, run["id"])
        tasks = _settled_tasks(client, run["id"])
    assert final["state"]["type"] == "FAILED"
    (integrity,) = [state for name, state in tasks.items() if name.startswith("integrity-and-signatures")]
    assert integrity == "FAILED", tasks


def test_package_published_fires_verification_with_the_homes_trust_root(up: Up) -> None:
    from flows.package_release import published_payload

    package = up.sim.package("1.3.0")
    payload = published_payload({"package_dir": str(package), "version": "1.3.0", "runtime": "rt", "signed": True})
    payload["trust_root"] = None  # the publisher knew none: the run takes the home's
    with up.rest() as client:
        since = _emit(client, "ringward.package.published", "ringward.package.rt.1.3.0", payload)
        run = _wait_triggered(client, "verify-package-on-publish", "verify-package", since)
    assert run["parameters"]["package_dir"] == str(package)
    # no `now`: verified at the real time, against the home's trust root
    assert run["state"]["type"] == "COMPLETED", run["state"]


@pytest.mark.parametrize(("event", "deployment", "field", "name"), [
    ("ringward.promotion.executed", "audit-on-promotion-executed", "execution_path",
     "rollout-promotion-execution.json"),
    ("ringward.rollback.executed", "audit-on-rollback-executed", "rollback_path",
     "rollout-rollback-execution.json"),
])
def test_execution_events_fire_their_audit(up: Up, event: str, deployment: str, field: str, name: str) -> None:
    # an execution whose audit was already exported: the triggered audit completes with a note
    record_dir = up.work / f"{deployment}-record"
    record_dir.mkdir()
    (record_dir.parent / f"{record_dir.name}-audit").mkdir()
    with up.rest() as client:
        since = _emit(client, event, "ringward.rollout.r1", {field: str(record_dir / name), "rollout_id": "r1"})
        run = _wait_triggered(client, deployment, "rollout-audit-on-execution", since)
    assert run["parameters"]["record_path"] == str(record_dir / name)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert "already exported" in run["state"]["message"]


def test_an_approval_decision_fires_execute_on_approval(up: Up) -> None:
    payload = {"approval_id": "apr_up_1", "action": "release_promote_channel", "state": "approved"}
    with up.rest() as client:
        since = _emit(client, "ringward.approval.decided", "ringward.approval.apr_up_1", payload)
        run = _wait_triggered(client, "execute-on-approval", "rollout-execute-on-approval", since)
    assert run["parameters"]["approval_id"] == "apr_up_1"
    assert run["state"]["type"] == "COMPLETED", run["state"]  # not a rollout promotion: a no-op
    assert "nothing to do" in run["state"]["message"]


def test_a_kev_catalog_import_fires_the_recheck_with_the_homes_settings(up: Up) -> None:
    payload = {"catalog_version": "2026.12.06", "sha256": "0" * 64, "count": 1, "evidence_id": 1}
    with up.rest() as client:
        since = _emit(client, "ringward.kev.imported", "ringward.kev.catalog", payload)
        run = _wait_triggered(client, "kev-recheck", "kev-recheck", since)
    # packages and trust root come from the home where the run executes; no channel has a release yet
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["state"]["message"].startswith("KEV re-check: 0 release(s)")


def test_status_reports_health_deployments_and_failed_runs(up: Up) -> None:
    done = subprocess.run([sys.executable, "-m", "ringward.cli.main", "status", "--json"], cwd=up.work,
                          env=_env(RINGWARD_HOME=str(up.home)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] and report["up_pid"] == up.process.pid
    assert all(part["healthy"] for part in report["parts"].values())
    assert {d["name"] for d in report["deployments"]} == {d.name for d in CATALOG}
    assert any(r["deployment"] == "verify-package" for r in report["failed_runs"])  # the flipped bit
    text = subprocess.run([sys.executable, "-m", "ringward.cli.main", "status"], cwd=up.work,
                          env=_env(RINGWARD_HOME=str(up.home)), capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "verify-package/verify-package-on-publish  on ringward.package.published" \
        in text.stdout


def test_sigterm_stops_every_process_it_started(up: Up) -> None:
    pids = [up.process.pid, *descendants(up.process.pid)]
    assert len(pids) >= 4  # up, server, API, runner (and whatever they run)
    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(timeout=180) == 0, up.process.stderr.read() if up.process.stderr else ""
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [pid for pid in pids if alive(pid)] == []
    assert not (up.home / "up.json").exists()
