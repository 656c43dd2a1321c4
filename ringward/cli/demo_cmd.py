"""`ringward demo`: the whole release path on sample data, in one command: build, package, sign,
verify, then promote through a channel and a rollout ring behind approvals and roll back."""

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
                  help="End-to-end demo: build, package, sign, verify, promote, roll back.")

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
    host binary, validate an upgrade, show that tampering and rollback are refused, promote the release
    to a channel and a rollout ring behind approvals, roll it back, and record evidence."""
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

    config_path, delivered = _deliver(output, checks[0][1], now)
    promotion_demo = _PromotionDemo(output, trust, keys / "promotion.pem", Path(latest["package_dir"]), config_path,
                                    use_prefect, first=10)
    promoted = promotion_demo.run()
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
    if use_prefect:
        api = os.environ.get("PREFECT_API_URL")
        where = api.removesuffix("/api") + "/runs" if api else "(ephemeral server: start `prefect server start` " \
                                                                 "and set PREFECT_API_URL to keep the UI)"
        typer.echo(f"Prefect flow runs and artifacts: {where}")
    else:
        typer.echo("Re-run with --prefect (and PREFECT_API_URL set) to see each step as a flow run in the Prefect UI.")
    ok = (all(r["valid"] for _, r in checks) and not bad["valid"] and bool(rollback_errors) and delivered
          and promoted and chain_ok)
    raise typer.Exit(0 if ok else 1)


def _deliver(output: Path, verified: dict[str, Any], now: Any) -> tuple[Path, bool]:
    """Step 9: hand the verification to an in-house queue through the connector platform; returns
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
        f"9. delivered event {event.event_id} to {row['destination']} ({row['provider']}): {row['status']}"
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
