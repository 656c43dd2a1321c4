"""Progress reporting: byte counts from the operations, a bar only on an interactive terminal."""

from __future__ import annotations

import hashlib
import io
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ringward.cli.progress import byte_progress, wants_progress
from ringward.operations.release.airgap import verify_airgap_bundle
from ringward.operations.release.package import package_release
from ringward.operations.release.progress import (
    PHASE_HASH,
    PHASE_SIGN,
    PHASE_VERIFY,
    PHASE_ZIP,
    ByteMeter,
    Progress,
)
from ringward.operations.release.verify import SMALL_FILE, verify_package
from tests.release.simulator import NOW, ReleaseSimulator

REPO = Path(__file__).resolve().parents[2]
#: larger than SMALL_FILE so the verifier maps it and reports it slice by slice
LARGE_PAYLOAD = hashlib.shake_256(b"progress").digest(SMALL_FILE * 2 + 12345)  # incompressible (zip-bomb limits)

Calls = list[tuple[str, int, int]]


def recorder() -> tuple[Calls, Progress]:
    calls: Calls = []
    lock = threading.Lock()

    def report(phase: str, done: int, total: int) -> None:
        with lock:
            calls.append((phase, done, total))

    return calls, report


def phases(calls: Calls) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for phase, done, total in calls:
        out.setdefault(phase, []).append((done, total))
    return out


def assert_well_formed(calls: Calls) -> dict[str, list[int]]:
    """Each phase: one fixed total, counts from 0 that never decrease and end at the total."""
    counts = {}
    for phase, seen in phases(calls).items():
        totals = {total for _, total in seen}
        assert len(totals) == 1, (phase, totals)
        total = totals.pop()
        done = [d for d, _ in seen]
        assert done[0] == 0, (phase, done[:3])
        assert done == sorted(done), phase
        assert all(0 <= d <= total for d in done), phase
        assert done[-1] == total, (phase, done[-1], total)
        counts[phase] = done
    return counts


# --- operations -------------------------------------------------------------------------------------


def test_package_reports_hashing_signing_and_zipping_bytes(sim: ReleaseSimulator) -> None:
    calls, report = recorder()
    dist = sim.dist("1.2.3", payload=LARGE_PAYLOAD)
    binaries = sum(p.stat().st_size for p in dist.iterdir() if p.name.startswith("rt_"))
    result = package_release(dist, sim.root / "out", sim.info("1.2.3"), sim.key, make_zip=True,
                             progress=report)
    counts = assert_well_formed(calls)
    assert list(counts) == [PHASE_HASH, PHASE_SIGN, PHASE_ZIP]
    assert counts[PHASE_HASH][-1] == binaries
    assert counts[PHASE_SIGN][-1] == 2 * binaries  # pure Ed25519: two passes over each binary
    assert counts[PHASE_ZIP][-1] == sum(p.stat().st_size for p in result.package_dir.rglob("*") if p.is_file())
    # chunked, not one jump per phase: a 8 MiB+ binary gives several updates
    assert len(counts[PHASE_HASH]) > 8 and len(counts[PHASE_ZIP]) > 8


def test_unsigned_dry_run_has_no_signing_phase_and_no_zip_phase_without_zip(sim: ReleaseSimulator) -> None:
    calls, report = recorder()
    package_release(sim.dist("1.2.3"), sim.root / "out", sim.info("1.2.3", dry_run=True), None,
                    progress=report)
    assert list(assert_well_formed(calls)) == [PHASE_HASH]


def test_verify_package_reports_every_verified_byte(sim: ReleaseSimulator) -> None:
    package = sim.package("1.2.3", payload=LARGE_PAYLOAD)
    calls, report = recorder()
    result = verify_package(package, sim.trust_root(), now=NOW, progress=report)
    assert result.valid
    counts = assert_well_formed(calls)
    assert list(counts) == [PHASE_VERIFY]
    early = {"checksums.txt", "release-evidence.json", "release-evidence.md"}
    listed = [line.split()[-1] for line in (package / "checksums.txt").read_text().splitlines()]
    assert counts[PHASE_VERIFY][-1] == sum((package / n).stat().st_size for n in listed if n not in early)
    # the large binaries are reported slice by slice while they are hashed
    assert len(counts[PHASE_VERIFY]) > len(listed) + 4


def test_verify_package_progress_still_ends_at_the_total_when_a_file_fails(sim: ReleaseSimulator) -> None:
    package = sim.package("1.2.3", payload=LARGE_PAYLOAD)
    sim.flip_bit(package / "bin" / "rt_1.2.3_linux_amd64")
    calls, report = recorder()
    assert not verify_package(package, sim.trust_root(), now=NOW, progress=report).valid
    assert_well_formed(calls)


def test_verify_airgap_bundle_reports_progress(sim: ReleaseSimulator) -> None:
    package = sim.package("1.2.3", payload=LARGE_PAYLOAD, make_zip=True)
    calls, report = recorder()
    result = verify_airgap_bundle(package.parent / "rt-1.2.3.zip", sim.trust_root(), now=NOW,
                                  progress=report)
    assert result.valid
    counts = assert_well_formed(calls)
    assert list(counts) == [PHASE_VERIFY] and counts[PHASE_VERIFY][-1] > 4 * len(LARGE_PAYLOAD)


def test_byte_meter_clamps_and_finishes() -> None:
    calls, report = recorder()
    meter = ByteMeter(report, "p", 10)
    meter.add(4)
    meter.add(0)
    meter.add(20)  # a file grew underneath: never report beyond the total
    meter.finish()
    assert calls == [("p", 0, 10), ("p", 4, 10), ("p", 10, 10)]
    quiet = ByteMeter(None, "p", 5)
    quiet.add(3)
    quiet.finish()
    assert quiet.done == 5


# --- the CLI helper ---------------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return True


def test_wants_progress_only_on_a_terminal_without_json() -> None:
    assert wants_progress(json_output=False, stream=FakeTerminal())
    assert not wants_progress(json_output=True, stream=FakeTerminal())
    assert not wants_progress(json_output=False, stream=io.StringIO())
    closed = FakeTerminal()
    closed.close()
    assert not wants_progress(json_output=False, stream=closed)  # a closed stream is no terminal


def test_byte_progress_draws_on_a_terminal_and_nothing_elsewhere() -> None:
    plain = io.StringIO()
    with byte_progress(json_output=False, stream=plain) as progress:
        assert progress is None
    assert plain.getvalue() == ""
    terminal = FakeTerminal()
    with byte_progress(json_output=False, stream=terminal) as progress:
        assert progress is not None
        progress("hashing binaries", 0, 100)
        progress("hashing binaries", 100, 100)
    assert "hashing binaries" in terminal.getvalue()


# --- the command as a user runs it ------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_cli(*args: str, env: dict[str, str], stderr_tty: bool = False) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "ringward", *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", **env}
    if not stderr_tty:
        done = subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=300, check=False)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        raw = subprocess.run(command, stdout=subprocess.PIPE, stderr=slave, env=full_env, timeout=300, check=False)
    finally:
        os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    return raw.returncode, raw.stdout.decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def cli_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("progress-cli")
    env = {"RINGWARD_HOME": str(root / "home")}
    code, _, err = run_cli("keys", "generate", "--private-key", str(root / "k.pem"), "--public-key",
                           str(root / "k.pub"), env=env)
    assert code == 0, err
    code, _, err = run_cli("trust", "init", "--output", str(root / "trust.json"), "--key",
                           f"release={root / 'k.pub'}", env=env)
    assert code == 0, err
    dist = root / "dist"
    dist.mkdir()
    for target in ("linux_amd64", "darwin_arm64"):
        (dist / f"rt_1.2.3_{target}").write_bytes(b"#!/bin/sh\n" + LARGE_PAYLOAD)
    return root, env


def package_args(root: Path, output: str, *extra: str) -> list[str]:
    return ["release", "package", str(root / "dist"), "--version", "1.2.3", "--commit", COMMIT, "--ref",
            "refs/tags/v1.2.3", "--repository", "acme/rt", "--signing-key", str(root / "k.pem"), "--output",
            str(root / output), "--zip", "--no-evidence", *extra]


def test_without_a_terminal_output_is_unchanged_and_rich_is_not_imported(
        cli_workspace: tuple[Path, dict[str, str]]) -> None:
    root, env = cli_workspace
    marker = root / "modules.txt"
    probe = (f"import atexit, runpy, sys; atexit.register(lambda: open({str(marker)!r}, 'w').write("
             "' '.join(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))));"
             f"sys.argv = ['ringward', *{package_args(root, 'plain')!r}]; runpy.run_module('ringward', "
             "run_name='__main__', alter_sys=True)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == (f"SIGNED: {root / 'plain' / 'rt-1.2.3'} (10 artifacts, 12 signatures)\n"
                           f"zip: {root / 'plain' / 'rt-1.2.3.zip'}\n")
    assert "rich.progress" not in marker.read_text().split()

    code, out, err = run_cli("release", "verify-package", str(root / "plain" / "rt-1.2.3"), "--trust-root",
                             str(root / "trust.json"), "--no-evidence", env=env)
    assert code == 0 and err == "", err
    assert "\x1b[" not in out and "verifying files" not in out


def test_on_a_terminal_a_transient_bar_goes_to_stderr_and_stdout_is_unchanged(
        cli_workspace: tuple[Path, dict[str, str]]) -> None:
    root, env = cli_workspace
    code, plain_out, _ = run_cli(*package_args(root, "a"), env=env)
    assert code == 0
    code, tty_out, tty_err = run_cli(*package_args(root, "b"), env=env, stderr_tty=True)
    assert code == 0, tty_err
    assert tty_out == plain_out.replace(str(root / "a"), str(root / "b"))
    for phase in (PHASE_HASH, PHASE_SIGN, PHASE_ZIP):
        assert phase in tty_err, tty_err
    code, _, verify_err = run_cli("release", "verify-airgap-bundle", str(root / "b" / "rt-1.2.3.zip"),
                                  "--trust-root", str(root / "trust.json"), "--no-evidence", env=env,
                                  stderr_tty=True)
    assert code == 0 and PHASE_VERIFY in verify_err, verify_err


def test_json_output_on_a_terminal_draws_no_bar(cli_workspace: tuple[Path, dict[str, str]]) -> None:
    root, env = cli_workspace
    code, out, err = run_cli(*package_args(root, "json", "--json"), env=env, stderr_tty=True)
    assert code == 0
    assert err == "", err
    assert out.startswith("{")
