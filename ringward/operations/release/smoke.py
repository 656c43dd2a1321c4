"""`ringward release smoke-installers`: static installer checks, then run the binary built for
this machine in a throw-away directory, with a timeout and a scrubbed environment, and probe it.

Two probes (``--probe``; by default the profile's): ``version`` (the ringward profile) runs it with
``--version``-style arguments and looks for the release version in the output; ``reference-json``
(the reference profile, cavra-spec §4.4) writes the reference's policy request to its stdin and
requires a JSON answer whose ``decision`` is one the reference knows.

The package is fully verified first; nothing is executed from an unverified package.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import InputError, MissingFileError, SmokeTestError, VerificationError
from ringward.core.release.package_format import InstallersDocument, RuntimeFiles
from ringward.core.release.package_rules import runtime_of
from ringward.core.release.profiles import (
    Profile,
    SmokeProbe,
    default_probe,
    judge_reference_smoke_output,
    parse_probe_choice,
    reference_smoke_request,
)
from ringward.core.release.verification import FamilyCollector, FamilyResult, Finding, PackageVerification
from ringward.core.trust.root import TrustRoot
from ringward.operations.release.verify import verify_directory

MAX_CAPTURE = 64 * 1024


_GOOS_PREFIXES = (("linux", "linux"), ("darwin", "darwin"), ("win32", "windows"), ("cygwin", "windows"),
                  ("freebsd", "freebsd"), ("openbsd", "openbsd"), ("netbsd", "netbsd"), ("dragonfly", "dragonfly"),
                  ("sunos", "solaris"), ("aix", "aix"))
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386", "i486": "386",
           "i586": "386", "i686": "386", "x86": "386", "armv6l": "arm", "armv7l": "arm", "arm": "arm",
           "riscv64": "riscv64", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
           "loongarch64": "loong64", "mips64": "mips64", "mips": "mips"}


def current_target() -> str:
    """This machine as a GOOS/GOARCH pair."""
    os_name = next((goos for prefix, goos in _GOOS_PREFIXES if sys.platform.startswith(prefix)), sys.platform)
    machine = platform.machine().lower()
    return f"{os_name}/{_GOARCH.get(machine, machine)}"


@dataclass(frozen=True)
class Execution:
    target: str
    binary: str
    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    duration_seconds: float
    timed_out: bool
    probe: str = SmokeProbe.VERSION.value
    #: what was written to the binary's stdin (the reference probe's request), else None
    stdin: str | None = None
    #: the reference probe's answer, once judged
    decision: str | None = None
    #: stdout was longer than MAX_CAPTURE and cut
    stdout_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SmokeResult:
    package: PackageVerification
    smoke: FamilyResult
    executions: tuple[Execution, ...] = field(default_factory=tuple)
    #: the probe used (or that would have been used), None when verification failed first
    probe: str | None = None

    @property
    def valid(self) -> bool:
        return self.package.valid and self.smoke.status != "failed"

    @property
    def errors(self) -> list[Finding]:
        return [*self.package.errors, *self.smoke.errors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "ringward.installer-smoke.v1",
            "valid": self.valid,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": [*self.package.warnings, *self.smoke.warnings],
            "verified_targets": list(self.smoke.checked),
            "profile": self.package.profile_name,
            "probe": self.probe,
            "executions": [e.to_dict() for e in self.executions],
            "package_verification": self.package.to_dict(),
        }


def check_probe_options(probe: SmokeProbe, probe_args: tuple[str, ...] | None, expect_version: bool,
                        why: str) -> None:
    """``--probe-arg`` and ``--no-expect-version`` shape the version probe only; with the reference
    probe they would be silently meaningless, so they are bad input."""
    if probe is SmokeProbe.REFERENCE_JSON and (probe_args is not None or not expect_version):
        given = "--probe-arg" if probe_args is not None else "--no-expect-version"
        raise InputError(f"{given} applies to the version probe only; this run uses the reference-json probe "
                         f"({why}); add --probe version to probe with arguments")


def requested_probe(probe: str | None, profile: str, probe_args: tuple[str, ...] | None,
                    expect_version: bool) -> SmokeProbe | None:
    """The probe asked for (None: the verified package's profile decides), refusing version-probe
    options that the probe the run will use cannot take -- before anything runs (the CLI calls this
    before starting a flow too)."""
    requested = parse_probe_choice(probe) if probe is not None else None
    if requested is not None:
        check_probe_options(requested, probe_args, expect_version, f"--probe {requested.value}")
    elif profile == Profile.REFERENCE.value:
        check_probe_options(SmokeProbe.REFERENCE_JSON, probe_args, expect_version, "the reference profile's probe")
    return requested


def smoke_installers(
    package_dir: Path,
    trust_root: TrustRoot,
    *,
    now: datetime,
    execute: bool = True,
    timeout_seconds: float = 5.0,
    probe: str | None = None,
    probe_args: tuple[str, ...] | None = None,
    expect_version: bool = True,
    target: str | None = None,
    profile: str = "ringward",
) -> SmokeResult:
    """``probe``: ``version``, ``reference-json`` or None (the profile's). ``probe_args`` (default
    ``--version``) and ``expect_version`` apply to the version probe only."""
    requested = requested_probe(probe, profile, probe_args, expect_version)
    integrity, package = verify_directory(package_dir, trust_root, now=now, profile=profile)
    c = FamilyCollector("installer-smoke")
    executions: list[Execution] = []
    if not package.valid or integrity.content is None:
        c.fail(SmokeTestError("package verification failed; installers were not smoke-tested"))
        return SmokeResult(package, c.result())
    chosen = requested or default_probe(Profile(package.profile_name))
    if requested is None:
        check_probe_options(chosen, probe_args, expect_version, f"the {package.profile_name} profile's probe")
    content = integrity.content
    files = RuntimeFiles(runtime_of(content))
    installers = InstallersDocument.model_validate(
        loads_strict(content.documents[files.installers], source=files.installers)
    )
    for t in installers.targets:
        if t.binary not in content.listed():
            c.fail(MissingFileError(f"installer smoke binary is missing: {t.binary}"))
            continue
        if not t.install_path or not t.install_command:
            c.fail(SmokeTestError(f"installer smoke target is missing install command guidance: {t.target}"))
            continue
        c.checked.append(t.target)
    if execute:
        wanted = target or current_target()
        match = next((t for t in installers.targets if t.target == wanted), None)
        if match is None:
            c.warn(f"no installer metadata target matches current platform: {wanted}")
        else:
            try:
                execution = _execute(package_dir / match.binary, match.target, content.digests[match.binary],
                                     files.runtime, timeout_seconds, chosen,
                                     probe_args if probe_args is not None else ("--version",))
                executions.append(execution)
                decision = _judge(execution, installers.version, expect_version)
                if decision is not None:
                    executions[-1] = replace(execution, decision=decision)
            except VerificationError as exc:
                c.fail(exc)
    return SmokeResult(package, c.result(), tuple(executions), chosen.value)


def _execute(binary: Path, target: str, digest: str, runtime: str, timeout: float, probe: SmokeProbe,
             probe_args: tuple[str, ...]) -> Execution:
    import hashlib

    with tempfile.TemporaryDirectory(prefix="ringward-smoke-") as tmp:
        work = Path(tmp)
        name = runtime + (".exe" if target.startswith("windows/") else "")
        copy = work / name
        # copy from a descriptor opened without following links into a new private file, hashing
        # what is copied: exactly the verified bytes run, whatever happens to the package meanwhile
        try:
            source_fd = os.open(binary, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise SmokeTestError(f"{binary}: cannot open the verified binary ({exc.strerror})") from exc
        hasher = hashlib.sha256()
        target_fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
        with os.fdopen(source_fd, "rb") as reader, os.fdopen(target_fd, "wb") as writer:
            while chunk := reader.read(1024 * 1024):
                hasher.update(chunk)
                writer.write(chunk)
        if hasher.hexdigest() != digest:
            raise SmokeTestError(f"{binary}: changed after verification")
        args = probe_args if probe is SmokeProbe.VERSION else ()
        stdin = reference_smoke_request() if probe is SmokeProbe.REFERENCE_JSON else None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C", "TMPDIR": tmp}
        shown = [name, *args]
        started = time.monotonic()
        sent = stdin.decode() if stdin is not None else None
        try:
            returncode, out, err, timed_out = _run_bounded([str(copy), *args], work, env, stdin, timeout)
        except OSError as exc:
            return Execution(target, binary.name, shown, None, "", f"could not execute: {exc}",
                             round(time.monotonic() - started, 3), False, probe.value, sent)
        return Execution(target, binary.name, shown, returncode, _text(out), _text(err),
                         round(time.monotonic() - started, 3), timed_out, probe.value, sent,
                         stdout_truncated=len(out) > MAX_CAPTURE)


def _run_bounded(command: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None,
                 timeout: float) -> tuple[int | None, bytes, bytes, bool]:
    """Run ``command`` in its own session; on timeout kill the whole process group (a hung probe
    leaves nothing running behind it in the throw-away directory)."""
    with subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=os.name == "posix") as proc:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
            return proc.returncode, out, err, False
        except subprocess.TimeoutExpired as expired:
            _kill_group(proc)
            try:
                out, err = proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:  # a descendant left the group and keeps the pipes open
                out, err = expired.stdout or b"", expired.stderr or b""
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                proc.wait()
            return None, _bytes(out), _bytes(err), True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data.encode() if isinstance(data, str) else data


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data[:MAX_CAPTURE]
    return data[:MAX_CAPTURE].decode("utf-8", errors="replace")


def _judge(execution: Execution, version: str, expect_version: bool) -> str | None:
    """Raise SmokeTestError when the probe failed; the reference probe's decision otherwise."""
    if execution.timed_out:
        raise SmokeTestError(
            f"installer smoke execution timed out for {execution.binary} (after {execution.duration_seconds:g} s)")
    if execution.returncode is None:
        detail = " ".join(execution.stderr.split())[:200]
        raise SmokeTestError(f"installer smoke execution failed for {execution.binary}: {detail}")
    if execution.returncode != 0:
        lines = (execution.stderr or execution.stdout).strip().splitlines()
        raise SmokeTestError(
            f"installer smoke execution failed for {execution.binary}: exit code {execution.returncode}"
            + (f" ({lines[-1].strip()[:200]})" if lines else "")
        )
    if execution.probe == SmokeProbe.REFERENCE_JSON.value:
        if execution.stdout_truncated:
            raise SmokeTestError(f"installer smoke output is not valid JSON for {execution.binary}: "
                                 f"output longer than {MAX_CAPTURE} bytes")
        return judge_reference_smoke_output(execution.binary, execution.stdout)
    if expect_version and version not in execution.stdout + execution.stderr:
        raise SmokeTestError(
            f"installer smoke output for {execution.binary} does not mention version {version}"
        )
    return None
