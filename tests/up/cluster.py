"""Ringward's multi-host path on one machine: a Prefect server on PostgreSQL and `ringward worker`
processes on loopback, each a separate process group, plus the PostgreSQL databases they use (created
with random names, dropped at the end). Used by ``tests/up/test_workers.py`` and
``bench/flow_throughput.py``.

Every process started here carries :data:`MARKER` in its environment (flow-run processes inherit it
from their worker), so :func:`leftovers` finds anything that survived its stop: no orphans.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ringward.operations.common.prefect_rest import PrefectRest, api_health
from ringward.operations.common.supervisor import alive, descendants, free_port

ROOT = Path(__file__).resolve().parents[2]
MARKER = "RINGWARD_CLUSTER_TEST"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
DEPLOYMENT = ("inventory-ingest", "inventory-ingest")  # (flow name, deployment name)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect's or Ringward's settings (the session's test homes), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RINGWARD_"))}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


# --- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def start(name: str, argv: list[str], env: dict[str, str], logs: Path, cwd: Path) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    log = log_path.open("ab")
    popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    return Proc(name, popen, log_path, log)


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Signal ``pid``, its process group and every descendant (flow-run processes run in sessions of their own),
    descendants first; returns the pids signalled."""
    pids = [*descendants(pid), pid]
    for target in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    return pids


def stop(proc: Proc, grace_s: float = 30.0) -> int | None:
    """SIGTERM the process group, SIGKILL whatever is left after ``grace_s`` (strays included)."""
    strays = descendants(proc.pid)
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=grace_s)
    for pid in [*strays, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    kill_tree(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=10)
    if proc._log is not None:
        proc._log.close()
        proc._log = None
    return proc.popen.poll()


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def leftovers(marker: str) -> list[int]:
    """Live processes whose environment carries ``MARKER=marker``."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and environ_of(pid).get(MARKER) == marker and alive(pid)]


def flow_runs_in(pid: int) -> set[str]:
    """Flow run ids of the flow-run processes below ``pid`` (Prefect sets PREFECT__FLOW_RUN_ID in each)."""
    return {run for child in descendants(pid) if (run := environ_of(child).get("PREFECT__FLOW_RUN_ID"))}


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


def _plain(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Databases:
    """Fresh PostgreSQL databases on the server of ``base_url`` (random names), dropped by :meth:`drop_all`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.names: list[str] = []

    def create(self, prefix: str, driver: str = "postgresql+psycopg") -> str:
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"{prefix}_{secrets.token_hex(5)}"
        with psycopg.connect(_plain(self.base_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return make_url(self.base_url).set(drivername=driver, database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(_plain(self.base_url), autocommit=True) as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()


# --- the cluster ----------------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    work: Path
    marker: str
    prefect_db: str
    store_db: str
    pool: str = "ringward-local"
    api_url: str = ""
    server: Proc | None = None
    workers: dict[str, Proc] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def ringward_env(self, **extra: str) -> dict[str, str]:
        """What every Ringward process of the cluster sees: one store, one evidence root (shared by all hosts)."""
        return clean_env(**{MARKER: self.marker, "PREFECT_API_URL": self.api_url,
                            "PREFECT_HOME": str(self.work / "prefect-client"),
                            "RINGWARD_HOME": str(self.work / "home"), "RINGWARD_DATABASE_URL": self.store_db,
                            "RINGWARD_EVIDENCE_ROOT": str(self.work / "evidence"), "RINGWARD_ACTOR": "burst"}, **extra)

    def start_server(self, timeout_s: float = 300.0, **settings: str) -> None:
        """``prefect server start`` on the Prefect database (the scheduler and late-runs services off: they only
        add runs and state changes a burst does not need; triggers stay on for crash recovery)."""
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        env = clean_env(**{MARKER: self.marker, "PREFECT_HOME": str(self.work / "prefect-server"),
                           "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.prefect_db,
                           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
                           "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
                           "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT2S"}, **settings)
        self.server = start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                                               "127.0.0.1", "--port", str(port)], env, self.logs, self.work)
        deadline = time.monotonic() + timeout_s
        while api_health(self.api_url) is not None:
            if self.server.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Prefect server not healthy (rc={self.server.popen.poll()}): "
                                     f"{self.server.log()[-2000:]}")
            time.sleep(1)

    def ringward(self, *args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ringward.cli.main", *args], env=self.ringward_env(**extra),
                              cwd=self.work, capture_output=True, text=True, timeout=timeout, check=False)

    def start_worker(self, name: str, *, limit: int, **extra: str) -> Proc:
        env = self.ringward_env(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="2", **extra)
        worker = start(name, [sys.executable, "-m", "ringward.cli.main", "worker", "--pool", self.pool, "--limit",
                              str(limit), "--name", name, "--grace", "60"], env, self.logs, self.work)
        self.workers[name] = worker
        return worker

    def wait_workers_online(self, names: Iterable[str], timeout_s: float = 180.0) -> None:
        wanted = set(names)
        deadline = time.monotonic() + timeout_s
        with PrefectRest(self.api_url) as client:
            while True:
                rows = client._post(f"/work_pools/{self.pool}/workers/filter", {"limit": 50})
                online = {w["name"] for w in rows if w.get("status") == "ONLINE"}
                if wanted <= online:
                    return
                dead = [n for n in wanted if self.workers[n].popen.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise AssertionError(f"workers {sorted(wanted - online)} not online: "
                                         + " | ".join(self.workers[n].log()[-1500:] for n in wanted - online))
                time.sleep(1)

    def stop_all(self) -> None:
        for worker in self.workers.values():
            stop(worker)
        if self.server is not None:
            stop(self.server)


def payload(index: int, tag: str, endpoints: int = 1) -> dict[str, Any]:
    """A Linux-collector inventory export (one endpoint by default), distinct per run: one ingestion each."""
    return {"endpoints": [{"endpoint_id": f"{tag}-host-{index:04d}-{n}", "deployment_target":
                           "linux-systemd-amd64-workstation", "installed_version": "1.2.3",
                           "binary_sha256": f"{index * 1_000_000 + n:064x}", "last_seen_at": "2026-12-01T10:00:00Z"}
                          for n in range(endpoints)]}


def create_burst(client: PrefectRest, work: Path, count: int, tag: str, *, endpoints: int = 1) -> list[str]:
    """``count`` runs of inventory-ingest, each with its own payload, output and idempotency key."""
    deployment = client.deployment_by_name(*DEPLOYMENT)
    sources = work / "payloads" / tag
    sources.mkdir(parents=True, exist_ok=True)
    ids = []
    for index in range(count):
        source = sources / f"{index:04d}.json"
        source.write_text(json.dumps(payload(index, tag, endpoints)))
        run = client.create_flow_run(deployment["id"], {
            "source": str(source), "provider": "linux", "channel": "stable", "software": ["rt"],
            "output": str(work / "out" / tag / f"{index:04d}")}, idempotency_key=f"{tag}-{index:04d}")
        ids.append(run["id"])
    return ids


def runs(client: PrefectRest, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for offset in range(0, len(ids), 200):
        chunk = ids[offset:offset + 200]
        for run in client._post("/flow_runs/filter", {"flow_runs": {"id": {"any_": chunk}}, "limit": 200}):
            found[run["id"]] = run
    return found


def wait_terminal(client: PrefectRest, ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = runs(client, ids)
        if len(found) == len(ids) and all((r.get("state") or {}).get("type") in TERMINAL for r in found.values()):
            return found
        if time.monotonic() > deadline:
            counts: dict[str, int] = {}
            for run in found.values():
                name = (run.get("state") or {}).get("name", "?")
                counts[name] = counts.get(name, 0) + 1
            raise AssertionError(f"runs not finished after {timeout_s:.0f}s: {counts}")
        time.sleep(1)


def state_history(client: PrefectRest, flow_run_id: str) -> list[dict[str, Any]]:
    states = client._get(f"/flow_run_states/?flow_run_id={flow_run_id}")
    return sorted(states, key=lambda s: s["timestamp"])


def submitted_by_worker(client: PrefectRest, since: str) -> dict[str, set[str]]:
    """Worker name -> the flow runs it submitted (its ``prefect.worker.submitted-flow-run`` events)."""
    taken: dict[str, set[str]] = {}
    page = client._post("/events/filter", {"filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]},
                                                      "occurred": {"since": since}, "order": "ASC"}, "limit": 50})
    while True:
        for event in page.get("events") or []:
            worker = event["resource"].get("prefect.resource.name")
            for related in event.get("related") or []:
                if related.get("prefect.resource.role") == "flow-run":
                    run_id = related["prefect.resource.id"].removeprefix("prefect.flow-run.")
                    taken.setdefault(worker, set()).add(run_id)
        next_page = page.get("next_page")
        if not next_page:
            return taken
        answer = client._client.get(next_page)
        answer.raise_for_status()
        page = answer.json()


@contextlib.contextmanager
def cluster(work: Path, databases: Databases, marker: str | None = None) -> Iterator[Cluster]:
    """A started Prefect server on a fresh PostgreSQL database, a fresh store database; everything stopped and
    dropped on exit."""
    tag = marker or secrets.token_hex(6)
    made = Cluster(work, tag, databases.create("rw_prefect", driver="postgresql+asyncpg"),
                   databases.create("rw_store"))
    try:
        made.start_server()
        yield made
    finally:
        made.stop_all()
        for pid in leftovers(tag):
            kill_tree(pid)


def run_ringward(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``ringward ARGS`` as a subprocess with :func:`clean_env` (plus ``env``), output captured."""
    return subprocess.run([sys.executable, "-m", "ringward.cli.main", *args], env=clean_env(**env), cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def one_line(err: str) -> str:
    """The single line of an error output (no traceback), else the test fails."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
