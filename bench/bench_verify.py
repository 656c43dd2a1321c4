"""Benchmark: `ringward release verify-package` on ~1 GiB of binaries against the unavoidable
cryptographic work done plainly, and against `sha256sum -c`, all measured in this one run.

    .venv/bin/python bench/bench_verify.py [--size-mib 171] [--repeat 3] [--workdir bench/out]

The package layout allows six runtime targets (linux, darwin, windows x amd64, arm64), so the
~1 GiB of the issue is six binaries of 171 MiB (1026 MiB). Each command runs as a fresh process
on a warm page cache; the best of --repeat runs is reported (medians alongside).

Baseline ("plain"): one fresh Python process computing SHA-256 of every file listed in
checksums.txt and verifying every detached Ed25519 signature over its file's bytes, sequentially,
with hashlib and cryptography.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64", "windows_amd64.exe", "windows_arm64.exe")

PLAIN = r"""
import base64, hashlib, json, sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_public_key
root = Path(sys.argv[1])
for line in (root / "checksums.txt").read_text().splitlines():
    digest, name = line.split("  ", 1)
    with open(root / name, "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == digest, name
for sig_path in sorted(root.rglob("*.sig.json")):
    sig = json.loads(sig_path.read_bytes())
    key = load_pem_public_key(sig["public_key_pem"].encode())
    key.verify(base64.b64decode(sig["value"]), (root / sig["subject"]).read_bytes())
print("ok")
"""


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Wall seconds, exit status and peak RSS (KiB) of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[:3]} failed with {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
    return elapsed, proc.returncode, usage.ru_maxrss


def build(workdir: Path, size_mib: int) -> tuple[Path, Path]:
    package = workdir / "out" / "bench-1.0.0"
    trust = workdir / "trust-root.json"
    marker = workdir / f"built-{size_mib}"
    if marker.exists() and package.is_dir() and trust.is_file():
        return package, trust
    shutil.rmtree(workdir, ignore_errors=True)
    dist = workdir / "dist"
    dist.mkdir(parents=True)
    chunk = 16 * 1024 * 1024
    for target in TARGETS:
        with open(dist / f"bench_1.0.0_{target}", "wb") as handle:
            remaining = size_mib * 1024 * 1024
            while remaining:
                handle.write(os.urandom(min(chunk, remaining)))
                remaining -= min(chunk, remaining)
    cli = [sys.executable, "-m", "ringward"]
    env = {**os.environ, "RINGWARD_HOME": str(workdir / "home")}
    subprocess.run([*cli, "keys", "generate", "--private-key", str(workdir / "k.pem"), "--public-key",
                    str(workdir / "k.pub")], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "trust", "init", "--output", str(trust), "--key", f"release={workdir / 'k.pub'}"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "release", "package", str(dist), "--version", "1.0.0", "--commit", "ab" * 20, "--ref",
                    "refs/tags/v1.0.0", "--repository", "bench/bench", "--signing-key", str(workdir / "k.pem"),
                    "--output", str(workdir / "out"), "--no-evidence"], check=True, env=env, stdout=subprocess.DEVNULL)
    shutil.rmtree(dist)
    marker.write_text("ok")
    return package, trust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=171)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "verify")
    args = parser.parse_args()
    package, trust = build(args.workdir, args.size_mib)
    files = [p for p in package.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    largest = max(p.stat().st_size for p in files)
    for path in files:  # warm the page cache so every contender reads from memory
        with open(path, "rb") as handle:
            while handle.read(16 * 1024 * 1024):
                pass
    env = {**os.environ, "RINGWARD_HOME": str(args.workdir / "home")}
    contenders = {
        "ringward verify-package": ([sys.executable, "-m", "ringward", "release", "verify-package", str(package),
                                     "--trust-root", str(trust)], None),
        "ringward verify-package --no-evidence": ([sys.executable, "-m", "ringward", "release", "verify-package",
                                                   str(package), "--trust-root", str(trust), "--no-evidence"], None),
        "plain sha256 + ed25519 (1 process, sequential)": ([sys.executable, "-c", PLAIN, str(package)], None),
        "sha256sum -c checksums.txt": (["sha256sum", "--quiet", "--strict", "-c", "checksums.txt"], package),
    }
    results: dict[str, dict[str, float]] = {}
    for name, (command, cwd) in contenders.items():
        times, peaks = [], []
        for _ in range(args.repeat):
            elapsed, _, peak = run(command, cwd=cwd, env=env)
            times.append(elapsed)
            peaks.append(peak)
        results[name] = {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
                         "peak_rss_mib": round(max(peaks) / 1024, 1)}
    verify = results["ringward verify-package"]["best_s"]
    plain = results["plain sha256 + ed25519 (1 process, sequential)"]["best_s"]
    sha256sum = results["sha256sum -c checksums.txt"]["best_s"]
    memory_cap = (largest + 128 * 1024 * 1024) / 1024 / 1024
    report = {
        "package_bytes": total,
        "largest_file_mib": round(largest / 1024 / 1024, 1),
        "cpus": os.cpu_count(),
        "results": results,
        "ratio_verify_vs_plain": round(verify / plain, 3),
        "ratio_verify_vs_sha256sum": round(verify / sha256sum, 3),
        "memory_cap_mib": round(memory_cap, 1),
        "verify_peak_within_cap": results["ringward verify-package"]["peak_rss_mib"] <= memory_cap,
        "targets": {"ratio_verify_vs_plain_max": 1.0},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
