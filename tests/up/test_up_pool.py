"""`ringward up --pool NAME` (issue 12, "Beyond one machine -- with Prefect's own machinery"): `up` as a
subprocess (free ports, a tmp home) registers every deployment of the catalog into the `process` work pool
NAME (with the crash-recovery automations) and runs one local `ringward worker --pool NAME` in place of the
runner; a run started through the REST API completes on that worker, `ringward status` reports the pool
mode and the worker's health, and SIGTERM stops the worker first and leaves no process behind. On that
Prefect server, a plain `ringward up` (runner) and an `up --pool` of another pool are refused in one line,
and so is `up --pool` while a runner serves Ringward's deployments there: never the same deployment served
twice.

One `ringward up --pool` serves the whole module (a Prefect server takes ~20-60 s to start on 2 cores,
`prefect deploy --all` as long again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deployments import automations
from deployments.catalog import CATALOG
from ringward.cli.up_cmd import RUNNER_POLL_WINDOW_S, serving_conflict
from ringward.operations.common.prefect_rest import PrefectRest, worker_health
from ringward.operations.common.scale_out import PrefectAdmin
from ringward.operations.common.supervisor import alive, descendants, free_port
from tests.up import cluster as cl

POOL = "ringward-test"
STARTUP_TIMEOUT_S = 420
RUN_TIMEOUT_S = 300
SERVER = [pytest.mark.slow, pytest.mark.prefect]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --- without a server -----------------------------------------------------------------------------------------------


def test_a_bad_pool_name_is_refused_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = cl.run_ringward("up", "--home", str(home), "--port", str(free_port()), "--prefect-port", str(free_port()),
                     "--pool", "bad/pool", cwd=tmp_path)
    assert done.returncode == 2
    assert "--pool 'bad/pool': expected" in cl.one_line(done.stderr)
    assert not home.exists()


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
NAMES = {"verify-package", "inventory-ingest"}


def _row(name: str, pool: str | None = None, polled_s: float | None = None) -> dict[str, Any]:
    polled = None if polled_s is None else (NOW - timedelta(seconds=polled_s)).isoformat().replace("+00:00", "Z")
    return {"name": name, "work_pool_name": pool, "last_polled": polled}


def test_runner_mode_conflicts_with_deployments_in_a_pool() -> None:
    # served (now or earlier) by a runner: the runner takes them again
    assert serving_conflict([_row("verify-package"), _row("inventory-ingest", polled_s=3)], NAMES, None,
                            now=NOW) is None
    assert serving_conflict([_row("someone-elses", "their-pool")], NAMES, None, now=NOW) is None  # not ours
    problem = serving_conflict([_row("verify-package", "edge"), _row("inventory-ingest", "edge"),
                                _row("someone-elses", "other")], NAMES, None, now=NOW)
    assert problem is not None
    assert "2 of Ringward's deployments are in work pool edge" in problem
    assert "run `ringward up --pool edge` instead" in problem


def test_pool_mode_conflicts_with_another_pool_and_a_live_runner() -> None:
    # already in the pool, or served by a runner that has stopped (not polled for a while): moved into the pool
    stale = RUNNER_POLL_WINDOW_S + 30
    assert serving_conflict([_row("verify-package", POOL), _row("inventory-ingest", polled_s=stale)], NAMES, POOL,
                            now=NOW) is None
    other = serving_conflict([_row("verify-package", "edge")], NAMES, POOL, now=NOW)
    assert other is not None and "in work pool edge" in other
    assert "`ringward up --pool edge`" in other and f"`ringward deploy --pool {POOL}`" in other
    live = serving_conflict([_row("verify-package", polled_s=7), _row("inventory-ingest", polled_s=40)], NAMES, POOL,
                            now=NOW)
    assert live is not None and "2 of Ringward's deployments are served by a runner" in live
    assert "polled 7s ago" in live and "stop that runner first" in live
    # `up` started its own server 5 s ago: a poll before that was not made against this server
    assert serving_conflict([_row("verify-package", polled_s=7)], NAMES, POOL, now=NOW,
                            served_since=NOW - timedelta(seconds=5)) is None


# --- one `ringward up --pool` ---------------------------------------------------------------------------------------


@dataclass
class PoolUp:
    process: subprocess.Popen[bytes]
    work: Path
    home: Path
    prefect_api: str
    api_url: str
    out: Path
    marker: str

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.home / "up.json").read_text())
        return state

    def logs(self) -> str:
        return " | ".join(f"{p.name}: {p.read_text(errors='replace')[-1500:]}"
                          for p in sorted((self.home / "logs").glob("*.log")))


@pytest.fixture(scope="module")
def pool_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolUp]:
    work = tmp_path_factory.mktemp("up-pool")
    home = work / "home"
    port, prefect_port = free_port(), free_port()
    marker = f"up-pool-{os.getpid()}-{time.monotonic_ns()}"
    out = work / "up.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ringward.cli.main", "up", "--home", str(home), "--port", str(port),
             "--prefect-port", str(prefect_port), "--pool", POOL, "--timeout", str(STARTUP_TIMEOUT_S)],
            env=cl.clean_env(**{cl.MARKER: marker, "PREFECT_WORKER_QUERY_SECONDS": "2"}), cwd=work,
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    made = PoolUp(process, work, home, f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{port}", out,
                  marker)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S + 60
        while "Ctrl-C" not in made.output():
            assert process.poll() is None and time.monotonic() < deadline, \
                f"ringward up --pool did not come up (rc={process.poll()}): {made.output()[-3000:]} {made.logs()}"
            time.sleep(1)
        yield made
    finally:
        if process.poll() is None:
            cl.kill_tree(process.pid)
            process.wait(timeout=30)
        for pid in cl.leftovers(marker):
            cl.kill_tree(pid)


@pytest.mark.slow
@pytest.mark.prefect
def test_every_deployment_is_registered_in_the_pool_with_crash_recovery(pool_up: PoolUp) -> None:
    with PrefectAdmin(pool_up.prefect_api) as client:
        pool = client.work_pool(POOL)
        registered = {d["name"]: d for d in client.deployments()}
        ours = [a for a in client.automations() if automations.TAG in a.get("tags", [])]
    assert pool is not None and pool["type"] == "process"
    assert set(registered) == {d.name for d in CATALOG}
    assert {d["work_pool_name"] for d in registered.values()} == {POOL}
    assert sorted(a["name"] for a in ours) == sorted(
        [automations.UNRESPONSIVE, automations.STALLED, automations.RERUN, automations.RERUN_NEVER_STARTED])
    for automation in ours:  # scoped to the pooled deployments
        related = automation["trigger"]["match_related"]["prefect.resource.id"]
        assert {r.removeprefix("prefect.deployment.") for r in related} == {d["id"] for d in registered.values()}
    banner = pool_up.output()
    assert f"deployments   {len(CATALOG)} in work pool {POOL}, run by the local worker" in banner
    assert f"more hosts    PREFECT_API_URL={pool_up.prefect_api} ringward worker --pool {POOL}" in banner
    assert "warning" not in banner
    assert (pool_up.home / "logs" / "deploy.log").is_file()


@pytest.mark.slow
@pytest.mark.prefect
def test_a_local_worker_runs_in_place_of_the_runner(pool_up: PoolUp) -> None:
    state = pool_up.state()
    assert state["mode"] == "pool" and state["pool"] == POOL and "runner_health_url" not in state
    assert set(state["pids"]) == {"prefect-server", "ringward-api", "worker"}
    assert worker_health(pool_up.prefect_api, POOL, state["worker_name"]) is None  # online in the pool
    worker = state["pids"]["worker"]
    assert f"worker --pool {POOL} --name {state['worker_name']}" in _cmdline(worker)
    environ = cl.environ_of(worker)
    assert environ["RINGWARD_HOME"] == str(pool_up.home) and environ["PREFECT_API_URL"] == pool_up.prefect_api
    assert environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    family = [pool_up.process.pid, *descendants(pool_up.process.pid)]
    assert not [pid for pid in family if "deployments.serve" in _cmdline(pid)]  # no runner
    assert f"Ringward worker for work pool {POOL}" in (pool_up.home / "logs" / "worker.log").read_text()


@pytest.mark.slow
@pytest.mark.prefect
def test_a_run_started_through_the_rest_api_completes_on_the_local_worker(pool_up: PoolUp) -> None:
    name = pool_up.state()["worker_name"]
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with PrefectRest(pool_up.prefect_api) as client:
        (run_id,) = cl.create_burst(client, pool_up.work, 1, "pool")
        final = cl.wait_terminal(client, [run_id], timeout_s=RUN_TIMEOUT_S)[run_id]
        assert final["state"]["type"] == "COMPLETED", (final["state"], pool_up.logs())
        deadline = time.monotonic() + 60  # the worker's events reach the server asynchronously
        while run_id not in (taken := cl.submitted_by_worker(client, since)).get(name, set()):
            assert time.monotonic() < deadline, taken
            time.sleep(1)
    assert set(taken) == {name}
    # the run wrote to the home's store and evidence root (the worker made them absolute)
    assert list((pool_up.home / "evidence").rglob("checksums.txt"))
    assert not (pool_up.work / ".ringward").exists()


@pytest.mark.slow
@pytest.mark.prefect
def test_status_reports_the_pool_mode_and_the_workers_health(pool_up: PoolUp) -> None:
    env = {"RINGWARD_HOME": str(pool_up.home)}
    done = cl.run_ringward("status", "--json", cwd=pool_up.work, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["up_pid"] == pool_up.process.pid and report["mode"] == "pool" and report["pool"] == POOL
    assert set(report["parts"]) == {"prefect-server", "ringward-api", "worker"}
    assert all(part["healthy"] for part in report["parts"].values()), report["parts"]
    assert {d["name"] for d in report["deployments"]} == {d.name for d in CATALOG}
    text = cl.run_ringward("status", cwd=pool_up.work, **env)
    assert text.returncode == 0
    assert f"(ringward up pid {pool_up.process.pid}; work pool {POOL})" in text.stdout
    assert "  worker          healthy  work pool ringward-test, worker ringward-up-" in text.stdout


@pytest.mark.slow
@pytest.mark.prefect
def test_a_runner_or_another_pool_on_this_server_is_refused(pool_up: PoolUp) -> None:
    api = pool_up.prefect_api
    runner = cl.run_ringward("up", "--home", str(pool_up.work / "runner-home"), "--port", str(free_port()),
                       cwd=pool_up.work, PREFECT_API_URL=api)
    assert runner.returncode == 2, runner.stderr
    line = cl.one_line(runner.stderr)
    assert line.startswith(f"error: Prefect server {api}: {len(CATALOG)} of Ringward's deployments are in work pool "
                           f"{POOL} on this Prefect server"), line
    assert f"run `ringward up --pool {POOL}` instead" in line
    elsewhere = cl.run_ringward("up", "--home", str(pool_up.work / "other-home"), "--port", str(free_port()),
                          "--pool", "elsewhere", cwd=pool_up.work, PREFECT_API_URL=api)
    assert elsewhere.returncode == 2, elsewhere.stderr
    line = cl.one_line(elsewhere.stderr)
    assert f"--pool elsewhere: {len(CATALOG)} of Ringward's deployments are in work pool {POOL}" in line
    assert f"`ringward up --pool {POOL}`" in line
    with PrefectAdmin(api) as client:
        assert client.work_pool("elsewhere") is None  # refused before anything was made
        assert {d["work_pool_name"] for d in client.deployments()} == {POOL}
    assert not (pool_up.work / "runner-home" / "up.json").exists()


@pytest.mark.slow
@pytest.mark.prefect
def test_up_pool_is_refused_while_a_runner_serves_on_this_server(pool_up: PoolUp) -> None:
    """A runner elsewhere serves a deployment named like one of Ringward's (no work pool) and polls it, as
    Prefect's runner does (`POST /deployments/get_scheduled_flow_runs`, which records `last_polled`)."""
    with PrefectAdmin(pool_up.prefect_api) as client:
        flow = client._post("/flows/", {"name": "served-by-another-runner"})
        served = client._post("/deployments/", {"name": "verify-package", "flow_id": flow["id"]})
        try:
            assert served["work_pool_name"] is None
            deadline = time.monotonic() + 60
            while not client._get(f"/deployments/{served['id']}").get("last_polled"):
                assert time.monotonic() < deadline, "the server never recorded the runner's poll"
                client._post("/deployments/get_scheduled_flow_runs", {"deployment_ids": [served["id"]]})
                time.sleep(0.5)
            done = cl.run_ringward("up", "--home", str(pool_up.work / "late-home"), "--port", str(free_port()),
                             "--pool", POOL, cwd=pool_up.work, PREFECT_API_URL=pool_up.prefect_api)
        finally:
            client._send("DELETE", f"/deployments/{served['id']}")
            client._send("DELETE", f"/flows/{flow['id']}")
    assert done.returncode == 2, done.stderr
    line = cl.one_line(done.stderr)
    assert f"--pool {POOL}: 1 of Ringward's deployments are served by a runner on this Prefect server" in line
    assert "stop that runner first" in line


@pytest.mark.slow
@pytest.mark.prefect
def test_sigterm_stops_the_worker_first_and_leaves_no_process(pool_up: PoolUp) -> None:
    state = pool_up.state()
    family = [pool_up.process.pid, *descendants(pool_up.process.pid)]
    assert set(state["pids"].values()) <= set(family)
    pool_up.process.send_signal(signal.SIGTERM)
    assert pool_up.process.wait(timeout=180) == 0, pool_up.output()[-3000:]
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [pid for pid in family if alive(pid)] == []
    assert cl.leftovers(pool_up.marker) == []  # flow-run processes included (they carry the marker too)
    assert not (pool_up.home / "up.json").exists()
    assert pool_up.output().rstrip().endswith("stopped")
    # the worker was stopped while the server still ran: its own clean stop (no run was left to wait for)
    assert "stopped: 0 flow-run processes ended on their own, 0 stopped" in \
        (pool_up.home / "logs" / "worker.log").read_text()
