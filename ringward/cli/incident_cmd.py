"""`ringward incident ...`: open, acknowledge, update and close security incidents; list them and
report (and deliver) their breached response clocks.

Exit codes: 0 ok; 1 refused by state (closed is final, close before ack, unknown incident) or a
breach delivery failed; 2 bad input (the message names the option).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Security incidents: open, ack, update, close; response-clock breaches.")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time; default now.")


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


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:.1f}h"


def _print_incident(result: dict[str, Any], verb: str) -> None:
    incident = result["incident"]
    typer.echo(f"{verb}: {incident['incident_id']} {incident['severity']} {incident['type']} "
               f"[{incident['state']}] {incident['summary']}"
               + (f" (evidence {result['evidence_id']})" if result.get("evidence_id") else ""))
    for breach in result.get("breaches", []):
        typer.echo(f"  {breach['state'].upper()}: {breach['clock']} due {breach['due_at']} "
                   f"(target {_hours(breach['target_seconds'])}, observed {_hours(breach['observed_seconds'])})")


@app.command("open")
def open_(
    type_: str = typer.Option(..., "--type", help="supply-chain | leaked-credential | unauthorized-release | "
                              "vulnerability-report | kev-match"),
    severity: str = typer.Option(..., "--severity", help="critical | high | medium | low"),
    summary: str = typer.Option(..., "--summary", help="One line."),
    reporter: str | None = typer.Option(None, "--reporter", help="Who reported it (starts the 24 h reporter "
                                        "acknowledgement clock)."),
    link: list[str] = typer.Option([], "--link", help="KIND=VALUE; kind advisory | package (sha256:...) | cve | "
                                   "channel. Repeatable."),
    dedup_key: str | None = typer.Option(None, "--dedup-key", help="Re-opening with the same key returns the "
                                         "open incident instead of a new one."),
    disclosure_window_days: int = typer.Option(90, "--disclosure-window-days",
                                               help="Coordinated-disclosure window (vulnerability reports)."),
    actor: str | None = typer.Option(None, "--actor", help="Who opens it (default $RINGWARD_ACTOR / OS user)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Open an incident (a no-op returning the existing one for a repeated dedup key)."""
    from ringward.core.incidents.record import parse_links
    from ringward.operations.incidents import incident_ops as ops

    kind, level, links = ops.parse_type(type_), ops.parse_severity(severity), parse_links(link)
    now = _now(at)
    with _store() as store:
        result = ops.open_incident(store, type=kind, severity=level, summary=summary, reporter=reporter, links=links,
                                   dedup_key=dedup_key, actor=_actor(actor), now=now,
                                   disclosure_window_days=disclosure_window_days)
    if json_output:
        print_json(result)
    else:
        _print_incident(result, "OPENED" if result["changed"] else "EXISTS")


@app.command("ack")
def ack(
    incident: str = typer.Argument(..., help="Incident id (inc-...)."),
    actor: str = typer.Option(..., "--actor", help="Who takes the first action."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Acknowledge (the first action: stops the severity's first-action clock)."""
    from ringward.operations.incidents import incident_ops as ops

    with _store() as store:
        result = ops.acknowledge(store, incident, actor=actor, now=_now(at))
    if json_output:
        print_json(result)
    else:
        _print_incident(result, "ACKNOWLEDGED" if result["changed"] else "UNCHANGED")


@app.command("update")
def update(
    incident: str = typer.Argument(..., help="Incident id (inc-...)."),
    note: str | None = typer.Option(None, "--note", help="A note for the history."),
    disclosure: list[str] = typer.Option([], "--disclosure", help="FIELD=DATE; field acknowledgement | triage | "
                                         "fix | disclosure; DATE YYYY-MM-DD or ISO-8601. Repeatable."),
    actor: str | None = typer.Option(None, "--actor", help="Who updates (default $RINGWARD_ACTOR / OS user)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Add a note and/or disclosure timeline dates."""
    from ringward.core.incidents.record import parse_disclosure
    from ringward.operations.incidents import incident_ops as ops

    dates = parse_disclosure(disclosure)
    with _store() as store:
        result = ops.update(store, incident, actor=_actor(actor), now=_now(at), note=note, disclosure=dates)
    if json_output:
        print_json(result)
    else:
        _print_incident(result, "UPDATED")


@app.command("close")
def close(
    incident: str = typer.Argument(..., help="Incident id (inc-...)."),
    resolution: str = typer.Option(..., "--resolution", help="How it was resolved."),
    actor: str = typer.Option(..., "--actor", help="Who closes it."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Close with a resolution (final: there is no reopen)."""
    from ringward.operations.incidents import incident_ops as ops

    with _store() as store:
        result = ops.close(store, incident, actor=actor, now=_now(at), resolution=resolution)
    if json_output:
        print_json(result)
    else:
        _print_incident(result, "CLOSED")


@app.command("list")
def list_(
    only_open: bool = typer.Option(False, "--open", help="Only incidents not closed."),
    json_output: bool = JSON,
) -> None:
    """List incidents, oldest first."""
    from ringward.operations.incidents import incident_ops as ops

    with _store() as store:
        incidents = ops.list_incidents(store, only_open=only_open)
    if json_output:
        print_json({"schema_version": "ringward.incident-list.v1", "incidents": [i.document() for i in incidents]})
        return
    if not incidents:
        typer.echo("no incidents")
        return
    print_table(["ID", "OPENED", "SEVERITY", "TYPE", "STATE", "SUMMARY"],
                [(i.incident_id, i.opened_at.isoformat(), i.severity.value, i.type.value, i.state.value,
                  i.summary[:60]) for i in incidents])


@app.command("show")
def show(
    incident: str = typer.Argument(..., help="Incident id (inc-...)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """The incident record with every clock's state at --at."""
    from ringward.operations.incidents import incident_ops as ops

    with _store() as store:
        result = ops.show(store, incident, now=_now(at))
    if json_output:
        print_json(result)
        return
    typer.echo(f"{result['incident_id']} {result['severity']} {result['type']} [{result['state']}] "
               f"{result['summary']}")
    typer.echo(f"  opened {result['opened_at']} by {result['opened_by']}"
               + (f"; reporter {result['reporter']}" if result["reporter"] else "")
               + (f"; supersedes {result['supersedes']}" if result["supersedes"] else ""))
    links = result["links"]
    for kind in ("advisories", "packages", "cves", "channels"):
        if links[kind]:
            typer.echo(f"  {kind}: {', '.join(links[kind])}")
    timeline = result["disclosure_timeline"]
    typer.echo("  disclosure: " + ", ".join(f"{k} {v or '-'}" for k, v in timeline.items()))
    if result["resolution"]:
        typer.echo(f"  closed {result['closed_at']} by {result['closed_by']}: {result['resolution']}")
    for clock in result["clocks"]:
        typer.echo(f"  {clock['clock']}: {clock['state']} (due {clock['due_at']}, target "
                   f"{_hours(clock['target_seconds'])}, observed {_hours(clock['observed_seconds'])})")


@app.command("breaches")
def breaches(
    at: str | None = AT,
    deliver: Path | None = typer.Option(None, "--deliver", help="connectors.yaml: send each new breach notice "
                                        "through the connector platform (once per incident, clock and level)."),
    providers: str = typer.Option("all", "--to", help="Destination name(s) in the connector config, or 'all'."),
    actor: str | None = typer.Option(None, "--actor", help="Who runs the report."),
    json_output: bool = JSON,
) -> None:
    """Breached and at-risk response clocks of every open incident; exit 1 if a delivery failed."""
    from ringward.operations.incidents import incident_ops as ops

    now = _now(at)
    with _store() as store:
        if deliver is None:
            result = ops.breach_report(store, now=now)
        else:
            from ringward.cli.connectors_cmd import _lookups

            config = ops.load_config(deliver)
            result = ops.deliver_breaches(store, config, now=now, actor=_actor(actor), providers=providers,
                                          lookups=_lookups(config))
    if json_output:
        print_json(result)
    else:
        for b in result["breaches"]:
            typer.echo(f"{b['state'].upper()}: {b['incident_id']} {b['severity']} {b['clock']} due {b['due_at']} "
                       f"(target {_hours(b['target_seconds'])}, observed {_hours(b['observed_seconds'])}, overdue "
                       f"{_hours(b['overdue_seconds'])})")
        if not result["breaches"]:
            typer.echo(f"no breached or at-risk clock ({result['incidents_checked']} open incident(s))")
        if deliver is not None:
            typer.echo(f"delivered {len(result['delivered'])}, already delivered {len(result['already_delivered'])}, "
                       f"failed {len(result['failed'])}")
            for row in result["failed"]:
                typer.echo(f"FAILED: {row['key']}: {row['error']}", err=True)
    if deliver is not None and not result["ok"]:
        raise typer.Exit(1)
