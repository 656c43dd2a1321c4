"""`ringward demo`: the whole release path on sample data, in one command: build, package, sign,
verify, then promote through a channel and a rollout ring behind approvals and roll back; then the
governance around the promoted release: a KEV match holding its channels until a VEX statement
releases them, a fleet with drift, and a breached remediation SLA escalating from the owner to
release governance until the owner acknowledges; a signed checkpoint covers all of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from ringward.core.errors import InputError, OutputExistsError, RingwardError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="End-to-end demo: build, package, sign, verify, promote, roll back, KEV hold, fleet drift, "
                       "SLA escalation.")

COMMIT_1 = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
COMMIT_2 = "9c3f1e0a7d2b4c6e8f0a1b3c5d7e9f1a2b4c6d8e"
#: file that marks a directory as a demo output (a re-run may replace it without --force)
DEMO_MARKER = ".ringward-demo"


def _running_up_prefect_api() -> str | None:
    """The Prefect API of a `ringward up` running for this home (``<home>/up.json``, its process alive and
    its Prefect API answering), else None."""
    import json

    from ringward import settings
    from ringward.operations.common.prefect_rest import api_health
    from ringward.operations.common.supervisor import alive

    try:
        state = json.loads(settings.up_state_path().read_text(encoding="utf-8"))
        pid, api_url = int(state["pid"]), str(state["prefect_api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not alive(pid) or not api_url.startswith(("http://", "https://")) or api_health(api_url) is not None:
        return None
    return api_url


@app.command()
def demo(
    output: Path = typer.Option(Path("demo-output"), "--output", help="Working directory for the demo (new)."),
    use_prefect: bool = typer.Option(False, "--prefect", help="Run each step as a Prefect flow run (visible in "
                                                              "the UI when PREFECT_API_URL points at a server)."),
    force: bool = typer.Option(False, "--force", help="Delete --output first even if an earlier demo did not make it."),
) -> None:
    """Build sample binaries, package and sign them, verify package and air-gap bundle, smoke-test the
    host binary, validate an upgrade, show that tampering and rollback are refused, verify a package in the
    reference system's (CAVRA) own format signed with the pinned key (--profile reference, and auto), promote
    the release to a channel and a rollout ring behind approvals, roll it back; then import a KEV catalog that
    holds the release's channels (critical kev-match incident, promotion refused) until a VEX not_affected
    statement releases them, reconcile a Fleet inventory with drift against the release, escalate a breached
    remediation handoff from its owner to release governance through the in-house queue until the owner
    acknowledges; sign a checkpoint of the evidence chain."""
    from ringward.operations.demo import build_sample_dist
    from ringward.operations.release import release_ops
    from ringward.operations.trust.keys import (
        generate_keypair,
        load_public_key_file,
        new_trusted_key,
        save_trust_root,
    )

    if output.exists() or output.is_symlink():
        # a directory an earlier demo made (it carries the marker) is the demo's own to replace, so
        # `demo.sh` then `demo.sh --prefect` (the README's order) just works; anything else needs --force
        made_by_demo = output.is_dir() and not output.is_symlink() and (output / DEMO_MARKER).is_file()
        if not (force or made_by_demo):
            raise OutputExistsError(f"{output}: already exists and was not made by `ringward demo` "
                                    "(pass --force to delete it and start over)")
        if output.is_symlink() or not output.is_dir():
            output.unlink()
        else:
            shutil.rmtree(output)
    output.mkdir(parents=True)
    (output / DEMO_MARKER).write_text("made by `ringward demo`: a re-run replaces this directory\n")
    running_up = _running_up_prefect_api() if use_prefect and not os.environ.get("PREFECT_API_URL") else None
    if running_up is not None:
        # a running `ringward up` (for this RINGWARD_HOME): the demo's flow runs go to its Prefect server,
        # so they show in the UI it printed; the demo still keeps its own evidence under --output
        os.environ["PREFECT_API_URL"] = running_up
        typer.echo(f"== flow runs go to the Prefect server of the running `ringward up`: {running_up}")
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
    generate_keypair(keys / "promotion.pem", keys / "promotion.pub")  # a release key never signs promotions
    from ringward.core.trust.root import Role, TrustRoot

    now = release_ops.utc_now()
    public = load_public_key_file(keys / "release.pub")
    promotion = load_public_key_file(keys / "promotion.pub")
    trust = output / "trust-root.json"
    save_trust_root(trust, TrustRoot(updated_at=now, keys=(
        new_trusted_key(public, [Role.RELEASE], "release-demo", None, None),
        new_trusted_key(promotion, [Role.PROMOTION], "promotion-demo", None, None),
    )), overwrite=False)
    typer.echo(f"1. keys and pinned trust root: {trust} (release key {public.key_id[:16]}, "
               f"promotion key {promotion.key_id[:16]})")

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

    reference_ok = _reference_package(output, keys / "release.pem", trust, now, step)

    config_path, delivered = _deliver(output, checks[0][1], now)
    promotion_demo = _PromotionDemo(output, trust, keys / "promotion.pem", Path(latest["package_dir"]), config_path,
                                    use_prefect, first=11)
    promoted = promotion_demo.run()
    governance = _GovernanceDemo(promotion_demo, Path(packages["1.0.0"]["package_dir"]))
    governed = governance.run()
    chain_ok = _checkpoint(output, keys / "release.pem", trust, promotion_demo.number)

    home = Path(os.environ["RINGWARD_HOME"])
    typer.echo("")
    typer.echo(f"Evidence bundles: {home / 'evidence'}")
    typer.echo(f"Evidence store:   {os.environ.get('RINGWARD_DATABASE_URL') or home / 'ringward.db'}")
    import sys

    program = sys.argv[0] if Path(sys.argv[0]).name == "ringward" else "ringward"
    typer.echo(f"Try:  {program} release verify-package {latest['package_dir']} --trust-root {trust}")
    if promotion_demo.execution_id:
        typer.echo(f"      RINGWARD_HOME={home} {program} rollout show {promotion_demo.execution_id}")
    if governance.observations:
        typer.echo(f"      RINGWARD_HOME={home} {program} inventory reconcile {latest['package_dir']} "
                   f"{governance.observations} --trust-root {trust}  # exit 1: drift")
    if use_prefect:
        api = os.environ.get("PREFECT_API_URL")
        where = api.removesuffix("/api") + "/runs" if api else "(ephemeral server: start `prefect server start` " \
                                                                 "and set PREFECT_API_URL to keep the UI)"
        typer.echo(f"Prefect flow runs and artifacts: {where}")
    else:
        typer.echo("Re-run with --prefect (and PREFECT_API_URL set) to see each step as a flow run in the Prefect UI.")
    ok = (all(r["valid"] for _, r in checks) and not bad["valid"] and bool(rollback_errors) and reference_ok
          and delivered and promoted and governed and chain_ok)
    raise typer.Exit(0 if ok else 1)


def _reference_package(output: Path, signing_key: Path, trust: Path, now: datetime, step: _Stepper) -> bool:
    """Step 9: a package in the reference system's (CAVRA) own format -- what its packager writes,
    quirks included (v-prefixed version, unsigned release-evidence.md, 5 CI-runner controls,
    ``+00:00`` SPDX time, bootstrap without generated_at) -- signed with the demo's release key, which
    the trust root pins. ``--profile reference`` verifies it; ``--profile auto`` detects the format."""
    from ringward.operations.migration.reference_package import ReferenceGenerator
    from ringward.operations.trust.keys import load_signing_key

    key = load_signing_key(signing_key)
    if key is None:  # cannot happen: the demo generated it a moment ago
        raise InputError(f"{signing_key}: the demo's release key is missing")
    package = ReferenceGenerator(output / "reference", key=key).package("v1.2.5", created=now)
    explicit = step.verify(package_dir=str(package), trust_root=str(trust), now=now, allow_unsigned=False,
                           record=True, profile="reference")
    detected = step.verify(package_dir=str(package), trust_root=str(trust), now=now, allow_unsigned=False,
                           record=True, profile="auto")
    ignored = [w for w in explicit["warnings"] if "not covered by any signature" in w]
    typer.echo(f"9. reference-format (CAVRA) package {package.name} signed with the pinned release key: "
               f"--profile reference {'VALID' if explicit['valid'] else 'INVALID'}"
               f" (evidence {explicit['evidence']['evidence_id']}; {len(ignored)} unsigned file(s) ignored); "
               f"--profile auto {'VALID' if detected['valid'] else 'INVALID'}, "
               f"{detected['profile_announcement']}")
    for problem in [*explicit["errors"], *detected["errors"]][:3]:
        typer.echo(f"    [{problem['code']}] {problem['message']}")
    return bool(explicit["valid"] and detected["valid"] and detected["profile"]["name"] == "reference")


def _deliver(output: Path, verified: dict[str, Any], now: Any) -> tuple[Path, bool]:
    """Step 10: hand the verification to an in-house queue through the connector platform; returns
    the connector configuration (the rollout audit is delivered through it too)."""
    import yaml

    from ringward.core.delivery.event import ConnectorEvent, Severity
    from ringward.operations.delivery import delivery_ops
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
    with open_store() as store:
        run = delivery_ops.deliver_event(event, delivery_ops.load_connector_config(config_path), store=store)
    (row,) = run.summary_rows()
    typer.echo(
        f"10. delivered event {event.event_id} to {row['destination']} ({row['provider']}): {row['status']}"
        f" -> {queue}/{row['external_ref']}  (evidence {run.evidence_id})"
    )
    return config_path, run.success


def _checkpoint(output: Path, signing_key: Path, trust: Path, number: int) -> bool:
    """Last step: sign the evidence chain head (release, promotion and rollback records alike) and
    re-verify the whole chain against that checkpoint."""
    from ringward.operations.evidence import evidence_ops
    from ringward.operations.trust.keys import load_signing_key
    from ringward.store import open_store

    key = load_signing_key(signing_key)
    if key is None:  # cannot happen: the demo generated it a moment ago
        raise InputError(f"{signing_key}: the demo's release key is missing")
    with open_store() as store:
        checkpoint = evidence_ops.create_checkpoint(
            store, private_key=key, actor="ringward-demo", output=output / "checkpoint.json"
        )
        trusted = evidence_ops.checkpoint_trusted_keys(trust_root=trust)
        report = evidence_ops.verify_evidence(
            store, checkpoint=checkpoint, checkpoint_source=str(output / "checkpoint.json"), trusted_keys=trusted
        )
    typer.echo(
        f"{number}. signed checkpoint of the evidence chain at record {checkpoint.head_id} -> "
        f"{output / 'checkpoint.json'}; chain re-verified against it: {'INTACT' if report.ok else 'BROKEN'}"
    )
    return report.ok


def _next_friday_noon(now: datetime) -> datetime:
    """12:00 UTC on the next Friday after ``now`` (inside the demo policy's Friday freeze on broad)."""
    moment = (now + timedelta(days=(4 - now.weekday()) % 7)).replace(hour=12, minute=0, second=0, microsecond=0)
    return moment if moment > now else moment + timedelta(days=7)


class _PromotionDemo:
    """The promotion lifecycle on the demo's release: a channel promotion (request, approval by
    another person, endpoint export, refused re-export), then a rollout (capture, verify, request,
    approval, execution inside its promotion window, audit delivered to the in-house queue,
    refused replay, rollback request, approval, rollback, refused second rollback) and the drill-down.

    Each step prints one line; with ``--prefect`` every step the CLI offers ``--prefect`` for runs
    as a flow run (approvals, window checks and the drill-down always run in-process, as in the CLI).
    Like the CLI, in-process steps and approval decisions send their Prefect events
    (``ringward.promotion.requested``, ``ringward.approval.decided``, ``ringward.promotion.executed``,
    ``ringward.rollback.executed``) only when a Prefect API is configured.
    """

    runtime = "sample-runtime"
    environment = "workstations"
    change_record = "CHG-2026-0042"

    def __init__(self, output: Path, trust: Path, promotion_key: Path, package_dir: Path, connectors: Path,
                 use_prefect: bool, *, first: int) -> None:
        self.work = output / "promotion"
        self.windows = output / "windows.yaml"
        self.output = output
        self.trust = trust
        self.key = promotion_key
        self.package_dir = package_dir
        self.connectors = connectors
        self.use_prefect = use_prefect
        self.number = first
        self.ok = True
        self.execution_id: str | None = None

    # --- output ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        typer.echo(f"{self.number}. {text}")
        self.number += 1

    def expect(self, condition: bool) -> bool:
        self.ok = self.ok and condition
        return condition

    # --- the steps, in-process or as flow runs ----------------------------------------------------

    def emit(self, event: tuple[str, str, dict[str, Any]]) -> None:
        """Send the Prefect event the CLI's in-process path sends, only when a Prefect API is
        configured (flow runs send their own); a failure is a warning, never a failed step."""
        from flows.events import emit_if_configured, events_enabled

        if not events_enabled():
            return
        warning = emit_if_configured(*event)
        if warning:
            typer.echo(f"warning: {warning}", err=True)

    def channel_request(self, store: Any, **params: Any) -> dict[str, Any]:
        now = _utc_now()
        if self.use_prefect:
            from flows._common import run_flow
            from flows.promotion_channel import request_channel_promotion_flow

            result = run_flow(request_channel_promotion_flow, **{k: str(v) for k, v in params.items()}, now=now)
            return result
        from ringward.operations.promotion.channel_ops import request_channel_promotion, requested_event

        result = request_channel_promotion(store, **params, now=now)
        self.emit(requested_event(result))
        return result

    def export(self, store: Any, **params: Any) -> dict[str, Any]:
        now = _utc_now()
        if self.use_prefect:
            from flows._common import run_flow
            from flows.promotion_channel import export_endpoint_flow

            result = run_flow(export_endpoint_flow, **{k: str(v) for k, v in params.items()}, now=now)
            return result
        from ringward.operations.promotion.endpoint_ops import export_endpoint

        return export_endpoint(store, **params, now=now)

    def rollout(self, store: Any, step: str, **params: Any) -> dict[str, Any]:
        plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()}
        plain["now"] = _utc_now().isoformat()
        if self.use_prefect:
            from flows._common import run_flow
            from flows.promotion_rollout import FLOWS

            return run_flow(FLOWS[step], params=plain)
        from ringward.operations.promotion.automation import STEP_EVENTS
        from ringward.operations.promotion.rollout_ops import run_step

        result = run_step(step, plain, store=store)
        if step in STEP_EVENTS:
            self.emit(STEP_EVENTS[step](result))
        return result

    def approve(self, store: Any, approval_id: str, actor: str, reason: str) -> Any:
        from ringward.core.approvals.rules import Decision
        from ringward.operations.approvals.approval_ops import decide_approval
        from ringward.operations.promotion.automation import approval_decided_event

        approval = decide_approval(store, approval_id, decision=Decision.APPROVE, actor=actor, reason=reason,
                                   now=_utc_now())
        self.emit(approval_decided_event(approval, decided_by=actor, decision="approve"))
        return approval

    def refused(self, attempt: Callable[[], Any]) -> str:
        """Run a step that must be refused; its one-line refusal (or a loud marker if it was not)."""
        try:
            attempt()
        except InputError as exc:  # bad usage is not the refusal the demo means to show
            self.expect(False)
            return f"BAD INPUT?! {exc.message}"
        except RingwardError as exc:
            return f"REFUSED [{exc.code}] {exc.message}"
        self.expect(False)
        return "ALLOWED?!"

    # --- the scenario ---------------------------------------------------------------------------

    def run(self) -> bool:
        from ringward.operations.demo import demo_windows_policy
        from ringward.store import open_store

        self.work.mkdir()
        demo_windows_policy(self.windows)
        with open_store() as store:
            self._channel(store)
            execution = self._rollout(store)
            self._rollback(store, execution)
            self._show(store)
        return self.ok

    def _channel(self, store: Any) -> None:
        request_dir = self.work / "channel-request"
        requested = self.channel_request(
            store, package_dir=self.package_dir, channel="stable", target_ring="enterprise", requester="alice",
            signing_key=self.key, trust_root=self.trust, output=request_dir)
        approval_id = requested["approval_id"]
        self.say(f"channel request-promotion {self.runtime} {requested['version']} -> stable->enterprise by alice: "
                 f"REQUESTED {requested['request_id']} (signed by promotion key {requested['signer_key_id'][:16]}; "
                 f"approval {approval_id} pending)")
        own = self.refused(lambda: self.approve(store, approval_id, "alice", "my own request"))
        approval = self.approve(store, approval_id, "bob", "CAB: stable->enterprise for 1.1.0")
        self.expect(approval.state.value == "approved" and own.startswith("REFUSED [separation-of-duties]"))
        self.say(f"approval {approval_id}: alice (the requester) {own.split(']')[0]}]; "
                 f"{approval.state.value.upper()} by bob")

        request_file = request_dir / "release-channel-promotion-request.json"
        export = dict(package_dir=self.package_dir, channel="stable", provider="all", promotion_request=request_file,
                      trust_root=self.trust, actor="carol", windows=self.windows)
        exported = self.export(store, **export, output=self.work / "endpoint-export")
        mark = (exported["high_water_mark"] or {}).get("version", "-")
        self.say(f"endpoint export stable->enterprise for {', '.join(exported['providers'])} by carol: EXPORTED "
                 f"{exported['export_id']}; approval consumed, channel high-water mark {mark} -> "
                 f"{exported['output_dir']}")
        again = self.refused(lambda: self.export(store, **export, output=self.work / "endpoint-export-again"))
        self.expect(again.startswith("REFUSED [approval-consumed]"))
        self.say(f"second export with the same request: {again}")

    def _rollout(self, store: Any) -> dict[str, Any]:
        captured = self.rollout(
            store, "capture", package_dir=self.package_dir, environment=self.environment, ring="enterprise",
            status="staged", change_record=self.change_record, deployment_ids=[], trust_root=self.trust,
            output=self.work / "rollout", actor="alice")
        rollout_dir = captured["output_dir"]
        self.say(f"rollout capture ({self.environment}, ring enterprise, staged, change {self.change_record}): "
                 f"CAPTURED {captured['rollout_id']} -> {rollout_dir}")
        verified = self.rollout(store, "verify", rollout_dir=rollout_dir, trust_root=self.trust, actor="auditor")
        self.say(f"rollout verify: {'VALID' if verified['valid'] else 'INVALID'} ({len(verified['deployment_targets'])}"
                 f" deployment targets; package re-verified against the pinned trust root)")
        requested = self.rollout(
            store, "request_promotion", rollout_dir=rollout_dir, target_ring="production", requester="alice",
            signing_key=self.key, trust_root=self.trust, output=self.work / "rollout-request")
        approval_id = requested["approval_id"]
        self.say(f"rollout request-promotion enterprise -> production by alice: REQUESTED {requested['request_id']} "
                 f"(approval {approval_id} {requested['approval_state']})")
        approval = self.approve(store, approval_id, "bob", f"CAB: {self.change_record} approved for production")
        self.say(f"approval {approval_id}: {approval.state.value.upper()} by bob")

        self._windows(store)
        execute = dict(request_path=requested["request_path"], approval_id=approval_id, actor="carol",
                       trust_root=self.trust, windows=self.windows)
        executed = self.rollout(store, "execute", **execute, output=self.work / "execution")
        self.execution_id = executed["execution_id"]
        ring = executed["ring_advancement"]
        window = executed["window"]
        self.say(f"rollout execute by carol: EXECUTED {executed['execution_id']} {ring['from']} -> {ring['to']} "
                 f"(approval decided by {executed['approval'].get('decided_by')}; window "
                 f"{', '.join(window.get('windows') or []) or 'open'}) -> {executed['execution_path']}")

        audited = self.rollout(store, "audit", record_path=executed["output_dir"], output=self.work / "audit",
                               deliver_config=self.connectors, provider="all", actor="soc")
        delivery = audited.get("delivery") or {"deliveries": [], "success": False}
        rows = delivery["deliveries"]
        self.expect(bool(delivery["success"]) and bool(rows))
        where = "; ".join(f"{r['destination']} ({r['provider']}): {r['status']}"
                          + (f" -> {self.output / 'queue'}/{r['external_ref']}" if r["external_ref"] else "")
                          for r in rows)
        self.say(f"rollout audit {audited['audited_id']} ({len(audited['files'])} files) delivered through the "
                 f"connector platform: {where}")

        replay = self.refused(lambda: self.rollout(store, "execute", **execute, output=self.work / "execution-again"))
        self.expect(replay.startswith("REFUSED [already-executed]"))
        self.say(f"replayed execution of {requested['request_id']}: {replay}")
        return executed

    def _windows(self, store: Any) -> None:
        from ringward.core.common.windows import format_instant
        from ringward.operations.promotion.windows import check_window, record_window_decision

        now = _utc_now()
        targets = ["ring:production", f"environment:{self.environment}"]
        decision = check_window(self.windows, targets, now)
        self.expect(decision.allowed)
        self.say(f"window check {' + '.join(targets)} now: {'OPEN' if decision.allowed else 'CLOSED'} "
                 f"(allow window {', '.join(decision.windows) or '-'}; policy {self.windows})")
        friday = _next_friday_noon(now)
        frozen = check_window(self.windows, ["ring:broad"], friday)
        record_window_decision(store, frozen, actor="ringward-demo", action="window-check", policy_path=self.windows)
        self.expect(not frozen.allowed and frozen.next_opening is not None)
        self.say(f"window check ring:broad at {format_instant(friday, 'Europe/Berlin')}: "
                 f"{'CLOSED' if not frozen.allowed else 'OPEN?!'} (freeze {', '.join(frozen.freezes) or '-'}, deny "
                 f"wins); {frozen.next_opening_text()}")

    def _rollback(self, store: Any, executed: dict[str, Any]) -> None:
        execution = executed["execution_path"]
        requested = self.rollout(
            store, "request_rollback", execution_path=execution, requester="dave",
            reason="crash on launch on production laptops", signing_key=self.key, trust_root=self.trust,
            output=self.work / "rollback-request")
        approval_id = requested["approval_id"]
        self.say(f"rollout request-rollback {requested['promoted_ring']} -> {requested['previous_ring']} by dave: "
                 f"REQUESTED {requested['request_id']} (approval {approval_id} {requested['approval_state']})")
        approval = self.approve(store, approval_id, "frank", "rollback agreed with the CAB")
        self.say(f"approval {approval_id}: {approval.state.value.upper()} by frank")
        rollback = dict(execution_path=execution, approval_id=approval_id, actor="erin", trust_root=self.trust)
        rolled = self.rollout(store, "rollback", **rollback, output=self.work / "rollback")
        ring = rolled["ring_rollback"]
        channels = "".join(f"; channel {c['channel']}: " + ("may go down once" if c.get("rollback_allowed")
                                                             else "no earlier promotion to go back to")
                           for c in rolled["channels"])
        self.say(f"rollout rollback by erin: ROLLED BACK {rolled['rollback_id']} {ring['from']} -> {ring['to']}"
                 f"{channels} -> {rolled['rollback_path']}")
        again = self.refused(lambda: self.rollout(store, "rollback", **rollback, output=self.work / "rollback-again"))
        self.expect(again.startswith("REFUSED [already-executed]"))
        self.say(f"second rollback of {executed['execution_id']}: {again}")

    def _show(self, store: Any) -> None:
        from ringward.operations.promotion.rollout_ops import show_rollout

        assert self.execution_id is not None
        view = show_rollout(store, self.execution_id)
        self.say(f"rollout show {self.execution_id} (the drill-down; full view: `ringward rollout show`):")
        typer.echo(f"    rollout {view['rollout_id']} in {view['environment']}, release {view['release_version']}: "
                   f"now {view['current_ring']} ({view['current_status']})")
        for promotion in view["promotions"]:
            request = promotion["request"]
            for execution in promotion["executions"]:
                typer.echo(f"    request {request['ref_id']} by {request['actor']} -> "
                           f"{_approval_text(execution['approval'])} -> execution {execution['ref_id']} by "
                           f"{execution['actor']} -> {execution['ring']}")
                delivered = [d for d in execution["deliveries"] if "destination" in d]
                typer.echo(f"    audits {len(execution['audits'])}; deliveries: "
                           + (", ".join(f"{d['destination']} {d['state']}" for d in delivered) or "-"))
                for rr in execution["rollback_requests"]:
                    for rb in execution["rollbacks"]:
                        typer.echo(f"    rollback request {rr['ref_id']} by {rr['actor']} -> "
                                   f"{_approval_text(rr['approval'])} -> rollback {rb['ref_id']} by {rb['actor']} -> "
                                   f"{rb['ring']}")
        refusals = view["refusals"]
        typer.echo("    refused: " + ("; ".join(f"{r['step']} [{r['code']}] by {r['actor']}" for r in refusals) or "-"))
        self.expect(view["current_status"] == "rolled_back" and len(refusals) >= 2)


class _GovernanceDemo:
    """After the rollout: the governance domains on the same release, numbered on from the promotion
    steps (so the final checkpoint covers their evidence too).

    - KEV hold and VEX release (advisories): import a KEV catalog naming the release's Go dependency,
      ``kev check`` holds the release's channels and opens a critical ``kev-match`` incident, a
      promotion request is refused by the hold, a VEX ``not_affected`` statement is stored with the
      release and the next ``kev check`` lifts the holds.
    - A fleet with drift (inventory): a Fleet host export where most hosts run the release, one the
      previous version, one a binary the release does not contain, one not seen for days; ingest and
      reconcile against the signed deployment manifest -- drift reported (the expected outcome).
    - SLA escalation (remediation SLA, virtual time via ``at``): the remediation handoff for that drift
      breaches; the owner is paged, then release governance, through the in-house queue; the owner's
      acknowledgement stops the ladder and the next evaluation sends nothing.

    With ``--prefect`` the inventory ingestion and reconciliation run as their flow runs
    (``inventory-ingest``, ``inventory-reconcile``); the KEV, VEX and SLA steps always run in-process,
    as their CLI commands do (``kev check``, ``vex create``, ``sla notify|escalate|ack`` have no flow
    run; the scheduled ``sla-escalation`` flow evaluates one schedule window at wall-clock time, while
    this step walks virtual time).
    """

    def __init__(self, promotion: _PromotionDemo, previous_dir: Path) -> None:
        self.p = promotion
        self.previous_dir = previous_dir
        self.work = promotion.output / "governance"
        self.reconciliation: dict[str, Any] | None = None
        self.observations: str | None = None

    def run(self) -> bool:
        from ringward.store import open_store

        self.work.mkdir()
        with open_store() as store:
            self._kev(store)
            self._fleet(store)
            self._sla(store)
        return self.p.ok

    # --- KEV hold, refused promotion, VEX release ----------------------------------------------

    def _kev(self, store: Any) -> None:
        from ringward.operations import demo_fleet as fx
        from ringward.operations.advisories.kev_ops import check_release, import_catalog
        from ringward.operations.advisories.vex_ops import create_vex
        from ringward.operations.promotion.channel_ops import request_channel_promotion

        p, work = self.p, self.work / "kev"
        now = _utc_now()
        catalog = fx.write_json(work / "known_exploited_vulnerabilities.json", fx.kev_catalog(now - timedelta(days=1)))
        products = fx.write_json(work / "kev-product-map.json", fx.kev_product_map())
        imported = import_catalog(store, catalog, actor="secops", now=_utc_now())
        check: dict[str, Any] = dict(package=p.package_dir, trust_root=p.trust, actor="secops", product_map=products)
        held = check_release(store, **check, now=_utc_now())
        incidents = held.get("incident", {}).get("incidents", [])
        p.expect(held["held"] and bool(held["held_channels"]) and bool(incidents))
        match = "; ".join(f"{f['component']} {f['vulnerability']} (rule {f['rule']})" for f in held["findings"])
        opened = ", ".join(f"{i['incident_id']} ({'opened' if i['opened'] else 'reused'})" for i in incidents)
        p.say(f"kev import {catalog.name}: {'IMPORTED' if imported['imported'] else 'UNCHANGED'} catalog "
              f"{imported['catalog_version']} (evidence {imported.get('evidence_id', '-')}); kev check {p.runtime} "
              f"{held['release_version']}: MATCH {match} -> {'HELD' if held['held'] else 'CLEAR?!'} "
              f"{', '.join(held['held_channels']) or '-'}; critical kev-match incident {opened or '-'} "
              f"(evidence {held['evidence_id']})")

        blocked = p.refused(lambda: request_channel_promotion(
            store, package_dir=p.package_dir, channel="stable", target_ring="enterprise", requester="alice",
            signing_key=p.key, trust_root=p.trust, output=work / "request-while-held", now=_utc_now()))
        p.expect(blocked.startswith("REFUSED") and not (work / "request-while-held").exists())
        p.say(f"channel request-promotion {held['release_version']} -> stable while held: {blocked}")

        vex = create_vex(store, vulnerability=fx.DEMO_CVE, products=[fx.DEMO_COMPONENT], status="not_affected",
                         justification="vulnerable_code_not_in_execute_path", author="security@example.com",
                         output=work / "not-affected.openvex.json", now=_utc_now(), actor="secops",
                         status_notes="the runtime never calls the affected x/sys syscall wrapper",
                         package=p.package_dir, trust_root=p.trust)
        released = check_release(store, **check, now=_utc_now())
        p.expect(not released["held"] and set(released["released_channels"]) == set(held["held_channels"]))
        stored = vex.get("release") or {}
        p.say(f"vex create {fx.DEMO_CVE} not_affected (vulnerable_code_not_in_execute_path) stored with release "
              f"{str(stored.get('release_digest', '-'))[:19]} (evidence {stored.get('evidence_id', '-')}); kev check "
              f"again: {'HELD?!' if released['held'] else 'CLEAR'}, released "
              f"{', '.join(released['released_channels']) or '-'} (evidence {released['evidence_id']})")

    # --- a fleet with drift ----------------------------------------------------------------------

    def _fleet(self, store: Any) -> None:
        from ringward.operations import demo_fleet as fx

        p, work = self.p, self.work / "fleet"
        version = _release_version(p.package_dir)
        export, drift = fx.fleet_hosts_export(p.package_dir, self.previous_dir, runtime=p.runtime, version=version,
                                              previous=_release_version(self.previous_dir), now=_utc_now())
        source = fx.write_json(work / "fleet-hosts.json", export)
        ingest = dict(source=source, provider="fleet", channel="stable", software=[p.runtime],
                      output=work / "inventory", actor="inventory-bot")
        ingested = self._flow_or_call(store, "flows.inventory_ingest", "inventory_ingest_flow",
                                      "ringward.operations.inventory.ingest", "ingest_inventory", ingest)
        p.expect(ingested["status"] == "ingested")
        p.say(f"inventory ingest {source.name} (Fleet hosts export) --provider fleet --channel stable: INGESTED "
              f"{ingested['inventory_id']} ({ingested['endpoint_count']} endpoints, "
              f"{len(ingested['deployment_targets'])} targets; evidence {ingested['evidence']['evidence_id']})")
        self.observations = ingested["observations"]
        reconcile = dict(package_dir=p.package_dir, observations=Path(ingested["observations"]), trust_root=p.trust,
                         output=work / "reconciliation", actor="inventory-bot")
        result = self._flow_or_call(store, "flows.inventory_reconcile", "inventory_reconcile_flow",
                                    "ringward.operations.inventory.reconcile", "reconcile_inventory", reconcile)
        self.reconciliation = result
        s = result["summary"]
        versions = sum(t["version_drift_count"] for t in s["targets"])
        binaries = sum(t["binary_drift_count"] for t in s["targets"])
        # a drifted fleet is what this step shows: drift found is the expected outcome, not a failure.
        # The host still on the previous version runs that version's binary too: version and binary drift.
        p.expect(result["drift_status"] == "drift_detected" and s["drifted_endpoint_count"] == len(drift.hosts) - 1
                 and versions == 1 and binaries == 2 and s["stale_endpoint_count"] == 1
                 and s["missing_target_count"] == 0 and s["unknown_target_count"] == 0)
        p.say(f"inventory reconcile {version} against its signed deployment manifest: "
              f"{result['drift_status'].upper()} ({result['alert_level']}): {s['observed_endpoint_count']} endpoints: "
              f"{s['compliant_endpoint_count']} compliant, {s['drifted_endpoint_count']} drifted ({versions} version "
              f"drift, {binaries} binary drift), {s['stale_endpoint_count']} stale; {s['missing_target_count']} "
              f"missing / {s['unknown_target_count']} unknown targets (evidence "
              f"{result['evidence']['evidence_id']}) -> {result['report']}")

    def _flow_or_call(self, store: Any, flow_module: str, flow_name: str, op_module: str, op_name: str,
                      params: dict[str, Any]) -> dict[str, Any]:
        """A flow run with ``--prefect`` (it sends its own event), else the operation in-process
        sending the event the CLI sends (only when a Prefect API is configured)."""
        import importlib

        from ringward.operations.inventory.events import drift_event, ingested_event

        now = _utc_now()
        if self.p.use_prefect:
            from flows._common import run_flow

            plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()}
            return run_flow(getattr(importlib.import_module(flow_module), flow_name), **plain, now=now)
        call = getattr(importlib.import_module(op_module), op_name)
        if "software" in params:
            params = {**params, "software": tuple(params["software"])}
        result: dict[str, Any] = call(store, **params, now=now)
        event = ingested_event(result) if op_name == "ingest_inventory" else drift_event(result)
        if event is not None:
            self.p.emit(event)
        return result

    # --- SLA escalation stopping at an acknowledgement -------------------------------------------

    def _sla(self, store: Any) -> None:
        from ringward.core.sla.history import NotificationKind
        from ringward.operations import demo_fleet as fx
        from ringward.operations.sla import sla_ops

        p, work = self.p, self.work / "sla"
        assert self.reconciliation is not None
        # virtual time, all in the past: the handoff breached five hours ago; each step runs "at" its minute
        breach = _utc_now().replace(second=0, microsecond=0) - timedelta(hours=5)
        drift = self.reconciliation
        handoff, started = fx.remediation_handoff(
            reconciliation_id=drift["reconciliation_id"], release=drift["release"]["version"], channel="stable",
            breach_at=breach, action_count=drift["summary"]["drifted_endpoint_count"], queue="private_queue")
        handoffs = work / "handoffs"
        fx.write_json(handoffs / f"{handoff.handoff_id}.json", handoff.model_dump(mode="json"))
        fx.write_json(handoffs / f"{handoff.handoff_id}-status-1.json", started.model_dump(mode="json"))
        receiver = "inhouse-queue"
        policy_path = fx.write_json(work / "routing.json", fx.sla_routing_policy(receiver))
        policy = sla_ops.load_policy(policy_path)
        config = sla_ops.load_config(p.connectors)
        report_path = work / "sla-report.json"
        report = sla_ops.make_report([handoffs], now=breach + timedelta(minutes=1), generated_by="ringward-demo",
                                     store=store, output=report_path)

        def at(minutes: int) -> datetime:
            return breach + timedelta(minutes=minutes)

        def cycle(minutes: int, kind: NotificationKind) -> Any:
            return sla_ops.run_cycle(store, policy, report, config, now=at(minutes), kinds=(kind,), claim_window=False,
                                     actor="ringward-demo")

        def sent(result: Any) -> str:
            return ", ".join(f"{r.get('level') or r['reason']} -> {r['receiver']}" for r in result.sent) or "nothing"

        notified = cycle(2, NotificationKind.GROUP)
        owner = cycle(3, NotificationKind.ESCALATION)
        governance = cycle(62, NotificationKind.ESCALATION)
        s = report.executive_summary
        p.expect(report.alert_level.value == "critical" and s.breached_count == 1 and len(notified.sent) == 1
                 and [r.get("level") for r in owner.sent] == ["owner"]
                 and [r.get("level") for r in governance.sent] == ["governance"] and not governance.failed)
        p.say(f"sla report (--at {_minute(at(1))}): {report.alert_level.value.upper()} {report.report_id}: handoff "
              f"{handoff.handoff_id} for {drift['reconciliation_id']} breached; notify +2m: {sent(notified)}; "
              f"escalate +3m: rung {sent(owner)} ({fx.SLA_OWNER}); +62m unacknowledged: rung {sent(governance)} "
              f"({fx.SLA_GOVERNANCE})")

        acked = sla_ops.acknowledge(store, policy, report, group=fx.SLA_ROUTE, state="acknowledged",
                                    by=fx.SLA_OWNER_MEMBER, at=at(70), comment="reinstalling on the drifted hosts")
        after = cycle(4 * 60 + 5, NotificationKind.ESCALATION)
        reminder = cycle(4 * 60 + 6, NotificationKind.GROUP)
        quiet = not after.sent and not reminder.sent and not after.failed and not reminder.failed
        codes = sorted({x.code.value for x in [*after.plan.suppressions, *reminder.plan.suppressions]})
        p.expect(acked["acknowledgement_state"] == "acknowledged" and quiet and "acknowledged" in codes)
        p.say(f"sla ack {fx.SLA_ROUTE} by {acked['acknowledged_by']} ({fx.SLA_OWNER}) at +70m: "
              f"{acked['acknowledgement_state'].upper()} {acked['acknowledgement_id']}; escalate +4h05m and notify "
              f"+4h06m: {'nothing sent' if quiet else 'SENT?!'} (suppressed: {', '.join(codes) or '-'})")


def _release_version(package_dir: Path) -> str:
    import json

    return str(json.loads((package_dir / "release-evidence.json").read_bytes())["version"])


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _approval_text(approval: dict[str, Any] | None) -> str:
    if not approval:
        return "no approval"
    approvers = [v["actor"] for v in approval.get("votes", []) if v["decision"] == "approve"]
    return f"approval {approval['approval_id']} approved by {', '.join(approvers) or '-'}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
