"""`ringward up` / `ringward status` refusals and the supervisor, without starting a Prefect server;
`--prefect` front doors fail fast, in one line, when no Prefect server answers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringward.core.errors import InputError
from ringward.operations.common.prefect_cli import quiet_prefect_console, require_prefect_api
from ringward.operations.common.prefect_rest import TELEMETRY_OFF, telemetry_off
from ringward.operations.common.supervisor import (
    Part,
    StartupError,
    Supervisor,
    alive,
    descendants,
    free_port,
    port_in_use,
    refuse_taken_port,
)

DEAD_API = "http://127.0.0.1:1/api"


def _ringward(*args: str, home: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "RINGWARD_"))}
    if home is not None:
        base["RINGWARD_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "ringward.cli.main", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=False, cwd=home.parent if home else None)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path, listening: int) -> None:
    home = tmp_path / "home"
    done = _ringward("up", "--home", str(home), "--port", str(listening), "--prefect-port", str(free_port()))
    assert done.returncode == 2
    assert _one_line(done.stderr) == (f"error: --port {listening}: port already in use on 127.0.0.1; "
                                      "stop what holds it or choose another")
    assert not home.exists()  # refused before creating anything
    done = _ringward("up", "--home", str(home), "--port", str(free_port()), "--prefect-port", str(listening))
    assert done.returncode == 2 and f"--prefect-port {listening}: port already in use" in _one_line(done.stderr)


def test_an_unreachable_prefect_api_url_is_refused(tmp_path: Path) -> None:
    done = _ringward("up", "--home", str(tmp_path / "home"), "--port", str(free_port()), PREFECT_API_URL=DEAD_API)
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith(f"error: PREFECT_API_URL={DEAD_API}: no Prefect server answers")


def test_a_second_up_for_the_same_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "up.json").write_text(json.dumps({"pid": os.getpid()}))  # this (live) process "runs up"
    done = _ringward("up", "--home", str(home), "--port", str(free_port()), "--prefect-port", str(free_port()))
    assert done.returncode == 2 and "already runs for this home" in _one_line(done.stderr)
    file_home = tmp_path / "file"
    file_home.write_text("x")
    done = _ringward("up", "--home", str(file_home), "--port", str(free_port()))
    assert done.returncode == 2 and "not a directory" in _one_line(done.stderr)


def test_status_without_up_reports_every_part_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = _ringward("status", "--json", home=home, PREFECT_API_URL=DEAD_API)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert not report["healthy"] and report["up_pid"] is None
    assert {name: part["healthy"] for name, part in report["parts"].items()} == \
        {"prefect-server": False, "ringward-api": False, "runner": False}
    assert report["parts"]["prefect-server"]["url"] == DEAD_API
    assert report["deployments"] == [] and report["failed_runs"] == []
    text = _ringward("status", home=home, PREFECT_API_URL=DEAD_API)
    assert text.returncode == 1 and "prefect-server  DOWN" in text.stdout and "runner          DOWN" in text.stdout


@pytest.mark.parametrize("command", [
    ["run", "verify-package", "--params", '{"package_dir": "/nonexistent"}'],
    ["release", "verify-package", "/nonexistent", "--trust-root", "/nonexistent.json", "--prefect"],
])
def test_prefect_without_a_server_fails_fast_in_one_line(tmp_path: Path, command: list[str]) -> None:
    started = time.monotonic()
    done = _ringward(*command, home=tmp_path / "home", PREFECT_API_URL=DEAD_API)
    assert done.returncode == 2
    assert _one_line(done.stderr).startswith(f"error: --prefect: PREFECT_API_URL={DEAD_API}: no Prefect server")
    # Prefect's own retries took ~42 s; the preflight takes one refused connection (plus imports on a busy box)
    assert time.monotonic() - started < 40
    unset = _ringward(*command, home=tmp_path / "home")
    assert unset.returncode == 2 and "PREFECT_API_URL is not set" in _one_line(unset.stderr)


def test_require_prefect_api() -> None:
    with pytest.raises(InputError, match="PREFECT_API_URL is not set"):
        require_prefect_api(None)
    with pytest.raises(InputError, match=r"PREFECT_API_URL=http://127\.0\.0\.1:1/api: no Prefect server answers"):
        require_prefect_api(DEAD_API)
    require_prefect_api("ephemeral://in-process")  # nothing to dial


def test_quiet_prefect_console_shows_only_a_failed_final_state() -> None:
    class PrefectConsoleHandler(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    def record(name: str, message: str, exc: bool = False) -> logging.LogRecord:
        info = (ValueError, ValueError("boom"), None) if exc else None
        return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, info)

    handler = PrefectConsoleHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with quiet_prefect_console():
            handler.handle(record("prefect.task_runs", "Task run failed with state: Failed(...)", exc=True))
            handler.handle(record("prefect.flow_runs", "Encountered exception during execution", exc=True))
            handler.handle(record("prefect.flow_runs", "Finished in state Completed()"))
            handler.handle(record("prefect.flow_runs", "Finished in state Failed('refused: already consumed')",
                                  exc=True))
        assert [r.getMessage() for r in handler.records] == ["Finished in state Failed('refused: already consumed')"]
        assert handler.records[0].exc_info is None  # the line, never the traceback
        handler.handle(record("prefect.task_runs", "after the run: untouched"))
        assert handler.records[-1].getMessage() == "after the run: untouched"
    finally:
        root.removeHandler(handler)


def test_telemetry_is_off_in_the_child_environment() -> None:
    env = telemetry_off({"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "0"})
    assert env == dict(TELEMETRY_OFF)


def test_port_probe(listening: int) -> None:
    assert port_in_use("127.0.0.1", listening)
    assert not port_in_use("127.0.0.1", free_port())
    with pytest.raises(InputError, match="--api-port"):
        refuse_taken_port("127.0.0.1", listening, "--api-port")


_FORKER = textwrap.dedent("""
    import subprocess, sys, time
    # a grandchild in its own session, as Prefect's runner starts flow runs: not in our process group
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(600)
""")


def test_stopping_a_part_leaves_no_descendant(tmp_path: Path) -> None:
    script = tmp_path / "forker.py"
    script.write_text(_FORKER)
    log = tmp_path / "logs" / "forker.log"
    part = Part("forker", [sys.executable, str(script)], dict(os.environ), log, lambda: None)
    part.start()
    assert part.pid is not None
    deadline = time.monotonic() + 60
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchild = int(log.read_text().split()[0])
    assert grandchild in descendants(part.pid)
    assert os.getpgid(grandchild) != os.getpgid(part.pid)
    part.stop(grace_s=5)
    deadline = time.monotonic() + 10
    while (alive(part.pid) or alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(part.pid) and not alive(grandchild)


def test_a_part_that_exits_while_starting_is_a_startup_error(tmp_path: Path) -> None:
    supervisor = Supervisor(grace_s=2, poll_s=0.05)
    part = supervisor.start(Part("broken", [sys.executable, "-c", "print('bad config'); raise SystemExit(4)"],
                                 dict(os.environ), tmp_path / "broken.log", lambda: "not yet"))
    expected = r"broken exited with code 4 while starting; see .*broken\.log \(bad config\)"
    with pytest.raises(StartupError, match=expected):
        supervisor.wait_healthy([part], timeout_s=60)
    supervisor.stop_all()


def test_a_part_that_never_gets_healthy_times_out(tmp_path: Path) -> None:
    supervisor = Supervisor(grace_s=2, poll_s=0.05)
    part = supervisor.start(Part("sleepy", [sys.executable, "-c", "import time; time.sleep(600)"],
                                 dict(os.environ), tmp_path / "sleepy.log", lambda: "HTTP 503"))
    try:
        with pytest.raises(StartupError, match=r"not healthy after 1s: sleepy: HTTP 503"):
            supervisor.wait_healthy([part], timeout_s=1)
    finally:
        supervisor.stop_all()
    assert part.exit_code() is not None


def test_a_stop_request_ends_the_watch(tmp_path: Path) -> None:
    supervisor = Supervisor(grace_s=2, poll_s=0.05)
    part = supervisor.start(Part("sleepy", [sys.executable, "-c", "import time; time.sleep(600)"],
                                 dict(os.environ), tmp_path / "sleepy.log", lambda: None))
    supervisor.stopping.set()
    assert supervisor.watch() is None
    supervisor.stop_all()
    assert part.exit_code() is not None
    died = Supervisor(grace_s=2, poll_s=0.05)
    quick = died.start(Part("quick", [sys.executable, "-c", "pass"], dict(os.environ), tmp_path / "q.log",
                            lambda: None))
    assert died.watch() is quick
    died.stop_all()


def test_the_first_admin_token_is_made_once_and_stored_hashed(ringward_home: Path) -> None:
    from ringward.cli.up_cmd import _first_admin_token
    from ringward.store import open_store

    secret = _first_admin_token()
    assert secret is not None
    assert _first_admin_token() is None  # a second `ringward up` on this home prints none
    with open_store() as store:
        (token,) = store.tokens.list()
        assert token.name == "admin" and token.role.value == "admin"
    for path in ringward_home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
