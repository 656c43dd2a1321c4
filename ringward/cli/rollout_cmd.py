"""`ringward rollout ...`: capture a rollout, verify it, request and execute its promotion to the
next ring, request and execute a rollback, export and deliver the audit event, and drill down.

Approvals are looked up in the store and consumed once; a refused step prints one line, exits 1
(2 for bad input) and leaves no output directory. ``--prefect`` runs the same step as a tracked
Prefect flow run; without it the step runs in-process (no Prefect import).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Capture, promote, roll back and audit rollouts across rings.",
)

TRUST_ROOT = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                          help="Pinned trust root (ringward.trust-root.v1); env RINGWARD_TRUST_ROOT.")
JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
PREFECT = typer.Option(False, "--prefect", help="Run as a tracked Prefect flow run instead of in-process.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time (approval expiry, key validity, windows).")
SIGNING_KEY = typer.Option(None, "--signing-key",
                           help="Promotion-role Ed25519 PEM key; else $RINGWARD_PROMOTION_SIGNING_KEY.")


def _actor(value: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return value or default_actor()


def _time(value: str | None, option: str) -> datetime | None:
    from ringward.cli.trust_cmd import _time as parse

    return parse(value, option)


def _now(value: str | None) -> datetime:
    from ringward.operations.release.release_ops import utc_now

    return _time(value, "--at") or utc_now()


def _path(value: Path | None) -> str | None:
    return None if value is None else str(value)


def _run(step: str, params: dict[str, Any], use_prefect: bool, json_output: bool = False) -> dict[str, Any]:
    """The same step in-process or as a flow run; both return the operation's result dict, and both
    raise a refusal as the same error (a refused flow run ends Failed with the refusal as data, which
    ``run_flow`` re-raises: one line, same exit code). The flow emits the step's Prefect event
    itself; in-process, it is emitted only when a Prefect API is configured (a failure to send is a
    warning: stderr, or ``warnings`` in the --json result)."""
    if use_prefect:
        from flows._common import run_flow
        from flows.promotion_rollout import FLOWS

        plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in params.items()}
        return run_flow(FLOWS[step], params=plain)
    from ringward.operations.promotion.rollout_ops import run_step

    result = run_step(step, params)
    _emit_event(step, result, json_output)
    return result


def _check_input(path: Path, name: str, kind: str) -> None:
    """A missing, unreadable or empty path argument is bad input (exit 2) before any step runs."""
    from ringward.operations.common.files import check_input_path

    check_input_path(path, option=name, kind=kind)


def _emit_event(step: str, result: dict[str, Any], json_output: bool) -> None:
    from flows.events import events_enabled

    if not events_enabled():
        return
    from flows.events import emit_if_configured
    from ringward.operations.promotion.automation import STEP_EVENTS

    builder = STEP_EVENTS.get(step)
    if builder is None:
        return
    try:
        event = builder(result)
    except Exception as exc:  # the step is recorded; a missing event is only worth a warning
        warning: str | None = f"event of rollout {step} not built: {type(exc).__name__}: {str(exc)[:200]}"
    else:
        warning = emit_if_configured(*event)
    if warning is None:
        return
    if json_output:
        result.setdefault("warnings", []).append(warning)
    else:
        typer.echo(f"warning: {warning}", err=True)


def _evidence(result: dict[str, Any]) -> str:
    evidence = result.get("evidence")
    return f" (evidence {evidence['evidence_id']})" if evidence else ""


@app.command("capture")
def capture(
    package_dir: Path = typer.Argument(..., help="The verified release package directory."),
    environment: str = typer.Option(..., "--environment", help="Environment, e.g. production."),
    ring: str = typer.Option(..., "--ring", help="The ring this rollout is in, e.g. pilot."),
    status: str = typer.Option(..., "--status", help="planned, staged, succeeded, failed or rolled_back."),
    change_record: str | None = typer.Option(None, "--change-record", help="Change record id (required)."),
    deployment_ids: list[str] = typer.Option([], "--deployment-id",
                                             help="Deployment target id (repeatable; none = all)."),
    trust_root: Path = TRUST_ROOT,
    output: Path = typer.Option(..., "--output", help="Rollout directory to create (must not exist)."),
    actor: str | None = typer.Option(None, "--actor", help="Who captures (default $RINGWARD_ACTOR/user)."),
    rollout_id: str | None = typer.Option(None, "--rollout-id", help="Default <environment>-<version>-<UTC time>."),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Capture a rollout of a package that verifies against the trust root (§4.9)."""
    _check_input(package_dir, "PACKAGE_DIR", "dir")
    result = _run("capture", {
        "package_dir": str(package_dir), "environment": environment, "ring": ring, "status": status,
        "change_record": change_record, "deployment_ids": list(deployment_ids), "trust_root": str(trust_root),
        "output": str(output), "actor": _actor(actor), "rollout_id": rollout_id, "now": _now(at),
    }, use_prefect)
    if json_output:
        print_json(result)
        return
    typer.echo(f"CAPTURED: rollout {result['rollout_id']} ({result['environment']}/{result['rollout_ring']}, "
               f"{result['status']}, change {result['change_record']}) -> {result['output_dir']}{_evidence(result)}")


@app.command("verify")
def verify(
    rollout_dir: Path = typer.Argument(..., help="A rollout directory (managed-endpoint-rollout-evidence.json ...)."),
    trust_root: Path = TRUST_ROOT,
    package_dir: Path | None = typer.Option(None, "--package-dir",
                                            help="Package directory (default: the recorded one)."),
    actor: str | None = typer.Option(None, "--actor"),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Verify a rollout: its checksums, change record, source artifacts and the package (§4.10)."""
    _check_input(rollout_dir, "ROLLOUT_DIR", "dir")
    result = _run("verify", {
        "rollout_dir": str(rollout_dir), "trust_root": str(trust_root), "package_dir": _path(package_dir),
        "actor": _actor(actor), "now": _now(at),
    }, use_prefect)
    if json_output:
        print_json(result)
        return
    typer.echo(f"VALID: rollout {result['rollout_id']} ({result['environment']}/{result['rollout_ring']}, "
               f"{result['status']}, {len(result['deployment_targets'])} target(s)){_evidence(result)}")


@app.command("request-promotion")
def request_promotion(
    rollout_dir: Path = typer.Argument(..., help="The rollout directory to promote."),
    target_ring: str = typer.Option(..., "--target-ring", help="The ring to promote to."),
    requester: str = typer.Option(..., "--requester", help="Who asks (may never approve it)."),
    signing_key: Path | None = SIGNING_KEY,
    trust_root: Path = TRUST_ROOT,
    expires_in: str = typer.Option("24h", "--expires-in", help="Approval lifetime: 30m, 24h, 7d ..."),
    quorum: int = typer.Option(1, "--quorum", help="Distinct approvers needed (1-9)."),
    approver_group: str = typer.Option("Change Advisory Board", "--approver-group"),
    package_dir: Path | None = typer.Option(None, "--package-dir",
                                            help="Package directory (default: the recorded one)."),
    output: Path | None = typer.Option(None, "--output", help="Directory to create (default ./<request_id>-<time>)."),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Sign a promotion request and open its approval (a live one with the same binding is reused)."""
    _check_input(rollout_dir, "ROLLOUT_DIR", "dir")
    result = _run("request_promotion", {
        "rollout_dir": str(rollout_dir), "target_ring": target_ring, "requester": requester,
        "signing_key": _path(signing_key), "trust_root": str(trust_root), "expires_in": expires_in,
        "quorum": quorum, "approver_group": approver_group, "package_dir": _path(package_dir),
        "output": _path(output), "now": _now(at),
    }, use_prefect, json_output)
    if json_output:
        print_json(result)
        return
    reused = " (existing approval reused)" if result["approval_reused"] else ""
    typer.echo(f"REQUESTED: {result['request_id']} {result['rollout_id']} {result['current_ring']} -> "
               f"{result['target_ring']}; approval {result['approval_id']} {result['approval_state']}{reused}, "
               f"expires {result['expires_at']}")
    typer.echo(f"request: {result['request_path']}{_evidence(result)}")


@app.command("execute")
def execute(
    request: Path = typer.Argument(..., help="rollout-promotion-approval-request.json (or its directory)."),
    approval: str = typer.Option(..., "--approval", help="Approval id (looked up in the store, consumed once)."),
    actor: str = typer.Option(..., "--actor", help="Who executes (recorded)."),
    trust_root: Path = TRUST_ROOT,
    windows: Path | None = typer.Option(None, "--windows", help="Promotion windows policy (windows.yaml)."),
    break_glass_approval: str | None = typer.Option(None, "--break-glass-approval",
                                                    help="Approved break_glass approval to act outside a window."),
    output: Path | None = typer.Option(None, "--output", help="Directory to create (default ./<execution_id>)."),
    notes: str | None = typer.Option(None, "--notes"),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Execute an approved promotion: everything is re-verified now, the approval is consumed once."""
    _check_input(request, "REQUEST", "any")
    result = _run("execute", {
        "request_path": str(request), "approval_id": approval, "actor": actor, "trust_root": str(trust_root),
        "windows": _path(windows), "break_glass_approval": break_glass_approval, "output": _path(output),
        "notes": notes, "now": _now(at),
    }, use_prefect, json_output)
    if json_output:
        print_json(result)
        return
    ring = result["ring_advancement"]
    glass = " BREAK GLASS" if result["break_glass"] else ""
    typer.echo(f"EXECUTED{glass}: {result['execution_id']} rollout {result['rollout_id']} {ring['from']} -> "
               f"{ring['to']} by {result['executed_by']}, approval {result['approval_id']} "
               f"(decided by {result['approval'].get('decided_by')})")
    typer.echo(f"execution: {result['execution_path']}{_evidence(result)}")


@app.command("request-rollback")
def request_rollback(
    execution: Path = typer.Argument(..., help="rollout-promotion-execution.json (or its directory)."),
    requester: str = typer.Option(..., "--requester"),
    reason: str = typer.Option(..., "--reason", help="Why roll back (signed, shown to approvers)."),
    signing_key: Path | None = SIGNING_KEY,
    trust_root: Path = TRUST_ROOT,
    expires_in: str = typer.Option("24h", "--expires-in"),
    quorum: int = typer.Option(1, "--quorum"),
    output: Path | None = typer.Option(None, "--output", help="Directory to create (default ./<request_id>-<time>)."),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Sign a rollback request for a recorded promotion execution and open its approval."""
    _check_input(execution, "EXECUTION", "any")
    result = _run("request_rollback", {
        "execution_path": str(execution), "requester": requester, "reason": reason,
        "signing_key": _path(signing_key), "trust_root": str(trust_root), "expires_in": expires_in,
        "quorum": quorum, "output": _path(output), "now": _now(at),
    }, use_prefect)
    if json_output:
        print_json(result)
        return
    typer.echo(f"REQUESTED: {result['request_id']} roll back {result['promotion_execution_id']} "
               f"{result['promoted_ring']} -> {result['previous_ring']}; approval {result['approval_id']} "
               f"{result['approval_state']}, expires {result['expires_at']}")
    typer.echo(f"request: {result['request_path']}{_evidence(result)}")


@app.command("rollback")
def rollback(
    execution: Path = typer.Argument(..., help="rollout-promotion-execution.json (or its directory)."),
    approval: str = typer.Option(..., "--approval", help="Approved rollback approval id."),
    actor: str = typer.Option(..., "--actor"),
    trust_root: Path = TRUST_ROOT,
    output: Path | None = typer.Option(None, "--output", help="Directory to create (default ./<rollback_id>)."),
    notes: str | None = typer.Option(None, "--notes"),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Roll back a promotion execution (once per execution)."""
    _check_input(execution, "EXECUTION", "any")
    result = _run("rollback", {
        "execution_path": str(execution), "approval_id": approval, "actor": actor, "trust_root": str(trust_root),
        "output": _path(output), "notes": notes, "now": _now(at),
    }, use_prefect, json_output)
    if json_output:
        print_json(result)
        return
    ring = result["ring_rollback"]
    typer.echo(f"ROLLED BACK: {result['rollback_id']} of {result['promotion_execution_id']} {ring['from']} -> "
               f"{ring['to']} by {result['executed_by']}")
    for channel in result["channels"]:
        state = "may go down once" if channel.get("rollback_allowed") else f"not allowed: {channel.get('error')}"
        typer.echo(f"  channel {channel['channel']}: {state}")
    typer.echo(f"rollback: {result['rollback_path']}{_evidence(result)}")


@app.command("audit")
def audit(
    record: Path = typer.Argument(..., help="A promotion execution or rollback record (or its directory)."),
    output: Path = typer.Option(..., "--output", help="Directory to create for the audit files."),
    deliver: Path | None = typer.Option(None, "--deliver", help="Also deliver through these connectors."),
    provider: str = typer.Option("all", "--provider", "-p", help="With --deliver: destinations (names/kinds)."),
    actor: str | None = typer.Option(None, "--actor"),
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Export the audit event and SIEM/ITSM payloads (checksummed); --deliver sends it (once per
    destination: a second delivery of the same execution is "already delivered"). Exit 1 when a
    destination did not take it."""
    _check_input(record, "RECORD", "any")
    result = _run("audit", {
        "record_path": str(record), "output": str(output), "deliver_config": _path(deliver), "provider": provider,
        "actor": _actor(actor),
    }, use_prefect)
    if json_output:
        print_json(result)
    else:
        typer.echo(f"EXPORTED: {result['kind']} audit of {result['audited_id']} -> {result['output_dir']} "
                   f"({len(result['files'])} files){_evidence(result)}")
        delivery = result.get("delivery")
        if delivery is not None:
            for row in delivery["deliveries"]:
                typer.echo(f"  {row['destination']} ({row['provider']}): {row['status']}"
                           + (f" - {row['error']}" if row["error"] else ""))
            verdict = "delivered" if delivery["success"] else "NOT delivered to every destination"
            typer.echo(f"audit event {delivery['event_id']} {verdict} (evidence {delivery['evidence_id']})")
    if not result.get("valid", True):
        raise typer.Exit(1)


@app.command("show")
def show(
    ident: str = typer.Argument(..., help="Rollout id, or a request/execution/rollback/approval id of one."),
    json_output: bool = JSON,
) -> None:
    """Drill down: rollout -> request -> approval (who, when, why) -> execution -> rollback -> deliveries."""
    from ringward.operations.promotion.rollout_ops import show_rollout
    from ringward.store import open_store

    with open_store() as store:
        view = show_rollout(store, ident)
    if json_output:
        print_json(view)
        return
    _print_drilldown(view)


def _ev(step: dict[str, Any]) -> str:
    ev = step.get("evidence") or {}
    return f"[evidence {ev.get('evidence_id')} {str(ev.get('record_hash', ''))[:16]}]"


def _print_approval(approval: dict[str, Any] | None, indent: str) -> None:
    if not approval:
        return
    typer.echo(f"{indent}approval {approval['approval_id']}: {approval.get('effective_state')} "
               f"(requested by {approval.get('requester')}, quorum {approval.get('quorum')}, "
               f"expires {approval.get('expires_at')})")
    for vote in approval.get("votes", []):
        typer.echo(f"{indent}  {vote['at']} {vote['actor']} {vote['decision']}: {vote.get('reason') or ''} "
                   f"[evidence {vote.get('evidence_id')}]")


def _print_deliveries(deliveries: list[dict[str, Any]], indent: str) -> None:
    for item in deliveries:
        if "destination" in item:
            typer.echo(f"{indent}delivery {item['destination']} ({item['provider']}): {item['state']}, "
                       f"{item['attempt_count']} attempt(s)")
        else:
            typer.echo(f"{indent}delivery record {_ev(item)} success={item.get('delivery_success')}")


def _print_drilldown(view: dict[str, Any]) -> None:
    typer.echo(f"rollout {view['rollout_id']}: {view['environment']} release {view['release_version']}, "
               f"now {view['current_ring']} ({view['current_status']})")
    for step in view["rollout"]:
        typer.echo(f"  {step['step']} by {step['actor']} at {step['created_at']} {_ev(step)}")
    for promotion in view["promotions"]:
        request = promotion["request"]
        typer.echo(f"  request {request['ref_id']} by {request['actor']} at {request['created_at']} {_ev(request)}")
        _print_approval(promotion["approval"], "    ")
        for execution in promotion["executions"]:
            typer.echo(f"    execution {execution['ref_id']} by {execution['actor']} at {execution['created_at']} "
                       f"-> {execution['ring']} {_ev(execution)}")
            for item in execution["audits"]:
                typer.echo(f"      audit by {item['actor']} at {item['created_at']} {_ev(item)}")
            _print_deliveries(execution["deliveries"], "      ")
            for rr in execution["rollback_requests"]:
                typer.echo(f"      rollback request {rr['ref_id']} by {rr['actor']} {_ev(rr)}")
                _print_approval(rr["approval"], "        ")
            for rb in execution["rollbacks"]:
                typer.echo(f"      rollback {rb['ref_id']} by {rb['actor']} at {rb['created_at']} -> {rb['ring']} "
                           f"{_ev(rb)}")
                for item in rb["audits"]:
                    typer.echo(f"        audit by {item['actor']} at {item['created_at']} {_ev(item)}")
                _print_deliveries(rb["deliveries"], "        ")
    for refusal in view["refusals"]:
        typer.echo(f"  refused {refusal['step']} ({refusal['code']}) by {refusal['actor']}: {refusal['message']}")


def _filters(environment: str | None, ring: str | None, status: str | None, release_version: str | None,
             since: str | None, until: str | None, step: str | None = None) -> Any:
    from ringward.store.promotion.executions_repo import STEPS, StepFilter

    if step is not None and step not in STEPS:
        raise InputError(f"--step: expected one of {', '.join(STEPS)}, found {step!r}")
    return StepFilter(environment=environment, ring=ring, status=status, release_version=release_version,
                      step=step, since=_time(since, "--since"), until=_time(until, "--until"))


def _print_steps(page: dict[str, Any], noun: str) -> None:
    print_table(
        ["rollout_id", "step", "ref_id", "environment", "ring", "status", "release", "actor", "at", "evidence"],
        [[i["rollout_id"], i["step"], i["ref_id"], i["environment"], i["ring"], i["status"], i["release_version"],
          i["actor"], i["created_at"], i["evidence_id"]] for i in page["items"]],
    )
    typer.echo(f"{len(page['items'])} of {page['total']} {noun}")


ENV = typer.Option(None, "--environment")
RING = typer.Option(None, "--ring", help="Ring (list: the rollout's current ring).")
STATUS = typer.Option(None, "--status", help="planned, staged, succeeded, promoted, rolled_back ...")
RELEASE = typer.Option(None, "--release-version")
SINCE = typer.Option(None, "--since", help="ISO-8601 UTC time (inclusive).")
UNTIL = typer.Option(None, "--until", help="ISO-8601 UTC time (exclusive).")
LIMIT = typer.Option(50, "--limit", help="Page size (1-500).")
OFFSET = typer.Option(0, "--offset")


@app.command("list")
def list_(
    environment: str | None = ENV, ring: str | None = RING, status: str | None = STATUS,
    release_version: str | None = RELEASE, since: str | None = SINCE, until: str | None = UNTIL,
    limit: int = LIMIT, offset: int = OFFSET, json_output: bool = JSON,
) -> None:
    """Rollouts by their current state (after their latest step), newest first."""
    from ringward.operations.promotion.rollout_ops import list_rollouts
    from ringward.store import open_store

    filters = _filters(environment, ring, status, release_version, since, until)
    with open_store() as store:
        page = list_rollouts(store, filters, limit=limit, offset=offset)
    if json_output:
        print_json(page)
    else:
        _print_steps(page, "rollout(s)")


@app.command("search")
def search(
    environment: str | None = ENV, ring: str | None = RING, status: str | None = STATUS,
    release_version: str | None = RELEASE, since: str | None = SINCE, until: str | None = UNTIL,
    step: str | None = typer.Option(None, "--step", help="capture, verify, request, execution, rollback-request, "
                                                          "rollback or audit."),
    limit: int = LIMIT, offset: int = OFFSET, json_output: bool = JSON,
) -> None:
    """Every rollout step matching the filters, newest first."""
    from ringward.operations.promotion.rollout_ops import search_rollouts
    from ringward.store import open_store

    filters = _filters(environment, ring, status, release_version, since, until, step)
    with open_store() as store:
        page = search_rollouts(store, filters, limit=limit, offset=offset)
    if json_output:
        print_json(page)
    else:
        _print_steps(page, "step(s)")
