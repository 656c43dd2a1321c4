"""`ringward connectors ...`: deliver events to SIEM, ITSM, ChatOps and fleet tools; read the
delivery history and dashboard; send a harmless test event; re-enable a destination.

Exit codes: 0 every delivery succeeded (or had already succeeded), 1 a delivery failed, 2 bad
input (unreadable event, invalid config, unknown provider). Errors are one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.delivery.config import ConnectorConfig, config_to_json
from ringward.core.errors import ConnectorConfigError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Deliver events to SIEM, ITSM and ChatOps.",
)

CONFIG = typer.Option(
    ...,
    "--config",
    "-c",
    envvar="RINGWARD_CONNECTORS",
    help="connectors.yaml / .json; env RINGWARD_CONNECTORS.",
)
PROVIDER = typer.Option("all", "--provider", "-p", help="all, or a comma list of destination names or kinds.")
JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")


AT = typer.Option(
    None,
    "--at",
    hidden=True,
    help="Act as of this ISO-8601 UTC time instead of now (lease and redelivery-window checks; drills and tests).",
)


def _now() -> datetime:
    return datetime.now(UTC)


def _at(value: str | None) -> datetime | None:
    """``--at``: an ISO-8601 time with a UTC offset (one-line error otherwise)."""
    if value is None:
        return None
    from ringward.core.errors import InputError

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--at: expected an ISO-8601 time such as 2026-01-01T00:00:00Z, found {value!r}") from None
    if parsed.utcoffset() is None:
        raise InputError(f"--at: {value!r} has no UTC offset (append Z)")
    return parsed.astimezone(UTC)


def _clock_from(start: datetime) -> Callable[[], datetime]:
    """A clock that reads ``start`` now and moves on in real time."""
    import time

    origin = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return clock


def _uses_prefect_secrets(config: ConnectorConfig) -> bool:
    return '"prefect-secret:' in config_to_json(config)


def _lookups(config: ConnectorConfig) -> Mapping[str, Any] | None:
    """Prefect Secret blocks are read only when the config references one (importing Prefect is slow)."""
    if not _uses_prefect_secrets(config):
        return None
    from tasks.delivery import prefect_secret_lookup

    return {"prefect-secret": prefect_secret_lookup}


def _print_runs(runs: list[Any]) -> None:
    for run in runs:
        rows = [
            (
                r["destination"],
                r["provider"],
                r["status"],
                r["status_code"] if r["status_code"] is not None else "-",
                r["attempts"],
                r["external_ref"] or "",
                (r["error"] or "")[:120],
            )
            for r in run.summary_rows()
        ]
        print_table(["destination", "provider", "status", "code", "attempts", "ref", "error"], rows)
        for name in run.filtered:
            typer.echo(f"skipped {name}: routing filter does not select {run.event.event_type}")
        verdict = "DELIVERED" if run.success else "FAILED"
        typer.echo(f"{verdict}: event {run.event.event_id} (evidence {run.evidence_id})")


def _run_document(run: Any) -> dict[str, Any]:
    return {**run.payload["delivery"], "evidence_id": run.evidence_id}


@app.command("deliver")
def deliver(
    event_file: Path = typer.Argument(
        ..., help="Event JSON (ringward.connector.event.v1 or a cavra.* event)."
    ),
    config_path: Path = CONFIG,
    provider: str = PROVIDER,
    json_output: bool = JSON,
    use_prefect: bool = typer.Option(
        False, "--prefect", help="Run as a tracked Prefect flow run (deliver-event)."
    ),
) -> None:
    """Deliver EVENT_FILE to the configured destinations (concurrently, idempotently)."""
    from ringward.operations.delivery import delivery_ops as ops
    config = ops.load_connector_config(config_path)
    event = ops.load_event_file(event_file, now=_now())
    ops.select_destinations(config, provider)
    if use_prefect:
        from flows.deliver_event import deliver_event_flow

        result = deliver_event_flow(
            event_path=str(event_file.resolve()),
            config_path=str(config_path.resolve()),
            providers=provider,
            fail_on_undelivered=False,  # the exit code says it; the table must still be printed
        )
        if json_output:
            print_json(result)
        else:
            print_table(
                ["destination", "provider", "status", "code", "attempts", "error"],
                [
                    (
                        d["destination"],
                        d["provider"],
                        d["status"],
                        d["status_code"],
                        d["attempt_count"],
                        (d["error"] or "")[:120],
                    )
                    for d in result["deliveries"]
                ],
            )
            typer.echo(
                f"{'DELIVERED' if result['success'] else 'FAILED'}: event {result['event_id']} "
                f"(evidence {result.get('evidence_id')}, flow run {result.get('flow_run_id')})"
            )
        raise typer.Exit(0 if result["success"] else 1)
    from ringward.store import open_store

    with open_store() as store:
        run = ops.deliver_event(event, config, store=store, providers=provider, lookups=_lookups(config))
    if json_output:
        print_json(_run_document(run))
    else:
        _print_runs([run])
    raise typer.Exit(ops.exit_status([run]))


@app.command("test")
def test_destination(
    provider: str = typer.Option(..., "--provider", "-p", help="Destination name or kind (or all)."),
    config_path: Path = CONFIG,
    json_output: bool = JSON,
) -> None:
    """Send a harmless, clearly labelled test event (a fresh id each time)."""
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    config = ops.load_connector_config(config_path)
    with open_store() as store:
        run = ops.send_test_event(config, provider, store=store, lookups=_lookups(config))
    if json_output:
        print_json(_run_document(run))
    else:
        _print_runs([run])
    raise typer.Exit(ops.exit_status([run]))


@app.command("validate")
def validate(config_path: Path = CONFIG, json_output: bool = JSON) -> None:
    """Validate a connector file; every problem is listed with its path (exit 2 when invalid)."""
    from ringward.operations.delivery import delivery_ops as ops
    try:
        config = ops.load_connector_config(config_path)
    except ConnectorConfigError as exc:
        if json_output:
            print_json({"valid": False, "problems": list(exc.problems)})
        else:
            for problem in exc.problems:
                typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from exc
    if json_output:
        print_json(
            {
                "valid": True,
                "destinations": [
                    {"name": d.name, "provider": d.provider.value, "enabled": d.enabled}
                    for d in config.providers
                ],
            }
        )
    else:
        for dest in config.providers:
            typer.echo(f"ok  {dest.name} ({dest.provider.value}){'' if dest.enabled else ' disabled'}")
        typer.echo(f"VALID: {len(config.providers)} destination(s)")


@app.command("history")
def history(
    provider: str | None = typer.Option(None, "--provider", "-p", help="Destination name or provider kind."),
    event_id: str | None = typer.Option(None, "--event-id", help="Only this event."),
    no_success: bool = typer.Option(False, "--no-success", help="Only deliveries that have not succeeded."),
    success_only: bool = typer.Option(False, "--success", help="Only deliveries that succeeded."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    offset: int = typer.Option(0, "--offset", min=0),
    json_output: bool = JSON,
    at: str | None = AT,
) -> None:
    """Delivery history from the delivery log, newest first (a claim whose lease expired without an
    outcome shows as in_progress (stalled) until redelivery takes it over)."""
    from ringward.core.errors import InputError
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    if no_success and success_only:
        raise InputError("--success and --no-success are mutually exclusive")
    success = False if no_success else (True if success_only else None)
    now = _at(at)
    with open_store() as store:
        document = ops.delivery_history(
            store, provider=provider, event_id=event_id, success=success, limit=limit, offset=offset, now=now
        )
    if json_output:
        print_json(document)
        return
    rows = [
        (
            item["last_attempt_at"] or "",
            item["event_id"],
            item["destination"],
            item["provider"],
            item["state"] + (" (stalled)" if item.get("stalled") else ""),
            item["status_code"] if item["status_code"] is not None else "-",
            item["attempt_count"],
            (item["error"] or "")[:100],
        )
        for item in document["items"]
    ]
    print_table(
        ["last attempt", "event", "destination", "provider", "state", "code", "attempts", "error"], rows
    )
    typer.echo(f"{len(rows)} of {document['total']} deliveries")


@app.command("dashboard")
def dashboard(
    json_output: bool = JSON,
    markdown: bool = typer.Option(
        False, "--markdown", help="Print the Markdown page (as published to Prefect)."
    ),
    at: str | None = AT,
) -> None:
    """Success rate, failing destinations and the last error per destination."""
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    now = _at(at)
    with open_store() as store:
        document = ops.delivery_dashboard(store, now=now)
    if json_output:
        print_json(document)
        return
    if markdown:
        typer.echo(ops.dashboard_markdown(document), nl=False)
        return
    rate = document["success_rate"]
    stalled = f"{document['stalled']} stalled, " if document.get("stalled") else ""
    typer.echo(
        f"{document['alert_level'].upper()}: {document['total']} deliveries, {document['failed']} failed, "
        f"{stalled}success rate {'n/a' if rate is None else f'{rate:.2%}'}"
    )
    print_table(
        ["destination", "provider", "total", "ok", "failed", "stalled", "attempts", "last delivery", "last error"],
        [
            (
                p["destination"] + (" (disabled)" if p["disabled"] else ""),
                p["provider"],
                p["total"],
                p["success"],
                p["failed"],
                p.get("stalled", 0),
                p["attempt_count"],
                p["last_delivery_at"] or "",
                (p["last_error"] or "")[:100],
            )
            for p in document["providers"]
        ],
    )
    for alert in document["alerts"]:
        typer.echo(f"alert: {alert}")


@app.command("redeliver")
def redeliver(
    config_path: Path = CONFIG,
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000),
    json_output: bool = JSON,
    at: str | None = AT,
) -> None:
    """Retry failed deliveries that are due and inside their redelivery window, and take over
    deliveries whose claim lease expired (the delivering process died); what the scheduled
    redeliver-failed flow runs. Deliveries another live run holds are reported as held (exit 0)."""
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    config = ops.load_connector_config(config_path)
    start = _at(at)
    hooks = ops.DeliveryHooks(clock=_clock_from(start)) if start is not None else None
    with open_store() as store:
        report = ops.redeliver_due(config, store=store, limit=limit, lookups=_lookups(config), hooks=hooks)
    if json_output:
        print_json(report.summary())
    else:
        typer.echo(report.summary_line())
    raise typer.Exit(1 if report.still_failing else 0)


@app.command("enable")
def enable(destination: str = typer.Argument(..., help="Destination name disabled after HTTP 410.")) -> None:
    """Re-enable a destination disabled by HTTP 410; its blocked deliveries become due again."""
    from ringward.operations.delivery import delivery_ops as ops
    from ringward.store import open_store

    with open_store() as store:
        queued = ops.enable_destination(store, destination)
    typer.echo(f"enabled {destination}; {queued} deliveries queued for redelivery")


@app.command("webhook-keygen")
def webhook_keygen(
    output: Path = typer.Option(..., "--output", "-o", help="File for the whsk_ secret key (mode 0600)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Create a Standard Webhooks v1a (Ed25519) signing key; prints the whpk_ key receivers pin.

    Put the file's content in a secret store and reference it as `signing_key: env:NAME` or
    `prefect-secret:NAME`; the key itself is never printed.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ringward.core.delivery.webhook_signing import public_key_text, signing_key_text
    from ringward.operations.common.files import atomic_write

    key = Ed25519PrivateKey.generate()
    atomic_write(output, (signing_key_text(key) + "\n").encode("ascii"), mode=0o600, overwrite=force)
    typer.echo(f"wrote {output} (keep it secret)")
    typer.echo(f"public key for receivers: {public_key_text(key)}")


@app.command("webhook-public-key")
def webhook_public_key(
    destination: str = typer.Argument(..., help="A webhook destination with signing_key."),
    config_path: Path = CONFIG,
) -> None:
    """Print the whpk_ public key of a webhook destination's configured signing key."""
    from connectors.secrets import SecretResolver, resolve_destinations
    from ringward.core.delivery.webhook_signing import load_signing_key, public_key_text
    from ringward.operations.delivery import delivery_ops as ops
    config = ops.load_connector_config(config_path)
    try:
        dest = config.destination(destination)
    except KeyError:
        raise ConnectorConfigError(f"{destination}: no such destination in {config_path}") from None
    if dest.signing_key is None:
        raise ConnectorConfigError(f"{destination}.signing_key: not configured (only v1a destinations have one)")
    resolver = SecretResolver(_lookups(config))
    resolved, errors = resolve_destinations(config, (dest,), resolver=resolver)
    if errors:
        raise ConnectorConfigError(errors[destination])
    key = load_signing_key(resolved[0].secrets["signing_key"], source=f"{destination}.signing_key")
    typer.echo(public_key_text(key))
