"""`ringward api`: run the HTTP API (``--host``/``--port``) and manage its tokens."""

from __future__ import annotations

from typing import Any

import click
import typer

from ringward.cli.output import print_json, print_table

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
    help="Run the HTTP API and manage its tokens.",
)
token_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Create, list and revoke API tokens.")
app.add_typer(token_app, name="token")


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


def _actor(value: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return value or default_actor()


@app.callback()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        max=64,
        help="Server processes sharing the port (0: one per CPU). Each has its own store connections; "
        "SQLite readers run concurrently in WAL mode.",
    ),
    http: str = typer.Option("httptools", "--http", click_type=click.Choice(["httptools", "h11"]),
                             help="HTTP parser: httptools (C, default) or h11 (pure Python)."),
) -> None:
    """Serve the API with uvicorn (tokens: `ringward api token create --name N --role R`)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from ringward.api.middleware import H11_MAX_INCOMPLETE_EVENT_BYTES
    from ringward.api.server import H11_PROTOCOL, PROTOCOL
    from ringward.operations.common.logs import logging_config
    from ringward.store import open_store

    processes = workers or default_workers()
    # migrate (or fail on a bad URL) once, before any worker starts: one clear error, not one per worker
    open_store().close()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        # structured logs (JSON unless on a terminal; $RINGWARD_LOG_FORMAT=json|text), request ids,
        # no credentials; uvicorn applies this in every worker process
        "log_config": logging_config(log_level),
        "proxy_headers": False,
        "server_header": False,
        # httptools on uvloop, TCP_NODELAY on every connection; headers over 16 KiB get 431 from the
        # app and the protocol bounds a head still arriving (ringward/api/server.py)
        "http": PROTOCOL if http == "httptools" else H11_PROTOCOL,
        "loop": "auto",  # uvloop where installed (not on Windows)
        "h11_max_incomplete_event_size": H11_MAX_INCOMPLETE_EVENT_BYTES,
    }
    if processes == 1:
        from ringward.api.app import create_app

        uvicorn.run(create_app(), **options)
        return
    # a request holds the GIL for most of its CPU time (JSON, pydantic, routing): only processes
    # serve concurrent clients on several cores; each worker builds its app from the settings
    uvicorn.run("ringward.api.app:create_app", factory=True, workers=processes, **options)


def default_workers() -> int:
    """One API process per CPU this process may run on."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@token_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Caller identity recorded on every write this token makes."),
    role: str = typer.Option(..., "--role", help="viewer, operator, approver or admin."),
    expires_in: str | None = typer.Option(None, "--expires-in", help="Lifetime such as 90d (default: no expiry)."),
    created_by: str | None = typer.Option(None, "--created-by", help="Who creates it (default: $RINGWARD_ACTOR/user)."),
    json_output: bool = typer.Option(False, "--json", help="Print the token and its facts as JSON."),
) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    from ringward.operations.common.api_tokens import create_token

    with _store() as store:
        info, secret = create_token(store, name=name, role=role, created_by=_actor(created_by), expires_in=expires_in)
    if json_output:
        print_json({**info.model_dump(mode="json"), "token": secret})
    else:
        typer.echo(secret)
        typer.echo(
            f"token {info.token_id} for {info.name!r} (role {info.role.value}); shown once, stored hashed",
            err=True,
        )


@token_app.command("list")
def list_(json_output: bool = typer.Option(False, "--json")) -> None:
    """Tokens (names, roles, state; never secrets)."""
    from datetime import UTC, datetime

    from ringward.operations.common.api_tokens import list_tokens

    with _store() as store:
        tokens = list_tokens(store)
    if json_output:
        print_json([t.model_dump(mode="json") for t in tokens])
        return
    now = datetime.now(UTC)
    print_table(
        ["token_id", "name", "role", "state", "created_at", "created_by"],
        [
            [
                t.token_id,
                t.name,
                t.role.value,
                "active" if t.is_active(now) else ("revoked" if t.revoked_at else "expired"),
                t.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                t.created_by,
            ]
            for t in tokens
        ],
    )


@token_app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="Token name."),
    actor: str | None = typer.Option(None, "--actor", help="Who revokes (default: $RINGWARD_ACTOR/user)."),
) -> None:
    """Revoke a token immediately."""
    from ringward.operations.common.api_tokens import revoke_token

    with _store() as store:
        info = revoke_token(store, name, actor=_actor(actor))
    typer.echo(f"revoked token {info.token_id} ({info.name})")
