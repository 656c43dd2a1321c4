"""`ringward trust ...`: create and edit the pinned trust root."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError, TrustRootRotationError
from ringward.core.trust.root import DEFAULT_TRUSTED_BUILDERS, KeyStatus, Role, TrustRoot
from ringward.operations.release.release_ops import default_actor, utc_now
from ringward.operations.trust.keys import (
    add_key,
    change_key_status,
    edited,
    key_selector,
    load_public_key_file,
    load_trust_root,
    new_trusted_key,
    next_version,
    parse_role_assignment,
    save_trust_root,
)
from ringward.operations.trust.rotation import chain_summary, sign_trust_root_file, update_trust_root

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
        raise InputError("; ".join(problems))


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
    key: list[str] = typer.Option([], "--key", help="ROLE=PUBLIC_KEY.pem (repeatable; the spelling of `trust init`)."),
    role: list[str] = typer.Option([], "--role", help="Alias: with --public-key, ROLE of that key (repeatable)."),
    public_key: Path | None = typer.Option(None, "--public-key", help="Alias: the key file for --role."),
    label: str | None = typer.Option(None, "--label"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="ISO-8601 UTC time."),
    valid_until: str | None = typer.Option(None, "--valid-until", help="ISO-8601 UTC time."),
) -> None:
    """Pin another public key (or add roles to a pinned key): --key ROLE=PUBLIC_KEY, as in `trust init`
    (`--role ROLE --public-key FILE` is kept as an alias)."""
    wanted: dict[Path, list[Role]] = {}
    for item in key:
        item_role, path = parse_role_assignment(item, "--key")
        wanted.setdefault(Path(path), []).append(item_role)
    if public_key is not None:
        if not role:
            raise InputError("--public-key: needs --role ROLE (or use --key ROLE=PUBLIC_KEY)")
        wanted.setdefault(public_key, []).extend(parse_role_assignment(f"{r}=x", "--role")[0] for r in role)
    elif role:
        raise InputError("--role: needs --public-key FILE (or use --key ROLE=PUBLIC_KEY)")
    if not wanted:
        raise InputError("--key: expected ROLE=PUBLIC_KEY (repeatable)")
    if label is not None and len(wanted) > 1:
        raise InputError(f"--label: names one key, found {len(wanted)} key files")
    root = load_trust_root(trust_root)
    valid = _time(valid_from, "--valid-from"), _time(valid_until, "--valid-until")
    loaded = [(load_public_key_file(path), roles) for path, roles in wanted.items()]
    updated = root
    for public, roles in loaded:
        trusted = new_trusted_key(public, roles, label or f"{roles[0].value}-{public.key_id[:8]}", *valid)
        updated = add_key(updated, trusted, utc_now())
    # one new version however many keys (an unsigned draft of a chained root keeps its N+1)
    updated = updated.model_copy(update={"version": next_version(root)})
    save_trust_root(trust_root, updated, overwrite=True)
    for public, roles in loaded:
        typer.echo(f"pinned {public.key_id[:16]} for {', '.join(r.value for r in roles)} "
                   f"(trust root v{updated.version})")


def _status_change(trust_root: Path, key: str | None, public_key: Path | None, status: KeyStatus,
                   reason: str | None) -> None:
    selector = key_selector(key, public_key)
    root = load_trust_root(trust_root)
    updated = change_key_status(root, selector, status, reason, utc_now())
    # revocation is an emergency action: never refuse it, but say what it breaks
    save_trust_root(trust_root, updated, overwrite=True)
    shown = key if selector == key else selector[:16]
    typer.echo(f"{status.value} key {shown} (trust root v{updated.version})")
    for problem in _threshold_problems(updated):
        typer.echo(f"warning: {problem}", err=True)


KEY_ARGUMENT = typer.Argument(None, help="Label, key_id, key_id prefix (>= 8 hex) or public key file.")
PUBLIC_KEY_SELECTOR = typer.Option(None, "--public-key", help="The key's public key file (instead of KEY).")


@app.command("revoke-key")
def revoke_key(
    key: str | None = KEY_ARGUMENT,
    trust_root: Path = TRUST_ROOT_OPTION,
    public_key: Path | None = PUBLIC_KEY_SELECTOR,
    reason: str | None = typer.Option(None, "--reason"),
) -> None:
    """Revoke a key: its signatures never count again."""
    _status_change(trust_root, key, public_key, KeyStatus.REVOKED, reason)


@app.command("retire-key")
def retire_key(
    key: str | None = KEY_ARGUMENT,
    trust_root: Path = TRUST_ROOT_OPTION,
    public_key: Path | None = PUBLIC_KEY_SELECTOR,
    reason: str | None = typer.Option(None, "--reason"),
) -> None:
    """Retire a key after rotation: it stops counting toward thresholds."""
    _status_change(trust_root, key, public_key, KeyStatus.RETIRED, reason)


@app.command("set-threshold")
def set_threshold(
    assignment: str | None = typer.Argument(None, help="Alias: ROLE=N (same as --threshold ROLE=N)."),
    trust_root: Path = TRUST_ROOT_OPTION,
    threshold: list[str] = typer.Option(
        [], "--threshold", help="ROLE=N distinct keys required (repeatable; the spelling of `trust init`)."),
) -> None:
    """Require N distinct keys of a role: --threshold ROLE=N, as in `trust init` (a positional ROLE=N is
    kept as an alias)."""
    items = [("--threshold", item) for item in threshold] + ([("ROLE=N", assignment)] if assignment else [])
    if not items:
        raise InputError("--threshold: expected ROLE=N (repeatable)")
    changes: dict[Role, int] = {}
    for option, item in items:
        role, value = parse_role_assignment(item, option)
        if not value.isdigit() or int(value) < 1:
            raise InputError(f"{option}: expected ROLE=N with N >= 1, found {item!r}")
        changes[role] = int(value)
    root = load_trust_root(trust_root)
    thresholds = {**root.thresholds, **changes}
    updated = edited(root, utc_now(), thresholds=thresholds)
    for role in changes:
        _check_thresholds(updated, role)
    save_trust_root(trust_root, updated, overwrite=True)
    typer.echo(", ".join(f"threshold {role.value}={n}" for role, n in changes.items())
               + f" (trust root v{updated.version})")


@app.command("show")
def show(trust_root: Path = TRUST_ROOT_OPTION, json_output: bool = typer.Option(False, "--json")) -> None:
    """Show pinned keys, their status and validity, and thresholds."""
    root = load_trust_root(trust_root)
    if json_output:
        print_json(root.model_dump(mode="json", exclude_none=True))
        return
    expires = f", expires {root.expires.isoformat()}" if root.expires else ""
    signed = f", {len(root.signatures)} root signature(s)" if root.signatures else ", unsigned"
    typer.echo(f"trust root v{root.version} (updated {root.updated_at.isoformat()}{expires}{signed})")
    print_table(
        ["key_id", "label", "roles", "status", "valid_from", "valid_until"],
        [[k.key_id[:16], k.label, ",".join(r.value for r in k.roles), k.status.value,
          k.valid_from.isoformat() if k.valid_from else "-", k.valid_until.isoformat() if k.valid_until else "-"]
         for k in root.keys],
    )
    typer.echo("thresholds: " + ", ".join(f"{r.value}={n}" for r, n in sorted(root.thresholds.items())))
    typer.echo("trusted builders: " + ", ".join(root.trusted_builders))


@app.command("set-expiry")
def set_expiry(
    trust_root: Path = TRUST_ROOT_OPTION,
    expires: str = typer.Option(..., "--expires", help="ISO-8601 UTC time after which this version may not be "
                                                       "rotated to."),
) -> None:
    """Set when this trust-root version expires (a chain's newest version must be unexpired)."""
    when = _time(expires, "--expires")
    root = load_trust_root(trust_root)
    updated = edited(root, utc_now(), expires=when)
    save_trust_root(trust_root, updated, overwrite=True)
    typer.echo(f"expires {expires} (trust root v{updated.version}, unsigned)")


@app.command("sign-root")
def sign_root_command(
    trust_root: Path = TRUST_ROOT_OPTION,
    signing_key: Path = typer.Option(..., "--signing-key", help="Root-role private key (PKCS#8 PEM)."),
    signer: str | None = typer.Option(None, "--signer", help="Who signs (default: $RINGWARD_ACTOR or the user)."),
) -> None:
    """Add a root signature to this trust-root version. Version N+1 needs a threshold of version N's root
    keys and of its own root keys; each key holder runs this once. Upgrading a legacy trust root in place:
    `trust add-key --key root=PUBLIC_KEY`, `trust set-threshold --threshold root=N`, then sign."""
    outcome = sign_trust_root_file(trust_root, signing_key, signer=signer or default_actor(), now=utc_now())
    root = outcome.root
    note = "" if outcome.own_root_key else " (not a root key of this version: counts only as a previous-version key)"
    typer.echo(f"signed trust root v{root.version} with {outcome.key_id[:16]}{note}; "
               f"{len(root.signatures)} root signature(s)")


@app.command("update")
def update(
    new: list[Path] = typer.Argument(..., help="New trust-root version(s) N+1..M, or a directory of versions."),
    trust_root: Path = TRUST_ROOT_OPTION,
    at: str | None = typer.Option(None, "--at", help="Verify as of this ISO-8601 UTC time (default: now)."),
    no_evidence: bool = typer.Option(False, "--no-evidence", help="Do not record an evidence record."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Follow a trust-root rotation: verify every version N+1..M against its predecessor (threshold of the
    previous and of its own root keys, exact versions, no fork, newest unexpired), then replace the trust
    root atomically. On any refusal the trust root is left untouched (exit 1)."""
    now = _time(at, "--at") or utc_now()
    try:
        outcome = update_trust_root(trust_root, list(new), now=now, actor=default_actor(), record=not no_evidence,
                                    time_overridden=at is not None)
    except TrustRootRotationError as exc:
        if json_output:
            print_json({"decision": "refused", "reason_code": exc.code, "reason": exc.message})
        raise
    summary = chain_summary(outcome.chain)
    if json_output:
        print_json({"decision": "accepted", "trust_root": str(trust_root), **summary})
        return
    typer.echo(f"trust root {trust_root}: v{summary['previous_version']} -> v{summary['version']} "
               f"({len(summary['steps'])} rotation(s) verified)")


__all__ = ["Role", "app"]
