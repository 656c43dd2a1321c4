"""`ringward approval ...`: request, decide, inspect, consume and exchange approvals.

A requester never decides their own request; expired approvals can be neither decided nor
used; an approval is consumed at most once. Refusals exit 1, bad input exits 2. With a Prefect API
configured, approve / deny / revoke emit ``ringward.approval.decided`` (the ``execute-on-approval``
deployment can react to it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Request and decide approvals.",
)

JSON = typer.Option(False, "--json", help="Print the approval record as JSON.")
ACTOR = typer.Option(..., "--actor", help="Who decides (recorded in the evidence chain).")
REASON = typer.Option(..., "--reason", help="Why (recorded in the evidence chain).")


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


def _now() -> datetime:
    return datetime.now(UTC)


def _emit(approval: Any, *, json_output: bool, line: str, warnings: list[str] | None = None) -> None:
    if json_output:
        doc = approval.to_document(_now())
        if warnings:
            doc["warnings"] = warnings
        print_json(doc)
    else:
        for warning in warnings or []:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(line)


def _decided_event(approval: Any, *, actor: str, decision: str) -> list[str]:
    """Send ``ringward.approval.decided`` when a Prefect API is configured (Prefect is imported only
    then); returns the warning of an event that could not be sent."""
    from flows.events import events_enabled

    if not events_enabled():
        return []
    from flows.events import emit_if_configured
    from ringward.operations.promotion.automation import approval_decided_event

    warning = emit_if_configured(*approval_decided_event(approval, decided_by=actor, decision=decision))
    return [warning] if warning else []


@app.command("request")
def request(
    action: str = typer.Option(..., "--action", help="The action the approval allows (e.g. promote-ring)."),
    subject_digest: str = typer.Option(..., "--subject-digest", help="sha256:<hex> of what is approved."),
    target: str = typer.Option(..., "--target", help="Ring, channel or remediation target."),
    requester: str = typer.Option(..., "--requester", help="Who asks (may never approve it)."),
    expires_in: str = typer.Option("24h", "--expires-in", help="Lifetime: 30m, 24h, 7d ... (max 90d)."),
    quorum: int = typer.Option(1, "--quorum", help="Distinct approvers needed (1-9)."),
    approver_group: str | None = typer.Option(None, "--approver-group", help="Group expected to decide."),
    note: str | None = typer.Option(None, "--note", help="Context for the approvers."),
    json_output: bool = JSON,
) -> None:
    """Open a pending approval; prints its id (``--json``: the record)."""
    from ringward.core.approvals.rules import parse_duration
    from ringward.operations.approvals.approval_ops import request_approval

    ttl = parse_duration(expires_in)
    with _store() as store:
        approval = request_approval(
            store,
            action=action,
            subject_digest=subject_digest,
            target=target,
            requester=requester,
            expires_in=ttl,
            quorum=quorum,
            approver_group=approver_group,
            note=note,
        )
    _emit(approval, json_output=json_output, line=approval.approval_id)


def _decide(approval_id: str, decision: str, actor: str, reason: str, json_output: bool) -> None:
    from ringward.core.approvals.rules import Decision
    from ringward.operations.approvals.approval_ops import decide_approval

    with _store() as store:
        approval = decide_approval(store, approval_id, decision=Decision(decision), actor=actor, reason=reason)
    warnings = _decided_event(approval, actor=actor, decision=decision)
    votes = f" ({len(approval.approvers())}/{approval.quorum} approvals)" if approval.quorum > 1 else ""
    _emit(approval, json_output=json_output, line=f"{approval.approval_id}: {approval.state.value}{votes}",
          warnings=warnings)


@app.command("approve")
def approve(
    approval_id: str = typer.Argument(...), actor: str = ACTOR, reason: str = REASON, json_output: bool = JSON
) -> None:
    """Approve (one vote toward the quorum); the requester cannot approve."""
    _decide(approval_id, "approve", actor, reason, json_output)


@app.command("deny")
def deny(
    approval_id: str = typer.Argument(...), actor: str = ACTOR, reason: str = REASON, json_output: bool = JSON
) -> None:
    """Deny a pending approval."""
    _decide(approval_id, "deny", actor, reason, json_output)


@app.command("revoke")
def revoke(
    approval_id: str = typer.Argument(...), actor: str = ACTOR, reason: str = REASON, json_output: bool = JSON
) -> None:
    """Withdraw a pending or approved (unused) approval."""
    _decide(approval_id, "revoke", actor, reason, json_output)


@app.command("consume")
def consume(
    approval_id: str = typer.Argument(...),
    action: str = typer.Option(..., "--action"),
    subject_digest: str = typer.Option(..., "--subject-digest"),
    target: str = typer.Option(..., "--target"),
    actor: str = typer.Option(..., "--actor", help="The executor."),
    execution_ref: str | None = typer.Option(None, "--execution-ref", help="Id of the execution using it."),
    json_output: bool = JSON,
) -> None:
    """Use an approval for one execution (binding, state and expiry checked; single-use)."""
    from ringward.operations.approvals.approval_ops import consume_approval

    with _store() as store:
        approval = consume_approval(
            store,
            approval_id,
            action=action,
            subject_digest=subject_digest,
            target=target,
            actor=actor,
            execution_ref=execution_ref,
        )
    _emit(approval, json_output=json_output, line=f"{approval.approval_id}: consumed by {actor}")


@app.command("show")
def show(approval_id: str = typer.Argument(...), json_output: bool = JSON) -> None:
    """One approval with its decisions."""
    from ringward.operations.approvals.approval_ops import show_approval

    with _store() as store:
        approval = show_approval(store, approval_id)
    now = _now()
    if json_output:
        print_json(approval.to_document(now))
        return
    doc = approval.to_document(now)
    for key in (
        "approval_id",
        "effective_state",
        "action",
        "subject_digest",
        "target",
        "requester",
        "quorum",
        "created_at",
        "expires_at",
        "decided_by",
        "decided_at",
        "decision_reason",
        "consumed_at",
        "consumed_by",
        "origin",
    ):
        if doc.get(key) is not None:
            typer.echo(f"{key}: {doc[key]}")
    for vote in approval.votes:
        typer.echo(f"decision: {vote.at.isoformat()} {vote.actor} {vote.decision.value}: {vote.reason or ''}")


@app.command("list")
def list_(
    state: str | None = typer.Option(None, "--state", help="pending, approved, denied, expired or revoked."),
    target: str | None = typer.Option(None, "--target"),
    limit: int = typer.Option(50, "--limit", help="Page size (1-500)."),
    offset: int = typer.Option(0, "--offset"),
    json_output: bool = JSON,
) -> None:
    """Approvals newest first; --state filters on the state in force now (expiry included)."""
    from ringward.core.approvals.rules import ApprovalState
    from ringward.operations.approvals.approval_ops import list_approvals

    wanted = None
    if state is not None:
        try:
            wanted = ApprovalState(state)
        except ValueError:
            raise InputError(
                f"--state: expected one of {', '.join(s.value for s in ApprovalState)}, found {state!r}"
            ) from None
    now = _now()
    with _store() as store:
        items, total = list_approvals(store, state=wanted, target=target, limit=limit, offset=offset, now=now)
    if json_output:
        print_json({"items": [a.to_document(now) for a in items], "total": total, "limit": limit, "offset": offset})
        return
    print_table(
        ["approval_id", "state", "action", "target", "requester", "approvals", "expires_at"],
        [
            [
                a.approval_id,
                a.effective_state(now).value + (" (consumed)" if a.consumed_at else ""),
                a.action,
                a.target,
                a.requester,
                f"{len(a.approvers())}/{a.quorum}",
                a.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ]
            for a in items
        ],
    )
    typer.echo(f"{len(items)} of {total} approval(s)")


@app.command("expire")
def expire(json_output: bool = JSON) -> None:
    """Record the expiry of every unused approval past its expires_at (evidence per approval)."""
    from ringward.operations.approvals.approval_ops import expire_due_approvals

    with _store() as store:
        expired = expire_due_approvals(store)
    if json_output:
        print_json({"expired": expired})
    else:
        typer.echo(f"expired {len(expired)} approval(s)" + (f": {', '.join(expired)}" if expired else ""))


@app.command("export")
def export(
    output: Path = typer.Argument(..., help="approvals.json to write (reference format)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Export approvals as the reference system's approvals.json ({"items": [...]})."""
    from ringward.operations.approvals.approval_ops import export_approvals_json

    with _store() as store:
        count = export_approvals_json(store, output, overwrite=force)
    typer.echo(f"wrote {output}: {count} approval(s)")


@app.command("import")
def import_(
    source: Path = typer.Argument(..., help="A reference approvals.json."),
    actor: str = typer.Option(..., "--actor", help="Who imports (named in the evidence records)."),
    json_output: bool = JSON,
) -> None:
    """Import a reference approvals.json as history (imported decisions authorise nothing); existing
    ids are skipped, and imports running at once still record each approval once."""
    from ringward.operations.approvals.approval_ops import import_approvals_json

    with _store() as store:
        result = import_approvals_json(store, source, actor=actor)
    if json_output:
        print_json(result)
    else:
        typer.echo(f"imported {result['imported']} approval(s), skipped {result['skipped']} existing")
