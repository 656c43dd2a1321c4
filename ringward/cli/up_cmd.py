"""`ringward up`: run Ringward (Prefect server, Ringward API, a runner serving every deployment) as
one supervised process group, under one home.

- Prefect server: ``prefect server start`` with its SQLite database under ``<home>/prefect``, unless
  ``PREFECT_API_URL`` names a server that answers (then that one is used and left alone).
- Ringward API: ``ringward api --host --port`` (a subprocess through its own CLI).
- Runner: ``python -m deployments.serve``: every deployment of ``deployments/catalog.py`` with its
  schedules and triggers; its health is Prefect's runner webserver on a private loopback port.

Every child gets ``RINGWARD_HOME``, ``PREFECT_HOME``, ``PREFECT_API_URL`` and Prefect's telemetry
switched off. ``<home>/up.json`` tells ``ringward status`` where everything is; logs go to
``<home>/logs``. Ctrl-C / SIGTERM stop the runner, then the API, then the server (SIGTERM, then
SIGKILL after a grace period, flow-run processes included). A taken port is refused before anything
starts (exit 2); a part that fails to come up stops the others (exit 3).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from ringward.core.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run Ringward: Prefect server + UI, the API and every deployment, as one process group.")

ADMIN_TOKEN_NAME = "admin"  # noqa: S105 - the token's name, not a secret


def _client_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


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
) -> None:
    """Start everything, print the UI and API URLs (and a first admin token, once), run until Ctrl-C."""
    from deployments.catalog import CATALOG
    from ringward import settings
    from ringward.operations.common import prefect_rest as rest
    from ringward.operations.common.scale_out import HEARTBEAT_ENV, heartbeat_seconds
    from ringward.operations.common.supervisor import (
        Part,
        StartupError,
        Supervisor,
        free_port,
        refuse_taken_port,
    )

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

    token = _first_admin_token()  # also migrates the store before the API and the runner open it

    supervisor = Supervisor()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        supervisor.stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    python = sys.executable
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
        runner_port = free_port()
        runner_health = f"http://127.0.0.1:{runner_port}/health"
        # flow-run heartbeats: what the crash-recovery automations watch (deployments/automations.py)
        runner_env = {**env, HEARTBEAT_ENV: heartbeat,
                      "PREFECT_RUNNER_SERVER_ENABLE": "true", "PREFECT_RUNNER_SERVER_HOST": "127.0.0.1",
                      "PREFECT_RUNNER_SERVER_PORT": str(runner_port)}
        if not supervisor.stopping.is_set():
            runner = supervisor.start(Part("runner", [python, "-m", "deployments.serve"], runner_env,
                                           logs / "runner.log", lambda: rest.http_health(runner_health)))
            supervisor.wait_healthy([runner], timeout)
            if not supervisor.stopping.is_set():
                _crash_recovery(prefect_api)
        if supervisor.stopping.is_set():
            typer.echo("stopped before every part was up", err=True)
            return
        ui_url = prefect_api.removesuffix("/api")
        _write_state(state_path, {
            "pid": os.getpid(), "home": str(root), "started_at": datetime.now(UTC).isoformat(),
            "prefect_api_url": prefect_api, "prefect_ui_url": ui_url, "prefect_external": external is not None,
            "api_url": api_url, "runner_health_url": runner_health, "logs": str(logs),
            "pids": {p.name: p.pid for p in supervisor.parts},
        })
        _announce(ui_url, prefect_api, api_url, token, len(CATALOG), root, logs)
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


def _announce(ui_url: str, prefect_api: str, api_url: str, token: str | None, deployments: int, root: Path,
              logs: Path) -> None:
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
    lines.append(f"  deployments   {deployments} served (schedules and triggers on)")
    lines += [f"  off           {line}" for line in unconfigured_lines()]
    lines += [f"  logs          {logs}", "Ctrl-C (or SIGTERM) stops everything; `ringward status` reports health."]
    typer.echo("\n".join(lines))
