"""`ringward kev ...`: import the CISA KEV catalog; check a release against it (holds its channels
on an unresolved match, lifts them when VEX resolves every finding)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="CISA KEV catalog import and release checks.")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time; default now.")
ACTOR = typer.Option(None, "--actor", help="Who acts (default $RINGWARD_ACTOR, else the CI actor or OS user).")


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


def _emit_imported(result: dict[str, Any]) -> None:
    """``ringward.kev.imported`` when a Prefect API is configured: the kev-recheck deployment's trigger
    re-checks every channel's current release against the new catalog (a warning line if not sent)."""
    from flows.events import KEV_IMPORTED, emit_if_configured, events_enabled

    if not events_enabled():
        return

    payload = {k: result.get(k) for k in ("catalog_version", "sha256", "count", "evidence_id")}
    warning = emit_if_configured(KEV_IMPORTED, "ringward.kev.catalog", payload)
    if warning is not None:
        typer.echo(f"warning: {warning}", err=True)


@app.command("import")
def import_(
    catalog: Path = typer.Argument(..., help="known_exploited_vulnerabilities.json"),
    max_age_days: int = typer.Option(7, "--max-age-days", help="Warn when the catalog is older than this."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Schema-check and store the catalog (an older catalog never replaces a newer one)."""
    from ringward.core.advisories.kev import KevCatalogError
    from ringward.core.errors import InputError
    from ringward.operations.advisories.kev_ops import import_catalog

    if max_age_days < 1:
        raise InputError(f"--max-age-days: expected >= 1, found {max_age_days}")
    with _store() as store:
        try:
            result = import_catalog(store, catalog, actor=_actor(actor), now=_now(at),
                                    max_age=timedelta(days=max_age_days))
        except KevCatalogError as exc:
            for problem in exc.problems[1:]:
                typer.echo(f"invalid: {problem}", err=True)
            raise
    if result["imported"]:
        _emit_imported(result)
    if json_output:
        print_json(result)
    else:
        verb = "IMPORTED" if result["imported"] else "UNCHANGED"
        typer.echo(f"{verb}: KEV catalog {result['catalog_version']} ({result['count']} entries, sha256 "
                   f"{result['sha256'][:16]}){' evidence ' + str(result['evidence_id']) if result['imported'] else ''}")
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)


@app.command("check")
def check(
    package: Path = typer.Argument(..., help="Release package directory."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT", help="Pinned trust root."),
    product_map: Path | None = typer.Option(None, "--product-map", help="ringward.kev-product-map.v1 (JSON/YAML): "
                                            "KEV vendorProject/product -> purl."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Match the verified SBOM against KEV and advisories; hold (exit 1) or release the channels."""
    from ringward.operations.advisories.kev_ops import check_release

    with _store() as store:
        result = check_release(store, package=package, trust_root=trust_root, actor=_actor(actor), now=_now(at),
                               product_map=product_map)
    if json_output:
        print_json(result)
    else:
        for finding in result["findings"]:
            typer.echo(f"MATCH {finding['component']} {finding['vulnerability']} (rule {finding['rule']}: "
                       f"{finding['source']})")
        for finding in result["resolved"]:
            typer.echo(f"resolved {finding['component']} {finding['vulnerability']} by VEX {finding['vex_status']}")
        if result["held"]:
            typer.echo(f"HELD: {', '.join(result['held_channels']) or 'no new channel'}"
                       + (f"; already held: {', '.join(result['already_held'])}" if result["already_held"] else "")
                       + f" (incident evidence {result['evidence_id']})")
        else:
            released = result["released_channels"]
            typer.echo(f"CLEAR: {result['release_version']}"
                       + (f"; released {', '.join(released)}" if released else "")
                       + f" (evidence {result['evidence_id']})")
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    if result["held"]:
        raise typer.Exit(1)


@app.command("recheck")
def recheck(
    packages: Path = typer.Option(..., "--packages", help="Directory holding the release packages (searched "
                                  "3 levels deep, matched by checksums digest)."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT", help="Pinned trust root."),
    product_map: Path | None = typer.Option(None, "--product-map", help="ringward.kev-product-map.v1 file."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Re-check every channel's current release (run when a new catalog arrives); exit 1 on a hold
    or a channel whose release could not be checked."""
    from ringward.operations.advisories.kev_ops import recheck_channels

    with _store() as store:
        result = recheck_channels(store, packages=packages, trust_root=trust_root, actor=_actor(actor),
                                  now=_now(at), product_map=product_map)
    if json_output:
        print_json(result)
    else:
        for release in result["releases"]:
            verdict = "HELD" if release["held"] else "clear"
            typer.echo(f"{verdict}: {release['release_version']} on {', '.join(release['channels'])} "
                       f"({len(release['findings'])} finding(s), evidence {release['evidence_id']})")
        for channel, why in sorted(result["unchecked"].items()):
            typer.echo(f"UNCHECKED: {channel}: {why}")
        if not result["releases"] and not result["unchecked"]:
            typer.echo("no channel has a current release")
    if not result["ok"]:
        raise typer.Exit(1)
