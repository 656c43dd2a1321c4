"""`ringward window ...`: explain promotion windows and freezes (``windows.yaml``).

``check`` exits 0 when every target is open, 1 when a target is outside its allow windows or
frozen (deny wins), 2 for bad input (unreadable or invalid policy, unknown time zone, bad RRULE,
a time without offset). ``validate`` lists every problem of a policy file; ``break-glass``
prints the approval binding that lets one refused execution run anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Explain promotion windows and freezes.",
)

POLICY = typer.Option(
    None, "--policy", "-p", envvar="RINGWARD_WINDOWS", help="windows.yaml; env RINGWARD_WINDOWS.", show_envvar=False
)
TARGETS = typer.Option(
    ..., "--target", "-t", help="ring:<name>, channel:<name> or environment:<name>; repeat for several."
)
JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")


def _at(value: str | None) -> datetime:
    """``--at``: ISO 8601 with a UTC offset (``Z`` or ``+hh:mm``); default now."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"--at: expected an ISO 8601 time such as 2026-03-09T14:00:00Z, found {value!r}") from None
    if parsed.utcoffset() is None:
        raise InputError(f"--at: {value!r} has no UTC offset (append Z or +hh:mm)")
    return parsed.astimezone(UTC)


def _policy_path(value: Path | None) -> Path:
    if value is None:
        raise InputError("--policy: required (or set RINGWARD_WINDOWS)")
    return value


def _load(path: Path) -> Any:
    """The policy, or every problem on its own ``error:`` line and exit 2."""
    from ringward.core.promotion.windows_policy import WindowsPolicyError
    from ringward.operations.promotion.windows import load_windows_policy

    try:
        return load_windows_policy(path)
    except WindowsPolicyError as exc:
        if len(exc.problems) == 1:
            raise
        for problem in exc.problems:
            typer.echo(f"error: {path}: {problem}", err=True)
        raise typer.Exit(2) from None


def _horizon(value: str) -> Any:
    from ringward.core.approvals.rules import parse_duration
    from ringward.core.common.windows import MAX_HORIZON

    return parse_duration(value, option="--horizon", maximum=MAX_HORIZON)


@app.command("check")
def check(
    targets: list[str] = TARGETS,
    policy: Path | None = POLICY,
    at: str | None = typer.Option(None, "--at", help="Decide as of this ISO 8601 time with offset; default now."),
    horizon: str = typer.Option("400d", "--horizon", help="How far ahead to look for the next opening."),
    record: bool = typer.Option(False, "--record", help="Also append the decision to the evidence chain."),
    actor: str | None = typer.Option(None, "--actor", help="Actor named on --record (default $RINGWARD_ACTOR/user)."),
    json_output: bool = JSON,
) -> None:
    """Explain whether an action on the targets may run now (or --at): exit 0 open, 1 closed."""
    from ringward.core.common.windows import format_instant
    from ringward.core.promotion.windows_policy import evaluate_window

    path = _policy_path(policy)
    moment = _at(at)
    span = _horizon(horizon)
    decision = evaluate_window(_load(path), targets, moment, horizon=span)
    if record:
        from ringward.operations.promotion.windows import record_window_decision
        from ringward.store import open_store

        with open_store() as store:
            record_window_decision(store, decision, actor=_actor(actor), action="window-check", policy_path=path)
    if json_output:
        print_json({**decision.to_document(), "policy": str(path)})
    else:
        typer.echo(f"{'OPEN' if decision.allowed else 'CLOSED'}: {decision.reason}")
        rows = [
            (
                t.target,
                t.state,
                ", ".join(t.open_windows or t.freezes or t.allow_windows) or "-",
                "-" if t.until is None else format_instant(t.until, t.until_zone),
            )
            for t in decision.targets
        ]
        print_table(["target", "state", "windows / freezes", "until"], rows)
        if decision.allowed:
            if decision.open_until is not None:
                zone = next((t.until_zone for t in decision.targets if t.until == decision.open_until), None)
                typer.echo(f"open until {format_instant(decision.open_until, zone)}")
        else:
            typer.echo(decision.next_opening_text())
    if not decision.allowed:
        raise typer.Exit(1)


@app.command("validate")
def validate(policy: Path | None = POLICY, json_output: bool = JSON) -> None:
    """Validate a policy file; every problem is listed with its field path (exit 2 when invalid)."""
    from ringward.core.promotion.windows_policy import WindowsPolicyError
    from ringward.operations.promotion.windows import load_windows_policy

    path = _policy_path(policy)
    try:
        loaded = load_windows_policy(path)
    except WindowsPolicyError as exc:
        if json_output:
            print_json({"valid": False, "policy": str(path), "problems": list(exc.problems)})
        else:
            for problem in exc.problems:
                typer.echo(f"error: {path}: {problem}" if problem != exc.message else f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    entries = [("allow", w) for w in loaded.allow] + [("freeze", f) for f in loaded.freezes]
    if json_output:
        print_json(
            {
                "valid": True,
                "policy": str(path),
                "default": loaded.default,
                "windows": [
                    {"name": e.name, "type": kind, "targets": list(e.targets), "window": e.window.describe()}
                    for kind, e in entries
                ],
            }
        )
        return
    for kind, entry in entries:
        typer.echo(f"ok  {kind:<6} {entry.name}: {', '.join(entry.targets)}: {entry.window.describe()}")
    typer.echo(f"VALID: {len(loaded.allow)} allow window(s), {len(loaded.freezes)} freeze(s), default {loaded.default}")


@app.command("break-glass")
def break_glass(
    targets: list[str] = TARGETS,
    subject: str = typer.Option(
        ..., "--subject",
        help="The execution's id: the promotion request id (rollout: rpr_..., from the signed rollout request; "
             "export: rcp_..., the request_id of release-channel-promotion-request.json)."),
    action: str = typer.Option(
        "rollout", "--action",
        help="The action being let through: rollout (targets ring:<R> environment:<E>) or export "
             "(targets channel:<C> ring:<R>, for `endpoint export --break-glass-approval`)."),
    json_output: bool = JSON,
) -> None:
    """Print the binding of the break-glass approval for one execution (action break_glass)."""
    from ringward.core.promotion.windows_policy import break_glass_binding

    binding = break_glass_binding(targets, subject=subject, overridden_action=action)
    if json_output:
        print_json({"action": binding.action, "subject_digest": binding.subject_digest, "target": binding.target})
        return
    typer.echo(f"action          {binding.action}")
    typer.echo(f"subject_digest  {binding.subject_digest}")
    typer.echo(f"target          {binding.target}")
    typer.echo(
        f"request it with: ringward approval request --action {binding.action} "
        f"--subject-digest {binding.subject_digest} --target {binding.target} --requester <you>"
    )


def _actor(value: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return value or default_actor()
