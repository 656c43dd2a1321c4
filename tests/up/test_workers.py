"""Beyond one machine, with Prefect's own machinery (issue 12): `ringward deploy` registers the catalog into a
`process` work pool with the crash-recovery automations, two `ringward worker` processes take a burst of 50
flow runs from a Prefect server on PostgreSQL (the Ringward store on PostgreSQL too), one worker host dies
mid-burst (SIGKILL of the worker and its flow-run processes), and Prefect marks its runs Crashed and runs
the same flow runs again on the live worker: every run ends Completed once, one ingestion record per run,
the evidence chain verifies. Also: the worker's clean stop on SIGTERM (running runs finish), the one-line
refusals, `ringward up --prefect-database-url` running its Prefect server on PostgreSQL.

Budget on a 2-core box: ~3-4 minutes for the burst test (a Prefect server start on a fresh PostgreSQL
database, `prefect deploy --all`, ~3 s of CPU per flow-run process, and a 45 s crash-detection window:
heartbeats come every 30 s at best).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from deployments import automations, render
from deployments.pool import pool_prefect_yaml
from ringward.core.inventory.observations import OBSERVATIONS_FILE
from ringward.operations.common import scale_out
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.common.supervisor import alive, descendants, free_port
from tests.up import cluster as cl

BURST = 50
LIMIT = 4
UNRESPONSIVE_AFTER_S = 45
MAX_RERUNS = 2
DEAD_API = "http://127.0.0.1:1/api"


# --- refusals, without any server ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["worker"], ["deploy"]])
def test_worker_and_deploy_refuse_without_a_prefect_server(tmp_path: Path, command: list[str]) -> None:
    done = cl.run_ringward(*command, cwd=tmp_path, RINGWARD_HOME=str(tmp_path / "home"))
    assert done.returncode == 2
    assert "PREFECT_API_URL is not set" in cl.one_line(done.stderr)
    done = cl.run_ringward(*command, cwd=tmp_path, RINGWARD_HOME=str(tmp_path / "home"), PREFECT_API_URL=DEAD_API)
    assert done.returncode == 2
    assert f"PREFECT_API_URL={DEAD_API}: no Prefect server answers" in cl.one_line(done.stderr)
    assert not (tmp_path / "home").exists()  # nothing written before the refusal


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["worker", "--pool", "bad/pool"], {}, "--pool 'bad/pool': expected"),
    (["deploy", "--pool", ""], {}, "--pool '': expected"),
    (["worker", "--limit", "0"], {}, "--limit"),
    (["worker"], {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "10"}, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY='10': expected"),
    (["deploy", "--unresponsive-after", "20"], {}, "--unresponsive-after 20: expected at least 40"),
    (["deploy", "--max-reruns", "11"], {}, "--max-reruns 11: expected 0 to 10"),
])
def test_bad_options_are_refused_in_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                             expected: str) -> None:
    # an unreachable API: the option is refused before anything is asked of a server
    done = cl.run_ringward(*args, cwd=tmp_path, PREFECT_API_URL=DEAD_API, **env)
    assert done.returncode == 2, done.stderr
    assert expected in cl.one_line(done.stderr)


@pytest.mark.parametrize(("url", "expected"), [
    ("mysql://root@127.0.0.1/prefect", "expected a PostgreSQL URL (postgresql+asyncpg://...), found scheme 'mysql'"),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432", "expected a host and a database name"),
    ("postgresql://postgres:s3cret@127.0.0.1:1/prefect", "cannot connect"),
    ("not a url", "unparseable URL"),
])
def test_up_refuses_an_unusable_prefect_database(tmp_path: Path, url: str, expected: str) -> None:
    done = cl.run_ringward("up", "--home", str(tmp_path / "home"), "--port", str(free_port()), "--prefect-port",
                     str(free_port()), "--prefect-database-url", url, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = cl.one_line(done.stderr)
    assert expected in line and "s3cret" not in line


def test_up_refuses_a_prefect_database_for_an_external_server(tmp_path: Path) -> None:
    done = cl.run_ringward("up", "--home", str(tmp_path / "home"), "--prefect-database-url",
                     "postgresql+asyncpg://postgres@127.0.0.1/prefect", cwd=tmp_path, PREFECT_API_URL=DEAD_API)
    assert done.returncode == 2
    assert "names a running Prefect server" in cl.one_line(done.stderr)


# --- pure pieces ----------------------------------------------------------------------------------------------------


def test_prefect_database_urls_are_normalised_for_asyncpg() -> None:
    for given in ("postgresql://u:p@db:5433/prefect", "postgres://u:p@db:5433/prefect",
                  "postgresql+psycopg://u:p@db:5433/prefect", "postgresql+asyncpg://u:p@db:5433/prefect"):
        assert scale_out.prefect_database_url(given) == "postgresql+asyncpg://u:p@db:5433/prefect"


def test_the_pool_deployments_are_the_rendered_prefect_yaml() -> None:
    assert scale_out.DEFAULT_POOL == render.WORK_POOL
    assert pool_prefect_yaml(render.WORK_POOL) == render.render()  # what `python -m deployments.render` writes
    default = yaml.safe_load(pool_prefect_yaml(render.WORK_POOL))
    other = yaml.safe_load(pool_prefect_yaml("edge-pool"))
    assert [d["name"] for d in other["deployments"]] == [d["name"] for d in default["deployments"]]
    for mine, theirs in zip(other["deployments"], default["deployments"], strict=True):
        assert mine["work_pool"] == {"name": "edge-pool", "work_queue_name": "default"}
        assert {k: v for k, v in mine.items() if k != "work_pool"} == \
            {k: v for k, v in theirs.items() if k != "work_pool"}
    assert other["pull"] == []


def test_a_worker_hands_absolute_settings_heartbeats_and_no_telemetry_to_its_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGWARD_HOME", "relative-home")
    monkeypatch.setenv("RINGWARD_DATABASE_URL", "sqlite:///state/ringward.db")
    monkeypatch.delenv("RINGWARD_EVIDENCE_ROOT", raising=False)
    env = scale_out.worker_environment({"PATH": "/bin", "DO_NOT_TRACK": "0"}, "http://prefect:4200/api")
    assert env["RINGWARD_HOME"] == str(tmp_path / "relative-home")
    assert env["RINGWARD_DATABASE_URL"] == f"sqlite:///{tmp_path / 'state' / 'ringward.db'}"
    assert env["RINGWARD_EVIDENCE_ROOT"] == str(tmp_path / "relative-home" / "evidence")
    assert env["PREFECT_API_URL"] == "http://prefect:4200/api"
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert env["DO_NOT_TRACK"] == "1" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert scale_out.worker_environment({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}, "x")[
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "60"
    argv = scale_out.worker_argv("ringward-local", limit=3, name="edge-1", python="py")
    assert argv == ["py", "-m", "prefect", "worker", "start", "--pool", "ringward-local", "--type", "process",
                    "--install-policy", "never", "--limit", "3", "--name", "edge-1"]


def test_crash_recovery_is_scoped_to_ringward_deployments_and_bounded() -> None:
    specs = {s["name"]: s for s in automations.crash_recovery(["d2", "d1"], unresponsive_after_s=60, max_reruns=3)}
    assert set(specs) == {automations.UNRESPONSIVE, automations.STALLED, automations.RERUN,
                          automations.RERUN_NEVER_STARTED}
    for spec in specs.values():
        assert spec["tags"] == [automations.TAG]
        assert spec["trigger"]["match_related"] == {"prefect.resource.role": "deployment", "prefect.resource.id": [
            "prefect.deployment.d1", "prefect.deployment.d2"]}
        assert spec["trigger"]["for_each"] == ["prefect.resource.id"]
    unresponsive = specs[automations.UNRESPONSIVE]
    assert unresponsive["trigger"]["posture"] == "Proactive" and unresponsive["trigger"]["within"] == 60
    assert "prefect.flow-run.heartbeat" in unresponsive["trigger"]["after"]
    assert unresponsive["actions"][0]["state"] == "CRASHED"
    assert set(specs[automations.STALLED]["trigger"]["after"]) == {"prefect.flow-run.Pending",
                                                                    "prefect.flow-run.Submitting"}
    rerun = specs[automations.RERUN]
    assert rerun["trigger"]["match"]["prefect.run-count"] == ["1", "2", "3"]  # a run crashing a 4th time stays Crashed
    assert rerun["actions"][0] == {"type": "change-flow-run-state", "state": "SCHEDULED", "name": "AwaitingRetry",
                                        "message": automations.rerun_message(3), "force": False}
    # a run the worker itself reported Crashed before it started (a broken host) is not re-run: only the
    # stalled-run crash of this module, by its exact message
    never = specs[automations.RERUN_NEVER_STARTED]["trigger"]["match"]
    assert never["prefect.run-count"] == "0" and never["prefect.state-message"] == automations.stalled_message(60)
    detect_only = automations.crash_recovery(["d1"], max_reruns=0)
    assert [s["name"] for s in detect_only] == [automations.UNRESPONSIVE, automations.STALLED]
    with pytest.raises(Exception, match="no Ringward deployment"):
        automations.crash_recovery([])


_FAKE_WORKER = """
import signal, subprocess, sys, time
child = ("import signal, time\\n"
         + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if sys.argv[2] == "stubborn" else "")
         + f"time.sleep({sys.argv[1]})\\n")
subprocess.Popen([sys.executable, "-c", child], start_new_session=True)  # a flow run: a session of its own
time.sleep(600)
"""


@pytest.mark.parametrize(("run_s", "kind", "grace", "expected"), [
    (1.5, "plain", 30.0, (1, 0)),      # the running flow run finishes, then the worker is gone
    (60, "plain", 1.0, (0, 1)),        # still running after the grace period: stopped
    (60, "stubborn", 1.0, (0, 1)),     # ignores SIGTERM: killed
])
def test_stopping_a_worker_lets_its_running_flow_runs_finish(tmp_path: Path, run_s: float, kind: str, grace: float,
                                                             expected: tuple[int, int]) -> None:
    part = scale_out.ForegroundPart("fake-worker", [sys.executable, "-c", _FAKE_WORKER, str(run_s), kind],
                                    cl.clean_env(), tmp_path / "unused.log", lambda: None)
    part.start()
    assert part.process is not None
    deadline = time.monotonic() + 60
    while not descendants(part.process.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    family = [part.process.pid, *descendants(part.process.pid)]
    time.sleep(0.3)  # the child has installed its signal handler
    started = time.monotonic()
    assert scale_out.drain(part, grace, term_grace_s=1.0) == expected
    assert time.monotonic() - started < grace + 10
    assert [pid for pid in family if alive(pid)] == []


# --- the multi-host path, for real ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, databases: cl.Databases) -> Iterator[cl.Cluster]:
    """A Prefect server on a fresh PostgreSQL database, the store on another, `ringward deploy` done."""
    work = tmp_path_factory.mktemp("cluster")
    with cl.cluster(work, databases) as made:
        done = made.ringward("deploy", "--pool", made.pool, "--unresponsive-after", str(UNRESPONSIVE_AFTER_S),
                             "--max-reruns", str(MAX_RERUNS))
        assert done.returncode == 0, done.stderr + done.stdout
        yield made
        # no process of the cluster survives its stop (flow-run processes included)
        made.stop_all()
        assert cl.leftovers(made.marker) == []


@pytest.mark.slow
@pytest.mark.postgres
def test_deploy_registers_the_catalog_and_crash_recovery_idempotently(deployed: cl.Cluster) -> None:
    from deployments.catalog import CATALOG

    with scale_out.PrefectAdmin(deployed.api_url) as client:
        pool = client.work_pool(deployed.pool)
        registered = {d["name"]: d for d in client.deployments()}
        ours = {a["name"]: a for a in client.automations() if automations.TAG in a.get("tags", [])}
    assert pool is not None and pool["type"] == "process"
    assert set(registered) == {d.name for d in CATALOG}
    assert {d["work_pool_name"] for d in registered.values()} == {deployed.pool}
    assert all(d["pull_steps"] == [] for d in registered.values())
    assert set(ours) == {automations.UNRESPONSIVE, automations.STALLED, automations.RERUN,
                         automations.RERUN_NEVER_STARTED}
    # by name: applying again changes nothing, a stale automation of ours is removed, and one the
    # operator switched off stays off
    with scale_out.PrefectAdmin(deployed.api_url) as client:
        stale = automations.crash_recovery([registered["verify-package"]["id"]])[0]
        client.create_automation({**stale, "name": "ringward: an automation since renamed"})
        rerun = next(s for s in automations.crash_recovery([d["id"] for d in registered.values()],
                                                           unresponsive_after_s=UNRESPONSIVE_AFTER_S,
                                                           max_reruns=MAX_RERUNS) if s["name"] == automations.RERUN)
        client.replace_automation(ours[automations.RERUN]["id"], {**rerun, "enabled": False})
    ids, outcome = automations.apply_crash_recovery(deployed.api_url, [d.name for d in CATALOG], pool=deployed.pool,
                                                    unresponsive_after_s=UNRESPONSIVE_AFTER_S,
                                                    max_reruns=MAX_RERUNS)
    assert set(ids) == set(registered)
    # a pool of another type is not Ringward's: refused in one line
    with scale_out.PrefectAdmin(deployed.api_url) as client:
        client._post("/work_pools/", {"name": "not-process", "type": "docker", "base_job_template": {}})
    for command in (["worker"], ["deploy"]):
        done = deployed.ringward(*command, "--pool", "not-process", timeout=120)
        assert done.returncode == 2, done.stderr
        assert "--pool not-process: the work pool is of type 'docker', expected 'process'" in cl.one_line(done.stderr)
    assert outcome == {automations.UNRESPONSIVE: "unchanged", automations.STALLED: "unchanged",
                       automations.RERUN: "unchanged", automations.RERUN_NEVER_STARTED: "unchanged",
                       "ringward: an automation since renamed": "deleted"}
    with scale_out.PrefectAdmin(deployed.api_url) as client:
        after = {a["name"]: a for a in client.automations() if automations.TAG in a.get("tags", [])}
        client.replace_automation(after[automations.RERUN]["id"], rerun)  # back on for the tests that follow
    assert after[automations.RERUN]["enabled"] is False and after[automations.STALLED]["enabled"] is True


def _kill_a_busy_worker(made: cl.Cluster, name: str, timeout_s: float = 180.0) -> set[str]:
    """SIGKILL worker ``name`` -- its `ringward worker` process, the Prefect worker and every flow-run process
    (a dead host) -- once it runs flow runs, preferably one that is already Running (heartbeats started);
    returns the flow runs it was executing."""
    proc = made.workers[name]
    deadline = time.monotonic() + timeout_s
    first_seen: float | None = None
    with PrefectRest(made.api_url) as client:
        while time.monotonic() < deadline:
            in_progress = cl.flow_runs_in(proc.pid)
            if in_progress:
                first_seen = first_seen or time.monotonic()
                states = {r["id"]: r["state"]["type"] for r in cl.runs(client, sorted(in_progress)).values()}
                if "RUNNING" in states.values() or time.monotonic() - first_seen > 30:
                    cl.kill_tree(proc.pid)
                    proc.popen.wait(timeout=30)
                    return in_progress
            time.sleep(0.2)
    raise AssertionError(f"{name} never ran a flow run: {proc.log()[-2000:]}")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_burst_of_50_runs_survives_a_dead_worker_host(deployed: cl.Cluster) -> None:
    made = deployed
    with scale_out.PrefectAdmin(made.api_url) as client:
        # only the burst runs: the catalog's own event triggers stay quiet (the ingestions emit events)
        for automation in client.automations():
            if automations.TAG not in automation.get("tags", []):
                client.set_automation_enabled(automation["id"], False)
    made.start_worker("worker-a", limit=LIMIT)
    made.start_worker("worker-b", limit=LIMIT)
    made.wait_workers_online(["worker-a", "worker-b"])
    since = datetime.now(UTC).isoformat()
    started = time.monotonic()
    with PrefectRest(made.api_url) as client:
        ids = cl.create_burst(client, made.work, BURST, "burst")
        in_progress = _kill_a_busy_worker(made, "worker-a")
        killed_at = time.monotonic() - started
        time.sleep(1)  # a state change the dead host sent just before it died is recorded by now
        killed = {i for i, r in cl.runs(client, sorted(in_progress)).items() if r["state"]["type"] not in cl.TERMINAL}
        final = cl.wait_terminal(client, ids, timeout_s=600)
        elapsed = time.monotonic() - started
        histories = {run_id: cl.state_history(client, run_id) for run_id in ids}
        taken = cl.submitted_by_worker(client, since)
        deployment = client.deployment_by_name(*cl.DEPLOYMENT)
        all_runs = client._post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}},
                                                      "limit": 200})
    print(f"\nburst: {BURST} runs in {elapsed:.0f}s, worker-a killed at {killed_at:.0f}s with {len(killed)} runs")

    # every run completed, exactly once, and no other run was made (re-runs are the same flow runs)
    assert {r["state"]["type"] for r in final.values()} == {"COMPLETED"}, \
        {i: (r["state"]["name"], r["state"]["message"]) for i, r in final.items() if r["state"]["type"] != "COMPLETED"}
    assert {r["id"] for r in all_runs} == set(ids)
    for run_id, history in histories.items():
        assert [s["type"] for s in history].count("COMPLETED") == 1, (run_id, [s["name"] for s in history])
    # the dead host's runs were marked Crashed by the automations and run again, on the live worker
    crashed = {run_id for run_id, history in histories.items() if any(s["type"] == "CRASHED" for s in history)}
    assert crashed and killed <= crashed, (killed, crashed)
    for run_id in crashed:
        names = [s["name"] for s in histories[run_id]]
        assert names[-1] == "Completed" and "AwaitingRetry" in names[names.index("Crashed"):], names
        crash = next(s for s in histories[run_id] if s["type"] == "CRASHED")
        assert crash["message"].startswith("Ringward crash detection"), crash
        assert run_id in taken.get("worker-b", set())
        assert final[run_id]["run_count"] <= 1 + MAX_RERUNS
    # both workers took runs
    assert taken.get("worker-a") and taken.get("worker-b"), {k: len(v) for k, v in taken.items()}
    assert set().union(*taken.values()) == set(ids)

    # side effects single: one ingestion record per run, whatever ran twice
    import psycopg

    with psycopg.connect(cl._plain(made.store_db)) as conn:
        rows = conn.execute("select import_key, flow_run_id, status from evidence_record where kind = %s",
                            ("endpoint-inventory-ingestion",)).fetchall()
    assert len(rows) == BURST
    assert len({key for key, _, _ in rows}) == BURST and all(key.startswith("inventory:") for key, _, _ in rows)
    assert {run for _, run, _ in rows} == set(ids)
    assert {status for _, _, status in rows} == {"ingested"}
    for index in range(BURST):  # each run's output, written once (a re-run finds it identical)
        assert (made.work / "out" / "burst" / f"{index:04d}" / OBSERVATIONS_FILE).is_file()
    # the evidence chain (every worker appended to it) verifies, bundles included
    verify = made.ringward("evidence", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # a killed attempt may have left a bundle directory it never recorded (harmless: nothing references it)
    evidence = made.work / "evidence"
    bundles = {str(p.parent.relative_to(evidence)) for p in evidence.rglob("checksums.txt")}
    with psycopg.connect(cl._plain(made.store_db)) as conn:
        recorded = {row[0] for row in conn.execute("select bundle_dir from evidence_record "
                                                   "where bundle_dir is not null")}
    assert recorded <= bundles
    assert len(bundles - recorded) <= len(crashed), sorted(bundles - recorded)

    # a worker stops cleanly on SIGTERM: it takes no new run, the flow run it is running finishes (a run of a
    # larger export: a few seconds of work), nothing is left behind
    survivor = made.workers["worker-b"]
    with PrefectRest(made.api_url) as client:
        (last,) = cl.create_burst(client, made.work, 1, "drain", endpoints=60_000)
        deadline = time.monotonic() + 180
        while (name := client.flow_run(last)["name"]) and f"Beginning flow run '{name}'" not in survivor.log():
            assert time.monotonic() < deadline, survivor.log()[-2000:]
            time.sleep(0.1)
        family = [survivor.pid, *descendants(survivor.pid)]
        assert last in cl.flow_runs_in(survivor.pid)
        survivor.popen.send_signal(signal.SIGTERM)
        assert survivor.popen.wait(timeout=120) == 0, survivor.log()[-3000:]
        assert client.flow_run(last)["state"]["type"] == "COMPLETED", survivor.log()[-3000:]
    assert [pid for pid in family if alive(pid)] == []
    assert "stopped: 1 flow-run processes ended on their own, 0 stopped" in survivor.log()


@pytest.mark.slow
@pytest.mark.postgres
def test_up_runs_its_prefect_server_on_postgresql(tmp_path: Path, databases: cl.Databases) -> None:
    """`ringward up --prefect-database-url`: the embedded server on PostgreSQL (the URL only in its
    environment), its runner sending heartbeats and the crash-recovery automations for what it serves."""
    from deployments.catalog import CATALOG

    url = databases.create("rw_up_prefect", driver="postgresql")  # a plain postgresql:// URL is accepted
    home, prefect_port = tmp_path / "home", free_port()
    marker = f"up-{os.getpid()}-{time.monotonic_ns()}"
    banner = tmp_path / "up.out"
    with banner.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ringward.cli.main", "up", "--home", str(home), "--port", str(free_port()),
             "--prefect-port", str(prefect_port), "--prefect-database-url", url],
            env=cl.clean_env(**{cl.MARKER: marker}), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 420
        while "Ctrl-C" not in banner.read_text(errors="replace"):
            assert process.poll() is None, banner.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, banner.read_text(errors="replace")[-3000:]
            time.sleep(1)
        assert "warning" not in banner.read_text(errors="replace")  # the automations were applied
        state = json.loads((home / "up.json").read_text())
        server = [pid for pid in [state["pids"]["prefect-server"], *descendants(state["pids"]["prefect-server"])]
                  if cl.environ_of(pid).get("PREFECT_SERVER_DATABASE_CONNECTION_URL")]
        assert server, "no Prefect server process below `ringward up`"
        expected = url.replace("postgresql://", "postgresql+asyncpg://")
        assert {cl.environ_of(pid)["PREFECT_SERVER_DATABASE_CONNECTION_URL"] for pid in server} == {expected}
        # only the server gets the database URL (it may carry a password); the runner sends heartbeats
        for part in ("ringward-api", "runner"):
            assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in cl.environ_of(state["pids"][part]), part
        assert cl.environ_of(state["pids"]["runner"])["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
        import psycopg

        with psycopg.connect(cl._plain(url)) as conn:
            tables = {row[0] for row in conn.execute("select table_name from information_schema.tables")}
        assert {"flow_run", "deployment", "automation"} <= tables  # Prefect's schema is in PostgreSQL
        assert not (home / "prefect" / "prefect.db").exists()
        with PrefectRest(state["prefect_api_url"]) as client:
            served = {d["id"] for d in client.deployments() if d["name"] in {c.name for c in CATALOG}}
            ours = [a for a in client.automations() if automations.TAG in a.get("tags", [])]
        assert len(served) == len(CATALOG)
        assert sorted(a["name"] for a in ours) == sorted(
            [automations.UNRESPONSIVE, automations.STALLED, automations.RERUN, automations.RERUN_NEVER_STARTED])
        for automation in ours:
            related = automation["trigger"]["match_related"]
            assert {r.removeprefix("prefect.deployment.") for r in related["prefect.resource.id"]} == served
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=180) == 0, banner.read_text(errors="replace")[-3000:]
    finally:
        if process.poll() is None:
            cl.kill_tree(process.pid)
            process.wait(timeout=30)
        for pid in cl.leftovers(marker):
            cl.kill_tree(pid)
    assert cl.leftovers(marker) == []
