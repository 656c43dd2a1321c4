"""`ringward channel ...`: channel promotion requests, high-water marks and holds.

``request-promotion`` verifies the package against the pinned trust root, checks the channel
(approval required, no auto-update, not held, not below its high-water mark), opens an approval
bound to the package's checksums digest and ``<channel>-><ring>`` and writes the request signed
by a pinned promotion-role key. ``status`` shows each channel's high-water mark, current release,
hold and rollback allowance; ``hold`` / ``unhold`` stop and resume everything on a channel.
Refusals exit 1, bad input exits 2; every decision is an evidence record.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Channel promotion requests, high-water marks and holds.",
)

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
PREFECT = typer.Option(False, "--prefect", help="Run as a tracked Prefect flow run instead of in-process.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time (key validity, approval expiry); default now.")
ACTOR = typer.Option(None, "--actor", help="Who acts (default $RINGWARD_ACTOR, else the CI actor or OS user).")
REASON = typer.Option(..., "--reason", help="Why (recorded in the evidence chain).")


def _now(at: str | None) -> datetime:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    parsed = _time(at, "--at")
    return parsed if parsed is not None else utc_now()


def _actor(actor: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return actor or default_actor()


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


@app.command("request-promotion")
def request_promotion(
    package_dir: Path = typer.Argument(..., help="The verified release package directory."),
    channel: str = typer.Option(..., "--channel", help="Release channel (canary, beta, stable, ...)."),
    target_ring: str = typer.Option(..., "--target-ring", help="Rollout ring the promotion targets."),
    requester: str = typer.Option(..., "--requester", help="Who asks (may never approve it)."),
    signing_key: Path = typer.Option(..., "--signing-key", help="Ed25519 PEM of a promotion-role key pinned in "
                                     "the trust root."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                                    help="Pinned trust root; env RINGWARD_TRUST_ROOT."),
    expires_in: str = typer.Option("24h", "--expires-in", help="Approval lifetime: 30m, 24h, 7d ... (max 90d)."),
    quorum: int = typer.Option(1, "--quorum", help="Distinct approvers needed (1-9)."),
    approver_group: str | None = typer.Option(None, "--approver-group", help="Group expected to decide."),
    output: Path | None = typer.Option(None, "--output", help="Directory for the request and its summary "
                                       "(default ./channel-promotion/<request_id>)."),
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Open an approval and write the signed release-channel-promotion-request.json (+ .md)."""
    from ringward.core.approvals.rules import parse_duration

    ttl = parse_duration(expires_in)
    now = _now(at)
    if use_prefect:
        from flows._common import run_flow
        from flows.promotion_channel import request_channel_promotion_flow

        result = run_flow(
            request_channel_promotion_flow, package_dir=str(package_dir), channel=channel, target_ring=target_ring,
            requester=requester, signing_key=str(signing_key), trust_root=str(trust_root), expires_in=expires_in,
            quorum=quorum, approver_group=approver_group, output=str(output) if output else None, now=now,
        )
    else:
        from ringward.operations.promotion.channel_ops import request_channel_promotion

        with _store() as store:
            result = request_channel_promotion(
                store, package_dir=package_dir, channel=channel, target_ring=target_ring, requester=requester,
                signing_key=signing_key, trust_root=trust_root, now=now, expires_in=ttl, quorum=quorum,
                approver_group=approver_group, output=output,
            )
        # the flow path emits it from the flow; in-process, only when a Prefect API is configured
        from flows.events import emit_if_configured
        from ringward.operations.promotion.channel_ops import requested_event

        warning = emit_if_configured(*requested_event(result))
        if warning:
            typer.echo(f"warning: {warning}", err=True)
    if json_output:
        print_json(result)
        return
    typer.echo(f"REQUESTED: {result['runtime']} {result['version']} -> {result['channel']}->{result['target_ring']} "
               f"(request {result['request_id']})")
    typer.echo(f"approval {result['approval_id']} pending until {result['expires_at']} "
               f"(quorum {result['quorum']}); another person approves with "
               f"`ringward approval approve {result['approval_id']} --actor NAME --reason TEXT`")
    typer.echo(f"request: {result['output_dir']} (evidence {result['evidence']['evidence_id']})")


@app.command("status")
def status(
    channel: str | None = typer.Option(None, "--channel", help="One channel (default: every channel with state)."),
    json_output: bool = JSON,
) -> None:
    """High-water mark, current release, hold and rollback allowance per channel."""
    from ringward.operations.promotion.channel_status import channel_status

    with _store() as store:
        result = channel_status(store, channel)
    if json_output:
        print_json(result)
        return
    rows = []
    for state in result["channels"]:
        mark, current, hold = state["high_water"], state["current"], state["hold"]
        allowance = state["rollback_allowance"]
        rows.append([
            state["channel"],
            f"{mark['version']} {mark['digest'][7:19]}" if mark else "-",
            f"{current['version']} ({current['kind']})" if current else "-",
            f"HELD by {hold['actor']} at {hold['at']}: {hold['reason'][:60]}" if hold else "open",
            f"to {allowance['to_version']} ({allowance['rollback_id']})" if allowance else "-",
        ])
    print_table(["channel", "high-water mark", "current", "hold", "rollback allowance"], rows)
    if not rows:
        typer.echo("no channel has state yet")


def _hold(channel: str, reason: str, actor: str | None, json_output: bool, *, lift: bool) -> None:
    from ringward.operations.promotion import channel_ops

    op = channel_ops.unhold_channel if lift else channel_ops.hold_channel
    with _store() as store:
        result = op(store, channel, reason=reason, actor=_actor(actor), now=_now(None))
    if json_output:
        print_json(result)
        return
    state = result["channel"]
    verb = "UNHELD" if lift else "HELD"
    typer.echo(f"{verb}: channel {state['channel']} (evidence {result['evidence']['evidence_id']})")


@app.command("hold")
def hold(
    channel: str = typer.Argument(..., help="The channel to hold."),
    reason: str = REASON,
    actor: str | None = ACTOR,
    json_output: bool = JSON,
) -> None:
    """Hold a channel: no promotion request, export or upgrade validation passes until unheld."""
    _hold(channel, reason, actor, json_output, lift=False)


@app.command("unhold")
def unhold(
    channel: str = typer.Argument(..., help="The channel to release."),
    reason: str = REASON,
    actor: str | None = ACTOR,
    json_output: bool = JSON,
) -> None:
    """Lift a channel's hold."""
    _hold(channel, reason, actor, json_output, lift=True)
