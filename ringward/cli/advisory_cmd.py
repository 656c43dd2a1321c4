"""`ringward advisory ...`: security advisories tied to verified release evidence.

``create`` writes a ``ringward.advisory.v1`` record (CVSS v4 scored, the playbook's severity rule
applied, links by digest to the verified package, rollouts, executions, deliveries and evidence);
``check`` runs the completeness gate (exit 1 when it fails, naming every missing or failing item);
``publish`` signs with an advisory-role key and exports OSV, a GitHub-advisory-shaped document and
the advisory text (a high or critical advisory is refused while the gate fails).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Security advisories tied to verified release evidence.")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time (key validity); default now.")
ACTOR = typer.Option(None, "--actor", help="Who acts (default $RINGWARD_ACTOR, else the CI actor or OS user).")
TRUST_ROOT = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT", help="Pinned trust root.")


def _now(at: str | None) -> datetime:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    parsed = _time(at, "--at")
    return parsed if parsed is not None else utc_now()


def _actor(actor: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return actor or default_actor()


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


@app.command("create")
def create(
    advisory_id: str = typer.Option(..., "--id", help="Advisory id (e.g. RW-2026-0001 or GHSA-...)."),
    severity: str = typer.Option(..., "--severity", help="low | medium | high | critical (by threat-model reach)."),
    summary: str = typer.Option(..., "--summary", help="One-line summary."),
    affected: str = typer.Option(..., "--affected", help="Affected range: vers:<scheme>/... or constraints "
                                 "like '>=1.0.0|<1.2.3' in the product purl's scheme."),
    fixed: list[str] = typer.Option(..., "--fixed", help="Fixed version (repeatable)."),
    cwe: list[str] = typer.Option(..., "--cwe", help="CWE-N (repeatable)."),
    cvss: str = typer.Option(..., "--cvss", help="CVSS v4.0 vector 'CVSS:4.0/AV:...'."),
    package: list[Path] = typer.Option(..., "--package", help="The fixed release package directory (repeatable)."),
    trust_root: Path = TRUST_ROOT,
    output: Path = typer.Option(..., "--output", help="Where to write advisory.json (must not exist)."),
    cve: str | None = typer.Option(None, "--cve", help="CVE id, if assigned."),
    alias: list[str] = typer.Option([], "--alias", help="Other id of the vulnerability (repeatable)."),
    reporter: str | None = typer.Option(None, "--reporter", help="Credit: name, handle or 'anonymous'."),
    purl: str | None = typer.Option(None, "--purl", help="Affected product purl without version (default "
                                    "pkg:golang/github.com/<release repository>)."),
    component: list[str] = typer.Option([], "--component", help="Affected component (repeatable; default: runtime)."),
    user_safety: list[str] = typer.Option([], "--user-safety", help="User-safety class: identity-leak, "
                                          "duress-detectability, panic-wipe-defeat, phone-home (makes it critical)."),
    user_safety_impact: str | None = typer.Option(None, "--user-safety-impact", help="How vulnerable users are hit."),
    details: str | None = typer.Option(None, "--details", help="Longer description."),
    impact: str | None = typer.Option(None, "--impact", help="Customer impact."),
    prerequisites: str | None = typer.Option(None, "--prerequisites", help="Exploitation prerequisites."),
    mitigation: str | None = typer.Option(None, "--mitigation", help="Mitigation before upgrade."),
    fix_commit: str | None = typer.Option(None, "--fix-commit", help="Fixed commit (hex)."),
    pull_request: str | None = typer.Option(None, "--pull-request", help="Pull request URL."),
    asset: list[str] = typer.Option([], "--asset", help="Release asset URL (repeatable)."),
    release_tag: str | None = typer.Option(None, "--release-tag", help="Release tag of the fix."),
    rollout: list[Path] = typer.Option([], "--rollout", help="Rollout evidence directory (repeatable)."),
    execution: list[Path] = typer.Option([], "--execution", help="rollout-promotion-execution.json (repeatable)."),
    delivery: list[int] = typer.Option([], "--delivery", help="Evidence id of a connector delivery (repeatable)."),
    evidence: list[str] = typer.Option([], "--evidence", help="ITEM=EVIDENCE_ID for a checklist item "
                                       "(upgrade-validation, installer-smoke, rollout-verification, ...)."),
    reported: str | None = typer.Option(None, "--reported", help="Report date YYYY-MM-DD."),
    acknowledged: str | None = typer.Option(None, "--acknowledged", help="Acknowledgement date."),
    triaged: str | None = typer.Option(None, "--triaged", help="Triage date."),
    fixed_on: str | None = typer.Option(None, "--fixed-on", help="Fix date."),
    disclosed: str | None = typer.Option(None, "--disclosed", help="Disclosure date."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Write a ringward.advisory.v1 record linked by digest to the verified release evidence."""
    from ringward.core.advisories.severity import parse_severity, parse_user_safety
    from ringward.operations.advisories.advisory_ops import create_advisory

    parsed_severity = parse_severity(severity)
    classes = [parse_user_safety(v) for v in user_safety]
    now = _now(at)
    with _store() as store:
        result = create_advisory(
            store, advisory_id=advisory_id, severity=parsed_severity, summary=summary, affected=affected,
            fixed=fixed, cwe=cwe, cvss=cvss, packages=package, trust_root=trust_root, output=output,
            actor=_actor(actor), now=now, purl=purl, cve=cve, aliases=alias, reporter=reporter,
            user_safety=classes, user_safety_impact=user_safety_impact, components=component, details=details,
            customer_impact=impact, exploitation_prerequisites=prerequisites, mitigation=mitigation,
            fix_commit=fix_commit, pull_request=pull_request, release_assets=asset, release_tag=release_tag,
            rollouts=rollout, executions=execution, deliveries=delivery, evidence=evidence,
            timeline={"reported": reported, "acknowledged": acknowledged, "triaged": triaged, "fixed": fixed_on,
                      "disclosed": disclosed},
        )
    if json_output:
        print_json(result)
        return
    typer.echo(f"CREATED: {result['advisory_id']} severity {result['severity']} ({result['severity_rule']}); "
               f"CVSS {result['cvss']['base_score']} {result['cvss']['rating']}")
    for note in result["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"advisory: {result['output']} (evidence {result['evidence_id']})")


@app.command("check")
def check(
    advisory: Path = typer.Argument(..., help="advisory.json (or a directory holding one)."),
    trust_root: Path = TRUST_ROOT,
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Completeness gate: re-verify every linked item; exit 1 naming each missing or failing one."""
    from ringward.operations.advisories.advisory_ops import check_advisory

    with _store() as store:
        result = check_advisory(store, advisory=advisory, trust_root=trust_root, actor=_actor(actor), now=_now(at))
    if json_output:
        print_json(result)
    else:
        for item in result["items"]:
            mark = {"ok": "ok  ", "missing": "MISS", "failing": "FAIL", "not-linked": "-   ",
                    "not-checked": "n/c "}[item["status"]]
            typer.echo(f"{mark} {item['name']}{': ' + item['detail'] if item['detail'] else ''}")
        verdict = "PASSED" if result["passed"] else f"FAILED ({len(result['problems'])} problem(s))"
        typer.echo(f"{verdict}: advisory {result['advisory_id']} gate (evidence {result['evidence_id']})")
    if not result["passed"]:
        for problem in result["problems"]:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)


@app.command("publish")
def publish(
    advisory: Path = typer.Argument(..., help="advisory.json (or a directory holding one)."),
    signing_key: Path = typer.Option(..., "--signing-key", help="Ed25519 PEM of an advisory-role key pinned in "
                                     "the trust root."),
    trust_root: Path = TRUST_ROOT,
    output_dir: Path = typer.Option(..., "--output-dir", help="New directory for the signed advisory and exports."),
    deliver: Path | None = typer.Option(None, "--deliver", help="connectors.yaml: deliver the publication event."),
    provider: str = typer.Option("all", "--provider", help="Destination(s) of --deliver."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Sign with an advisory-role key; export OSV, GitHub-advisory JSON and the advisory text."""
    from ringward.core.advisories.gate import AdvisoryGateError
    from ringward.operations.advisories.advisory_ops import publish_advisory

    with _store() as store:
        try:
            result = publish_advisory(store, advisory=advisory, signing_key=signing_key, trust_root=trust_root,
                                      output_dir=output_dir, actor=_actor(actor), now=_now(at), deliver=deliver,
                                      provider=provider)
        except AdvisoryGateError as exc:
            for problem in exc.problems:
                typer.echo(f"gate: {problem}", err=True)
            raise
    if json_output:
        print_json(result)
    else:
        typer.echo(f"PUBLISHED: {result['advisory_id']} ({result['severity']}) as {result['osv_id']}, signed by "
                   f"{result['signer_key_id'][:16]} (evidence {result['evidence_id']})")
        if not result["gate_passed"]:
            typer.echo(f"warning: published with an incomplete gate ({len(result['gate_problems'])} problem(s)); "
                       "allowed below high severity", err=True)
        for path in result["files"]:
            typer.echo(f"  {path}")
    if "delivery" in result and not result["delivery"]["success"]:
        typer.echo("error: the publication event was not delivered to every destination", err=True)
        raise typer.Exit(1)
