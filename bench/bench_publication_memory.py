"""Benchmark: peak memory of a native Intune / Jamf Pro publication of a large installer.

    .venv/bin/python bench/bench_publication_memory.py [--mib 200] [--provider intune|jamf|both]
        [--code PATH] [--json FILE]

The installer is ``--mib`` MiB that do not compress away (one random MiB repeated, each copy
starting with its index, so deflate finds nothing within its 32 KiB window). The Graph/Entra/Azure
Blob and Jamf Pro emulators of ``tests/connectors`` run in this process (they spill large uploads to
disk); the publication runs in a fresh child process through the real delivery engine, so the
child's memory is the publisher's alone:

- ``rss growth``: the child's peak RSS during the delivery minus its RSS just before it (imports,
  config, event and a warm-up connectivity check already done). The peak is the kernel's high-water
  RSS (``VmHWM``, what ``getrusage(RUSAGE_SELF).ru_maxrss`` reports), reset right before the
  delivery (``/proc/self/clear_refs`` 5): ``ru_maxrss`` alone would also count the warm-up and,
  after a fork/exec, the parent's RSS. Without the reset it falls back to ``ru_maxrss`` (an upper
  bound);
- ``python peak``: the peak of Python allocations during the delivery (``tracemalloc``), which
  includes every buffer the publisher holds (file chunks, zip and cipher output, request bodies).

``--code PATH`` measures the publisher of another checkout (its ``connectors`` and ``ringward``
come first on the child's ``sys.path``; the emulators stay this checkout's), e.g. the code before
streaming: ``git archive <commit> | tar -x -C /tmp/ringward-old`` then ``--code /tmp/ringward-old``.

The child mode (``child SPEC.json``) is also what ``tests/connectors/test_streaming_publication.py``
runs against emulators it owns.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

INTUNE_SECRET = "intune-client-secret-ccc333ddd444"  # tests.connectors.graph_emulator.CLIENT_SECRET
JAMF_CLIENT = "ringward-api-client"
JAMF_SECRET = "jamf-client-secret-aaa111bbb222"
JAMF_TOKEN = "jamf-bearer-token-0f1e2d3c4b5a69788796a5b4"
MIB = 1024 * 1024


def make_installer(path: Path, mib: int) -> str:
    """Write ``mib`` MiB that deflate cannot shrink (one random MiB, each copy led by its index);
    the file's SHA-256."""
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with path.open("wb") as target:
        for index in range(mib):
            chunk = index.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            target.write(chunk)
    return digest.hexdigest()


def child_spec(
    provider: str, *, url: str, root: Path, name: str, sha256: str, size: int, token_url: str | None = None
) -> dict[str, Any]:
    """What the child needs to publish one installer to one emulator."""
    return {
        "provider": provider,
        "url": url,
        "token_url": token_url,
        "artifact_root": str(root),
        "artifact": name,
        "sha256": sha256,
        "bytes": size,
    }


def run_child(spec: dict[str, Any], *, code: Path = ROOT, timeout: float = 600.0) -> dict[str, Any]:
    """Run one publication in a fresh process (``code``'s publisher); its measurements."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    env = {**os.environ, "RW_INTUNE_SECRET": INTUNE_SECRET, "RW_JAMF_SECRET": JAMF_SECRET, "PYTHONHASHSEED": "0"}
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "child", handle.name, "--code", str(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the child: one publication, measured -----------------------------------------------------------------


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def child(spec_path: str, code: str) -> None:
    sys.path.insert(0, code)
    import gc
    import random
    import resource
    import tracemalloc
    from datetime import UTC, datetime

    from connectors import DeliveryEngine, MemoryLedger, SecretResolver, resolve_destinations
    from connectors.providers import intune_graph
    from ringward.core.delivery.config import validate_connector_config
    from ringward.core.delivery.event import ConnectorEvent, Severity, make_test_event

    spec = json.loads(Path(spec_path).read_text())
    intune_graph.POLL_INTERVAL_SECONDS = 0.01
    provider = spec["provider"]
    artifact = {"artifact": spec["artifact"], "sha256": spec["sha256"], "bytes": spec["bytes"]}
    if provider == "intune":
        payload = {
            "intune": {
                "schema_version": "cavra.endpoint-management.intune.v1",
                "display_name": "CAVRA Go Runtime stable",
                "install_command": f"{spec['artifact']} /quiet",
                "uninstall_command": f"{spec['artifact']} /uninstall /quiet",
                "detection_rule": {
                    "type": "file_sha256",
                    "path": "%ProgramFiles%\\CAVRA\\cavra-runtime.exe",
                    "sha256_values": [spec["sha256"]],
                },
            }
        }
        dest = {
            "name": "intune-bench",
            "provider": "intune",
            "url": spec["url"],
            "client_id": "ringward-graph-app",
            "client_secret": "env:RW_INTUNE_SECRET",
            "token_url": spec["token_url"],
            "artifact_root": spec["artifact_root"],
        }
    else:
        payload = {
            "jamf": {
                "schema_version": "cavra.endpoint-management.jamf.v1",
                "policy_name": "CAVRA Go Runtime stable",
                "trigger": "cavra-runtime-stable",
                "install_script": ["#!/bin/bash", "installer -pkg cavra-runtime.pkg -target /"],
                "package": artifact,
            }
        }
        dest = {
            "name": "jamf-bench",
            "provider": "jamf",
            "url": spec["url"],
            "client_id": JAMF_CLIENT,
            "client_secret": "env:RW_JAMF_SECRET",
            "artifact_root": spec["artifact_root"],
        }
    event = ConnectorEvent(
        event_id=f"emp_bench_{provider}",
        event_type="cavra.endpoint_management_export_publication",
        created_at=datetime(2026, 11, 22, 12, tzinfo=UTC),
        severity=Severity.INFO,
        title="cavra-runtime 1.4.2 published",
        summary="benchmark publication",
        release_version="1.4.2",
        channel="stable",
        attributes={"artifacts": [artifact]},
        provider_payloads=payload,
    )
    config = validate_connector_config(
        {"defaults": {"timeout_seconds": 300, "budget_seconds": 3600, "max_attempts": 1}, "providers": [dest]},
        source="bench.yaml",
    )
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors, errors
    engine = DeliveryEngine(MemoryLedger(), run_id="bench", rng=random.Random(1))
    # warm-up, not measured: a read-only connectivity check through the same engine and destination
    # (imports, TLS context, token), so the figures are the publication's own
    (check,) = engine.deliver([make_test_event(destination=dest["name"], now=datetime.now(UTC))], dests).all_results()
    assert check.success, check.error
    gc.collect()
    reset = _reset_peak_rss()
    before = _status_kib("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    report = engine.deliver([event], dests)
    seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the peak since the reset; without one, ru_maxrss (which can also count the parent's RSS at
    # the fork, so it only ever overstates the growth)
    after = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (result,) = report.all_results()
    print(
        json.dumps(
            {
                "provider": provider,
                "status": result.status.value,
                "error": result.error,
                "external_ref": result.external_ref,
                "seconds": round(seconds, 2),
                "rss_before_mib": round(before / 1024, 1),
                "peak_source": "VmHWM" if reset else "ru_maxrss",
                "rss_growth_mib": round(max(0, after - before) / 1024, 1),
                "python_peak_mib": round(peak / MIB, 1),
            }
        )
    )


# --- the parent: emulators, installer, children -----------------------------------------------------------


def check_intune(graph: Any, result: dict[str, Any], name: str, sha256: str) -> None:
    """The committed upload decrypted (streamed, by the emulator's own judge) to a zip holding
    exactly the installer."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(graph.package_file(result["external_ref"], "1")) as archive:
        assert archive.namelist() == [name], archive.namelist()
        with archive.open(name) as entry:
            while chunk := entry.read(MIB):
                digest.update(chunk)
    assert digest.hexdigest() == sha256, "the decrypted package does not hold the installer"


def check_jamf(jamf: Any, sha256: str, size: int) -> None:
    """Jamf received exactly the installer (parsed from the multipart body on disk)."""
    ((_name, upload),) = [item for items in jamf.state.uploads.values() for item in items]
    assert (upload.sha256, upload.size) == (sha256, size), "Jamf did not receive the installer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--provider", choices=["intune", "jamf", "both"], default="both")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose publisher is measured")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.connectors.graph_emulator import GraphEmulator
    from tests.connectors.jamf_emulator import JamfEmulator

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-publication-") as tmp:
        work = Path(tmp)
        root = work / "export"
        root.mkdir()
        providers = ["intune", "jamf"] if args.provider == "both" else [args.provider]
        for provider in providers:
            name = "cavra-runtime-setup.exe" if provider == "intune" else "cavra-runtime-1.4.2.pkg"
            sha256 = make_installer(root / name, args.mib)
            size = args.mib * MIB
            if provider == "intune":
                graph = GraphEmulator(pending_polls=0).start()
                try:
                    spec = child_spec(
                        "intune",
                        url=graph.base,
                        token_url=graph.token_url,
                        root=root,
                        name=name,
                        sha256=sha256,
                        size=size,
                    )
                    result = run_child(spec, code=args.code)
                    if result["status"] == "delivered":
                        check_intune(graph, result, name, sha256)
                finally:
                    graph.stop()
            else:
                jamf = JamfEmulator(client_id=JAMF_CLIENT, client_secret=JAMF_SECRET, token=JAMF_TOKEN).start()
                try:
                    spec = child_spec("jamf", url=jamf.url, root=root, name=name, sha256=sha256, size=size)
                    result = run_child(spec, code=args.code)
                    if result["status"] == "delivered":
                        check_jamf(jamf, sha256, size)
                finally:
                    jamf.stop()
            (root / name).unlink()
            result |= {"installer_mib": args.mib, "code": str(args.code)}
            results.append(result)
            print(
                f"{provider:6} {args.mib} MiB installer: {result['status']}, {result['seconds']} s, "
                f"peak RSS growth {result['rss_growth_mib']} MiB, Python peak {result['python_peak_mib']} MiB "
                f"(code: {args.code})",
                flush=True,
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_parser = argparse.ArgumentParser()
        child_parser.add_argument("mode")
        child_parser.add_argument("spec")
        child_parser.add_argument("--code", default=str(ROOT))
        child_args = child_parser.parse_args()
        child(child_args.spec, child_args.code)
    else:
        main()
