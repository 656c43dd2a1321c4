"""`ringward up`: run Ringward (Prefect server, Ringward API, every deployment) as one supervised process
group, under one home. The deployments run in one of two modes:

- runner (default): ``python -m deployments.serve`` serves every deployment of ``deployments/catalog.py``
  with its schedules and triggers; its health is Prefect's runner webserver on a private loopback port.
- ``--pool NAME``: every deployment is registered into the Prefect ``process`` work pool NAME exactly as
  ``ringward deploy --pool NAME`` does (the pool created when missing, a pool of another type refused, the
  rendered ``prefect.yaml`` deployed, the crash-recovery automations applied), and one local
  ``ringward worker --pool NAME`` runs them; its health is the worker being online in the pool (Prefect
  REST). Other hosts join with ``ringward worker --pool NAME`` against the same Prefect server.

The parts:

- Prefect server: ``prefect server start`` with its SQLite database under ``<home>/prefect``, unless
  ``PREFECT_API_URL`` names a server that answers (then that one is used and left alone).
- Ringward API: ``ringward api --host --port`` (a subprocess through its own CLI).
- Runner or worker, as above.

A Prefect server where Ringward's deployments are in a work pool is refused in runner mode, and one where a
runner serves them now (or where they are in another pool) is refused with ``--pool``: one line naming the
conflict and the fix (exit 2), never the same deployment served twice.

Every child gets ``RINGWARD_HOME``, ``PREFECT_HOME``, ``PREFECT_API_URL`` and Prefect's telemetry
switched off. ``<home>/up.json`` tells ``ringward status`` where everything is and which mode runs; logs go
to ``<home>/logs``. Ctrl-C / SIGTERM stop the runner or the worker (its running flow runs get a short
grace period), then the API, then the server (SIGTERM, then SIGKILL after a grace period, flow-run
processes included). A taken port is refused before anything starts (exit 2); a part that fails to come
up stops the others (exit 3).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from ringward.core.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run Ringward: Prefect server + UI, the API and every deployment, as one process group.")

ADMIN_TOKEN_NAME = "admin"  # noqa: S105 - the token's name, not a secret
#: Prefect marks a deployment not ready 60 s after its last poll (a runner polls every 10 s): a deployment
#: without a work pool polled more recently than this is being served by a runner now
RUNNER_POLL_WINDOW_S = 60
#: seconds the local worker lets its running flow runs finish on Ctrl-C / SIGTERM (the supervisor's own
#: grace period, 20 s, covers it; a run cut short is recovered by the crash-recovery automations)
WORKER_GRACE_S = 10
POOL_HELP = ("Register every deployment into this Prefect `process` work pool (created when missing; what "
             "`ringward deploy --pool NAME` does) and run a local `ringward worker --pool NAME` instead of the "
             "runner; other hosts join with `ringward worker --pool NAME`.")


def _client_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


def _binds_every_interface(host: str) -> bool:
    return host in ("0.0.0.0", "", "::")  # noqa: S104


def _url(host: str, port: int) -> str:
    host = _client_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _running_up(state_path: Path) -> int | None:
    """The pid of a `ringward up` that still runs for this home, if any."""
    from ringward.operations.common.supervisor import alive

    try:
        pid = int(json.loads(state_path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid != os.getpid() and alive(pid) else None


def _first_admin_token() -> str | None:
    """Create the first admin token (once per home); None when the store already has tokens."""
    from ringward.operations.common.api_tokens import create_token
    from ringward.operations.release.release_ops import default_actor
    from ringward.store import open_store

    with open_store() as store:
        if store.tokens.list():
            return None
        _, secret = create_token(store, name=ADMIN_TOKEN_NAME, role="admin", created_by=default_actor())
    return secret


def _write_state(path: Path, state: dict[str, Any]) -> None:
    from ringward.operations.common.files import atomic_write

    atomic_write(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)


def _polled_at(deployment: Mapping[str, Any]) -> datetime | None:
    value = deployment.get("last_polled")
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def serving_conflict(deployments: Iterable[Mapping[str, Any]], names: Collection[str], pool: str | None, *,
                     now: datetime, served_since: datetime | None = None) -> str | None:
    """Why `ringward up` must not serve the catalog ``names`` on a Prefect server holding ``deployments`` (its
    REST rows), else None. ``pool`` None is runner mode: refused when any of them is in a work pool (workers
    run it). With a pool: refused when any is in another pool (its workers would lose it) or is served by a
    runner now (no work pool, polled within :data:`RUNNER_POLL_WINDOW_S` and after ``served_since``); one a
    runner served earlier is moved into the pool."""
    ours = [d for d in deployments if d.get("name") in names]
    pooled: dict[str, int] = {}
    for deployment in ours:
        if deployment.get("work_pool_name"):
            pooled[str(deployment["work_pool_name"])] = pooled.get(str(deployment["work_pool_name"]), 0) + 1
    if pool is None:
        if not pooled:
            return None
        where, count = max(pooled.items(), key=lambda item: item[1])
        return (f"{count} of Ringward's deployments are in work pool {where} on this Prefect server (`ringward "
                f"deploy` or `ringward up --pool`): a runner would serve them a second time; run `ringward up --pool "
                f"{where}` instead (or delete those deployments first)")
    others = {name: count for name, count in pooled.items() if name != pool}
    if others:
        where, count = max(others.items(), key=lambda item: item[1])
        return (f"--pool {pool}: {count} of Ringward's deployments are in work pool {where} on this Prefect server "
                f"and its workers would lose them: run `ringward up --pool {where}` (or move them first: "
                f"`ringward deploy --pool {pool}`)")
    since = now - timedelta(seconds=RUNNER_POLL_WINDOW_S)
    if served_since is not None:
        since = max(since, served_since)
    polls = [when for d in ours if not d.get("work_pool_name") and (when := _polled_at(d)) is not None
             and when >= since]
    if polls:
        age = max(0.0, (now - max(polls)).total_seconds())
        return (f"--pool {pool}: {len(polls)} of Ringward's deployments are served by a runner on this Prefect "
                f"server (polled {age:.0f}s ago: a `ringward up` without --pool, or `python -m deployments.serve`): "
                "the pool would run them a second time; stop that runner first, then retry a minute later")
    return None


def _refuse_conflict(prefect_api: str, pool: str | None, served_since: datetime | None = None) -> None:
    """Refuse in one line (exit 2) when serving the catalog in this mode would run deployments twice."""
    from deployments.pool import catalog_names
    from ringward.operations.common.prefect_rest import PrefectRest

    with PrefectRest(prefect_api) as client:
        deployments = client.deployments()
    problem = serving_conflict(deployments, set(catalog_names()), pool, now=datetime.now(UTC),
                               served_since=served_since)
    if problem is not None:
        raise InputError(f"Prefect server {prefect_api}: {problem}")


def _register(prefect_api: str, pool: str, env: Mapping[str, str], log: Path, created: bool) -> None:
    """What `ringward deploy --pool POOL` does (the same function)."""
    from deployments.pool import catalog_names, register

    typer.echo(f"deploying {len(catalog_names())} deployments into work pool {pool}"
               + (" (created)" if created else "") + f" (log: {log}) ...", err=True)
    register(prefect_api, pool, env, log)


@app.command()
def up(
    home: Path | None = typer.Option(None, "--home", help="Ringward home (default: $RINGWARD_HOME or ./.ringward)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface the API and the Prefect server bind."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Ringward API port."),
    prefect_port: int = typer.Option(4200, "--prefect-port", min=1, max=65535,
                                     help="Prefect server (UI and API) port, unless PREFECT_API_URL is set."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Seconds to wait for every part to be healthy."),
    prefect_database_url: str | None = typer.Option(
        None, "--prefect-database-url", help="Run the Prefect server on this PostgreSQL database "
                                             "(postgresql+asyncpg://USER@HOST/DB) instead of SQLite under the home."),
    pool: str | None = typer.Option(None, "--pool", metavar="NAME", help=POOL_HELP),
) -> None:
    """Start everything, print the UI and API URLs (and a first admin token, once), run until Ctrl-C.

    Deployments are served by a runner, or with --pool NAME run by a local worker of that Prefect work pool
    (other hosts join with `ringward worker --pool NAME`)."""
    from deployments.catalog import CATALOG
    from ringward import settings
    from ringward.operations.common import prefect_rest as rest
    from ringward.operations.common.scale_out import (
        HEARTBEAT_ENV,
        PoolSetupError,
        check_pool_name,
        ensure_process_pool,
        heartbeat_seconds,
    )
    from ringward.operations.common.supervisor import (
        Part,
        StartupError,
        Supervisor,
        free_port,
        refuse_taken_port,
    )

    if pool is not None:
        check_pool_name(pool)
    if home is not None:
        if home.exists() and not home.is_dir():
            raise InputError(f"--home {home}: not a directory")
        os.environ["RINGWARD_HOME"] = str(home.expanduser().absolute())
    root = settings.ringward_home().absolute()
    os.environ["RINGWARD_HOME"] = str(root)
    state_path = settings.up_state_path()
    other = _running_up(state_path)
    if other is not None:
        raise InputError(f"--home {root}: `ringward up` already runs for this home (pid {other}); "
                         "`ringward status` shows it")

    external = rest.prefect_api_url_from_env()
    heartbeat = str(heartbeat_seconds(os.environ))
    server_db: dict[str, str] = {}
    if prefect_database_url is not None:
        from ringward.operations.common.scale_out import check_prefect_database
        from ringward.operations.common.scale_out import prefect_database_url as prefect_db_url

        if external is not None:
            raise InputError(f"--prefect-database-url: PREFECT_API_URL={external} names a running Prefect server; the "
                             "option is for the server `ringward up` starts (unset PREFECT_API_URL)")
        server_db["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_db_url(prefect_database_url)
        check_prefect_database(server_db["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    if external is not None:
        rest.require_reachable(external)
        prefect_api = external.rstrip("/")
        _refuse_conflict(prefect_api, pool)  # a server that runs already: before anything starts
    else:
        refuse_taken_port(host, prefect_port, "--prefect-port")
        prefect_api = _url(host, prefect_port) + "/api"
    refuse_taken_port(host, port, "--port")
    api_url = _url(host, port)

    root.mkdir(parents=True, exist_ok=True)
    logs = settings.logs_dir()
    env = rest.telemetry_off(dict(os.environ))
    env.update({"RINGWARD_HOME": str(root), "PREFECT_HOME": str(settings.prefect_home()),
                "PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1"})
    os.environ.update({k: env[k] for k in ("RINGWARD_HOME", "PREFECT_HOME", "PREFECT_API_URL")})
    pool_created = False
    if pool is not None and external is not None:
        pool_created = ensure_process_pool(prefect_api, pool, env)  # a pool of another type: refused now

    token = _first_admin_token()  # also migrates the store before the API and the runner open it

    supervisor = Supervisor()
    started_at = datetime.now(UTC)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        supervisor.stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    python = sys.executable
    worker_name = f"ringward-up-{socket.gethostname()}-{os.getpid()}"
    try:
        started: list[Part] = []
        if external is None:
            started.append(supervisor.start(Part(
                "prefect-server", [python, "-m", "prefect", "server", "start", "--host", host,
                                   "--port", str(prefect_port)],
                {**env, **server_db}, logs / "prefect-server.log", lambda: rest.api_health(prefect_api))))
        started.append(supervisor.start(Part(
            "ringward-api", [python, "-m", "ringward.cli.main", "api", "--host", host, "--port", str(port)],
            env, logs / "ringward-api.log", lambda: rest.http_health(api_url + "/healthz"))))
        typer.echo(f"starting Ringward in {root} (logs in {logs}) ...", err=True)
        supervisor.wait_healthy(started, timeout)
        runner_health: str | None = None
        if pool is None and not supervisor.stopping.is_set():
            if external is None:  # its database may hold what an earlier `up --pool` on this home deployed
                _refuse_conflict(prefect_api, None)
            runner_port = free_port()
            runner_health = f"http://127.0.0.1:{runner_port}/health"
            # flow-run heartbeats: what the crash-recovery automations watch (deployments/automations.py)
            runner_env = {**env, HEARTBEAT_ENV: heartbeat,
                          "PREFECT_RUNNER_SERVER_ENABLE": "true", "PREFECT_RUNNER_SERVER_HOST": "127.0.0.1",
                          "PREFECT_RUNNER_SERVER_PORT": str(runner_port)}
            health_url = runner_health
            runner = supervisor.start(Part("runner", [python, "-m", "deployments.serve"], runner_env,
                                           logs / "runner.log", lambda: rest.http_health(health_url)))
            supervisor.wait_healthy([runner], timeout)
            if not supervisor.stopping.is_set():
                _crash_recovery(prefect_api)
        elif pool is not None and not supervisor.stopping.is_set():
            if external is None:  # a runner may serve this database (a shared PostgreSQL one) since it started
                _refuse_conflict(prefect_api, pool, served_since=started_at)
                pool_created = ensure_process_pool(prefect_api, pool, env)
            try:
                _register(prefect_api, pool, env, logs / "deploy.log", pool_created)
            except PoolSetupError:
                if not supervisor.stopping.is_set():  # Ctrl-C also reaches `prefect deploy`: a stop, not an error
                    raise
            if not supervisor.stopping.is_set():
                pool_name = pool
                worker = supervisor.start(Part(
                    "worker", [python, "-m", "ringward.cli.main", "worker", "--pool", pool, "--name", worker_name,
                               "--grace", str(WORKER_GRACE_S)],
                    env, logs / "worker.log", lambda: rest.worker_health(prefect_api, pool_name, worker_name)))
                supervisor.wait_healthy([worker], timeout)
        if supervisor.stopping.is_set():
            typer.echo("stopped before every part was up", err=True)
            return
        ui_url = prefect_api.removesuffix("/api")
        state: dict[str, Any] = {
            "pid": os.getpid(), "home": str(root), "started_at": started_at.isoformat(),
            "prefect_api_url": prefect_api, "prefect_ui_url": ui_url, "prefect_external": external is not None,
            "api_url": api_url, "logs": str(logs), "mode": "runner" if pool is None else "pool",
            "pids": {p.name: p.pid for p in supervisor.parts},
        }
        if pool is None:
            state["runner_health_url"] = runner_health
        else:
            state.update({"pool": pool, "worker_name": worker_name})
        _write_state(state_path, state)
        # a server bound to every interface: other hosts need this host's name, not the loopback address
        workers_api = (f"http://<this-host>:{prefect_port}/api" if external is None and _binds_every_interface(host)
                       else None)
        _announce(ui_url, prefect_api, api_url, token, len(CATALOG), root, logs,
                  None if pool is None else (pool, worker_name), workers_api=workers_api)
        died = supervisor.watch()
        if died is not None:
            raise StartupError(f"{died.name} exited with code {died.exit_code()}; stopped everything; "
                               f"see {died.log_path}")
        typer.echo("stopping ...", err=True)
    except StartupError as exc:
        supervisor.stop_all()
        state_path.unlink(missing_ok=True)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    finally:
        supervisor.stop_all()
        if _running_up(state_path) is None:
            state_path.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("stopped", err=True)


def _crash_recovery(prefect_api: str) -> None:
    """Apply the crash-recovery automations for the served deployments (a warning line when it fails: the
    rest of Ringward runs without them)."""
    from deployments.automations import apply_crash_recovery
    from deployments.catalog import CATALOG

    try:
        apply_crash_recovery(prefect_api, [d.name for d in CATALOG])
    except Exception as exc:  # an optional part: say so and keep running
        typer.echo(f"warning: crash-recovery automations not applied: {type(exc).__name__}: {str(exc)[:200]}",
                   err=True)


def _pool_off_lines() -> list[str]:
    """Deployments whose schedules or triggers the rendered prefect.yaml (what a pool gets) keeps off."""
    from deployments.catalog import CATALOG

    lines = []
    for deployment in CATALOG:
        if deployment.needs and (deployment.schedules or deployment.triggers):
            needs = ", ".join(need.describe() for need in deployment.needs)
            lines.append(f"{deployment.name}: off until configured ({needs}), then on in the Prefect UI")
        elif any(trigger.opt_in_env for trigger in deployment.triggers):
            lines.append(f"{deployment.name}: trigger off (opt-in); turn it on in the Prefect UI")
    return lines


def _announce(ui_url: str, prefect_api: str, api_url: str, token: str | None, deployments: int, root: Path,
              logs: Path, pooled: tuple[str, str] | None = None, workers_api: str | None = None) -> None:
    from deployments.catalog import unconfigured_lines

    lines = [
        f"Ringward is up (home {root})",
        f"  Prefect UI    {ui_url}",
        f"  Prefect API   {prefect_api}",
        f"  Ringward API  {api_url}  (GET /healthz; every other route needs a bearer token)",
    ]
    if token is not None:
        lines.append(f"  admin token   {token}")
        lines.append("                shown once, stored hashed; more with `ringward api token create`")
    if pooled is None:
        lines.append(f"  deployments   {deployments} served (schedules and triggers on)")
        lines += [f"  off           {line}" for line in unconfigured_lines()]
    else:
        pool, worker = pooled
        lines.append(f"  deployments   {deployments} in work pool {pool}, run by the local worker {worker} "
                     "(crash recovery on)")
        lines += [f"  off           {line}" for line in _pool_off_lines()]
        lines.append(f"  more hosts    PREFECT_API_URL={workers_api or prefect_api} ringward worker --pool {pool}  "
                     "(one store and evidence root for all: docs/operations.md \"Scale out\")")
        if workers_api is not None:
            lines.append("                <this-host>: this machine's name or address as the other hosts reach it (the "
                         "Prefect server listens on every interface)")
    lines += [f"  logs          {logs}", "Ctrl-C (or SIGTERM) stops everything; `ringward status` reports health."]
    typer.echo("\n".join(lines))
