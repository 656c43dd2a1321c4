"""Supervise a few long-running child processes as one unit (``ringward up``).

Each child runs in its own session (so a terminal's Ctrl-C reaches only the supervisor, which then
stops the children in order) and dies with the supervisor even if that is killed outright
(``PR_SET_PDEATHSIG`` on Linux). Stopping a child terminates its whole process group and then any
descendant that left the group (Prefect's runner starts each flow run in a new session), SIGTERM
first and SIGKILL after a grace period: nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ringward.core.errors import InputError

_PR_SET_PDEATHSIG = 1


class StartupError(Exception):
    """A supervised part did not come up or died (an internal failure: exit 3, not the caller's input)."""


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port`` (a socket in TIME_WAIT does not count,
    as for the servers started here, which all set SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise InputError(f"--host {host}: cannot bind ({exc.strerror})") from exc
    return False


def refuse_taken_port(host: str, port: int, option: str) -> None:
    if port_in_use(host, port):
        raise InputError(f"{option} {port}: port already in use on {host}; stop what holds it or choose another")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (2nd field) may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state[state.rfind(")") + 2:].split()[0] not in ("Z", "X")


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass
class Part:
    """One supervised child: its command, environment, log file and health check."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    #: None when the part is healthy, else why not (one line)
    health: Callable[[], str | None]
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, cwd: Path | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            list(self.argv), env=dict(self.env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
        )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def stop(self, grace_s: float) -> None:
        """SIGTERM the part's process group, SIGKILL what is left after ``grace_s``, then the same
        for any descendant that escaped the group."""
        process = self.process
        if process is None:
            return
        strays = descendants(process.pid)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # a group member that ignored SIGTERM
        strays = [pid for pid in {*strays, *descendants(process.pid)} if alive(pid)]
        for pid in strays:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(alive(pid) for pid in strays) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in strays:
            if alive(pid):
                _signal(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


class Supervisor:
    """Start parts, wait until they are healthy, watch them, stop them all (in reverse order)."""

    def __init__(self, *, grace_s: float = 20.0, poll_s: float = 0.5) -> None:
        self.parts: list[Part] = []
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.stopping = threading.Event()

    def start(self, part: Part, cwd: Path | None = None) -> Part:
        self.parts.append(part)
        part.start(cwd)
        return part

    def wait_healthy(self, parts: Sequence[Part], timeout_s: float) -> None:
        """Block until every part answers its health check; raise StartupError when one exits or
        the time is up, or return early when a stop was requested."""
        deadline = time.monotonic() + timeout_s
        pending = list(parts)
        while pending:
            if self.stopping.is_set():
                return
            for part in list(pending):
                code = part.exit_code()
                if code is not None:
                    raise StartupError(f"{part.name} exited with code {code} while starting; see {part.log_path}"
                                       + (f" ({part.log_tail(2)[:300]})" if part.log_tail(2) else ""))
                if part.health() is None:
                    pending.remove(part)
            if pending and time.monotonic() > deadline:
                why = "; ".join(f"{p.name}: {p.health()}" for p in pending)
                raise StartupError(f"not healthy after {timeout_s:.0f}s: {why} (logs in {pending[0].log_path.parent})")
            if pending:
                self.stopping.wait(self.poll_s)

    def watch(self) -> Part | None:
        """Block until a stop is requested (None) or a part exits on its own (that part)."""
        while not self.stopping.wait(self.poll_s):
            for part in self.parts:
                if part.exit_code() is not None:
                    return part
        return None

    def stop_all(self) -> None:
        for part in reversed(self.parts):
            part.stop(self.grace_s)

    def all_pids(self) -> list[int]:
        pids: list[int] = []
        for part in self.parts:
            if part.pid is not None:
                pids += [part.pid, *descendants(part.pid)]
        return pids
