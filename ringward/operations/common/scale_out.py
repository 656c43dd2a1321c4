"""Beyond one machine with Prefect's own machinery: a ``process`` work pool, workers on any host, the
Prefect server on PostgreSQL (``ringward worker``, ``ringward deploy``, ``ringward up
--prefect-database-url``).

What a worker needs to run Ringward's flows correctly on another host is Ringward's settings made
absolute (a process worker starts every flow run in a fresh temporary directory, so a relative
``./.ringward`` would be a different home per run), the same store and evidence root as every other
host, flow-run heartbeats on (they are what crash detection watches, see
``deployments/automations.py``) and Prefect's telemetry off.

No Prefect import here: Prefect runs in the worker subprocess; pools are read over REST.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from ringward import settings
from ringward.core.errors import InputError, RingwardError
from ringward.operations.common.prefect_rest import PrefectRest, api_health, telemetry_off
from ringward.operations.common.supervisor import Part, _die_with_parent, alive, descendants

#: the work pool of ``prefect.yaml`` (``deployments/render.py`` WORK_POOL; a test keeps them equal)
DEFAULT_POOL = "ringward-local"
POOL_TYPE = "process"
#: Prefect 3.9's smallest flow-run heartbeat interval (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` >= 30)
MIN_HEARTBEAT_S = 30
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class PoolSetupError(RingwardError):
    """Prefect could not create the work pool (an internal failure, exit 3)."""

    exit_code = 3
    code = "pool-setup-failed"


def check_pool_name(name: str, option: str = "--pool") -> str:
    if not _POOL_NAME.match(name):
        raise InputError(f"{option} {name!r}: expected 1-100 letters, digits, '.', '_' or '-' (starting with a "
                         "letter or digit)")
    return name


def heartbeat_seconds(environ: Mapping[str, str]) -> int:
    """The flow-run heartbeat interval workers use: ``$PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` or Prefect's
    minimum (30 s), so a dead host is noticed as early as Prefect allows."""
    value = environ.get(HEARTBEAT_ENV, "").strip()
    if not value:
        return MIN_HEARTBEAT_S
    if not value.isdigit() or int(value) < MIN_HEARTBEAT_S:
        raise InputError(f"{HEARTBEAT_ENV}={value!r}: expected whole seconds >= {MIN_HEARTBEAT_S} (Prefect's minimum; "
                         "crash detection needs heartbeats)")
    return int(value)


def ringward_settings() -> dict[str, str]:
    """``RINGWARD_HOME`` / ``RINGWARD_DATABASE_URL`` / ``RINGWARD_EVIDENCE_ROOT`` of this process as every
    flow run of a worker must see them: absolute, whatever directory the run starts in."""
    from sqlalchemy.engine import make_url

    home = settings.ringward_home().expanduser().absolute()
    database_url = settings.database_url()
    if is_sqlite(database_url):
        parsed = make_url(database_url)
        if parsed.database and not parsed.database.startswith("file:") and parsed.database != ":memory:":
            database_url = parsed.set(database=str(Path(parsed.database).expanduser().absolute())).render_as_string(
                hide_password=False)
    return {"RINGWARD_HOME": str(home), "RINGWARD_DATABASE_URL": database_url,
            "RINGWARD_EVIDENCE_ROOT": str(settings.evidence_root().expanduser().absolute())}


def is_sqlite(database_url: str) -> bool:
    return database_url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def worker_environment(base: Mapping[str, str], api_url: str) -> dict[str, str]:
    """The worker's environment (its flow runs inherit it): ``base`` with this process's Ringward settings
    made absolute, the API, heartbeats on, telemetry off."""
    env: MutableMapping[str, str] = dict(base)
    env.update(ringward_settings())
    env.update({"PREFECT_API_URL": api_url, HEARTBEAT_ENV: str(heartbeat_seconds(base)), "PYTHONUNBUFFERED": "1"})
    return dict(telemetry_off(env))


def worker_argv(pool: str, *, limit: int | None = None, name: str | None = None,
                python: str | None = None) -> list[str]:
    argv = [python or sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", POOL_TYPE,
            "--install-policy", "never"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if name is not None:
        argv += ["--name", name]
    return argv


class PrefectAdmin(PrefectRest):
    """The few writes the multi-host path makes on the Prefect server (work pools, automations), over the same
    retrying plain-httpx client."""

    def __enter__(self) -> PrefectAdmin:
        return self

    def work_pool(self, name: str) -> dict[str, Any] | None:
        """The work pool ``name`` as the server describes it, None when there is none."""
        try:
            return dict(self._get(f"/work_pools/{name}"))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise

    def create_automation(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._post("/automations/", spec))

    def replace_automation(self, automation_id: str, spec: Mapping[str, Any]) -> None:
        self._send("PUT", f"/automations/{automation_id}", spec)

    def set_automation_enabled(self, automation_id: str, enabled: bool) -> None:
        self._send("PATCH", f"/automations/{automation_id}", {"enabled": enabled})

    def delete_automation(self, automation_id: str) -> None:
        try:
            self._send("DELETE", f"/automations/{automation_id}")
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise


def ensure_process_pool(api_url: str, name: str, env: Mapping[str, str], *, option: str = "--pool") -> bool:
    """Make sure the ``process`` work pool ``name`` exists (True when it was created now). Prefect creates it
    (``prefect work-pool create --type process``: its own default job template); a pool of another type
    is refused (exit 2)."""
    with PrefectAdmin(api_url) as client:
        pool = client.work_pool(name)
    if pool is not None:
        if pool.get("type") != POOL_TYPE:
            raise InputError(f"{option} {name}: the work pool is of type {pool.get('type')!r}, expected {POOL_TYPE!r} "
                             "(Ringward's flows run as processes on hosts where Ringward is installed)")
        return False
    done = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", name, "--type", POOL_TYPE],
                          env=dict(env), capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        with PrefectAdmin(api_url) as client:  # a concurrent `ringward worker` / `deploy` may have won
            if client.work_pool(name) is not None:
                return False
        tail = " | ".join(line.strip() for line in (done.stdout + done.stderr).strip().splitlines()[-3:])
        raise PoolSetupError(f"{option} {name}: Prefect could not create the work pool (exit {done.returncode}): "
                             f"{tail[:300]}")
    return True


# --- the Prefect server's database -------------------------------------------------------------------------------

_PG_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2")


def prefect_database_url(url: str, option: str = "--prefect-database-url") -> str:
    """``url`` as Prefect's server needs it (``postgresql+asyncpg://``): a PostgreSQL URL with a database
    name; anything else is refused in one line (password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise InputError(f"{option}: expected postgresql+asyncpg://USER[:PASSWORD]@HOST[:PORT]/DATABASE, "
                         "found an unparseable URL") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername not in _PG_SCHEMES:
        raise InputError(f"{option} {shown}: expected a PostgreSQL URL (postgresql+asyncpg://...), found scheme "
                         f"{parsed.drivername!r}")
    if not parsed.database or not parsed.host:
        raise InputError(f"{option} {shown}: expected a host and a database name "
                         "(postgresql+asyncpg://USER@HOST[:PORT]/DATABASE)")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def check_prefect_database(url: str, option: str = "--prefect-database-url", timeout_s: float = 5.0) -> None:
    """Refuse in one line (exit 2) when the PostgreSQL database at ``url`` does not answer."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(plain, connect_timeout=max(1, int(timeout_s))) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:200]
        raise InputError(f"{option} {shown}: cannot connect ({reason})") from None


def describe_store(ringward: Mapping[str, str]) -> str:
    """One line naming where this host's runs write (password hidden)."""
    from ringward.store.db import redact_url

    return f"store {redact_url(ringward['RINGWARD_DATABASE_URL'])}, evidence {ringward['RINGWARD_EVIDENCE_ROOT']}"


def store_reachable(database_url: str) -> None:
    """Open (and migrate) the store once, so a worker whose store is unreachable refuses before it takes runs."""
    from ringward.store import open_store

    open_store(database_url).close()


class ForegroundPart(Part):
    """A supervised child whose output goes to this process's stdout/stderr (a worker run in a terminal or
    under systemd), in its own session: a terminal's Ctrl-C reaches only the supervisor, which then stops
    it (:func:`drain`)."""

    def start(self, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(list(self.argv), env=dict(self.env), cwd=cwd, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=_die_with_parent)


def prefect_worker_part(pool: str, env: Mapping[str, str], *, limit: int | None = None,
                        name: str | None = None) -> ForegroundPart:
    api_url = env["PREFECT_API_URL"]
    return ForegroundPart("prefect-worker", worker_argv(pool, limit=limit, name=name), env, Path(os.devnull),
                          lambda: api_health(api_url))


def drain(part: Part, grace_s: float, *, poll_s: float = 0.2, term_grace_s: float = 10.0) -> tuple[int, int]:
    """Stop a worker the way an operator wants: it takes no new run at once, the flow runs it already started
    finish (up to ``grace_s``), and only what is still running then is stopped. Returns (flow-run processes
    that ended on their own, flow-run processes stopped).

    Prefect 3.9's worker does not drain on a signal (it goes on polling, or stops and takes its flow runs
    down), so it is frozen instead (SIGSTOP: it claims and starts nothing more); the flow-run processes it
    started -- each in a session of its own, reporting its states to the server itself, its output pipe and
    control connection to the frozen worker still open -- run to their end; then the worker is killed. What
    still runs after ``grace_s`` is stopped (SIGTERM, then SIGKILL) and, like a run the worker had claimed
    but not started, recovered by crash recovery (``deployments/automations.py``): Crashed, then run again
    by a live worker."""
    process = part.process
    if process is None:
        return 0, 0
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGSTOP)
    runs = [pid for pid in descendants(process.pid) if alive(pid)]
    deadline = time.monotonic() + grace_s
    while any(alive(pid) for pid in runs) and time.monotonic() < deadline:
        time.sleep(poll_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    left = [pid for pid in runs if alive(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + term_grace_s
    while any(alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(poll_s)
    for pid in left:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + term_grace_s
    while any(alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(poll_s / 4)
    return len(runs) - len(left), len(left)
