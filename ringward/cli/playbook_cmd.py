"""`ringward playbook ...`: incident playbooks (key compromise, release yank, unauthorized release) with
every step recorded as evidence and every destructive step approval-gated.

A run is identified by its playbook and inputs: running the same command again continues the same
run and never repeats a finished step. A destructive step stops the run ``awaiting-approval`` with an
approval id; someone other than the requester approves it (`ringward approval approve ID`) and the
command is run again with ``--approval ID``. ``--prefect`` runs the same steps as a tracked flow run.

Exit codes: 0 the run completed or awaits an approval; 1 a step failed or an approval was refused
(wrong, unapproved, expired, replayed); 2 bad input (the message names the option).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Incident playbooks: key compromise, release yank, unauthorized release; run status.")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
PREFECT = typer.Option(False, "--prefect", help="Run as a tracked Prefect flow run instead of in-process.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time (key validity, approval expiry); default now.")
ACTOR = typer.Option(None, "--actor", help="Who acts (default $RINGWARD_ACTOR, else the CI actor or OS user).")
APPROVAL = typer.Option(None, "--approval", help="The approved approval of the step the run awaits (consumed once).")
EXPIRES_IN = typer.Option("24h", "--expires-in", help="Lifetime of an approval a step opens: 30m, 24h, 7d ...")
REASON = typer.Option(None, "--reason", help="Why (recorded on the revocation, holds and yanks).")
#: the options every playbook takes after its own, in this order: (parameter, option, type)
SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("reason", REASON, str | None),
    ("approval", APPROVAL, str | None),
    ("expires_in", EXPIRES_IN, str),
    ("actor", ACTOR, str | None),
    ("at", AT, str | None),
    ("json_output", JSON, bool),
    ("use_prefect", PREFECT, bool),
)


def _now(at: str | None) -> datetime:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    parsed = _time(at, "--at")
    return parsed if parsed is not None else utc_now()


def _common(actor: str | None, approval: str | None, expires_in: str, reason: str | None,
            at: str | None) -> dict[str, Any]:
    from ringward.core.approvals.rules import parse_duration
    from ringward.operations.release.release_ops import default_actor

    parse_duration(expires_in)
    return {"actor": actor or default_actor(), "approval": approval, "expires_in": expires_in, "reason": reason,
            "time_overridden": at is not None}


def playbook_command(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Register ``ringward playbook <name>`` from a function that takes the playbook's own options and
    returns its own parameters: the command takes :data:`SHARED_OPTIONS` after them (``--help`` lists
    them there) and runs the playbook with both (:func:`_run`)."""

    def register(own_params: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        own = inspect.signature(own_params, eval_str=True)

        def command(**options: Any) -> None:
            reason, approval, expires_in, actor, at, json_output, use_prefect = (
                options.pop(key) for key, _, _ in SHARED_OPTIONS)
            params = {**_common(actor, approval, expires_in, reason, at), **own_params(**options)}
            _run(name, params, _now(at), use_prefect, json_output)

        shared_parameters = [inspect.Parameter(key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option,
                                               annotation=kind) for key, option, kind in SHARED_OPTIONS]
        command.__signature__ = own.replace(  # type: ignore[attr-defined]  # what typer reads
            parameters=[*own.parameters.values(), *shared_parameters], return_annotation=None)
        command.__doc__ = own_params.__doc__
        command.__name__ = command.__qualname__ = own_params.__name__
        app.command(name)(command)
        return command

    return register


def _run(playbook: str, params: dict[str, Any], now: datetime, use_prefect: bool, json_output: bool) -> None:
    if use_prefect:
        from flows._common import run_flow
        from flows.incidents_playbooks import FLOWS

        result = run_flow(FLOWS[playbook], **params, now=now)
    else:
        from ringward.operations.incidents import playbook_ops
        from ringward.store import open_store

        with open_store() as store:
            result = playbook_ops.run(store, playbook, params, now=now)
    _print(result, json_output)
    if not result.get("ok", True):
        raise typer.Exit(1)


def _print(result: dict[str, Any], json_output: bool) -> None:
    """A run's result, or the list of runs (``runs``)."""
    if json_output:
        print_json(result)
        return
    if "runs" in result:
        if not result["runs"]:
            typer.echo("no playbook runs")
            return
        print_table(["RUN", "PLAYBOOK", "STATUS", "CREATED", "BY"],
                    [(r["run_id"], r["playbook"], r["status"], r["created_at"], r["created_by"])
                     for r in result["runs"]])
        return
    run = result["run"]
    typer.echo(f"PLAYBOOK {run['playbook']} {run['run_id']}: {result['status']}")
    print_table(["STEP", "STATUS", "APPROVAL", "EVIDENCE"],
                [(s["name"] + (" *" if s["destructive"] else ""), s["status"],
                  (s["approval"] or {}).get("approval_id", "-"),
                  ", ".join(str(i) for i in s["evidence_ids"][-6:]) or "-") for s in run["steps"]])
    for step in run["steps"]:
        if step.get("error"):
            typer.echo(f"FAILED: {step['name']}: {step['error']}")
    waiting = result.get("awaiting")
    if waiting:
        summary = (waiting.get("plan") or {}).get("summary") or waiting["step"]
        typer.echo(f"AWAITING APPROVAL: {summary} -- approval {waiting['approval_id']} (until "
                   f"{waiting['expires_at']}); someone other than {waiting['requested_by']} approves with "
                   f"`ringward approval approve {waiting['approval_id']} --actor NAME --reason TEXT`, then run this "
                   f"command again with --approval {waiting['approval_id']}")


@playbook_command("key-compromise")
def key_compromise(
    key: str = typer.Option(..., "--key", help="The compromised key: key id, key-id prefix (>= 8 hex) or label."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                                    help="The pinned trust root (signed, with a root role); replaced by v N+1."),
    root_key: list[Path] = typer.Option([], "--root-key", help="Root-role private key (PKCS#8 PEM) signing the new "
                                        "trust-root version; repeat up to the root threshold."),
    connectors: Path | None = typer.Option(None, "--connectors", envvar="RINGWARD_CONNECTORS",
                                           help="connectors.yaml for the notification (default "
                                                "$RINGWARD_HOME/connectors.yaml when present)."),
    providers: str = typer.Option("all", "--to", help="Destination name(s) in the connector config, or 'all'."),
) -> dict[str, Any]:
    """Revoke a key (trust root v N+1 signed by the root role), list and re-verify everything it signed,
    hold the affected channels, notify, record a supply-chain incident."""
    return {"key": key, "trust_root": str(trust_root), "root_keys": [str(k) for k in root_key],
            "connectors": str(connectors) if connectors else None, "providers": providers}


@playbook_command("yank")
def yank(
    version: str = typer.Option(..., "--version", help="The release version to yank."),
    digest: str | None = typer.Option(None, "--digest", help="sha256:<checksums.txt> of the release (default: the "
                                      "one its channels recorded)."),
    channel: list[str] = typer.Option([], "--channel", help="Channel to yank it on (repeatable; default every "
                                      "channel it was promoted on)."),
    package: Path | None = typer.Option(None, "--package", help="The yanked package directory (its binaries "
                                        "identify endpoints running it; default: its evidence)."),
    replacement: Path | None = typer.Option(None, "--replacement", help="The release endpoints must run instead: "
                                            "the fleet is reconciled against it and remediation opened."),
    remediation_key: Path | None = typer.Option(None, "--remediation-key", help="Remediation-role key signing the "
                                                "remediation requests (with --replacement)."),
    trust_root: Path | None = typer.Option(None, "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                                           help="Pinned trust root (with --replacement)."),
) -> dict[str, Any]:
    """Yank a version on its channels (never promoted or exported again; the high-water mark stays) and
    hold them, find the endpoints running it, open remediation for them."""
    return {"version": version, "digest": digest, "channels": list(channel),
            "package": str(package) if package else None,
            "replacement": str(replacement) if replacement else None,
            "remediation_key": str(remediation_key) if remediation_key else None,
            "trust_root": str(trust_root) if trust_root else None}


@playbook_command("unauthorized-release")
def unauthorized_release(
    channel: str = typer.Option(..., "--channel", help="The channel whose endpoints are checked."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT", help="Pinned trust root."),
    observations: Path | None = typer.Option(None, "--observations", help="cavra.endpoint-observations.v1 file "
                                             "(default: the channel's latest ingested inventory)."),
    package: list[Path] = typer.Option([], "--package", help="A package found on the endpoints (repeatable): "
                                       "verified, provenance builder and source checked."),
    trusted_source: list[str] = typer.Option([], "--trusted-source", help="Source repository releases must come "
                                             "from (repeatable; default: not judged)."),
) -> dict[str, Any]:
    """Find versions never promoted on the channel (or packages from an untrusted builder or source) on its
    endpoints; open an unauthorized-release incident and hold the channel."""
    return {"channel": channel, "trust_root": str(trust_root),
            "observations": str(observations) if observations else None,
            "packages": [str(p) for p in package], "trusted_sources": list(trusted_source)}


@app.command("status")
def status(
    run_id: str | None = typer.Argument(None, help="A run id (pbr_...); without it, every run."),
    json_output: bool = JSON,
) -> None:
    """A run's record (each step's status, approval and evidence ids), or every run."""
    from ringward.operations.incidents import playbook_ops
    from ringward.store import open_store

    with open_store() as store:
        _print(playbook_ops.status(store, run_id), json_output)
