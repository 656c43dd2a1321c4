"""The partitioned reconciliation on Prefect process-pool workers (issue 12): `ringward deploy` registers
`inventory-reconcile-partitioned`, a `ringward worker` takes its run, and the run's Dask cluster is the one
the worker host's `RINGWARD_DASK_SCHEDULER` names -- a `LocalCluster` per run when unset, a shared
`distributed` scheduler (with a Dask worker of its own) when set. Both runs end Completed with the
`dask-partitions` engine and the single-process engine's result; the shared scheduler saw exactly the
second run's tasks.

Budget on a 2-core box: one Prefect server on a fresh PostgreSQL database, `prefect deploy --all`, two
worker starts and two flow runs (the first starting a two-process LocalCluster).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.inventory.reconcile import KIND_RECONCILIATION, RECONCILIATION_FILE
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.common.supervisor import free_port
from tests.inventory.conftest import RUNTIME, at, iso, records
from tests.up import cluster as cl

DEPLOYMENT = ("inventory-reconcile-partitioned", "inventory-reconcile-partitioned")
PARTITIONS = 4
ENDPOINTS = 400
#: the tasks the flow submits to its Dask cluster (``tasks/inventory_steps.py``): their Dask keys are
#: ``<function name>-<token>``
DASK_TASKS = ("reconcile_partition", "observation_digests")


# --- the setting, without any server ------------------------------------------------------------------------------


def test_the_scheduler_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward import settings

    assert settings.dask_scheduler({}) is None
    assert settings.dask_scheduler({settings.DASK_SCHEDULER_ENV: "  "}) is None
    for good in ("tcp://10.0.0.5:8786", "tcp://dask-sched.example.com:8786", "tcp://[::1]:8786"):
        assert settings.dask_scheduler({settings.DASK_SCHEDULER_ENV: f" {good} "}) == good
    for bad in ("10.0.0.5:8786", "tls://10.0.0.5:8786", "tcp://10.0.0.5", "tcp://10.0.0.5:0", "tcp://h:70000",
                "tcp://h:8786/x", "inproc://h:1"):
        with pytest.raises(Exception, match=r"RINGWARD_DASK_SCHEDULER=.*expected tcp://HOST:PORT"):
            settings.dask_scheduler({settings.DASK_SCHEDULER_ENV: bad})


def test_a_worker_refuses_a_malformed_scheduler_in_one_line(tmp_path: Path) -> None:
    # an unreachable API: the setting is refused before anything is asked of a server
    done = subprocess.run([sys.executable, "-m", "ringward.cli.main", "worker"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False,
                          env=cl.clean_env(PREFECT_API_URL="http://127.0.0.1:1/api",
                                           RINGWARD_HOME=str(tmp_path / "home"),
                                           RINGWARD_DASK_SCHEDULER="dask-host:8786"))
    assert done.returncode == 2, done.stderr
    assert "RINGWARD_DASK_SCHEDULER='dask-host:8786': expected tcp://HOST:PORT" in cl.one_line(done.stderr)
    assert not (tmp_path / "home").exists()


# --- on workers, for real -------------------------------------------------------------------------------------------


class World:
    """A signed package, its trust root and an aligned fleet's observations, ingested into the cluster's store."""

    def __init__(self, made: cl.Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
        from ringward.operations.inventory.ingest import ingest_inventory
        from ringward.store import open_store
        from tests.promotion.conftest import PromotionKeys
        from tests.release.simulator import ReleaseSimulator

        work = made.work / "world"
        self.keys = PromotionKeys(work / "keys")
        self.package = ReleaseSimulator(work / "sim", key=self.keys.release).package("1.2.3")
        manifest = json.loads((self.package / f"{RUNTIME}.endpoint-deployment.json").read_text())
        targets = [(t["id"], t["binary_sha256"]) for t in manifest["deployment_targets"]]
        fleet = [{"endpoint_id": f"host-{index:04d}", "deployment_target": targets[index % len(targets)][0],
                  "installed_version": "1.2.3", "binary_sha256": targets[index % len(targets)][1],
                  "last_seen_at": iso(at(0.5))} for index in range(ENDPOINTS)]
        source = work / "fleet.json"
        source.write_text(json.dumps({"endpoints": fleet}))
        monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(made.work / "evidence"))
        self.store = open_store(made.store_db)
        ingested = ingest_inventory(self.store, source=source, provider="linux", now=at(1), actor="dask-test",
                                    software=(RUNTIME,), output=work / "ingested")
        self.observations = Path(ingested["observations"])

    def single_process(self) -> Any:
        """The columnar engine's reconciliation of the same observations, in this process."""
        from ringward.operations.inventory.engine import reconcile_file
        from ringward.operations.inventory.reconcile import desired_state
        from ringward.operations.promotion.channel_ops import load_verified_release
        from ringward.operations.trust.keys import load_trust_root

        release = load_verified_release(self.package, load_trust_root(self.keys.trust_root), now=at(2))
        desired, _ = desired_state(release)
        return reconcile_file(self.observations, desired, now=at(2), stale_after=timedelta(hours=24)).reconciliation


def _create_run(made: cl.Cluster, world: World, output: Path, key: str) -> str:
    with PrefectRest(made.api_url) as client:
        deployment = client.deployment_by_name(*DEPLOYMENT)
        run = client.create_flow_run(deployment["id"], {
            "package_dir": str(world.package), "observations": str(world.observations),
            "trust_root": str(world.keys.trust_root), "partitions": PARTITIONS, "now": iso(at(2)),
            "output": str(output), "actor": "dask-test"}, idempotency_key=key)
    return str(run["id"])


def _wait_state(made: cl.Cluster, run_id: str, types: set[str] | frozenset[str],
                timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with PrefectRest(made.api_url) as client:
        while (run := client.flow_run(run_id))["state"]["type"] not in types:
            assert time.monotonic() < deadline, f"flow run {run_id} still {run['state']['name']}"
            time.sleep(0.5)
    return run


def _check_run(world: World, final: dict[str, Any], output: Path, worker: cl.Proc) -> None:
    state = final["state"]
    assert state["type"] == "COMPLETED", (state["name"], state["message"], worker.log()[-4000:])
    report = json.loads((output / RECONCILIATION_FILE).read_bytes())
    assert report["engine"] == "dask-partitions"
    single = world.single_process()
    assert report["reconciliation_id"] == single.reconciliation_id
    assert report["drift_items"] == list(single.drift_items) == []
    assert report["summary"] == single.summary()
    assert report["summary"]["observed_endpoint_count"] == ENDPOINTS
    (record,) = [r for r in records(world.store, KIND_RECONCILIATION) if r.flow_run_id == final["id"]]
    assert record.payload["engine"] == "dask-partitions"


def _start_dask(made: cl.Cluster) -> tuple[str, list[cl.Proc]]:
    """A `distributed` scheduler and one Dask worker on loopback, as separate processes (the marker in their
    environment: the cluster's cleanup finds them)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = made.ringward_env()
    scheduler = cl.start("dask-scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                            "127.0.0.1", "--port", str(port), "--no-dashboard", "--no-show"],
                         env, made.logs, made.work)
    worker = cl.start("dask-worker", [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name",
                                      "shared-dask-worker", "--nthreads", "2", "--no-nanny", "--no-dashboard",
                                      "--local-directory", str(made.work / "dask-worker")],
                      env, made.logs, made.work)
    return address, [scheduler, worker]


def _scheduler_tasks(address: str) -> dict[str, int]:
    """Task function -> how many of its runs the scheduler at ``address`` has seen computed (its transition log:
    keys that reached memory)."""
    from distributed import Client

    def done_keys(dask_scheduler: Any) -> list[str]:
        return sorted({str(entry[0]) for entry in dask_scheduler.transition_log if entry[2] == "memory"})

    with Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
        keys = client.run_on_scheduler(done_keys)
    return {name: sum(1 for key in keys if key.startswith(f"{name}-")) for name in DASK_TASKS}


@pytest.mark.slow
@pytest.mark.postgres
def test_partitioned_reconciliation_runs_on_workers_on_a_local_or_a_shared_dask_cluster(
        tmp_path: Path, databases: cl.Databases, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client

    started = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - started - sum(phases.values())

    with cl.cluster(tmp_path, databases) as made:
        phase("prefect server")
        dask: list[cl.Proc] = []
        world: World | None = None
        deploy = cl.start("deploy", [sys.executable, "-m", "ringward.cli.main", "deploy", "--pool", made.pool],
                          made.ringward_env(), made.logs, made.work)
        try:
            # while `ringward deploy` registers the catalog: the shared Dask cluster, the world, the first worker
            address, dask = _start_dask(made)
            world = World(made, monkeypatch)
            local = made.start_worker("worker-local", limit=1)
            assert deploy.popen.wait(timeout=600) == 0, deploy.log()[-3000:]
            made.wait_workers_online(["worker-local"])
            with Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(1, timeout=60)
            phase("deploy, workers")

            # 1. RINGWARD_DASK_SCHEDULER unset: the run starts a LocalCluster of its own
            run = _create_run(made, world, made.work / "out-local", "dask-local")
            _wait_state(made, run, {"RUNNING"} | cl.TERMINAL)
            # the run is local's: the second worker host starts meanwhile, and takes nothing before the next run
            shared = made.start_worker("worker-shared", limit=1, RINGWARD_DASK_SCHEDULER=f" {address} ")
            final = _wait_state(made, run, cl.TERMINAL)
            _check_run(world, final, made.work / "out-local", local)
            assert "partitioned reconciliation runs start a LocalCluster each" in local.log()
            assert _scheduler_tasks(address) == dict.fromkeys(DASK_TASKS, 0)  # the shared scheduler saw nothing
            assert cl.stop(local) == 0, local.log()[-3000:]
            phase("local run")

            # 2. the worker host names the shared scheduler: its run's partitions are computed there
            made.wait_workers_online(["worker-shared"])
            run = _create_run(made, world, made.work / "out-shared", "dask-shared")
            final = _wait_state(made, run, cl.TERMINAL)
            _check_run(world, final, made.work / "out-shared", shared)
            assert f"partitioned reconciliation runs use the shared scheduler {address}\n" in shared.log()
            assert _scheduler_tasks(address) == {"reconcile_partition": PARTITIONS, "observation_digests": 1}
            assert (made.work / "out-local" / RECONCILIATION_FILE).read_bytes() == \
                (made.work / "out-shared" / RECONCILIATION_FILE).read_bytes()
            phase("shared run")
        finally:
            if world is not None:
                world.store.close()
            for proc in [deploy, *reversed(dask)]:
                cl.stop(proc, grace_s=10)
        made.stop_all()
        assert cl.leftovers(made.marker) == []
    phase("stop")
    print("\ndask on workers: " + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in phases.items()))
