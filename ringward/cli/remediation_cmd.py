"""`ringward remediation ...`: endpoint drift remediation requests, executions, handoffs, statuses.

``request`` turns a reconciliation report into a signed request (remediation-role key) bound to an
approval -- or attaches to the open request that already covers the same release, targets and drift
classes. ``execute`` uses that approval once (approver other than the requester, unexpired), records
the work, then runs the republish / rollback actions through the promotion domain (endpoint
publication, rollout rollback), each under its own approval -- what is missing is reported as awaiting
its approval and ``actions`` resumes it later; the rest are handoff work items. ``handoff`` delivers an
executed request's work items through the connector platform; ``status`` records a provider's
progress (completed, failed and cancelled are final; nothing returns to queued; signed callbacks use
``POST /webhooks/handoff-status``). Refusals exit 1, bad input exits 2; every decision is an evidence
record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ringward.cli.channel_cmd import AT, JSON, _actor, _now, _store
from ringward.cli.output import print_json

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Endpoint drift remediation: request, execute, hand off, record status.",
)

TRUST_ROOT = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                          help="Pinned trust root; env RINGWARD_TRUST_ROOT.")


@app.command("request")
def request(
    reconciliation: Path = typer.Argument(..., help="A cavra.endpoint-reconciliation.v1 report "
                                          "(managed-endpoint-reconciliation.json)."),
    strategy: str = typer.Option("mixed", "--strategy", help="mixed | republish | rollback."),
    requester: str = typer.Option(..., "--requester", help="Who asks (may never approve it)."),
    signing_key: Path = typer.Option(..., "--signing-key", help="Ed25519 PEM of a remediation-role key pinned "
                                     "in the trust root."),
    trust_root: Path = TRUST_ROOT,
    expires_in: str = typer.Option("24h", "--expires-in", help="Approval lifetime: 30m, 24h, 7d ... (max 90d)."),
    quorum: int = typer.Option(1, "--quorum", help="Distinct approvers needed (1-9)."),
    approver_group: str | None = typer.Option(None, "--approver-group", help="Group expected to decide."),
    output: Path | None = typer.Option(None, "--output", help="Directory for the request and its summary "
                                       "(default ./endpoint-remediation/<request_id>-<approval_id>)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Open an approval-bound, signed remediation request (or attach to the open one)."""
    from ringward.core.approvals.rules import parse_duration
    from ringward.operations.remediation.remediation_ops import request_remediation

    ttl = parse_duration(expires_in)
    now = _now(at)
    with _store() as store:
        result = request_remediation(
            store, reconciliation=reconciliation, strategy=strategy, requester=requester, signing_key=signing_key,
            trust_root=trust_root, now=now, expires_in=ttl, quorum=quorum, approver_group=approver_group,
            output=output,
        )
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    if json_output:
        print_json(result)
        return
    if result["attached"]:
        typer.echo(f"ATTACHED: request {result['request_id']} (approval {result['approval_id']}) already covers this "
                   f"drift; no new approval opened")
        return
    typer.echo(f"REQUESTED: {result['request_id']} ({result['strategy']}, {result['action_count']} actions) for "
               f"{result['reconciliation_id']}")
    typer.echo(f"approval {result['approval_id']} pending until {result['expires_at']}; another person approves "
               f"with `ringward approval approve {result['approval_id']} --actor NAME --reason TEXT`")
    typer.echo(f"request: {result['request']} (evidence {result['evidence']['evidence_id']})")


REPUBLISH_EXPORT = typer.Option(None, "--republish-export", help="Republish: the channel's approved "
                                 "endpoint-management-export-manifest.json (made by `ringward endpoint export` under "
                                 "its channel-promotion approval).")
CONNECTORS = typer.Option(None, "--config", envvar="RINGWARD_CONNECTORS", help="Republish: connector configuration "
                          "that publishes the export; env RINGWARD_CONNECTORS.")
PUBLISH_PROVIDER = typer.Option("all", "--publish-provider", help="Republish: jamf, intune, linux or all.")
ROLLBACK_EXECUTION = typer.Option(None, "--rollback-execution", help="Rollback: the rollout-promotion-execution.json "
                                  "to roll back.")
ROLLBACK_APPROVAL = typer.Option(None, "--rollback-approval", help="Rollback: its approval (opened by `ringward "
                                 "rollout request-rollback`, approved by someone else).")
ROLLBACK_OUTPUT = typer.Option(None, "--rollback-output", help="Rollback: directory for the rollback record "
                               "(default ./<rollback_id>).")


def _promotion(republish_export: Path | None, config: Path | None, publish_provider: str,
               rollback_execution: Path | None, rollback_approval: str | None, rollback_output: Path | None) -> Any:
    from ringward.operations.remediation.promotion_actions import PromotionInputs

    return PromotionInputs(republish_export=republish_export, connectors=config, publish_provider=publish_provider,
                           rollback_execution=rollback_execution, rollback_approval=rollback_approval,
                           rollback_output=rollback_output)


def _print_actions(actions: list[dict[str, Any]]) -> bool:
    """One line per republish/rollback operation; True when one was refused or failed."""
    problem = False
    for action in actions:
        label = {"done": "DONE", "awaiting_approval": "AWAITING APPROVAL", "refused": "REFUSED",
                 "failed": "FAILED"}.get(action["status"], action["status"].upper())
        again = " (already done)" if action.get("repeat") else ""
        typer.echo(f"{action['operation']} ({action['action_count']} actions): {label}{again}: {action['message']}",
                   err=action["status"] in ("refused", "failed"))
        problem = problem or action["status"] in ("refused", "failed")
    return problem


@app.command("execute")
def execute(
    request_file: Path = typer.Argument(..., metavar="REQUEST", help="The signed endpoint-remediation-request.json."),
    approval: str = typer.Option(..., "--approval", help="The request's approval id (approved, unused)."),
    actor: str | None = typer.Option(None, "--actor", help="Who executes (default $RINGWARD_ACTOR)."),
    trust_root: Path = TRUST_ROOT,
    environment: str | None = typer.Option(None, "--execution-environment", help="Where it runs (recorded)."),
    notes: str | None = typer.Option(None, "--notes", help="Free text recorded with the execution."),
    output: Path | None = typer.Option(None, "--output", help="Directory for the execution record "
                                       "(default ./endpoint-remediation-execution/<execution_id>)."),
    republish_export: Path | None = REPUBLISH_EXPORT,
    config: Path | None = CONNECTORS,
    publish_provider: str = PUBLISH_PROVIDER,
    rollback_execution: Path | None = ROLLBACK_EXECUTION,
    rollback_approval: str | None = ROLLBACK_APPROVAL,
    rollback_output: Path | None = ROLLBACK_OUTPUT,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Use the request's approval once, record the execution, then run republish / rollback actions
    through the promotion domain under their own approvals (reported as awaiting them when missing).
    Exit 1 when a republish or rollback was refused or failed (the execution stands)."""
    from ringward.operations.remediation.remediation_ops import execute_remediation

    promotion = _promotion(republish_export, config if republish_export else None, publish_provider,
                           rollback_execution, rollback_approval, rollback_output)
    with _store() as store:
        result = execute_remediation(
            store, request=request_file, approval_id=approval, actor=_actor(actor), trust_root=trust_root,
            now=_now(at), output=output, execution_environment=environment, notes=notes, promotion=promotion,
        )
    problem = any(a["status"] in ("refused", "failed") for a in result["promotion_actions"])
    if json_output:
        print_json(result)
    else:
        typer.echo(f"EXECUTED: {result['execution_id']} for {result['request_id']} (approval "
                   f"{result['approval_id']} consumed)")
        _print_actions(result["promotion_actions"])
        if not result["promotion_complete"]:
            typer.echo(f"resume with `ringward remediation actions {result['execution_id']} ...` once the "
                       "promotion approvals exist")
        typer.echo(f"{result['handoff_action_count']} handoff work items: `ringward remediation handoff "
                   f"{result['execution']} --provider ... --config ...`")
    if problem:
        raise typer.Exit(1)


@app.command("actions")
def actions(
    execution: str = typer.Argument(..., metavar="EXECUTION", help="Execution id (ere_...) or execution JSON file."),
    actor: str | None = typer.Option(None, "--actor", help="Who runs them (default $RINGWARD_ACTOR)."),
    trust_root: Path = TRUST_ROOT,
    republish_export: Path | None = REPUBLISH_EXPORT,
    config: Path | None = CONNECTORS,
    publish_provider: str = PUBLISH_PROVIDER,
    rollback_execution: Path | None = ROLLBACK_EXECUTION,
    rollback_approval: str | None = ROLLBACK_APPROVAL,
    rollback_output: Path | None = ROLLBACK_OUTPUT,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Run the republish / rollback actions of an executed remediation that still wait (done ones are not
    run again). Exit 1 when one was refused or failed."""
    from ringward.operations.remediation.promotion_actions import execution_id_of, run_promotion_actions

    promotion = _promotion(republish_export, config if republish_export else None, publish_provider,
                           rollback_execution, rollback_approval, rollback_output)
    with _store() as store:
        result = run_promotion_actions(store, execution_id=execution_id_of(execution), actor=_actor(actor),
                                       trust_root=trust_root, now=_now(at), inputs=promotion)
    if json_output:
        print_json(result)
        problem = bool(result["problems"])
    else:
        if not result["actions"]:
            typer.echo(f"{result['execution_id']}: no republish or rollback actions")
        problem = _print_actions(result["actions"])
    if problem:
        raise typer.Exit(1)


@app.command("handoff")
def handoff(
    source: Path = typer.Argument(..., metavar="REQUEST_OR_EXECUTION", help="The request or execution JSON."),
    provider: str = typer.Option(..., "--provider", help="Comma list: jira, servicenow, slack, teams, webhook, "
                                 "private_queue, or all."),
    config: Path = typer.Option(..., "--config", help="Connector configuration (connectors.yaml)."),
    actor: str | None = typer.Option(None, "--actor", help="Who hands off (default $RINGWARD_ACTOR)."),
    output: Path | None = typer.Option(None, "--output", help="Directory for the handoff files "
                                       "(default ./endpoint-remediation-handoff/<handoff_id>)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Deliver an executed request's work items through the connector platform (idempotent by handoff id)."""
    from ringward.operations.remediation.remediation_ops import handoff_remediation

    with _store() as store:
        result = handoff_remediation(store, source=source, providers=provider, config=config, actor=_actor(actor),
                                     now=_now(at), output=output)
    if json_output:
        print_json(result)
    else:
        typer.echo(f"HANDOFF {result['handoff_id']} for {result['request_id']}"
                   f"{' (again)' if result['repeat'] else ''}: " + ", ".join(
                       f"{p} {s}" for p, s in sorted(result["statuses"].items())))
        for name in result["failed_providers"]:
            typer.echo(f"delivery to {name} did not complete; re-run to retry (nothing is sent twice)", err=True)
    if result["failed_providers"]:
        raise typer.Exit(1)


@app.command("status")
def status(
    handoff_ref: str = typer.Argument(..., metavar="HANDOFF", help="Handoff id (erh_...) or handoff JSON file."),
    provider: str = typer.Option(..., "--provider", help="The provider whose work item changed."),
    status_value: str = typer.Option(..., "--status", help="queued, delivered, acknowledged, in_progress, "
                                     "blocked, completed, failed, cancelled."),
    note: str | None = typer.Option(None, "--note", help="Free text recorded with the status."),
    external_ref: str | None = typer.Option(None, "--external-ref", help="The provider's ticket/message id."),
    external_url: str | None = typer.Option(None, "--external-url", help="Link to the provider's record."),
    actor: str | None = typer.Option(None, "--actor", help="Who records it (default $RINGWARD_ACTOR)."),
    output: Path | None = typer.Option(None, "--output", help="Directory for the status record "
                                       "(default ./endpoint-remediation-handoff-status/<status_id>)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Record a provider's status for a handoff (completed/failed/cancelled are final)."""
    from ringward.operations.remediation.remediation_ops import record_handoff_status

    with _store() as store:
        result = record_handoff_status(store, handoff=handoff_ref, provider=provider, status=status_value,
                                       actor=_actor(actor), now=_now(at), note=note, external_ref=external_ref,
                                       external_url=external_url, output=output)
    if json_output:
        print_json(result)
        return
    typer.echo(f"STATUS {result['status']} for {result['handoff_id']}/{result['provider']} "
               f"(was {result['previous_status'] or 'none'}; {result['status_id']})")
