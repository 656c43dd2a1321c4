"""`ringward` entry point: a lazy click group over per-area typer apps.

Every error reaches the user as one line on stderr with exit code 2 (bad input), 1 (verified
and failed / refused by state) or 3 (internal error, with a hint to re-run with
RINGWARD_DEBUG=1); never a traceback unless RINGWARD_DEBUG is set.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Any, NoReturn

import click

from ringward.core.errors import RingwardError

#: name -> (module exposing `app`, one-line help). Modules import only when their group runs.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "keys": ("ringward.cli.keys_cmd", "Generate Ed25519 signing keys."),
    "trust": ("ringward.cli.trust_cmd", "Create and edit the pinned trust root."),
    "release": ("ringward.cli.release_cmd", "Package, sign and verify runtime releases."),
    "evidence": ("ringward.cli.evidence_cmd", "Verify, checkpoint, search and export evidence."),
    "approval": ("ringward.cli.approval_cmd", "Request and decide approvals."),
    "api": ("ringward.cli.api_cmd", "Run the HTTP API and manage its tokens."),
    "connectors": ("ringward.cli.connectors_cmd", "Deliver events to SIEM, ITSM and ChatOps."),
    "channel": ("ringward.cli.channel_cmd", "Channel promotion requests, high-water marks and holds."),
    "endpoint": ("ringward.cli.endpoint_cmd", "Export approved releases for Jamf, Intune, Linux; publish them."),
    "rollout": ("ringward.cli.rollout_cmd", "Capture, promote, roll back and audit rollouts across rings."),
    "window": ("ringward.cli.window_cmd", "Explain promotion windows and freezes."),
    "db": ("ringward.cli.db_cmd", "Show and upgrade the store's schema revision."),
    "backup": ("ringward.cli.backup_cmd", "Back up the whole store to a directory and restore it."),
    "inventory": ("ringward.cli.inventory_cmd", "Ingest fleet inventory, reconcile it against releases, freshness."),
    "sla": ("ringward.cli.sla_cmd", "Remediation SLA: report, notify, escalate, acknowledge, silence."),
    "demo": ("ringward.cli.demo_cmd", "End-to-end demo: build, package, sign, verify."),
    "run": ("ringward.cli.run_cmd", "Run a pipeline as a tracked Prefect flow run."),
    "advisory": ("ringward.cli.advisory_cmd", "Security advisories: create, completeness gate, sign and publish."),
    "vex": ("ringward.cli.vex_cmd", "OpenVEX v0.2.0 documents: create, validate, merge."),
    "kev": ("ringward.cli.kev_cmd", "CISA KEV catalog import; hold releases that carry a KEV match."),
    "incident": ("ringward.cli.incident_cmd", "Security incidents: open, ack, update, close; SLA breaches."),
    "playbook": ("ringward.cli.playbook_cmd", "Playbooks: key compromise, release yank, unauthorized release."),
    "up": ("ringward.cli.up_cmd", "Run Ringward: Prefect server + UI, the API and every deployment."),
    "status": ("ringward.cli.status_cmd", "Health of a running `ringward up`, deployments, failed runs."),
    "worker": ("ringward.cli.worker_cmd", "Run a Prefect process worker for Ringward's work pool on this host."),
    "deploy": ("ringward.cli.deploy_cmd", "Register every deployment (and crash recovery) into a work pool."),
    "migrate": ("ringward.cli.migrate_cmd", "Import a CAVRA installation: evidence, approvals, connectors."),
    "remediation": ("ringward.cli.remediation_cmd", "Endpoint drift remediation: request, execute, hand off, status."),
}


#: groups whose app has exactly one command that *is* the top-level command (`ringward demo`)
LEAF_COMMANDS = frozenset({"demo", "run", "up", "status", "worker", "deploy"})


def _load(name: str) -> click.Command:
    import typer.core
    import typer.main

    # one help style for every group (click's plain one): typer switches to rich panels whenever
    # rich is installed (a dependency for progress bars), which single-command groups never get;
    # it also keeps rich off the import path of every command
    typer.core.HAS_RICH = False
    setattr(typer.main, "HAS_RICH", False)  # noqa: B010 (re-exported name, not declared public)

    module_name, _ = COMMAND_GROUPS[name]
    module = importlib.import_module(module_name)
    command = typer.main.get_command(module.app)
    if not isinstance(command, click.Group) and name not in LEAF_COMMANDS:
        # typer collapses a one-command app into that command; keep `ringward keys generate`
        command = click.Group(name=name, commands={command.name or name: command}, help=module.app.info.help)
    command.name = name
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMAND_GROUPS:
            return None
        return _load(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(COMMAND_GROUPS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ringward")
def cli() -> None:
    """Ringward: release governance for runtime binaries.

    Exit codes: 0 ok, 1 verified-and-failed (or refused), 2 bad input or usage, 3 internal error.
    """


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from ringward.settings import PREFECT_TELEMETRY_OFF

    # before any command can import Prefect (its SDK reads DO_NOT_TRACK at import time)
    os.environ.update(PREFECT_TELEMETRY_OFF)
    try:
        # with standalone_mode=False click returns the code of `raise typer.Exit(n)`
        code = cli.main(args=argv, prog_name="ringward", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "ringward"
        click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except RingwardError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        # a path of the wrong kind (a directory for a file, a file inside a path, a symlink loop) that
        # no loader caught is still the caller's input; every other OSError stays an internal error
        reason = _path_kind_error(exc)
        if reason is None:
            _internal(exc)
        click.echo(f"error: {exc.filename}: {reason}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(2)
    except Exception as exc:  # last line of defence: one line, no traceback
        _internal(exc)


def _path_kind_error(exc: OSError) -> str | None:
    """The reason to show for an ``OSError`` about a path of the wrong kind, or None if it is not one."""
    if not isinstance(exc.filename, str) or exc.filename2 is not None:
        return None
    if isinstance(exc, IsADirectoryError):
        return "is a directory, expected a file"
    if isinstance(exc, NotADirectoryError):
        return "not a directory (or a parent of it is a file)"
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop, or a symbolic link where none is allowed"
    return None


def _internal(exc: BaseException) -> NoReturn:
    if os.environ.get("RINGWARD_DEBUG"):
        raise exc
    click.echo(
        f"internal error: {type(exc).__name__}: {exc} (re-run with RINGWARD_DEBUG=1 for details)",
        err=True,
    )
    sys.exit(3)


def main() -> Any:  # pragma: no cover - `python -m ringward.cli.main`
    run()


if __name__ == "__main__":  # pragma: no cover
    main()
