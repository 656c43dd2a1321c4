"""`ringward backup`: back up a whole store to a directory, check a backup, restore it."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ringward.cli.output import print_json

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Back up the whole store (evidence, approvals, delivery log, state) and restore it.",
)

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")


@app.command("create")
def create(
    output: Path = typer.Argument(..., help="New directory to write the backup into (must not exist)."),
    with_bundles: bool = typer.Option(
        False, "--with-bundles", help="Also copy every evidence bundle the chain names from the evidence root."
    ),
    evidence_root: Path | None = typer.Option(
        None, "--evidence-root", help="Root of evidence bundles (default $RINGWARD_EVIDENCE_ROOT or <home>/evidence)."
    ),
    json_output: bool = JSON,
) -> None:
    """Write every table of the store ($RINGWARD_DATABASE_URL) as JSON Lines, with a manifest
    (ringward.backup.v1) and checksums.txt; the directory appears complete or not at all."""
    from ringward.operations.common.files import check_input_path, check_output_parent
    from ringward.operations.evidence.backup import create_backup
    from ringward.settings import evidence_root as default_evidence_root
    from ringward.store import open_store

    check_output_parent(output, option="DIR")
    root = None
    if with_bundles:
        root = evidence_root or default_evidence_root()
        if os.path.lexists(root):
            check_input_path(root, option="--evidence-root", kind="dir")
    with open_store() as store:
        result = create_backup(store, output, bundles_root=root)
    if json_output:
        print_json(result.to_document())
        return
    manifest = result.manifest
    total = sum(t.rows for t in manifest.tables)
    bundles = (
        f", {len(manifest.bundles.directories)} bundle(s) with {manifest.bundles.files} file(s)"
        if manifest.bundles is not None
        else ""
    )
    typer.echo(
        f"wrote {output}: {total} row(s) in {len(manifest.tables)} table(s){bundles}, "
        f"schema {manifest.schema_revision}, "
        f"evidence head {manifest.evidence_head.last_id} {manifest.evidence_head.last_hash[:16]}…"
    )


@app.command("check")
def check(
    directory: Path = typer.Argument(..., help="A backup directory."),
    json_output: bool = JSON,
) -> None:
    """Verify a backup's checksums.txt and manifest without restoring it (exit 1 on a mismatch)."""
    from ringward.operations.evidence.backup import check_backup

    checked = check_backup(directory)
    if json_output:
        print_json({"ok": True, "directory": str(directory), **checked.manifest.model_dump(mode="json")})
        return
    manifest = checked.manifest
    typer.echo(
        f"OK: {directory}: {len(checked.digests)} file(s) match checksums.txt; schema {manifest.schema_revision}, "
        f"from {manifest.source_database} at {manifest.created_at.isoformat()}, "
        f"evidence head {manifest.evidence_head.last_id}"
    )


@app.command("restore")
def restore(
    directory: Path = typer.Argument(..., help="A backup directory written by `ringward backup create`."),
    files: bool | None = typer.Option(
        None,
        "--files/--no-files",
        help="Re-hash every evidence bundle after the restore (default: when the backup carries the bundles).",
    ),
    evidence_root: Path | None = typer.Option(
        None,
        "--evidence-root",
        help="Where the backup's bundles go and --files looks (default $RINGWARD_EVIDENCE_ROOT or <home>/evidence).",
    ),
    json_output: bool = JSON,
) -> None:
    """Restore a backup into the EMPTY store named by $RINGWARD_DATABASE_URL (SQLite or PostgreSQL,
    either way), in one transaction, then re-verify the evidence chain. Bundles in the backup go
    into the evidence root, which must not hold them yet.

    Exit 2: the target is not empty or at another schema revision; exit 1: the backup fails its
    checksums or is malformed (nothing is written), or the restored chain does not verify.
    """
    from ringward.operations.common.files import check_input_path
    from ringward.operations.evidence.backup import restore_backup
    from ringward.store import open_store

    check_input_path(directory, option="DIR", kind="dir")
    if evidence_root is not None and os.path.lexists(evidence_root):
        check_input_path(evidence_root, option="--evidence-root", kind="dir")
    with open_store() as store:
        result = restore_backup(store, directory, root=evidence_root, check_files=files)
    if json_output:
        print_json(result.to_document())
    else:
        total = sum(result.restored.values())
        typer.echo(
            f"restored {total} row(s) in {len(result.restored)} table(s) into {result.database} "
            f"(schema {result.manifest.schema_revision}, from {result.manifest.source_database})"
        )
        typer.echo(("OK: " if result.chain.ok else "BROKEN: ") + result.chain.summary())
    raise typer.Exit(0 if result.ok else 1)
