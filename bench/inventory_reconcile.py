"""Benchmark: reconcile 1,000,000 endpoint observations against a signed release (issue 8).

    .venv/bin/python bench/inventory_reconcile.py [--endpoints 1000000] [--repeat 3] [--engines all]

Builds (once, cached under ``bench/out/inventory``) a signed package with the CLI and a fleet of
``--endpoints`` observations in Ringward's observations layout (what ``ringward inventory ingest``
writes): ~94.5 % compliant, the rest version drift (behind and ahead), checksum drift, stale
observations and unknown targets, one desired target never reported. Then, in the same run, each
contender is timed as a fresh process (wall clock, best and median of ``--repeat``; CPU seconds
(user + system, which load from other processes inflates far less than wall) and peak RSS from
``wait4``; the load average is printed beside every row):

- ``ringward inventory reconcile``: the CLI exactly as a user runs it -- package verification
  against the pinned trust root, the columnar engine, the report file and its evidence record;
- ``engine: columnar (polars)`` / ``engine: streaming loop``: Ringward's two engines alone on the same
  file (``reconcile_file``), the second being the plain-Python candidate;
- ``duckdb (parse + aggregate only)`` (with ``--engines all``): DuckDB reading the same lines and
  decoding the fields Ringward needs, grouped per target -- the candidate measured for the choice;
- ``reference loop (peer)``: a faithful re-implementation of cavra-spec §8.4's per-record loop:
  ``json.load`` of the whole file, group by target, one Python pass, the ``mer_`` id over
  ``json.dumps`` of every endpoint. (It writes no report, so it is timed doing less than Ringward.)

Prints a table and ``ringward / peer`` ratios; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = "2026-11-22T12:00:00Z"

REFERENCE_LOOP = r'''
import hashlib, json, sys
from datetime import datetime, timedelta, timezone
manifest = json.load(open(sys.argv[1]))
observed = json.load(open(sys.argv[2]))
now = datetime.fromisoformat(sys.argv[3].replace("Z", "+00:00"))
stale_after = timedelta(hours=24)
desired = {t["id"]: t for t in manifest["deployment_targets"] if t.get("id")}
grouped = {}
for endpoint in observed["endpoints"]:
    target = str(endpoint.get("deployment_target") or endpoint.get("target_id") or "").strip()
    if target:
        grouped.setdefault(target, []).append(endpoint)
expected_version = manifest["version"]
items, compliant, stale_count = [], 0, 0
for target_id in sorted(desired):
    target = desired[target_id]
    endpoints = grouped.get(target_id, [])
    if not endpoints:
        items.append({"type": "missing_observation", "severity": "critical", "deployment_target": target_id,
                      "expected_version": expected_version, "expected_binary_sha256": target["binary_sha256"],
                      "message": f"No observed endpoints reported for deployment target {target_id}."})
        continue
    for endpoint in endpoints:
        version = endpoint.get("installed_version") or endpoint.get("version")
        sha = endpoint.get("binary_sha256") or endpoint.get("installed_binary_sha256")
        types = []
        if version and expected_version and version != expected_version:
            types.append("version_drift")
        if sha and target["binary_sha256"] and sha != target["binary_sha256"]:
            types.append("binary_drift")
        seen = endpoint.get("last_seen_at")
        if seen:
            try:
                when = datetime.fromisoformat(str(seen).replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                if now - when > stale_after:
                    types.append("stale_observation")
            except ValueError:
                types.append("stale_observation")
        if "stale_observation" in types:
            stale_count += 1
        if types:
            items.append({"type": ",".join(types), "severity": "critical" if set(types) & {"version_drift",
                          "binary_drift"} else "warning", "endpoint_id": endpoint.get("endpoint_id"),
                          "deployment_target": target_id, "expected_version": expected_version,
                          "observed_version": version, "expected_binary_sha256": target["binary_sha256"],
                          "observed_binary_sha256": sha, "last_seen_at": seen,
                          "message": f"Endpoint {endpoint.get('endpoint_id')} is not aligned with deployment "
                                     f"target {target_id}."})
        else:
            compliant += 1
for target_id in sorted(set(grouped) - set(desired)):
    for endpoint in grouped[target_id]:
        items.append({"type": "unknown_deployment_target", "severity": "warning",
                      "endpoint_id": endpoint.get("endpoint_id"), "deployment_target": target_id,
                      "observed_version": endpoint.get("installed_version") or endpoint.get("version"),
                      "message": "... which is not in the signed manifest."})
preimage = json.dumps({"version": manifest["version"], "commit": manifest["commit"],
                       "observed_at": observed["observed_at"], "endpoints": observed["endpoints"]}, sort_keys=True)
rid = "mer_" + hashlib.sha256(preimage.encode()).hexdigest()[:12]
print(rid, compliant, len(items), stale_count)
'''

ENGINE = r'''
import sys
from datetime import datetime, timedelta
from pathlib import Path
from ringward.core.inventory.reconcile import DesiredState, DesiredTarget
from ringward.operations.inventory.engine import reconcile_file
import json
manifest = json.load(open(sys.argv[1]))
desired = DesiredState(manifest["version"], manifest["commit"], manifest["repository"], tuple(sorted(
    (DesiredTarget(t["id"], t["binary_sha256"]) for t in manifest["deployment_targets"]), key=lambda t: t.id)))
result = reconcile_file(Path(sys.argv[2]), desired, now=datetime.fromisoformat(sys.argv[3].replace("Z", "+00:00")),
                        stale_after=timedelta(hours=24), engine=sys.argv[4])
assert result.engine == sys.argv[4], result.engine
r = result.reconciliation
s = r.summary()
print(r.reconciliation_id, s["compliant_endpoint_count"], len(r.drift_items), s["stale_endpoint_count"])
'''

DUCKDB = r'''
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads=2")
path, skip = sys.argv[2], int(sys.argv[3])
rows = con.execute(f"""
  select j.deployment_target, count(*), count(*) filter (where j.installed_version <> '1.0.0')
  from (select json_transform(rtrim(line[5:], ','), '{{"endpoint_id":"VARCHAR","deployment_target":"VARCHAR",
        "installed_version":"VARCHAR","binary_sha256":"VARCHAR","last_seen_at":"VARCHAR"}}') as j
        from read_csv('{path}', columns={{'line':'VARCHAR'}}, delim='\x01', quote='', escape='', header=false,
                      auto_detect=false, skip={skip})
        where starts_with(line, '    {{'))
  group by 1""").fetchall()
print(sum(r[1] for r in rows))
'''


def run(command: list[str], env: dict[str, str], *, cwd: Path, ok_codes: tuple[int, ...] = (0,)
        ) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (KiB) and stdout of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""  # a pipe must be drained before waiting
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        err = proc.stderr.read().decode()[-800:] if proc.stderr else ""
        raise SystemExit(f"{command[:4]} failed with {code}: {err}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out.decode()


def build_package(workdir: Path) -> tuple[Path, Path]:
    package = workdir / "out" / "bench-1.0.0"
    trust = workdir / "trust-root.json"
    if package.is_dir() and trust.is_file():
        return package, trust
    shutil.rmtree(workdir / "out", ignore_errors=True)
    dist = workdir / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    for target in ("linux_amd64", "linux_arm64", "darwin_arm64", "darwin_amd64", "windows_amd64.exe"):
        (dist / f"bench_1.0.0_{target}").write_bytes(b"#!/bin/sh\necho bench\n" + target.encode() * 1000)
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
    return package, trust


def build_fleet(path: Path, manifest: dict[str, Any], count: int) -> None:
    from ringward.core.inventory.observations import render_observations

    if path.is_file() and path.with_suffix(".count").is_file() and path.with_suffix(".count").read_text() == str(count):
        return
    rng = random.Random(8)
    targets = [(t["id"], t["binary_sha256"]) for t in manifest["deployment_targets"]]
    reported = targets[:-1]  # the last desired target is never reported: a missing_observation
    evil = hashlib.sha256(b"tampered").hexdigest()

    def endpoints() -> Any:
        for index in range(count):
            target, sha = reported[index % len(reported)]
            roll = rng.random()
            endpoint = {"endpoint_id": f"host-{index:07d}", "deployment_target": target, "installed_version": "1.0.0",
                        "binary_sha256": sha, "last_seen_at": f"2026-11-22T10:{index % 60:02d}:00Z",
                        "provider": "fleet", "hostname": f"host-{index:07d}.corp.example", "os": "linux",
                        "management_state": "online", "last_checkin_at": f"2026-11-22T11:{index % 60:02d}:00Z",
                        "last_inventory_at": f"2026-11-22T10:{index % 60:02d}:00Z"}
            if roll < 0.015:
                endpoint["installed_version"] = "v0.9.4"
            elif roll < 0.02:
                endpoint["installed_version"] = "1.1.0-rc.1"
            elif roll < 0.025:
                endpoint["binary_sha256"] = evil
            elif roll < 0.055:
                endpoint["last_seen_at"] = endpoint["last_inventory_at"] = "2026-11-19T08:00:00Z"
            elif roll < 0.056:
                endpoint["deployment_target"] = "retired-kiosk-target"
            yield endpoint

    header = {"schema_version": "cavra.endpoint-observations.v1", "product": "Ringward", "provider": "fleet",
              "channel": "stable", "observed_at": "2026-11-22T11:00:00Z", "source": "bench"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for chunk in render_observations(header, endpoints()):
            handle.write(chunk)
    path.with_suffix(".count").write_text(str(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", choices=("default", "all"), default="default")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "inventory")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    package, trust = build_package(args.workdir)
    manifest_path = package / "bench.endpoint-deployment.json"
    manifest = json.loads(manifest_path.read_bytes())
    fleet = args.workdir / f"fleet-{args.endpoints}.json"
    build_fleet(fleet, manifest, args.endpoints)
    with open(fleet, "rb") as handle:  # warm the page cache: every contender reads from memory
        while handle.read(64 << 20):
            pass
    home = args.workdir / "home"
    env = {**os.environ, "RINGWARD_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("RINGWARD_DATABASE_URL", None)
    py = [sys.executable]
    header_lines = fleet.open("rb").read(4096).split(b'"endpoints": [')[0].count(b"\n") + 1
    contenders: dict[str, tuple[list[str], tuple[int, ...]]] = {
        "ringward inventory reconcile (CLI, verify + report + evidence)": (
            [*py, "-m", "ringward", "inventory", "reconcile", str(package), str(fleet), "--trust-root", str(trust),
             "--at", NOW, "--json"], (0, 1)),
        "engine: columnar (polars)": ([*py, "-c", ENGINE, str(manifest_path), str(fleet), NOW, "columnar"], (0,)),
        "reference loop (peer, cavra-spec 8.4)": ([*py, "-c", REFERENCE_LOOP, str(manifest_path), str(fleet), NOW],
                                                  (0,)),
    }
    if args.engines == "all":
        contenders["engine: streaming loop (plain Python)"] = (
            [*py, "-c", ENGINE, str(manifest_path), str(fleet), NOW, "stream"], (0,))
        contenders["duckdb (parse + aggregate only)"] = (
            [*py, "-c", DUCKDB, str(manifest_path), str(fleet), str(header_lines)], (0,))
    results: dict[str, dict[str, Any]] = {}
    started_load = os.getloadavg()
    print(f"load average at start {started_load[0]:.2f} {started_load[1]:.2f} {started_load[2]:.2f}; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", flush=True)
    for name, (command, ok) in contenders.items():
        if "CLI" in name:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(args.workdir / "endpoint-reconciliation", ignore_errors=True)
        times, cpus, peaks, outputs = [], [], [], []
        for _ in range(args.repeat):
            elapsed, cpu, peak, out = run(command, env, cwd=args.workdir, ok_codes=ok)
            times.append(elapsed)
            cpus.append(cpu)
            peaks.append(peak)
            outputs.append(out.strip().splitlines()[-1] if out.strip() else "")
        results[name] = {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
                         "cpu_s": round(min(cpus), 3), "peak_rss_mib": round(max(peaks) / 1024, 1),
                         "load_average": round(os.getloadavg()[0], 2), "output": outputs[-1][:120]}
        print(f"{name:66s} best {min(times):7.3f} s  median {statistics.median(times):7.3f} s  "
              f"cpu {min(cpus):7.3f} s  peak {max(peaks) / 1024:7.1f} MiB  load {os.getloadavg()[0]:.2f}",
              flush=True)
    shutil.rmtree(args.workdir / "endpoint-reconciliation", ignore_errors=True)
    peer = results["reference loop (peer, cavra-spec 8.4)"]
    cli = results["ringward inventory reconcile (CLI, verify + report + evidence)"]
    engine = results["engine: columnar (polars)"]
    print(f"\nendpoints {args.endpoints:,}; file {fleet.stat().st_size / 2**20:.0f} MiB; load average "
          f"{os.getloadavg()[0]:.2f}; {platform.python_version()} on {os.cpu_count()} CPUs")
    for label, mine in (("ringward CLI", cli), ("columnar engine", engine)):
        print(f"{label} / peer: wall {mine['best_s'] / peer['best_s']:.3f}x, cpu {mine['cpu_s'] / peer['cpu_s']:.3f}x, "
              f"peak RSS {mine['peak_rss_mib'] / peer['peak_rss_mib']:.3f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"endpoints": args.endpoints, "results": results,
                                         "load_average_start": started_load, "load_average": os.getloadavg()},
                                        indent=2))


if __name__ == "__main__":
    main()
