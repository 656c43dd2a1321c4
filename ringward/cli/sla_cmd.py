"""`ringward sla ...`: remediation SLA report, notifications, escalation, acknowledgements, silences.

Every command takes ``--at`` (ISO 8601 with offset) so a scenario can be replayed in virtual time.
Exit codes: 0 done; 1 a send failed, an acknowledgement was refused or the state forbids it;
2 bad input (unreadable or invalid files, unknown group, bad matcher, time without offset).
The HTTP route ``POST /sla/acknowledgements`` and the signed-webhook acknowledgement callback are
not part of this command group.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Remediation SLA: report, notify, escalate, acknowledge, silence.",
)
silence_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Silence alerts by matchers.")
app.add_typer(silence_app, name="silence")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO 8601 time with offset (default now).")
POLICY = typer.Option(..., "--policy", help="The SLA routing policy (routing.yaml).")
CONFIG = typer.Option(..., "--config", help="The connector configuration (connectors.yaml).")
REPORT = typer.Argument(..., help="An SLA report JSON (cavra.endpoint-remediation-sla-report.v1).")


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"--at: expected an ISO 8601 time such as 2026-03-09T14:00:00Z, found {value!r}") from None
    if parsed.utcoffset() is None:
        raise InputError(f"--at: {value!r} has no UTC offset (append Z or +hh:mm)")
    return parsed.astimezone(UTC)


def _hours(value: str, option: str) -> float:
    from ringward.core.sla.policy import parse_duration

    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return parse_duration(text, allow_zero=False) / timedelta(hours=1)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _actor(value: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return value or default_actor()


@app.command("report")
def report(
    inputs: list[Path] = typer.Argument(None, help="Handoff / handoff-status JSON files or directories."),
    handoffs: list[Path] = typer.Option([], "--handoffs", help="A directory or file of handoffs and statuses."),
    warning: str = typer.Option("24h", "--warning", help="At risk after this age (24h; a number is hours)."),
    critical: str = typer.Option("48h", "--critical", help="Breached after this age (48h)."),
    at: str | None = AT,
    output: Path | None = typer.Option(None, "--output", help="Write the report JSON here (atomically)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Append the report to the evidence chain."),
    generated_by: str | None = typer.Option(None, "--generated-by"),
    json_output: bool = JSON,
) -> None:
    """Build the remediation SLA report (critical first by rank, then the oldest)."""
    from ringward.operations.sla import sla_ops

    paths = [*(inputs or []), *handoffs]
    if not paths:
        raise InputError("handoffs: give handoff files or directories (arguments or --handoffs)")
    now = _at(at)
    kwargs: dict[str, Any] = {
        "now": now,
        "warning_hours": _hours(warning, "--warning"),
        "critical_hours": _hours(critical, "--critical"),
        "generated_by": _actor(generated_by),
        "output": output,
    }
    if record:
        from ringward.store import open_store

        with open_store() as store:
            built = sla_ops.make_report(paths, store=store, **kwargs)
    else:
        built = sla_ops.make_report(paths, **kwargs)
    if json_output:
        print_json(sla_ops.report_document(built))
        return
    for warning_text in built.warnings:
        typer.echo(f"warning: {warning_text}", err=True)
    rows = [
        (
            w.severity.value,
            w.sla_state.value,
            w.handoff_id,
            w.provider,
            w.status,
            f"{w.age_hours:.1f}",
            f"{w.overdue_hours:.1f}",
        )
        for w in built.work_items
    ]
    print_table(["severity", "sla", "handoff", "provider", "status", "age h", "overdue h"], rows)
    s = built.executive_summary
    typer.echo(
        f"{built.alert_level.value.upper()}: {built.report_id}: {s.breached_count} breached, "
        f"{s.at_risk_count} at risk, {s.completed_count} completed of {s.tracked_work_item_count}"
    )


def _cycle(report_path: Path, policy: Path, config: Path, at: str | None, kinds: Any, json_output: bool) -> None:
    from ringward.cli.connectors_cmd import _lookups
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    loaded_policy = sla_ops.load_policy(policy)
    loaded_config = sla_ops.load_config(config)
    loaded_report = sla_ops.load_report(report_path)
    now = _at(at)
    with open_store() as store:
        # a manual run claims each send (never twice) but not the schedule window (the flow's)
        result = sla_ops.run_cycle(
            store,
            loaded_policy,
            loaded_report,
            loaded_config,
            now=now,
            kinds=kinds,
            claim_window=False,
            actor=_actor(None),
            lookups=_lookups(loaded_config),
        )
    summary = result.summary()
    if json_output:
        print_json(summary)
    else:
        rows = [
            (r["kind"], r["group_key"], r["receiver"], r["reason"], r.get("level") or "-", "sent")
            for r in summary["sent"]
        ]
        rows += [
            (r["kind"], r["group_key"], r["receiver"], r["reason"], r.get("level") or "-", "FAILED")
            for r in summary["failed"]
        ]
        if rows:
            print_table(["kind", "group", "receiver", "reason", "rung", "result"], rows)
        for s in result.plan.suppressions:
            typer.echo(f"suppressed  {s.group_key} {s.receiver or '-'} {s.subject}: {s.code.value}: {s.detail}")
        for w in result.plan.waiting:
            typer.echo(f"waiting     {w.group_key} {w.receiver}: {w.detail} (next {w.next_at.isoformat()})")
        for i in result.plan.incidents:
            ack = f", acknowledged by {i.acknowledged_by}" if i.acknowledged_by else ""
            typer.echo(
                f"incident    {i.group_key} owner {i.owner}: {i.state.value}{ack}, rung {i.level or '-'}, "
                f"ack SLO {i.acknowledgement_slo_state.value}"
            )
        typer.echo(
            f"{len(summary['sent'])} sent, {len(summary['failed'])} failed, "
            f"{len(result.plan.suppressions)} suppressed (evidence {summary['plan_evidence_id']})"
        )
    if summary["failed"]:
        raise typer.Exit(1)


@app.command("notify")
def notify(
    report_path: Path = REPORT,
    policy: Path = POLICY,
    config: Path = CONFIG,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Send the group notifications due now (Alertmanager grouping, dedup, silences)."""
    from ringward.core.sla.history import NotificationKind

    _cycle(report_path, policy, config, at, (NotificationKind.GROUP,), json_output)


@app.command("escalate")
def escalate(
    report_path: Path = REPORT,
    policy: Path = POLICY,
    config: Path = CONFIG,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Deliver the escalation rungs due now and show every open incident."""
    from ringward.core.sla.history import NotificationKind

    _cycle(report_path, policy, config, at, (NotificationKind.ESCALATION,), json_output)


@app.command("ack")
def ack(
    group: str = typer.Argument(..., help="The route id (or <scope>/<route id>) whose incident is decided."),
    report_path: Path = typer.Option(..., "--report", help="The current SLA report JSON."),
    policy: Path = POLICY,
    state: str = typer.Option("acknowledged", "--state", help="acknowledged | escalated | resolved | dismissed"),
    by: str = typer.Option(..., "--by", help="Who decides: the route's owner, a member, or an admin."),
    comment: str | None = typer.Option(None, "--comment"),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Acknowledge, escalate, resolve or dismiss a group's incident."""
    from ringward.core.sla.acks import AcknowledgementRefused
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    loaded_policy = sla_ops.load_policy(policy)
    loaded_report = sla_ops.load_report(report_path)
    with open_store() as store:
        try:
            payload = sla_ops.acknowledge(
                store, loaded_policy, loaded_report, group=group, state=state, by=by, at=_at(at), comment=comment
            )
        except AcknowledgementRefused as exc:
            typer.echo(f"error: {exc.message} (the refusal is recorded)", err=True)
            raise typer.Exit(1) from None
    if json_output:
        print_json(payload)
    else:
        state, group_key = payload["acknowledgement_state"].upper(), payload["group_key"]
        typer.echo(f"{state}: {group_key} by {payload['acknowledged_by']} ({payload['acknowledgement_id']})")


@silence_app.command("add")
def silence_add(
    matchers: list[str] = typer.Argument(..., help="name=value, name!=value, name=~regex (owner, provider, ...)."),
    policy: Path = POLICY,
    duration: str | None = typer.Option(None, "--duration", help="How long from --starts-at (2h, 1d)."),
    ends_at: str | None = typer.Option(None, "--ends-at", help="End (ISO 8601 with offset)."),
    starts_at: str | None = typer.Option(None, "--starts-at", help="Start (default --at)."),
    comment: str = typer.Option(..., "--comment", help="Why."),
    by: str | None = typer.Option(None, "--by"),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Silence the alerts the matchers select (recorded; suppressed sends are recorded too)."""
    from ringward.core.sla.policy import parse_duration
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    now = _at(at)
    start = _at(starts_at) if starts_at else now
    if (duration is None) == (ends_at is None):
        raise InputError("silence: give exactly one of --duration or --ends-at")
    if duration is not None:
        try:
            end = start + parse_duration(duration, allow_zero=False)
        except ValueError as exc:
            raise InputError(f"--duration: {exc}") from None
    else:
        end = _at(ends_at)
    scope = sla_ops.load_policy(policy).scope
    with open_store() as store:
        event = sla_ops.add_silence(
            store, scope, matchers, starts_at=start, ends_at=end, by=_actor(by), comment=comment, at=now
        )
    if json_output:
        print_json(event.model_dump(mode="json"))
    else:
        typer.echo(f"SILENCED: {event.silence_id} until {end.isoformat()}")


@silence_app.command("list")
def silence_list(policy: Path = POLICY, at: str | None = AT, json_output: bool = JSON) -> None:
    """List silences with their state (pending, active, expired)."""
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    scope = sla_ops.load_policy(policy).scope
    with open_store() as store:
        rows = sla_ops.list_silences(store, scope, now=_at(at))
    if json_output:
        print_json({"silences": rows})
        return
    print_table(
        ["id", "state", "matchers", "ends at", "by", "comment"],
        [
            (r["silence_id"], r["state"], " ".join(r["matchers"]), r["ends_at"], r["created_by"], r["comment"][:60])
            for r in rows
        ],
    )


@silence_app.command("expire")
def silence_expire(
    silence_id: str = typer.Argument(...),
    policy: Path = POLICY,
    by: str | None = typer.Option(None, "--by"),
    at: str | None = AT,
) -> None:
    """End a silence now (its alerts are sent on the next cycle)."""
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    scope = sla_ops.load_policy(policy).scope
    with open_store() as store:
        sla_ops.expire_silence(store, scope, silence_id, by=_actor(by), at=_at(at))
    typer.echo(f"EXPIRED: {silence_id}")
