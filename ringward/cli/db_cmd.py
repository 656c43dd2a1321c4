"""`ringward db ...`: the store's schema -- where it stands and the upgrade to this Ringward's head.

Every command already brings the store to head when it opens it; `db upgrade` does it on its own,
up front (before starting API workers or a fleet of Prefect workers on a new release), shows what
it did, and refreshes the planner statistics afterwards because an upgrade may add indexes.

Exit codes: 0 ok (also when already current), 1 the database is at a revision this Ringward does
not know (a newer Ringward wrote it), 2 bad input (unparseable or unsupported database URL).
"""

from __future__ import annotations

from typing import Any

import typer

from ringward.cli.output import print_json

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Show and upgrade the store's schema revision.",
)

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")


def _engine() -> Any:
    from ringward.settings import database_url
    from ringward.store.db import create_store_engine

    return create_store_engine(database_url())


def _revision(engine: Any) -> str | None:
    from ringward.store.db import current_revision

    with engine.connect() as conn:
        revision = current_revision(conn)
        conn.rollback()
    return revision


@app.command("status")
def status(json_output: bool = JSON) -> None:
    """The database's schema revision and this Ringward's head (exit 1 if the database is newer)."""
    from ringward.store.db import database_label, known_revisions

    head, known = known_revisions()
    engine = _engine()
    try:
        current = _revision(engine)
        label = database_label(engine)
    finally:
        engine.dispose()
    state = "current" if current == head else ("empty" if current is None else "behind")
    if current is not None and current not in known:
        state = "unknown"
    if json_output:
        print_json({"database": label, "revision": current, "head": head, "state": state})
    else:
        typer.echo(f"{label}: revision {current or '(none)'}, head {head} ({state})")
    raise typer.Exit(1 if state == "unknown" else 0)


@app.command("upgrade")
def upgrade(json_output: bool = JSON) -> None:
    """Migrate the store to this Ringward's head revision, then refresh planner statistics."""
    from ringward.store import Store
    from ringward.store.db import database_label, migrate

    engine = _engine()
    try:
        label = database_label(engine)
        before = _revision(engine)
        head = migrate(engine)
        store = Store(engine)
        records = store.count_evidence()
        if before != head:
            store.refresh_statistics()
    finally:
        engine.dispose()
    if json_output:
        print_json(
            {"database": label, "from": before, "to": head, "upgraded": before != head, "evidence_records": records}
        )
    elif before == head:
        typer.echo(f"{label}: already at {head}")
    else:
        typer.echo(f"{label}: upgraded {before or '(empty)'} -> {head} ({records} evidence record(s))")
