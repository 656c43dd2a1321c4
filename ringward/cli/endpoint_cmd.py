"""`ringward endpoint ...`: export an approved channel promotion for Jamf, Intune and Linux fleets, and
publish the export.

``export`` is the channel promotion's execution: it verifies the package and the signed request,
consumes the request's approval (looked up in the store, exactly once) and raises the channel's
high-water mark in one decision, then moves the export into place. Outside its promotion window it
is refused unless ``--break-glass-approval`` names an approved ``break_glass`` approval bound to
this request (``ringward window break-glass --action export --subject <request_id> -t
channel:<C> -t ring:<R>``), consumed in the same decision and marked on the export. ``deliver`` re-checks an
export and publishes it through the native Jamf Pro / Intune publishers and the Linux fleet
endpoint. Exit codes: 0 done, 1 refused (or a delivery failed), 2 bad input.
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
    help="Export approved releases for Jamf, Intune and Linux fleets; publish them.",
)

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
PREFECT = typer.Option(False, "--prefect", help="Run as a tracked Prefect flow run instead of in-process.")


def _now(at: str | None) -> datetime:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    parsed = _time(at, "--at")
    return parsed if parsed is not None else utc_now()


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


@app.command("export")
def export(
    package_dir: Path = typer.Argument(..., help="The release package directory."),
    channel: str = typer.Option(..., "--channel", help="Release channel the request promotes."),
    provider: str = typer.Option("all", "--provider", help="all, jamf, intune or linux (or a comma list)."),
    promotion_request: Path = typer.Option(..., "--promotion-request",
                                           help="release-channel-promotion-request.json (signed)."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                                    help="Pinned trust root; env RINGWARD_TRUST_ROOT."),
    actor: str = typer.Option(..., "--actor", help="Who executes the promotion (recorded with the approval)."),
    output: Path = typer.Option(..., "--output", help="Export directory to create."),
    windows: Path | None = typer.Option(None, "--windows", envvar="RINGWARD_WINDOWS",
                                        help="Promotion window policy (windows.yaml); env RINGWARD_WINDOWS."),
    break_glass_approval: str | None = typer.Option(
        None, "--break-glass-approval",
        help="Approved break_glass approval letting the export run outside its promotion window (binding: "
             "ringward window break-glass --action export --subject <request_id> -t channel:<C> -t ring:<R>)."),
    at: str | None = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time; default now."),
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Consume the approval, raise the channel's high-water mark and write the export (atomically)."""
    from ringward.operations.common.files import check_input_path

    check_input_path(promotion_request, option="--promotion-request")
    if windows is not None:
        check_input_path(windows, option="--windows")
    now = _now(at)
    if use_prefect:
        from flows._common import run_flow
        from flows.promotion_channel import export_endpoint_flow

        result = run_flow(
            export_endpoint_flow, package_dir=str(package_dir), channel=channel, provider=provider,
            promotion_request=str(promotion_request), trust_root=str(trust_root), actor=actor, output=str(output),
            windows=str(windows) if windows else None, break_glass_approval=break_glass_approval, now=now,
        )
    else:
        from ringward.operations.promotion.endpoint_ops import export_endpoint

        with _store() as store:
            result = export_endpoint(
                store, package_dir=package_dir, channel=channel, provider=provider,
                promotion_request=promotion_request, trust_root=trust_root, actor=actor, output=output,
                windows=windows, break_glass_approval=break_glass_approval, now=now,
            )
    if json_output:
        print_json(result)
        return
    kind = "ROLLBACK EXPORTED" if result["rollback"] else "EXPORTED"
    if result.get("break_glass"):
        kind += " (BREAK GLASS)"
    typer.echo(f"{kind}: {result['runtime']} {result['version']} -> {result['channel']}->{result['target_ring']} "
               f"for {', '.join(result['providers'])} (export {result['export_id']})")
    mark = result["high_water_mark"]
    typer.echo(f"approval {result['approval_id']} consumed; channel high-water mark "
               f"{mark['version'] if mark else '-'}")
    if result.get("break_glass"):
        typer.echo(f"break-glass approval {result['break_glass_approval_id']} consumed: promotion window closed "
                   f"({result['window']['reason']})")
    typer.echo(f"manifest: {result['manifest']} (evidence {result['evidence']['evidence_id']})")


@app.command("deliver")
def deliver(
    export_manifest: Path = typer.Argument(..., help="endpoint-management-export-manifest.json of an export."),
    config: Path = typer.Option(..., "--config", "-c", envvar="RINGWARD_CONNECTORS",
                                help="connectors.yaml; env RINGWARD_CONNECTORS."),
    provider: str = typer.Option("all", "--provider", "-p", help="all, jamf, intune or linux (or a comma list)."),
    actor: str | None = typer.Option(None, "--actor", help="Who publishes (default $RINGWARD_ACTOR, else the "
                                     "CI actor or OS user)."),
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
) -> None:
    """Re-check the export and publish it to the configured Jamf / Intune / Linux fleet destinations."""
    from ringward.operations.common.files import check_input_path
    from ringward.operations.release.release_ops import default_actor

    check_input_path(export_manifest, option="EXPORT_MANIFEST")
    who = actor or default_actor()
    now = _now(None)
    if use_prefect:
        from flows._common import run_flow
        from flows.promotion_channel import deliver_endpoint_export_flow

        result = run_flow(deliver_endpoint_export_flow, export_manifest=str(export_manifest), config=str(config),
                          provider=provider, actor=who, now=now)
    else:
        from ringward.operations.promotion.endpoint_ops import deliver_endpoint_export

        with _store() as store:
            result = deliver_endpoint_export(store, manifest_path=export_manifest, config_path=config,
                                             provider=provider, actor=who, now=now, lookups=_lookups(config))
    if json_output:
        print_json(result)
    else:
        print_table(
            ["destination", "provider", "status", "code", "attempts", "ref", "error"],
            [(r["destination"], r["provider"], r["status"], r["status_code"] if r["status_code"] is not None else "-",
              r["attempts"], r["external_ref"] or "", (r["error"] or "")[:120]) for r in result["deliveries"]],
        )
        verdict = "PUBLISHED" if result["success"] else "FAILED"
        typer.echo(f"{verdict}: export {result['export_id']} as {result['publication_id']} "
                   f"(evidence {result['evidence']['evidence_id']})")
    raise typer.Exit(0 if result["success"] else 1)


def _lookups(config: Path) -> Any:
    """Prefect Secret blocks only when the connector file references one (importing Prefect is slow)."""
    try:
        text = config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if "prefect-secret:" not in text:
        return None
    from tasks.delivery import prefect_secret_lookup

    return {"prefect-secret": prefect_secret_lookup}
