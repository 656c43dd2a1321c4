"""`ringward release ...`: package, sign, verify and inspect runtime release packages.

Every verifying command runs in-process by default (no Prefect import, fast enough for CI) and
writes evidence; ``--prefect`` runs the same work as a tracked Prefect flow run instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError, RingwardError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Package, sign and verify runtime releases.")

TRUST_ROOT = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                          help="Pinned trust root (ringward.trust-root.v1); env RINGWARD_TRUST_ROOT.")
JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
PREFECT = typer.Option(False, "--prefect", help="Run as a tracked Prefect flow run instead of in-process.")
NO_EVIDENCE = typer.Option(False, "--no-evidence", help="Do not write an evidence bundle and record.")
PROFILE = typer.Option("ringward", "--profile", metavar="ringward|reference|auto",
                       help="Rule set: ringward (default, strictest); reference: what the reference system's own "
                            "verifier accepts, still only under the pinned trust root; auto: detect from the "
                            "documents' product and announce it.")


#: the read-only views write no evidence; the flag is accepted so every verifying command takes it
VIEW_NO_EVIDENCE = typer.Option(False, "--no-evidence", help="Accepted for symmetry: this view writes no evidence.")


def _profile(value: str) -> str:
    """The --profile choice (every verifying flow takes it too, so it works with --prefect)."""
    from ringward.core.release.profiles import parse_profile_choice

    return parse_profile_choice(value)


def _refuse_link_loop(path: Path, what: str) -> None:
    """A symbolic-link loop is no missing package: say what it is (bad input, exit 2) before the
    verifier's existence checks, which cannot tell the two apart."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what} {path}: a symbolic link loop (it never resolves to a directory or file)") \
                from None


def _announce(result: dict[str, Any]) -> None:
    """Say which profile ran when it is not the plain default, and print any hint."""
    profile = result.get("profile")
    if isinstance(profile, dict) and (profile.get("name") != "ringward" or profile.get("source") != "explicit"):
        typer.echo(result.get("profile_announcement") or f"profile {profile.get('name')}", err=True)
    if result.get("hint"):
        typer.echo(f"hint: {result['hint']}", err=True)


def _emit(result: dict[str, Any], *, json_output: bool, title: str) -> None:
    """Print a verification result and exit 0 (valid) or 1 (verified and invalid)."""
    valid = bool(result.get("valid"))
    if json_output:
        print_json(result)
    else:
        _announce(result)
        for family in result.get("families", []):
            status = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[family["status"]]
            count = f" ({len(family['checked'])} checked)" if family["checked"] else ""
            if family.get("reason"):
                count += f": {family['reason']}"
            typer.echo(f"{status}  {family['family']}{count}")
        for warning in result.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)
        for error in result.get("errors", []):
            typer.echo(f"error [{error['code']}] {error['message']}", err=True)
        evidence = result.get("evidence")
        verdict = "VALID" if valid else "INVALID"
        typer.echo(f"{verdict}: {title}" + (f" (evidence {evidence['evidence_id']})" if evidence else ""))
    raise typer.Exit(0 if valid else 1)


def _run(in_process: Callable[[], dict[str, Any]], flow: Callable[[], dict[str, Any]], use_prefect: bool) \
        -> dict[str, Any]:
    return flow() if use_prefect else in_process()


def _parse_now(value: str | None) -> Any:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    return _time(value, "--at") if value else utc_now()


AT = typer.Option(None, "--at", help="Verify as of this ISO-8601 UTC time (key validity windows); default now.")


@app.command("package")
def package(
    dist_dir: Path = typer.Argument(..., help="Directory of <runtime>_<version>_<GOOS>_<GOARCH>[.exe] binaries "
                                               "(or with them under DIST_DIR/bin/)."),
    version: str = typer.Option(..., "--version", help="SemVer version as tagged, e.g. 1.2.3 or v1.2.3 (kept "
                                                        "verbatim in names and documents)."),
    commit: str = typer.Option(..., "--commit", help="Source commit SHA (hex)."),
    ref: str = typer.Option(..., "--ref", help="Git ref, e.g. refs/tags/v1.2.3."),
    repository: str = typer.Option(..., "--repository", help="OWNER/NAME."),
    signing_key: Path | None = typer.Option(None, "--signing-key",
                                            help="Ed25519 PKCS#8 PEM; else $RINGWARD_SIGNING_KEY."),
    output: Path = typer.Option(..., "--output", help="Directory that receives <runtime>-<version>/ (and .zip)."),
    runtime_name: str | None = typer.Option(None, "--runtime-name", help="Runtime name (default: from binaries)."),
    make_zip: bool = typer.Option(False, "--zip", help="Also write a reproducible <runtime>-<version>.zip."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Allow an unsigned package, clearly marked as such."),
    signer: str = typer.Option("ringward", "--signer", help="Signer label recorded in signatures."),
    event: str | None = typer.Option(None, "--event", help="Triggering event (default $GITHUB_EVENT_NAME/manual)."),
    layout: str = typer.Option("ringward", "--layout", metavar="ringward|reference",
                               help="reference: go-runtime-<v>/ and cavra-go-runtime-<v>.zip with a CI-runner "
                                    "bundle, so fleets still running the reference verifier accept the package "
                                    "(runtime cavra-runtime; needs --ci-runner-script and --github-action)."),
    ci_runner_script: Path | None = typer.Option(None, "--ci-runner-script",
                                                 help="Your CI-runner wrapper script (CI-runner bundle)."),
    github_action: Path | None = typer.Option(None, "--github-action",
                                              help="Your GitHub Actions action.yml (CI-runner bundle)."),
    package_trust_root: Path | None = typer.Option(
        None, "--trust-root", help="Pinned trust root: its version and root keys go into the offline bootstrap "
                                   "(air-gapped endpoints can then follow a signed rotation)."),
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
    no_evidence: bool = NO_EVIDENCE,
) -> None:
    """Build, sign and (optionally) zip a release package in the reference file format."""
    _refuse_link_loop(dist_dir, "DIST_DIR")
    from ringward.operations.common.files import check_output_parent

    check_output_parent(output, option="--output")
    params: dict[str, Any] = {
              "dist_dir": str(dist_dir), "output": str(output), "version": version, "commit": commit, "ref": ref,
              "repository": repository, "signing_key": str(signing_key) if signing_key else None,
              "runtime_name": runtime_name, "make_zip": make_zip, "dry_run": dry_run, "signer": signer,
              "event": event, "record": not no_evidence,
              "trust_root": str(package_trust_root) if package_trust_root else None}
    extra = {"layout": layout, "ci_runner_script": str(ci_runner_script) if ci_runner_script else None,
             "github_action": str(github_action) if github_action else None}
    if layout != "ringward" or ci_runner_script or github_action:
        if use_prefect:
            raise InputError("--layout/--ci-runner-script/--github-action: not available with --prefect yet; run "
                             "it in-process")
        params.update(extra)
    if use_prefect:
        from flows._common import run_flow
        from flows.package_release import package_release_flow

        result = run_flow(package_release_flow, **params)
    else:
        from ringward.cli.progress import byte_progress
        from ringward.operations.release.release_ops import run_package

        with byte_progress(json_output=json_output) as progress:
            result = run_package(**params, progress=progress)
    if json_output:
        print_json(result)
        return
    typer.echo(f"{'SIGNED' if result['signed'] else 'UNSIGNED DRY RUN'}: {result['package_dir']}"
               f" ({len(result['artifacts'])} artifacts, {len(result['signature_files'])} signatures)")
    if result.get("zip_path"):
        typer.echo(f"zip: {result['zip_path']}")
    if not result["signed"]:
        typer.echo("warning: this package is NOT signed; verify-package will refuse it without --allow-unsigned",
                   err=True)


@app.command("cosign")
def cosign(
    package_dir: Path = typer.Argument(...),
    signing_key: Path | None = typer.Option(None, "--signing-key", help="Co-signer key; else $RINGWARD_SIGNING_KEY."),
    signer: str = typer.Option("ringward", "--signer"),
) -> None:
    """Add co-signatures by another release key (for trust roots with a threshold above 1)."""
    _refuse_link_loop(package_dir, "PACKAGE_DIR")
    from ringward.operations.release.package import cosign_package
    from ringward.operations.trust.keys import load_signing_key

    key = load_signing_key(signing_key)
    if key is None:
        raise InputError("no signing key: pass --signing-key K.pem or set RINGWARD_SIGNING_KEY")
    written = cosign_package(package_dir, key, signer)
    typer.echo(f"wrote {len(written)} co-signature(s) in {package_dir}")


@app.command("verify-package")
def verify_package(
    package_dir: Path = typer.Argument(...),
    trust_root: Path = TRUST_ROOT,
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned",
                                        help="Accept an UNSIGNED DRY-RUN package (inspection only)."),
    at: str | None = AT,
    profile: str = PROFILE,
    sigstore_trusted_root: Path | None = typer.Option(
        None, "--sigstore-trusted-root", metavar="FILE",
        help="Keyless-attestation layer: verify each binary's Sigstore bundle "
             "(github-attestations/<binary>.sigstore-bundle.json) offline against this Sigstore trusted_root.json. "
             "Needs --sigstore-identity and --sigstore-issuer."),
    sigstore_identity: str | None = typer.Option(
        None, "--sigstore-identity", metavar="ID",
        help="Certificate identity the bundles must carry (SAN: e-mail or URI, e.g. a workflow ref)."),
    sigstore_issuer: str | None = typer.Option(
        None, "--sigstore-issuer", metavar="URL",
        help="OIDC issuer the bundles' certificates must carry, e.g. https://token.actions.githubusercontent.com."),
    require_sigstore: bool = typer.Option(
        False, "--require-sigstore", help="A binary without a Sigstore bundle fails (default: reported only)."),
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
    no_evidence: bool = NO_EVIDENCE,
) -> None:
    """Verify every file, signature, threshold and document binding against the trust root."""
    _refuse_link_loop(package_dir, "PACKAGE_DIR")
    chosen = _profile(profile)
    from ringward.operations.release.sigstore_attestation import keyless_options

    keyless = keyless_options(sigstore_trusted_root, sigstore_identity, sigstore_issuer, require_sigstore)
    if allow_unsigned:
        typer.echo("WARNING: --allow-unsigned: an unsigned dry-run package proves NOTHING about its origin",
                   err=True)
    now = _parse_now(at)
    kwargs = {"package_dir": str(package_dir), "trust_root": str(trust_root), "allow_unsigned": allow_unsigned,
              "now": now, "record": not no_evidence}
    if chosen != "ringward":
        kwargs["profile"] = chosen
    if keyless is not None:
        kwargs.update(keyless.as_params())

    def flow() -> dict[str, Any]:
        from flows._common import run_flow
        from flows.verify_package import verify_package_flow

        return run_flow(verify_package_flow, **kwargs)

    def in_process() -> dict[str, Any]:
        from ringward.cli.progress import byte_progress
        from ringward.operations.release.release_ops import run_verify_package

        with byte_progress(json_output=json_output) as progress:
            return run_verify_package(**kwargs, progress=progress)

    _emit(_run(in_process, flow, use_prefect), json_output=json_output, title=str(package_dir))


@app.command("verify-airgap-bundle")
def verify_airgap_bundle(
    bundle: Path = typer.Argument(..., help="<runtime>-<version>.zip"),
    trust_root: Path = TRUST_ROOT,
    extract_dir: Path | None = typer.Option(None, "--extract-dir", help="Empty directory to extract into, after "
                                                                         "verification."),
    allow_missing_bootstrap: bool = typer.Option(False, "--allow-missing-bootstrap"),
    at: str | None = AT,
    profile: str = PROFILE,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
    no_evidence: bool = NO_EVIDENCE,
) -> None:
    """Verify an air-gapped bundle zip member by member, without extracting it first."""
    _refuse_link_loop(bundle, "BUNDLE")
    if extract_dir is not None:
        from ringward.operations.common.files import check_output_parent

        check_output_parent(extract_dir, option="--extract-dir")
    chosen = _profile(profile)
    kwargs = {"bundle": str(bundle), "trust_root": str(trust_root),
              "extract_dir": str(extract_dir) if extract_dir else None,
              "require_bootstrap": not allow_missing_bootstrap, "now": _parse_now(at), "record": not no_evidence}
    if chosen != "ringward":
        kwargs["profile"] = chosen

    def flow() -> dict[str, Any]:
        from flows._common import run_flow
        from flows.verify_airgap import verify_airgap_flow

        return run_flow(verify_airgap_flow, **kwargs)

    def in_process() -> dict[str, Any]:
        from ringward.cli.progress import byte_progress
        from ringward.operations.release.release_ops import run_verify_airgap

        with byte_progress(json_output=json_output) as progress:
            return run_verify_airgap(**kwargs, progress=progress)

    _emit(_run(in_process, flow, use_prefect), json_output=json_output, title=str(bundle))


@app.command("validate-upgrade")
def validate_upgrade(
    previous_dir: Path = typer.Argument(...),
    candidate_dir: Path = typer.Argument(...),
    trust_root: Path = TRUST_ROOT,
    allow_same_version: bool = typer.Option(False, "--allow-same-version",
                                            help="Accept re-validating the identical release."),
    channel: str | None = typer.Option(None, "--channel", help="Also check the candidate against this channel's "
                                       "persisted high-water mark and hold."),
    at: str | None = AT,
    profile: str = PROFILE,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
    no_evidence: bool = NO_EVIDENCE,
) -> None:
    """Verify both packages and refuse rollbacks, re-published versions and removed controls."""
    _refuse_link_loop(previous_dir, "PREVIOUS_DIR")
    _refuse_link_loop(candidate_dir, "CANDIDATE_DIR")
    chosen = _profile(profile)
    kwargs = {"previous_dir": str(previous_dir), "candidate_dir": str(candidate_dir), "trust_root": str(trust_root),
              "allow_same_version": allow_same_version, "now": _parse_now(at), "record": not no_evidence}
    if chosen != "ringward":
        kwargs["profile"] = chosen
    if channel is not None:
        kwargs["channel"] = channel

    def flow() -> dict[str, Any]:
        from flows._common import run_flow

        if channel is not None:
            from flows.promotion_channel import validate_channel_upgrade_flow

            result = run_flow(validate_channel_upgrade_flow, **kwargs)
            return result
        from flows.validate_upgrade import validate_upgrade_flow

        return run_flow(validate_upgrade_flow, **kwargs)

    def in_process() -> dict[str, Any]:
        if channel is not None:
            from ringward.operations.release.upgrade import run_validate_upgrade_on_channel

            return run_validate_upgrade_on_channel(**kwargs)
        from ringward.operations.release.release_ops import run_validate_upgrade

        return run_validate_upgrade(**kwargs)

    result = _run(in_process, flow, use_prefect)
    if not json_output:
        comparison = result.get("comparison") or {}
        for side in ("previous", "candidate"):
            _announce(result.get(side) or {})
        previous = comparison.get("previous_version") or result.get("previous_version") or "?"
        candidate = comparison.get("candidate_version") or result.get("candidate_version") or "?"
        typer.echo(f"previous {previous} -> candidate {candidate}")
        for change in comparison.get("install_path_changes", []):
            typer.echo(f"install path {change['target']}: {change['previous']} -> {change['candidate']}")
        for note in comparison.get("migration_notes", []):
            typer.echo(f"migration: {note}")
    _emit(result, json_output=json_output, title=f"upgrade {previous_dir} -> {candidate_dir}")


@app.command("smoke-installers")
def smoke_installers(
    package_dir: Path = typer.Argument(...),
    trust_root: Path = TRUST_ROOT,
    skip_execution: bool = typer.Option(False, "--skip-execution", help="Static checks only."),
    timeout_seconds: float = typer.Option(5.0, "--timeout-seconds", min=0.1, max=600),
    probe: str | None = typer.Option(
        None, "--probe", metavar="version|reference-json",
        help="How the binary is probed. version: run it with --probe-arg arguments (default --version) and "
             "look for the release version; reference-json: the reference system's protocol (a policy request "
             "on stdin, a JSON answer with a known decision). Default: the profile's (ringward: version, "
             "reference: reference-json)."),
    probe_arg: list[str] | None = typer.Option(
        None, "--probe-arg", help="Arguments of the version probe (repeatable; default --version)."),
    no_expect_version: bool = typer.Option(False, "--no-expect-version",
                                           help="Version probe: do not require the version string in the output."),
    at: str | None = AT,
    profile: str = PROFILE,
    json_output: bool = JSON,
    use_prefect: bool = PREFECT,
    no_evidence: bool = NO_EVIDENCE,
) -> None:
    """Check installer metadata and run this platform's binary with the profile's probe."""
    from ringward.operations.release.smoke import requested_probe

    _refuse_link_loop(package_dir, "PACKAGE_DIR")
    chosen = _profile(profile)
    kwargs: dict[str, Any] = {
        "package_dir": str(package_dir), "trust_root": str(trust_root), "execute": not skip_execution,
        "timeout_seconds": timeout_seconds, "expect_version": not no_expect_version, "now": _parse_now(at),
        "record": not no_evidence}
    if probe_arg:
        kwargs["probe_args"] = list(probe_arg)
    if chosen != "ringward":
        kwargs["profile"] = chosen
    # version-probe options under the reference probe are bad input before anything runs (--prefect too)
    requested = requested_probe(probe, chosen, tuple(probe_arg) if probe_arg else None, not no_expect_version)
    if requested is not None:
        kwargs["probe"] = requested.value

    def flow() -> dict[str, Any]:
        from flows._common import run_flow
        from flows.smoke_installers import smoke_installers_flow

        return run_flow(smoke_installers_flow, **kwargs)

    def in_process() -> dict[str, Any]:
        from ringward.operations.release.release_ops import run_smoke_installers

        return run_smoke_installers(**kwargs)

    result = _run(in_process, flow, use_prefect)
    if not json_output:
        _announce(result.get("package_verification") or {})
        for execution in result.get("executions", []):
            outcome = "timed out" if execution["timed_out"] else f"exit {execution['returncode']}"
            first = (execution["stdout"] or execution["stderr"]).strip().splitlines()[:1]
            stdin = " with the reference request on stdin" if execution.get("stdin") else ""
            said = f"decision {execution['decision']}" if execution.get("decision") else (first[0][:120] if first
                                                                                          else "")
            typer.echo(f"ran {' '.join(execution['command'])}{stdin} [{execution['target']}]: {outcome}"
                       + (f": {said}" if said else ""))
    _emit(result, json_output=json_output, title=f"installer smoke {package_dir}")


def _verified_documents(package_dir: Path, trust_root: Path, at: str | None, profile: str = "ringward") -> Any:
    from ringward.operations.release.release_ops import verified_view
    from ringward.operations.trust.keys import load_trust_root

    _refuse_link_loop(package_dir, "PACKAGE_DIR")
    view = verified_view(package_dir, load_trust_root(trust_root), now=_parse_now(at), profile=_profile(profile))
    if view.profile != "ringward" or profile != "ringward":
        typer.echo(view.announcement, err=True)
        for warning in view.warnings:
            typer.echo(f"warning: {warning}", err=True)
    return view


@app.command("channel-manifest")
def channel_manifest(
    package_dir: Path = typer.Argument(...),
    trust_root: Path = TRUST_ROOT,
    channel: str | None = typer.Option(None, "--channel"),
    at: str | None = AT,
    profile: str = PROFILE,
    json_output: bool = JSON,
    no_evidence: bool = VIEW_NO_EVIDENCE,
) -> None:
    """Show the verified channel manifest (refuses an unverified package)."""
    view = _verified_documents(package_dir, trust_root, at, profile)
    channels = view.channels.channels
    if channel is not None:
        channels = [c for c in channels if c.channel == channel]
        if not channels:
            raise InputError(f"--channel: release channel not found: {channel} "
                             f"(package has {', '.join(c.channel for c in view.channels.channels)})")
    if json_output:
        print_json({"version": view.channels.version, "verified": True, "profile": view.profile,
                    "channels": [c.model_dump(mode="json") for c in channels]})
        return
    typer.echo(f"{view.runtime} {view.channels.version} (verified)")
    print_table(["channel", "version", "recommended", "rings", "targets", "auto_update", "approval"],
                [[c.channel, c.version, c.recommended, " > ".join(c.ring_order), len(c.workstation_targets),
                  c.auto_update, c.approval_required] for c in channels])


@app.command("updater-policy")
def updater_policy(
    package_dir: Path = typer.Argument(...),
    trust_root: Path = TRUST_ROOT,
    at: str | None = AT,
    profile: str = PROFILE,
    json_output: bool = JSON,
    no_evidence: bool = VIEW_NO_EVIDENCE,
) -> None:
    """Show the verified updater policy (refuses an unverified package)."""
    view = _verified_documents(package_dir, trust_root, at, profile)
    policy = view.updater
    if json_output:
        print_json({"version": policy.version, "verified": True, "profile": view.profile,
                    **policy.model_dump(mode="json")})
        return
    typer.echo(f"{view.runtime} {policy.version} (verified); default_auto_update={policy.default_auto_update}")
    print_table(["channel", "approval", "minimum", "rings (max% / soak h)", "pause ≤ min"],
                [[p.channel, p.approval_required, p.minimum_approval,
                  ", ".join(f"{r.ring} {r.max_percentage}%/{r.soak_hours}h" for r in p.rollout_rings),
                  p.rollback.max_minutes_to_pause] for p in policy.policies])


__all__ = ["RingwardError", "app"]
