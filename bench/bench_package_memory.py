"""Benchmark: peak memory and wall time of `ringward release package` on a large binary.

    .venv/bin/python bench/bench_package_memory.py [--size MIB] [--keys N] [--no-zip]
        [--code PATH] [--tmp DIR] [--json FILE]

Goal (issue 12, "The console"): packaging stays at or under 256 MiB peak RSS whatever the binary
size (an 800 MB binary used to peak at 1.7 GB).

The binary is ``--size`` MiB (default 512) that deflate cannot shrink (one random MiB repeated,
each copy led by its index), written once in a temporary directory (``--tmp``, default the system
one; it needs about 3x the size free: the binary, its copy in the package and the zip). The
packaging runs in a fresh child process (signed with ``--keys`` Ed25519 keys, zipped unless
``--no-zip``), after a warm-up package of a 4 KiB binary so imports are done. Reported:

- ``peak rss``: the child's high-water RSS (``VmHWM``, what ``ru_maxrss`` reports) over the whole
  child, interpreter and imports included: the figure the goal is about;
- ``rss growth``: that high-water mark minus the RSS just before packaging (the high-water mark is
  reset with ``/proc/self/clear_refs`` 5 when the kernel allows it);
- ``wall``: seconds for the packaging call alone (copy + SHA-256, Ed25519 passes, zip).

``--code PATH`` measures another checkout's packaging (its ``ringward`` first on the child's
``sys.path``), e.g. the code before streaming:
``git archive <commit> | tar -x -C /tmp/ringward-old`` then ``--code /tmp/ringward-old``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
GOAL_MIB = 256
VERSION = "9.9.9"


def make_binary(path: Path, mib: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as target:
        for index in range(mib):
            target.write(index.to_bytes(8, "big") + block[8:])


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sys.path.insert(0, spec["code"])
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ringward.core.release.package_builder import ReleaseInfo
    from ringward.operations.release.package import package_release

    work = Path(spec["work"])
    keys = [Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench-%d" % n).digest())
            for n in range(spec["keys"])]
    info = ReleaseInfo(runtime="rt", version=VERSION, commit="c0ffee" + "0" * 34, ref=f"refs/tags/v{VERSION}",
                       repository="acme/runtime", created_at=datetime(2026, 1, 1, tzinfo=UTC), signer="bench")
    warm = work / "warm-dist"
    warm.mkdir()
    (warm / f"rt_{VERSION}_linux_amd64").write_bytes(os.urandom(4096))
    package_release(warm, work / "warm-out", info, keys[0], make_zip=spec["zip"], extra_signing_keys=keys[1:])
    reset = _reset_high_water()
    rss_before = _status_kib("VmRSS") or 0
    started = time.perf_counter()
    package_release(Path(spec["dist"]), work / "out", info, keys[0], make_zip=spec["zip"],
                    extra_signing_keys=keys[1:])
    wall = time.perf_counter() - started
    high_water = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_before_kib": rss_before, "high_water_kib": high_water, "reset": reset,
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "wall_s": wall}))


def run(size_mib: int, keys: int, make_zip: bool, code: Path, tmp: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ringward-bench-package-", dir=tmp) as scratch:
        work = Path(scratch)
        dist = work / "dist"
        dist.mkdir()
        started = time.perf_counter()
        make_binary(dist / f"rt_{VERSION}_linux_amd64", size_mib)
        generated = time.perf_counter() - started
        spec = work / "spec.json"
        spec.write_text(json.dumps({"code": str(code), "work": str(work), "dist": str(dist), "keys": keys,
                                    "zip": make_zip}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)])}
        done = subprocess.run([sys.executable, __file__, "child", str(spec)], capture_output=True, text=True,
                              env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"child failed:\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        zip_bytes = sum(p.stat().st_size for p in (work / "out").glob("*.zip"))
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "binary_mib": size_mib,
        "keys": keys,
        "zip": make_zip,
        "code": str(code),
        "generate_s": round(generated, 2),
        "wall_s": round(figures["wall_s"], 2),
        "peak_rss_mib": round(figures["high_water_kib"] / 1024, 1),
        "rss_before_mib": round(figures["rss_before_kib"] / 1024, 1),
        "rss_growth_mib": round((figures["high_water_kib"] - figures["rss_before_kib"]) / 1024, 1),
        "high_water_reset": figures["reset"],
        "children_ru_maxrss_mib": round(children_peak / 1024, 1),
        "zip_mib": round(zip_bytes / MIB, 1),
        "goal_mib": GOAL_MIB,
        "goal_met": figures["high_water_kib"] / 1024 <= GOAL_MIB,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["child"]:
        child(args[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="binary size in MiB (default 512)")
    parser.add_argument("--keys", type=int, default=1, help="number of signing keys (default 1)")
    parser.add_argument("--no-zip", action="store_true", help="do not write the zip")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose packaging to measure")
    parser.add_argument("--tmp", default=None, help="directory for the scratch files (needs ~3x --size free)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    options = parser.parse_args(args)
    if options.size < 1 or options.keys < 1:
        parser.error("--size and --keys must be at least 1")
    result = run(options.size, options.keys, not options.no_zip, options.code.resolve(), options.tmp)
    for name, value in result.items():
        print(f"{name:>24}: {value}")
    if options.json is not None:
        options.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
