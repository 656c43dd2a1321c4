"""`ringward migrate ...`: import another system's installation into Ringward.

Exit codes: 0 every record was imported (or already had been), 1 some records were malformed and
skipped (each reported by file, record and field), 2 unusable input (the directory is missing or is
not a reference installation, an impossible output path).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ringward.cli.output import print_json

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Import a reference (CAVRA) installation: evidence, approvals, connectors.",
)


@app.command("reference")
def reference(
    source: Path = typer.Option(
        ...,
        "--from",
        help="The reference installation: the project directory holding .cavra/ (or .cavra/ itself).",
    ),
    connectors_output: Path | None = typer.Option(
        None,
        "--connectors-output",
        help="Where the migrated connectors.yaml goes (default <RINGWARD_HOME>/connectors.yaml); "
        "an existing different file is never overwritten.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be imported; change nothing."),
    actor: str | None = typer.Option(None, "--actor", help="Actor on the records (default $RINGWARD_ACTOR/user)."),
    json_output: bool = typer.Option(False, "--json", help="Print the stable machine-readable result."),
) -> None:
    """Import a reference (CAVRA) installation's evidence metadata and approvals (JSON and SQLite
    stores) and its connector file, keeping the reference ids.

    The imported history opens with a reference-import evidence record naming every source file
    with its SHA-256; imported records are marked imported (not verified by Ringward), and imported
    approvals can never authorise an execution. Secrets in the connector file are never copied:
    *_env fields become env: references and secrets written in clear become references to new
    variables you must set (listed in the output and in the file's header). Re-running is a no-op.

    Exit codes: 0 everything imported (or already imported), 1 some records were malformed and
    skipped (each reported as file record.field: expected ..., found ...), 2 unusable input (DIR
    missing or not a reference installation).
    """
    from ringward.operations.migration.reference_ops import migrate_reference
    from ringward.operations.release.release_ops import default_actor
    from ringward.store import open_store

    with open_store() as store:
        report = migrate_reference(
            store,
            source,
            actor=actor or default_actor(),
            connectors_output=connectors_output,
            dry_run=dry_run,
        )
    if json_output:
        print_json(report.to_document())
        raise typer.Exit(report.exit_code)
    verb = "would import" if dry_run else "imported"
    typer.echo(f"reference installation {report.source_dir}: {len(report.sources)} source file(s)")
    for source_file in report.sources:
        typer.echo(f"  {source_file.path}  sha256 {source_file.sha256}  ({', '.join(source_file.kinds)})")
    for line in report.ignored:
        typer.echo(f"  ignored {line}")
    opening = report.import_record
    where = f" (evidence record {opening.record_id})" if opening.record_id is not None else ""
    typer.echo(f"import record {opening.import_id[:16]}…: {opening.status}{where}")
    for name, result in (("evidence items", report.evidence), ("approvals", report.approvals)):
        typer.echo(
            f"{name}: {result.found} found, {verb} {result.imported}, already present {result.already_present}, "
            f"skipped {result.skipped}"
        )
    connectors = report.connectors
    if connectors.source is not None:
        typer.echo(
            f"connectors: {connectors.source} -> {connectors.output or '(nothing to write)'}: {connectors.status}; "
            f"destinations: {', '.join(connectors.destinations) or 'none'}"
        )
        for ref in connectors.references:
            if ref.literal_in_source:
                typer.echo(
                    f"  set {ref.reference.removeprefix('env:')} for {ref.destination}.{ref.field}: "
                    f"{ref.note} (the value was NOT copied)"
                )
            else:
                typer.echo(f"  uses {ref.reference.removeprefix('env:')} for {ref.destination}.{ref.field}: {ref.note}")
        for note in connectors.notes:
            typer.echo(f"  note: {note}")
    for problem in report.problems:
        typer.echo(f"skipped: {problem.line()}")
    raise typer.Exit(report.exit_code)
