"""`ringward vex ...`: OpenVEX v0.2.0 documents (create, strict validation, merge), optionally
stored with the verified release they speak about."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="OpenVEX v0.2.0: create, validate, merge; store with a release.")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time; default now.")
ACTOR = typer.Option(None, "--actor", help="Who acts (default $RINGWARD_ACTOR, else the CI actor or OS user).")
PACKAGE = typer.Option(None, "--package", help="Store the document with this verified release package.")
TRUST_ROOT = typer.Option(None, "--trust-root", envvar="RINGWARD_TRUST_ROOT", help="Pinned trust root (with "
                          "--package).")


def _now(at: str | None) -> datetime:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    parsed = _time(at, "--at")
    return parsed if parsed is not None else utc_now()


def _actor(actor: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return actor or default_actor()


def _store(package: Path | None) -> Any:
    if package is None:
        return nullcontext(None)
    from ringward.store import open_store

    return open_store()


def _problems(exc: Any) -> None:
    for problem in getattr(exc, "problems", ()):
        typer.echo(f"invalid: {problem}", err=True)


@app.command("create")
def create(
    vulnerability: str = typer.Option(..., "--vuln", "-v", help="Vulnerability name (CVE-..., GHSA-..., advisory id)."),
    product: list[str] = typer.Option(..., "--product", "-p", help="Product purl (repeatable)."),
    status: str = typer.Option(..., "--status", "-s", help="not_affected | affected | fixed | under_investigation."),
    output: Path = typer.Option(..., "--output", help="Where to write the document (must not exist)."),
    author: str = typer.Option(..., "--author", help="Author (who vouches for the statements)."),
    justification: str | None = typer.Option(None, "--justification", "-j", help="For not_affected."),
    impact_statement: str | None = typer.Option(None, "--impact-statement", help="For not_affected (instead of "
                                                "--justification)."),
    action_statement: str | None = typer.Option(None, "--action-statement", "-a", help="Required for affected."),
    alias: list[str] = typer.Option([], "--alias", help="Other name of the vulnerability (repeatable)."),
    status_note: str | None = typer.Option(None, "--status-note", help="How the status was determined."),
    doc_id: str | None = typer.Option(None, "--id", help="Document @id IRI (default: derived from the content)."),
    role: str | None = typer.Option(None, "--author-role", help="Author's role."),
    package: Path | None = PACKAGE,
    trust_root: Path | None = TRUST_ROOT,
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Write a one-statement OpenVEX document (strictly valid), optionally stored with a release."""
    from ringward.operations.advisories.vex_ops import create_vex

    with _store(package) as store:
        result = create_vex(store, vulnerability=vulnerability, products=product, status=status, author=author,
                            output=output, now=_now(at), actor=_actor(actor), justification=justification,
                            impact_statement=impact_statement, action_statement=action_statement, aliases=alias,
                            status_notes=status_note, doc_id=doc_id, role=role, package=package, trust_root=trust_root)
    if json_output:
        print_json(result)
        return
    typer.echo(f"CREATED: {result['id']} ({result['status']}) -> {result['output']}")
    if "release" in result:
        typer.echo(f"stored with release {result['release'].get('release_digest')}")


@app.command("validate")
def validate(
    document: Path = typer.Argument(..., help="OpenVEX JSON file."),
    package: Path | None = PACKAGE,
    trust_root: Path | None = TRUST_ROOT,
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Validate strictly (schema + OpenVEX statement rules); exit 1 listing every problem."""
    from ringward.core.advisories.vex import VexInvalidError
    from ringward.operations.advisories.vex_ops import validate_vex

    with _store(package) as store:
        try:
            result = validate_vex(document, now=_now(at), store=store, package=package, trust_root=trust_root,
                                  actor=_actor(actor))
        except VexInvalidError as exc:
            _problems(exc)
            raise
    if json_output:
        print_json(result)
        return
    typer.echo(f"VALID: {result['id']} version {result['version']} ({result['statements']} statement(s))")
    if "release" in result:
        stored = result["release"]
        typer.echo(f"{'stored' if stored['stored'] else 'unchanged'} with release {stored['release_digest']}")


@app.command("merge")
def merge(
    documents: list[Path] = typer.Argument(..., help="OpenVEX files to merge."),
    output: Path = typer.Option(..., "--output", help="Merged document (must not exist)."),
    author: str = typer.Option(..., "--author", help="Author of the merged document."),
    doc_id: str | None = typer.Option(None, "--id", help="@id of the merged document."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Merge: the latest statement per (product, vulnerability) wins, by timestamp."""
    from ringward.core.advisories.vex import VexInvalidError
    from ringward.operations.advisories.vex_ops import merge_vex

    try:
        result = merge_vex(documents, author=author, output=output, now=_now(at), doc_id=doc_id)
    except VexInvalidError as exc:
        _problems(exc)
        raise
    if json_output:
        print_json(result)
        return
    typer.echo(f"MERGED: {result['inputs']} document(s) -> {result['statements']} statement(s) in {result['output']}")
