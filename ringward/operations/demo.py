"""Sample inputs for the end-to-end demo: runtime binaries and a dependency list.

The binary for this machine is real: a small C program compiled with the system compiler
(or, without one, a POSIX shell script) that answers ``--version``. The other targets get
deterministic stand-in bytes so every platform of the package layout is exercised.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from ringward.core.errors import InputError
from ringward.operations.release.smoke import current_target

#: the six platforms the sample release is built for (the surfaces endpoint deployment covers)
DEMO_TARGETS = ("linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64")

_C_SOURCE = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("%s version %s\n", "@RUNTIME@", "@VERSION@");
        return 0;
    }
    printf("@RUNTIME@ @VERSION@: sample runtime built by `ringward demo`\n");
    return 0;
}
"""


def build_sample_dist(dist: Path, runtime: str, version: str) -> list[Path]:
    """Write sample binaries for every os/arch and a ``dependencies.json`` into ``dist``."""
    dist.mkdir(parents=True, exist_ok=True)
    host = current_target()
    written = []
    for platform in DEMO_TARGETS:
        os_name, arch = platform.split("/")
        name = f"{runtime}_{version}_{os_name}_{arch}" + (".exe" if os_name == "windows" else "")
        target = dist / name
        if platform == host:
            _build_host_binary(target, runtime, version)
        else:
            seed = f"{runtime}:{version}:{platform}".encode()
            blocks = [hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(2048)]
            target.write_bytes(b"RINGWARD-SAMPLE-BINARY\n" + b"".join(blocks))
        target.chmod(0o755)
        written.append(target)
    deps = [{"name": "golang.org/x/sys", "version": "v0.38.0", "purl": "pkg:golang/golang.org/x/sys@v0.38.0"},
            {"name": "github.com/spf13/cobra", "version": "v1.10.1",
             "purl": "pkg:golang/github.com/spf13/cobra@v1.10.1"}]
    (dist / "dependencies.json").write_text(json.dumps(deps, indent=2) + "\n")
    return written


def _build_host_binary(target: Path, runtime: str, version: str) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "main.c"
            source.write_text(_C_SOURCE.replace("@RUNTIME@", runtime).replace("@VERSION@", version))
            done = subprocess.run([compiler, "-O2", "-s", "-o", str(target), str(source)], capture_output=True,
                                  check=False, timeout=120)
            if done.returncode == 0:
                return
    target.write_text(f'#!/bin/sh\necho "{runtime} version {version}"\n')


#: the promotion window policy the demo uses (production always open, Friday freeze on broad)
DEMO_WINDOWS = Path(__file__).resolve().parents[2] / "examples" / "demo-windows.yaml"


def demo_windows_policy(destination: Path) -> Path:
    """Copy the demo's promotion window policy (``examples/demo-windows.yaml``) to ``destination``."""
    if not DEMO_WINDOWS.is_file():
        raise InputError(f"{DEMO_WINDOWS}: the demo's window policy is missing (run the demo from a Ringward checkout)")
    shutil.copyfile(DEMO_WINDOWS, destination)
    return destination
