"""Benchmark: the cost of one rollout promotion lifecycle, ``request -> approve -> execute -> audit``
(the audit delivered through the connector platform to a private-queue destination), run three ways
on the same signed package:

- ``ops``:  the operations the CLI runs in-process, called directly with one open store
            (``rollout_ops.request_promotion``, ``approval_ops.decide_approval``,
            ``rollout_ops.execute_promotion``, ``rollout_ops.audit``);
- ``cli``:  the CLI in-process (``ringward.cli.main.run([...])``: option parsing, one store opened
            per command, JSON output), i.e. a user's command minus interpreter start-up and imports;
- ``flow``: each step as a Prefect flow run (``flows.promotion_rollout``: what ``--prefect`` runs) on a
            local Prefect test server (``prefect_test_harness``, heartbeats off as in tests/conftest.py).
            The approval is decided in-process in every mode: the ``approval`` commands have no
            ``--prefect`` (a decision is one store transaction).

    .venv/bin/python bench/bench_promotion.py [--iterations 20] [--flow-iterations 10]
        [--modes ops,cli,flow] [--database-url URL] [--json bench/out/promotion.json] 2> prefect.log

Every iteration captures a fresh rollout first (a rollout is promoted once); the capture is setup
and is not part of the lifecycle total. One untimed warm-up iteration runs before each mode. Per
step the script reports mean, p50 and p95 (nearest rank) in milliseconds, the same for the total of
the four steps, and the ratios flow/ops and flow/cli of the means. Time: wall clock
(``time.perf_counter``); CPU of this process (``time.process_time``) is reported per mode.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = ("request", "approve", "execute", "audit")
MODES = ("ops", "cli", "flow")


def _utc() -> datetime:
    return datetime.now(UTC)


def _p(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"mean_ms": statistics.fmean(ms), "p50_ms": _p(ms, 0.5), "p95_ms": _p(ms, 0.95),
            "min_ms": min(ms), "max_ms": max(ms)}


# --- the world: keys, trust root, one signed package, a private-queue destination -----------------------


class World:
    def __init__(self, root: Path) -> None:
        from ringward.core.trust.root import Role, TrustRoot
        from ringward.operations.demo import build_sample_dist
        from ringward.operations.release import release_ops
        from ringward.operations.trust.keys import (
            generate_keypair,
            load_public_key_file,
            new_trusted_key,
            save_trust_root,
        )

        self.root = root
        keys = root / "keys"
        keys.mkdir(parents=True)
        generate_keypair(keys / "release.pem", keys / "release.pub")
        generate_keypair(keys / "promotion.pem", keys / "promotion.pub")
        self.promotion_key = keys / "promotion.pem"
        self.trust = root / "trust-root.json"
        save_trust_root(self.trust, TrustRoot(updated_at=_utc(), keys=(
            new_trusted_key(load_public_key_file(keys / "release.pub"), [Role.RELEASE], "release", None, None),
            new_trusted_key(load_public_key_file(keys / "promotion.pub"), [Role.PROMOTION], "promotion", None, None),
        )), overwrite=False)
        build_sample_dist(root / "dist", "bench-runtime", "2.0.0")
        package = release_ops.run_package(
            dist_dir=str(root / "dist"), output=str(root / "packages"), version="2.0.0",
            commit="4b825dc642cb6eb9a060e54bf8d69288fbee4904", ref="refs/tags/v2.0.0", repository="example/bench",
            signing_key=str(keys / "release.pem"), runtime_name="bench-runtime", make_zip=False, dry_run=False,
            signer="bench", event="bench", record=False)
        self.package = Path(package["package_dir"])
        self.queue = root / "queue"
        self.connectors = root / "connectors.yaml"
        self.connectors.write_text(
            f"providers:\n  - name: inhouse-queue\n    provider: private_queue\n    directory: {self.queue}\n")
        self.work = root / "work"
        self.work.mkdir()

    def capture(self, store: Any, name: str) -> Path:
        from ringward.operations.promotion import rollout_ops

        out = self.work / name / "rollout"
        rollout_ops.capture_rollout(
            store, package_dir=self.package, environment="workstations", ring="enterprise", status="staged",
            change_record="CHG-BENCH-1", trust_root=self.trust, output=out, actor="alice", rollout_id=name,
            now=_utc())
        return out


# --- one lifecycle per mode ----------------------------------------------------------------------------


Timings = dict[str, float]


def _timed(timings: Timings, step: str, call: Callable[[], Any]) -> Any:
    """Run one step; record its wall time under ``step`` and this process's CPU time under ``step.cpu``."""
    cpu = time.process_time()
    start = time.perf_counter()
    result = call()
    timings[step] = time.perf_counter() - start
    timings[f"{step}.cpu"] = time.process_time() - cpu
    return result


def _check_delivered(result: dict[str, Any]) -> None:
    delivery = result.get("delivery") or {}
    if not delivery.get("success"):
        raise SystemExit(f"audit not delivered: {json.dumps(delivery)[:500]}")


def lifecycle_ops(world: World, store: Any, name: str) -> Timings:
    from ringward.core.approvals.rules import Decision
    from ringward.operations.approvals.approval_ops import decide_approval
    from ringward.operations.promotion import rollout_ops

    rollout = world.capture(store, name)
    t: Timings = {}
    requested = _timed(t, "request", lambda: rollout_ops.request_promotion(
        store, rollout_dir=rollout, target_ring="production", requester="alice", trust_root=world.trust,
        signing_key=world.promotion_key, output=world.work / name / "request", now=_utc()))
    _timed(t, "approve", lambda: decide_approval(store, requested["approval_id"], decision=Decision.APPROVE,
                                                 actor="bob", reason="CAB approved", now=_utc()))
    executed = _timed(t, "execute", lambda: rollout_ops.execute_promotion(
        store, request_path=Path(requested["request_path"]), approval_id=requested["approval_id"], actor="carol",
        trust_root=world.trust, output=world.work / name / "execution", now=_utc()))
    audited = _timed(t, "audit", lambda: rollout_ops.audit(
        store, record_path=Path(executed["output_dir"]), output=world.work / name / "audit", actor="soc",
        deliver_config=world.connectors, now=_utc()))
    _check_delivered(audited)
    return t


def _cli(args: list[str]) -> dict[str, Any]:
    from ringward.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    if code:
        raise SystemExit(f"ringward {' '.join(args[:2])} exited {code}: {err.getvalue().strip()[:500]}")
    text = out.getvalue()
    return json.loads(text) if text.lstrip().startswith("{") else {"output": text}


def lifecycle_cli(world: World, store: Any, name: str) -> Timings:
    rollout = world.capture(store, name)
    trust = ["--trust-root", str(world.trust)]
    t: Timings = {}
    requested = _timed(t, "request", lambda: _cli([
        "rollout", "request-promotion", str(rollout), "--target-ring", "production", "--requester", "alice",
        "--signing-key", str(world.promotion_key), *trust, "--output", str(world.work / name / "request"), "--json"]))
    _timed(t, "approve", lambda: _cli(["approval", "approve", requested["approval_id"], "--actor", "bob",
                                       "--reason", "CAB approved"]))
    executed = _timed(t, "execute", lambda: _cli([
        "rollout", "execute", requested["request_path"], "--approval", requested["approval_id"], "--actor", "carol",
        *trust, "--output", str(world.work / name / "execution"), "--json"]))
    audited = _timed(t, "audit", lambda: _cli([
        "rollout", "audit", executed["output_dir"], "--output", str(world.work / name / "audit"), "--deliver",
        str(world.connectors), "--actor", "soc", "--json"]))
    _check_delivered(audited)
    return t


def lifecycle_flow(world: World, store: Any, name: str) -> Timings:
    from flows._common import run_flow
    from flows.promotion_rollout import FLOWS
    from ringward.core.approvals.rules import Decision
    from ringward.operations.approvals.approval_ops import decide_approval

    rollout = world.capture(store, name)
    t: Timings = {}
    requested = _timed(t, "request", lambda: run_flow(FLOWS["request_promotion"], params={
        "rollout_dir": str(rollout), "target_ring": "production", "requester": "alice",
        "signing_key": str(world.promotion_key), "trust_root": str(world.trust),
        "output": str(world.work / name / "request"), "now": _utc().isoformat()}))
    _timed(t, "approve", lambda: decide_approval(store, requested["approval_id"], decision=Decision.APPROVE,
                                                 actor="bob", reason="CAB approved", now=_utc()))
    executed = _timed(t, "execute", lambda: run_flow(FLOWS["execute"], params={
        "request_path": requested["request_path"], "approval_id": requested["approval_id"], "actor": "carol",
        "trust_root": str(world.trust), "output": str(world.work / name / "execution"), "now": _utc().isoformat()}))
    audited = _timed(t, "audit", lambda: run_flow(FLOWS["audit"], params={
        "record_path": executed["output_dir"], "output": str(world.work / name / "audit"),
        "deliver_config": str(world.connectors), "actor": "soc"}))
    _check_delivered(audited)
    return t


LIFECYCLES = {"ops": lifecycle_ops, "cli": lifecycle_cli, "flow": lifecycle_flow}


@contextlib.contextmanager
def prefect_server() -> Iterator[float]:
    """A local Prefect test server with heartbeats off (as tests/conftest.py); yields its start-up time."""
    start = time.perf_counter()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield time.perf_counter() - start


def _descendants_cpu() -> float:
    """CPU seconds (user + system) of this process's live descendants, from /proc (the Prefect test
    server runs as a child process); 0 where /proc is not available."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0.0
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    wanted, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - wanted
        wanted |= frontier
    return sum(cpu[pid] for pid in wanted)


def measure(mode: str, world: World, store: Any, iterations: int) -> dict[str, Any]:
    lifecycle = LIFECYCLES[mode]
    lifecycle(world, store, f"{mode}-warmup")
    runs: list[Timings] = []
    children = _descendants_cpu()
    cpu = time.process_time()
    wall = time.perf_counter()
    for i in range(iterations):
        runs.append(lifecycle(world, store, f"{mode}-{i:03d}"))
        print(f"  {mode} {i + 1}/{iterations}: " + ", ".join(f"{s} {runs[-1][s] * 1000:.0f} ms" for s in STEPS),
              file=sys.stderr, flush=True)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    children = _descendants_cpu() - children
    totals = [sum(r[s] for s in STEPS) for r in runs]
    return {
        "iterations": iterations,
        "steps": {s: _summary([r[s] for r in runs]) for s in STEPS},
        "total": _summary(totals),
        # CPU of this process only (the flow mode's Prefect server runs in another process)
        "steps_cpu": {s: _summary([r[f"{s}.cpu"] for r in runs]) for s in STEPS},
        "total_cpu": _summary([sum(r[f"{s}.cpu"] for s in STEPS) for r in runs]),
        "wall_seconds_including_capture": wall,
        "process_cpu_seconds_including_capture": cpu,
        # the Prefect test server's CPU during the measured lifecycles (flow mode; 0 otherwise)
        "child_process_cpu_seconds": children,
        "raw_ms": [{k: round(v * 1000, 3) for k, v in r.items()} for r in runs],
    }


def _table(results: dict[str, Any]) -> str:
    modes = [m for m in MODES if m in results["modes"]]
    head = "| step | " + " | ".join(f"{m} mean / p95 ms" for m in modes)
    ratios = [(a, b) for a, b in (("flow", "ops"), ("flow", "cli")) if a in modes and b in modes]
    head += "".join(f" | {a}/{b}" for a, b in ratios) + " |"
    lines = [head, "|---|" + "---:|" * (len(modes) + len(ratios))]
    for step in (*STEPS, "total"):
        cells = []
        for m in modes:
            data = results["modes"][m]
            s = data["total"] if step == "total" else data["steps"][step]
            cells.append(f"{s['mean_ms']:.1f} / {s['p95_ms']:.1f}")
        for a, b in ratios:
            if step == "approve" and "flow" in (a, b):
                cells.append("— (in-process)")  # no flow: an approval is decided in-process in every mode
                continue
            sa = results["modes"][a]["total" if step == "total" else "steps"]
            sb = results["modes"][b]["total" if step == "total" else "steps"]
            ma = (sa if step == "total" else sa[step])["mean_ms"]
            mb = (sb if step == "total" else sb[step])["mean_ms"]
            cells.append(f"{ma / mb:.1f}×")
        name = f"**{step}**" if step == "total" else step
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cpu_cells = [f"{results['modes'][m]['total_cpu']['mean_ms']:.1f} / {results['modes'][m]['total_cpu']['p95_ms']:.1f}"
                 for m in modes]
    lines.append("| total CPU of this process | " + " | ".join(cpu_cells) + " |" + " |" * len(ratios))
    if "flow" in modes:
        flow = results["modes"]["flow"]
        server = flow["child_process_cpu_seconds"] * 1000 / flow["iterations"]
        lines.append("| + Prefect server CPU per lifecycle | " + " | ".join(
            f"{server:.1f}" if m == "flow" else "—" for m in modes) + " |" + " |" * len(ratios))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="lifecycles per in-process mode (ops, cli)")
    parser.add_argument("--flow-iterations", type=int, default=10, help="lifecycles as Prefect flow runs")
    parser.add_argument("--modes", default="ops,cli,flow", help="comma list of ops, cli, flow")
    parser.add_argument("--database-url", default=None, help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}")

    json_path = args.json.absolute() if args.json else None
    scratch = Path(tempfile.mkdtemp(prefix="ringward-bench-promotion-"))
    for name in list(os.environ):
        if name.startswith(("RINGWARD_", "CAVRA_")) or name == "PREFECT_API_URL":
            del os.environ[name]
    os.environ["RINGWARD_HOME"] = str(scratch / "home")
    os.environ["PREFECT_HOME"] = str(scratch / "prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.database_url:
        os.environ["RINGWARD_DATABASE_URL"] = args.database_url
    os.chdir(scratch)
    results: dict[str, Any] = {
        "command": " ".join(["bench/bench_promotion.py", *sys.argv[1:]]),
        "started_at": _utc().isoformat(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_average_before": os.getloadavg()},
        "store": args.database_url or "sqlite (fresh file, WAL)",
        "modes": {},
    }
    try:
        from ringward.store import open_store

        world = World(scratch / "world")
        with open_store() as store:
            for mode in modes:
                iterations = args.flow_iterations if mode == "flow" else args.iterations
                print(f"== {mode}: {iterations} lifecycles", file=sys.stderr, flush=True)
                if mode == "flow":
                    with prefect_server() as startup:
                        results["prefect_server_startup_seconds"] = startup
                        results["modes"][mode] = measure(mode, world, store, iterations)
                else:
                    results["modes"][mode] = measure(mode, world, store, iterations)
        results["load_average_after"] = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nlifecycle request -> approve -> execute -> audit (+ delivery to a private queue); "
          f"load average before {results['machine']['load_average_before'][0]:.2f}, "
          f"after {results['load_average_after'][0]:.2f}")
    for mode in modes:
        data = results["modes"][mode]
        cpu = data["process_cpu_seconds_including_capture"]
        print(f"  {mode}: {data['iterations']} iterations, process CPU {cpu:.1f}"
              f" s over {data['wall_seconds_including_capture']:.1f} s wall (captures included)")
    if "prefect_server_startup_seconds" in results:
        print(f"  Prefect test server start-up: {results['prefect_server_startup_seconds']:.1f} s (not included)")
    print()
    print(_table(results))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
