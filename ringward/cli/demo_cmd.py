"""`ringward demo`: the whole release path on sample data, in one command."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import typer

from ringward.core.errors import InputError, OutputExistsError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="End-to-end demo: build, package, sign, verify.")

COMMIT_1 = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
COMMIT_2 = "9c3f1e0a7d2b4c6e8f0a1b3c5d7e9f1a2b4c6d8e"


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-output"), "--output", help="Working directory for the demo (new)."),
    use_prefect: bool = typer.Option(False, "--prefect", help="Run each step as a Prefect flow run (visible in "
                                                              "the UI when PREFECT_API_URL points at a server)."),
    force: bool = typer.Option(False, "--force", help="Delete --output first if it exists."),
) -> None:
    """Build sample binaries, package and sign them, verify package and air-gap bundle, smoke-test the
    host binary, validate an upgrade, show that tampering and rollback are refused, and record evidence."""
    from ringward.operations.demo import build_sample_dist
    from ringward.operations.release import release_ops
    from ringward.operations.trust.keys import (
        generate_keypair,
        load_public_key_file,
        new_trusted_key,
        save_trust_root,
    )

    if output.exists():
        if not force:
            raise OutputExistsError(f"{output}: already exists (pass --force to start over)")
        shutil.rmtree(output)
    output.mkdir(parents=True)
    os.environ.setdefault("RINGWARD_HOME", str(output / "state"))
    if use_prefect and not os.environ.get("PREFECT_API_URL"):
        # the embedded (ephemeral) server migrates a fresh database on first start: ~30-60 s on 2 cores
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    runtime = "sample-runtime"
    step = _Stepper(use_prefect)

    typer.echo(f"== Ringward demo in {output}")
    keys = output / "keys"
    keys.mkdir()
    generate_keypair(keys / "release.pem", keys / "release.pub")
    from ringward.core.trust.root import Role, TrustRoot

    now = release_ops.utc_now()
    public = load_public_key_file(keys / "release.pub")
    trust = output / "trust-root.json"
    save_trust_root(trust, TrustRoot(updated_at=now, keys=(new_trusted_key(public, [Role.RELEASE], "release-demo",
                                                                               None, None),)), overwrite=False)
    typer.echo(f"1. keys and pinned trust root: {trust} (release key {public.key_id[:16]})")

    packages = {}
    for version, commit in (("1.0.0", COMMIT_1), ("1.1.0", COMMIT_2)):
        dist = output / f"dist-{version}"
        build_sample_dist(dist, runtime, version)
        result = step.package(dist_dir=str(dist), output=str(output / "packages"), version=version, commit=commit,
                              ref=f"refs/tags/v{version}", repository="example/sample-runtime",
                              signing_key=str(keys / "release.pem"), runtime_name=runtime, make_zip=True,
                              dry_run=False, signer="ringward-demo", event="demo", record=True)
        packages[version] = result
    latest = packages["1.1.0"]
    typer.echo(f"2. built, packaged and signed {runtime} 1.0.0 and 1.1.0 -> {latest['package_dir']} (+ .zip)")

    checks = [
        ("verify-package", step.verify(package_dir=latest["package_dir"], trust_root=str(trust), now=now,
                                       allow_unsigned=False, record=True)),
        ("verify-airgap-bundle", step.airgap(bundle=latest["zip_path"], trust_root=str(trust), now=now,
                                             extract_dir=str(output / "airgap-extract"), require_bootstrap=True,
                                             record=True)),
        ("smoke-installers", step.smoke(package_dir=latest["package_dir"], trust_root=str(trust), now=now,
                                        execute=True, timeout_seconds=10.0, probe_args=["--version"],
                                        expect_version=True, record=True)),
        ("validate-upgrade 1.0.0 -> 1.1.0", step.upgrade(previous_dir=packages["1.0.0"]["package_dir"],
                                                         candidate_dir=latest["package_dir"], trust_root=str(trust),
                                                         now=now, allow_same_version=False, record=True)),
    ]
    for number, (name, result) in enumerate(checks, start=3):
        typer.echo(f"{number}. {name}: {'VALID' if result['valid'] else 'INVALID'}"
                   f"  (evidence {result['evidence']['evidence_id']})")

    tampered = output / "tampered" / Path(latest["package_dir"]).name
    shutil.copytree(latest["package_dir"], tampered)
    victim = next(p for p in sorted((tampered / "bin").iterdir()) if not p.name.endswith(".sig.json"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = step.verify(package_dir=str(tampered), trust_root=str(trust), now=now, allow_unsigned=False, record=True)
    rollback = step.upgrade(previous_dir=latest["package_dir"], candidate_dir=packages["1.0.0"]["package_dir"],
                            trust_root=str(trust), now=now, allow_same_version=False, record=True)
    first_bad = bad["errors"][0]
    typer.echo(f"7. one flipped bit in {victim.name}: {'INVALID' if not bad['valid'] else 'VALID?!'}"
               f" [{first_bad['code']}] {first_bad['message']}")
    rollback_errors = [e for e in rollback["errors"] if e["code"] == "rollback-rejected"]
    typer.echo(f"8. rollback 1.1.0 -> 1.0.0: {'REFUSED' if rollback_errors else 'ALLOWED?!'}"
               + (f" ({rollback_errors[0]['message']})" if rollback_errors else ""))

    delivered, chain_ok = _deliver_and_checkpoint(output, keys / "release.pem", trust, checks[0][1], now)

    home = Path(os.environ["RINGWARD_HOME"])
    typer.echo("")
    typer.echo(f"Evidence bundles: {home / 'evidence'}")
    typer.echo(f"Evidence store:   {os.environ.get('RINGWARD_DATABASE_URL') or home / 'ringward.db'}")
    import sys

    program = sys.argv[0] if Path(sys.argv[0]).name == "ringward" else "ringward"
    typer.echo(f"Try:  {program} release verify-package {latest['package_dir']} --trust-root {trust}")
    if use_prefect:
        api = os.environ.get("PREFECT_API_URL")
        where = api.removesuffix("/api") + "/runs" if api else "(ephemeral server: start `prefect server start` " \
                                                                 "and set PREFECT_API_URL to keep the UI)"
        typer.echo(f"Prefect flow runs and artifacts: {where}")
    else:
        typer.echo("Re-run with --prefect (and PREFECT_API_URL set) to see each step as a flow run in the Prefect UI.")
    ok = all(r["valid"] for _, r in checks) and not bad["valid"] and bool(rollback_errors) and delivered and chain_ok
    raise typer.Exit(0 if ok else 1)


def _deliver_and_checkpoint(
    output: Path, signing_key: Path, trust: Path, verified: dict[str, Any], now: Any
) -> tuple[bool, bool]:
    """Steps 9-10: hand the verification to an in-house queue through the connector platform, then
    sign the evidence chain head and re-verify the whole chain against that checkpoint."""
    import yaml

    from ringward.core.delivery.event import ConnectorEvent, Severity
    from ringward.operations.delivery import delivery_ops
    from ringward.operations.evidence import evidence_ops
    from ringward.operations.trust.keys import load_signing_key
    from ringward.store import open_store

    config_path = output / "connectors.yaml"
    queue = output / "queue"
    config_path.write_text(
        yaml.safe_dump({"providers": [{"name": "inhouse-queue", "provider": "private_queue", "directory": str(queue)}]})
    )
    evidence_id = verified["evidence"]["evidence_id"]
    event = ConnectorEvent(
        event_id=f"demo-verified-{evidence_id}",
        event_type="ringward.release.verified",
        created_at=now,
        severity=Severity.INFO,
        title="sample-runtime 1.1.0 verified against the pinned trust root",
        summary=f"verify-package VALID; evidence record {evidence_id}.",
        release_version="1.1.0",
        attributes={"evidence_id": evidence_id},
    )
    key = load_signing_key(signing_key)
    if key is None:  # cannot happen: the demo generated it a moment ago
        raise InputError(f"{signing_key}: the demo's release key is missing")
    with open_store() as store:
        run = delivery_ops.deliver_event(event, delivery_ops.load_connector_config(config_path), store=store)
        checkpoint = evidence_ops.create_checkpoint(
            store, private_key=key, actor="ringward-demo", output=output / "checkpoint.json"
        )
        trusted = evidence_ops.checkpoint_trusted_keys(trust_root=trust)
        report = evidence_ops.verify_evidence(
            store, checkpoint=checkpoint, checkpoint_source=str(output / "checkpoint.json"), trusted_keys=trusted
        )
    (row,) = run.summary_rows()
    typer.echo(
        f"9. delivered event {event.event_id} to {row['destination']} ({row['provider']}): {row['status']}"
        f" -> {queue}/{row['external_ref']}  (evidence {run.evidence_id})"
    )
    typer.echo(
        f"10. signed checkpoint of the evidence chain at record {checkpoint.head_id} -> {output / 'checkpoint.json'};"
        f" chain re-verified against it: {'INTACT' if report.ok else 'BROKEN'}"
    )
    return run.success, report.ok


class _Stepper:
    """Runs each demo step in-process or as a Prefect flow run."""

    def __init__(self, use_prefect: bool) -> None:
        self.use_prefect = use_prefect

    def _call(self, op: str, flow_module: str, flow_name: str, **kwargs: Any) -> dict[str, Any]:
        if self.use_prefect:
            import importlib

            from flows._common import run_flow

            return run_flow(getattr(importlib.import_module(flow_module), flow_name), **kwargs)
        from ringward.operations.release import release_ops
        return dict(getattr(release_ops, op)(**kwargs))

    def package(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("run_package", "flows.package_release", "package_release_flow", **kwargs)

    def verify(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("run_verify_package", "flows.verify_package", "verify_package_flow", **kwargs)

    def airgap(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("run_verify_airgap", "flows.verify_airgap", "verify_airgap_flow", **kwargs)

    def smoke(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("run_smoke_installers", "flows.smoke_installers", "smoke_installers_flow", **kwargs)

    def upgrade(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("run_validate_upgrade", "flows.validate_upgrade", "validate_upgrade_flow", **kwargs)
