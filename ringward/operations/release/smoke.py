"""`ringward release smoke-installers`: static installer checks, then run the binary built for
this machine in a throw-away directory with a timeout and a ``--version``-style probe.

The package is fully verified first; nothing is executed from an unverified package.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import MissingFileError, SmokeTestError, VerificationError
from ringward.core.release.package_format import InstallersDocument, RuntimeFiles
from ringward.core.release.package_rules import runtime_of
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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SmokeResult:
    package: PackageVerification
    smoke: FamilyResult
    executions: tuple[Execution, ...] = field(default_factory=tuple)

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
            "executions": [e.to_dict() for e in self.executions],
            "package_verification": self.package.to_dict(),
        }


def smoke_installers(
    package_dir: Path,
    trust_root: TrustRoot,
    *,
    now: datetime,
    execute: bool = True,
    timeout_seconds: float = 5.0,
    probe_args: tuple[str, ...] = ("--version",),
    expect_version: bool = True,
    target: str | None = None,
    profile: str = "ringward",
) -> SmokeResult:
    integrity, package = verify_directory(package_dir, trust_root, now=now, profile=profile)
    c = FamilyCollector("installer-smoke")
    executions: list[Execution] = []
    if not package.valid or integrity.content is None:
        c.fail(SmokeTestError("package verification failed; installers were not smoke-tested"))
        return SmokeResult(package, c.result())
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
            execution = _execute(package_dir / match.binary, match.target, content.digests[match.binary],
                                 files.runtime, timeout_seconds, probe_args)
            executions.append(execution)
            try:
                _judge(execution, installers.version, expect_version)
            except VerificationError as exc:
                c.fail(exc)
    return SmokeResult(package, c.result(), tuple(executions))


def _execute(binary: Path, target: str, digest: str, runtime: str, timeout: float,
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
        command = [str(copy), *probe_args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C", "TMPDIR": tmp}
        started = time.monotonic()
        try:
            proc = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            return Execution(target, binary.name, [name, *probe_args], None, _text(exc.stdout), _text(exc.stderr),
                             round(time.monotonic() - started, 3), True)
        except OSError as exc:
            return Execution(target, binary.name, [name, *probe_args], None, "", f"could not execute: {exc}",
                             round(time.monotonic() - started, 3), False)
        return Execution(target, binary.name, [name, *probe_args], proc.returncode, _text(proc.stdout),
                         _text(proc.stderr), round(time.monotonic() - started, 3), False)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data[:MAX_CAPTURE]
    return data[:MAX_CAPTURE].decode("utf-8", errors="replace")


def _judge(execution: Execution, version: str, expect_version: bool) -> None:
    if execution.timed_out:
        raise SmokeTestError(f"installer smoke execution timed out for {execution.binary}")
    if execution.returncode != 0:
        detail = (execution.stderr or execution.stdout).strip().splitlines()
        raise SmokeTestError(
            f"installer smoke execution failed for {execution.binary}: exit code {execution.returncode}"
            + (f" ({detail[-1][:200]})" if detail else "")
        )
    if expect_version and version not in execution.stdout + execution.stderr:
        raise SmokeTestError(
            f"installer smoke output for {execution.binary} does not mention version {version}"
        )
