"""`ringward worker` and `ringward deploy`: Ringward beyond one machine, with Prefect's own machinery.

- ``ringward deploy [--pool ringward-local]`` registers every deployment of ``deployments/catalog.py``
  into a ``process`` work pool (creating the pool if missing): the rendered ``prefect.yaml`` deployed by
  ``prefect --no-prompt deploy --all``, then the crash-recovery automations (``deployments/automations.py``).
- ``ringward worker [--pool ringward-local] [--limit N]`` runs a Prefect process worker for that pool on
  this host, with this host's Ringward settings made absolute (``RINGWARD_HOME``,
  ``RINGWARD_DATABASE_URL``, ``RINGWARD_EVIDENCE_ROOT``), flow-run heartbeats on and Prefect's telemetry
  off. ``RINGWARD_DASK_SCHEDULER`` (``tcp://host:port``, checked first) reaches the flow runs too: the
  partitioned reconciliation's runs use that shared Dask scheduler instead of a ``LocalCluster`` each
  (the startup summary says which). Ctrl-C / SIGTERM: the worker stops taking runs at once and waits
  up to ``--grace`` seconds for the flow runs it started, then stops what still runs (recovered like a
  crash: re-run elsewhere).

Both need ``PREFECT_API_URL`` of a running Prefect server and refuse in one line (exit 2) when none
answers. Prefect is imported only by the subprocesses they start.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from types import FrameType

import typer

from ringward import settings
from ringward.core.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run a Prefect process worker for Ringward's work pool on this host.")
deploy_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                         help="Register every Ringward deployment (and crash recovery) into a work pool.")

POOL_HELP = "Prefect work pool (type process; created when missing)."


def _set_home(home: Path | None) -> None:
    if home is not None:
        if home.exists() and not home.is_dir():
            raise InputError(f"--home {home}: not a directory")
        os.environ["RINGWARD_HOME"] = str(home.expanduser().absolute())


def _dask_line(scheduler: str | None, timeout_s: float = 2.0) -> str:
    """Which Dask cluster the partitioned reconciliation's runs use (a scheduler that does not answer yet is
    named, not refused: it may start after the worker)."""
    if scheduler is None:
        return (f"partitioned reconciliation runs start a LocalCluster each ({settings.DASK_SCHEDULER_ENV}="
                "tcp://HOST:PORT: a shared scheduler)")
    host, _, port = scheduler.removeprefix("tcp://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            answering = ""
    except OSError:
        answering = " (not answering now: runs fail until it does)"
    return f"partitioned reconciliation runs use the shared scheduler {scheduler}{answering}"


def _require_api() -> str:
    from ringward.operations.common import prefect_rest as rest

    api_url = rest.prefect_api_url_from_env()
    if api_url is None:
        raise InputError("PREFECT_API_URL is not set: point it at the Prefect server "
                         "(e.g. export PREFECT_API_URL=http://prefect-host:4200/api)")
    rest.require_reachable(api_url)
    return api_url.rstrip("/")


@app.command()
def worker(
    pool: str = typer.Option("ringward-local", "--pool", help=POOL_HELP),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Most flow runs at once on this host "
                                                                   "(default: no limit)."),
    name: str | None = typer.Option(None, "--name", help="Worker name shown in the Prefect UI (default: Prefect's)."),
    home: Path | None = typer.Option(None, "--home", help="Ringward home (default: $RINGWARD_HOME or ./.ringward)."),
    grace: float = typer.Option(60.0, "--grace", min=0.0,
                                help="Seconds to wait for running flow runs on Ctrl-C / SIGTERM before stopping them."),
) -> None:
    """Start a Prefect process worker for Ringward's work pool; run until Ctrl-C / SIGTERM."""
    from ringward.operations.common import scale_out
    from ringward.operations.common.supervisor import StartupError, Supervisor

    scale_out.check_pool_name(pool)
    if name is not None and not name.strip():
        raise InputError("--name: expected a non-empty worker name")
    scale_out.heartbeat_seconds(os.environ)
    scheduler = settings.dask_scheduler(os.environ)
    _set_home(home)
    api_url = _require_api()
    env = scale_out.worker_environment(os.environ, api_url)
    env.pop(settings.DASK_SCHEDULER_ENV, None)
    if scheduler is not None:
        env[settings.DASK_SCHEDULER_ENV] = scheduler
    scale_out.store_reachable(env["RINGWARD_DATABASE_URL"])
    created = scale_out.ensure_process_pool(api_url, pool, env)

    supervisor = Supervisor(grace_s=grace)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        supervisor.stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        lines = [f"Ringward worker for work pool {pool}" + (" (created)" if created else ""),
                 f"  Prefect API   {api_url}",
                 f"  writes to     {scale_out.describe_store(env)}",
                 f"  heartbeat     every {env[scale_out.HEARTBEAT_ENV]}s (crash detection)"
                 + (f"; at most {limit} runs at once" if limit else ""),
                 f"  dask          {_dask_line(scheduler)}"]
        if scale_out.is_sqlite(env["RINGWARD_DATABASE_URL"]):
            lines.append("  note          the store is SQLite: fine on this host only; workers on other hosts need "
                         "RINGWARD_DATABASE_URL (PostgreSQL) and a shared RINGWARD_EVIDENCE_ROOT")
        lines.append(f"Ctrl-C (or SIGTERM) stops taking runs and waits up to {grace:g}s for running ones.")
        typer.echo("\n".join(lines), err=True)
        part = supervisor.start(scale_out.prefect_worker_part(pool, env, limit=limit, name=name))
        died = supervisor.watch()
        if died is not None:
            raise StartupError(f"the Prefect worker exited with code {died.exit_code()} (its output is above)")
        typer.echo(f"stopping: no new runs; waiting up to {grace:g}s for the running ones ...", err=True)
        ended, stopped = scale_out.drain(part, grace)
        typer.echo(f"stopped: {ended} flow-run processes ended on their own, {stopped} stopped (a run cut short "
                   "is marked Crashed and run again by a live worker)", err=True)
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    finally:
        supervisor.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@deploy_app.command()
def deploy(
    pool: str = typer.Option("ringward-local", "--pool", help=POOL_HELP),
    unresponsive_after: int = typer.Option(
        90, "--unresponsive-after", help="Seconds without a heartbeat (or without starting) after which a flow run "
                                         "is marked Crashed."),
    max_reruns: int = typer.Option(2, "--max-reruns", help="Re-runs of a crashed flow run (the same run; 0: none)."),
    home: Path | None = typer.Option(None, "--home", help="Ringward home for the deploy log (default: $RINGWARD_HOME "
                                                         "or ./.ringward)."),
) -> None:
    """Register every deployment of the catalog (prefect.yaml) into the work pool, plus crash recovery."""
    from deployments.automations import check_options
    from deployments.pool import catalog_names, register
    from ringward.operations.common import scale_out
    from ringward.operations.common.prefect_rest import telemetry_off

    scale_out.check_pool_name(pool)
    check_options(unresponsive_after, max_reruns)
    _set_home(home)
    api_url = _require_api()
    env = dict(telemetry_off({**os.environ, "PREFECT_API_URL": api_url}))
    created = scale_out.ensure_process_pool(api_url, pool, env)
    log = settings.logs_dir() / "deploy.log"
    typer.echo(f"deploying {len(catalog_names())} deployments into work pool {pool} (log: {log}) ...", err=True)
    ids, outcome = register(api_url, pool, env, log, unresponsive_after_s=unresponsive_after, max_reruns=max_reruns)
    counts = ", ".join(f"{sum(1 for v in outcome.values() if v == kind)} {kind}"
                       for kind in ("created", "updated", "unchanged", "deleted")
                       if any(v == kind for v in outcome.values()))
    typer.echo("\n".join([
        f"registered {len(ids)} deployments in work pool {pool}" + (" (pool created)" if created else ""),
        f"crash recovery: a run silent for {unresponsive_after}s is Crashed, then re-run up to {max_reruns} times "
        f"(automations: {counts})",
        f"start workers on every host: PREFECT_API_URL={api_url} ringward worker --pool {pool}",
    ]))
