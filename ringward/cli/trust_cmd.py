"""`ringward trust ...`: create and edit the pinned trust root."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError
from ringward.core.trust.root import DEFAULT_TRUSTED_BUILDERS, KeyStatus, Role, TrustRoot
from ringward.operations.release.release_ops import utc_now
from ringward.operations.trust.keys import (
    add_key,
    change_key_status,
    load_public_key_file,
    load_trust_root,
    new_trusted_key,
    parse_role_assignment,
    save_trust_root,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Create and edit the pinned trust root.")

TRUST_ROOT_OPTION = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT", help="Trust root file.")


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option}: expected an ISO-8601 time such as 2026-01-01T00:00:00Z, found {value!r}") \
            from None
    if parsed.utcoffset() is None:
        raise InputError(f"{option}: {value!r} has no UTC offset (append Z)")
    return parsed


def _threshold_problems(root: TrustRoot) -> list[str]:
    problems = []
    for role, threshold in root.thresholds.items():
        active = [k for k in root.keys_for(role) if k.status is KeyStatus.ACTIVE]
        if root.keys_for(role) and threshold > len(active):
            problems.append(f"threshold {role.value}={threshold} but only {len(active)} active {role.value} key(s); "
                            "nothing could verify")
    return problems


def _check_thresholds(root: TrustRoot, role: Role | None = None) -> None:
    problems = [p for p in _threshold_problems(root) if role is None or p.startswith(f"threshold {role.value}=")]
    if problems:
        raise InputError(problems[0])


@app.command("init")
def init(
    output: Path = typer.Option(..., "--output", help="Trust root file to create (never overwritten)."),
    key: list[str] = typer.Option(..., "--key", help="ROLE=PUBLIC_KEY.pem (repeatable)."),
    threshold: list[str] = typer.Option([], "--threshold", help="ROLE=N distinct keys required (default 1)."),
    trusted_builder: list[str] = typer.Option([], "--trusted-builder",
                                              help="SLSA builder.id to trust (repeatable; default: GitHub-hosted "
                                                   "runners and the local Ringward builder)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Create a trust root pinning the given public keys to roles."""
    now = utc_now()
    root = TrustRoot(updated_at=now, trusted_builders=tuple(trusted_builder) or DEFAULT_TRUSTED_BUILDERS)
    for item in key:
        role, path = parse_role_assignment(item, "--key")
        public = load_public_key_file(Path(path))
        label = f"{role.value}-{Path(path).stem}"
        existing = root.find(public.key_id)
        if existing is None and any(k.label == label for k in root.keys):
            label = f"{label}-{public.key_id[:8]}"
        root = add_key(root, new_trusted_key(public, [role], label, None, None), now)
    thresholds = dict(root.thresholds)
    for item in threshold:
        role, value = parse_role_assignment(item, "--threshold")
        if not value.isdigit() or int(value) < 1:
            raise InputError(f"--threshold: expected ROLE=N with N >= 1, found {item!r}")
        thresholds[role] = int(value)
    root = root.model_copy(update={"thresholds": thresholds, "version": 1})
    _check_thresholds(root)
    save_trust_root(output, root, overwrite=False)
    if json_output:
        print_json(root.model_dump(mode="json", exclude_none=True))
    else:
        typer.echo(f"wrote {output}: {len(root.keys)} key(s)")


@app.command("add-key")
def add_key_command(
    trust_root: Path = TRUST_ROOT_OPTION,
    role: list[str] = typer.Option(..., "--role", help="release | promotion | remediation | advisory (repeatable)."),
    public_key: Path = typer.Option(..., "--public-key"),
    label: str | None = typer.Option(None, "--label"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="ISO-8601 UTC time."),
    valid_until: str | None = typer.Option(None, "--valid-until", help="ISO-8601 UTC time."),
) -> None:
    """Pin another public key (or add roles to a pinned key)."""
    root = load_trust_root(trust_root)
    roles = [parse_role_assignment(f"{r}=x", "--role")[0] for r in role]
    public = load_public_key_file(public_key)
    key = new_trusted_key(public, roles, label or f"{roles[0].value}-{public.key_id[:8]}",
                          _time(valid_from, "--valid-from"), _time(valid_until, "--valid-until"))
    updated = add_key(root, key, utc_now())
    save_trust_root(trust_root, updated, overwrite=True)
    typer.echo(f"pinned {public.key_id[:16]} for {', '.join(r.value for r in roles)} (trust root v{updated.version})")


def _status_change(trust_root: Path, key: str, status: KeyStatus, reason: str | None) -> None:
    root = load_trust_root(trust_root)
    updated = change_key_status(root, key, status, reason, utc_now())
    # revocation is an emergency action: never refuse it, but say what it breaks
    save_trust_root(trust_root, updated, overwrite=True)
    typer.echo(f"{status.value} key {key} (trust root v{updated.version})")
    for problem in _threshold_problems(updated):
        typer.echo(f"warning: {problem}", err=True)


@app.command("revoke-key")
def revoke_key(
    key: str = typer.Argument(..., help="Label, key_id or key_id prefix (>= 8 hex)."),
    trust_root: Path = TRUST_ROOT_OPTION,
    reason: str | None = typer.Option(None, "--reason"),
) -> None:
    """Revoke a key: its signatures never count again."""
    _status_change(trust_root, key, KeyStatus.REVOKED, reason)


@app.command("retire-key")
def retire_key(
    key: str = typer.Argument(..., help="Label, key_id or key_id prefix (>= 8 hex)."),
    trust_root: Path = TRUST_ROOT_OPTION,
    reason: str | None = typer.Option(None, "--reason"),
) -> None:
    """Retire a key after rotation: it stops counting toward thresholds."""
    _status_change(trust_root, key, KeyStatus.RETIRED, reason)


@app.command("set-threshold")
def set_threshold(assignment: str = typer.Argument(..., help="ROLE=N"), trust_root: Path = TRUST_ROOT_OPTION) -> None:
    """Require N distinct keys of a role."""
    role, value = parse_role_assignment(assignment, "ROLE=N")
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"ROLE=N: expected N >= 1, found {value!r}")
    root = load_trust_root(trust_root)
    thresholds = dict(root.thresholds)
    thresholds[role] = int(value)
    updated = root.model_copy(update={"thresholds": thresholds, "version": root.version + 1, "updated_at": utc_now()})
    _check_thresholds(updated, role)
    save_trust_root(trust_root, updated, overwrite=True)
    typer.echo(f"threshold {role.value}={value} (trust root v{updated.version})")


@app.command("show")
def show(trust_root: Path = TRUST_ROOT_OPTION, json_output: bool = typer.Option(False, "--json")) -> None:
    """Show pinned keys, their status and validity, and thresholds."""
    root = load_trust_root(trust_root)
    if json_output:
        print_json(root.model_dump(mode="json", exclude_none=True))
        return
    typer.echo(f"trust root v{root.version} (updated {root.updated_at.isoformat()})")
    print_table(
        ["key_id", "label", "roles", "status", "valid_from", "valid_until"],
        [[k.key_id[:16], k.label, ",".join(r.value for r in k.roles), k.status.value,
          k.valid_from.isoformat() if k.valid_from else "-", k.valid_until.isoformat() if k.valid_until else "-"]
         for k in root.keys],
    )
    typer.echo("thresholds: " + ", ".join(f"{r.value}={n}" for r, n in sorted(root.thresholds.items())))
    typer.echo("trusted builders: " + ", ".join(root.trusted_builders))


__all__ = ["Role", "app"]
