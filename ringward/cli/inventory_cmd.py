"""`ringward inventory ...`: fleet truth -- ingest provider inventories, reconcile, freshness.

``ingest`` normalises a Jamf, Intune, Fleet, Linux (Ansible / collector) or EDR export into
``cavra.endpoint-observations.v1`` and records it (identical content is one record). ``reconcile``
verifies the package against the pinned trust root (never skipped), then compares its signed
endpoint deployment manifest with the observations: exit 0 aligned, 1 drift detected. ``freshness``
reports inventory age per scope, per host and per source and records state changes only.
Bad input exits 2 with one line naming the file, record and field; every decision is evidence.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Ingest fleet inventory, reconcile it against releases, check its freshness.",
)

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO-8601 UTC time; default now.")
ACTOR = typer.Option(None, "--actor", help="Who acts (default $RINGWARD_ACTOR, else the CI actor or OS user).")


def _now(at: str | None) -> datetime:
    from ringward.cli.trust_cmd import _time
    from ringward.operations.release.release_ops import utc_now

    parsed = _time(at, "--at")
    return parsed if parsed is not None else utc_now()


def _actor(actor: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return actor or default_actor()


def _emit(*events: Any) -> None:
    """Emit when a Prefect API is configured (the decision is already recorded; a failure is a warning)."""
    from flows.events import emit_if_configured

    for event in events:
        if event is None:
            continue
        warning = emit_if_configured(*event)
        if warning:
            typer.echo(f"warning: {warning}", err=True)


def _store() -> Any:
    from ringward.store import open_store

    return open_store()


@app.command("ingest")
def ingest(
    source: Path = typer.Argument(..., help="Provider export (JSON): Jamf computers-inventory, Graph managedDevices, "
                                  "Fleet hosts, Ansible facts, Falcon/Defender, or reference-style records."),
    provider: str = typer.Option(..., "--provider", help="jamf | intune | fleet | linux | edr"),
    channel: str | None = typer.Option(None, "--channel", help="Release channel these endpoints follow."),
    software: list[str] = typer.Option(["cavra-runtime"], "--software",
                                       help="Name of the runtime as the provider lists it (repeatable)."),
    observed_at: str | None = typer.Option(None, "--observed-at", help="Observation time (default: the payload's, "
                                           "else its newest clock, else now)."),
    output: Path | None = typer.Option(None, "--output", help="Directory for endpoint-inventory.json and the "
                                       "ingestion record (default ./endpoint-inventory/<inventory_id>)."),
    actor: str | None = ACTOR,
    reconcile_after: bool = typer.Option(False, "--reconcile", help="Then reconcile against the channel's current "
                                         "release and, on drift, open or attach to a remediation request (in-process; "
                                         "what the inventory-automation-on-ingest deployment runs). Exit 1 on drift."),
    trust_root: Path | None = typer.Option(None, "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                                           help="With --reconcile: pinned trust root (default "
                                           "<home>/trust-root.json)."),
    signing_key: Path | None = typer.Option(None, "--signing-key", envvar="RINGWARD_REMEDIATION_KEY",
                                            help="With --reconcile: remediation-role key (default "
                                            "<home>/remediation-key.pem)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Normalise a provider export into endpoint observations and record it."""
    from ringward.cli.trust_cmd import _time
    from ringward.operations.inventory.ingest import ingest_inventory

    with _store() as store:
        result = ingest_inventory(store, source=source, provider=provider, channel=channel,
                                  software=tuple(software), observed_at=_time(observed_at, "--observed-at"),
                                  output=output, actor=_actor(actor), now=_now(at))
        if reconcile_after:
            from ringward import settings
            from ringward.operations.remediation.automation import automate_reconciliation, remediation_key_path

            # an identical re-ingest reconciles too: the automation answers a repeat from its record
            result["automation"] = automate_reconciliation(
                store, inventory_id=result["inventory_id"], now=_now(at),
                trust_root=trust_root or settings.trust_root_path(),
                signing_key=signing_key or remediation_key_path(), packages=settings.packages_path())
    from ringward.operations.inventory.events import ingested_event

    _emit(ingested_event(result))
    automated = result.get("automation")
    drift = bool(automated and automated.get("drift_status") == "drift_detected")
    if json_output:
        print_json(result)
        if drift:
            raise typer.Exit(1)
        return
    verb = "INGESTED" if result["status"] == "ingested" else "ALREADY INGESTED"
    typer.echo(f"{verb}: {result['inventory_id']} {result['provider']} ({result['endpoint_count']} endpoints, "
               f"{len(result['deployment_targets'])} targets, observed {result['observed_at']})")
    for warning in result["warnings"][:20]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"observations: {result['observations']} (evidence {result['evidence']['evidence_id']})")
    if automated:
        typer.echo(f"AUTOMATION {automated['status'].upper()}: {automated['message']}")
    if drift:
        raise typer.Exit(1)


@app.command("reconcile")
def reconcile(
    package_dir: Path = typer.Argument(..., help="The release package directory (verified first, always)."),
    observations: Path = typer.Argument(..., help="Observations file (cavra.endpoint-observations.v1)."),
    trust_root: Path = typer.Option(..., "--trust-root", envvar="RINGWARD_TRUST_ROOT",
                                    help="Pinned trust root; env RINGWARD_TRUST_ROOT."),
    stale_after: str = typer.Option("24h", "--stale-after", help="An observation older than this is stale (>= 1h)."),
    output: Path | None = typer.Option(None, "--output", help="Directory for the report (default "
                                       "./endpoint-reconciliation/<reconciliation_id>-<report digest>)."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Reconcile observations against the package's signed endpoint deployment manifest (exit 1 on drift)."""
    from ringward.operations.inventory.common import parse_age
    from ringward.operations.inventory.reconcile import reconcile_inventory

    window = parse_age(stale_after, option="--stale-after")
    with _store() as store:
        result = reconcile_inventory(store, package_dir=package_dir, observations=observations, trust_root=trust_root,
                                     stale_after=window, output=output, actor=_actor(actor), now=_now(at))
    from ringward.operations.inventory.events import drift_event

    _emit(drift_event(result))
    if json_output:
        print_json(result)
    else:
        s = result["summary"]
        typer.echo(f"{result['drift_status'].upper()} ({result['alert_level']}): release {result['release']['version']}"
                   f", {s['observed_endpoint_count']} endpoints: {s['compliant_endpoint_count']} compliant, "
                   f"{s['drifted_endpoint_count']} drifted, {s['stale_endpoint_count']} stale; "
                   f"{s['missing_target_count']} missing / {s['unknown_target_count']} unknown targets")
        print_table(["target", "observed", "compliant", "version drift", "binary drift", "stale"],
                    [[t["deployment_target"], t["observed_endpoint_count"], t["compliant_endpoint_count"],
                      t["version_drift_count"], t["binary_drift_count"], t["stale_endpoint_count"]]
                     for t in s["targets"]])
        typer.echo(f"report: {result['report']} (evidence {result['evidence']['evidence_id']})")
    if result["drift_status"] != "aligned":
        raise typer.Exit(1)


@app.command("freshness")
def freshness(
    provider: str | None = typer.Option(None, "--provider", help="Only this provider."),
    channel: str | None = typer.Option(None, "--channel", help="Only this channel."),
    deployment_target: str | None = typer.Option(None, "--deployment-target", help="Only this deployment target."),
    max_age: str = typer.Option("24h", "--max-age", help="Older than this is a warning (>= 1h)."),
    critical_age: str = typer.Option("48h", "--critical-age", help="Older than this is critical (>= --max-age)."),
    scope_threshold: list[str] = typer.Option([], "--scope-threshold",
                                              help="PROVIDER[/CHANNEL[/TARGET]]=MAX,CRITICAL for one scope "
                                                   "(repeatable; * matches anything; most specific wins)."),
    max_records: int = typer.Option(5000, "--max-records", help="Newest ingestion records read."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Inventory age per scope, host and source; records the report, and state changes only."""
    from ringward.core.inventory.freshness import Thresholds, parse_scope_rule
    from ringward.operations.inventory.common import parse_age
    from ringward.operations.inventory.freshness import evaluate_freshness

    thresholds = Thresholds(parse_age(max_age, option="--max-age"), parse_age(critical_age, option="--critical-age"))
    rules = tuple(parse_scope_rule(text) for text in scope_threshold)
    with _store() as store:
        result = evaluate_freshness(store, now=_now(at), actor=_actor(actor), thresholds=thresholds, rules=rules,
                                    provider=provider, channel=channel, deployment_target=deployment_target,
                                    max_records=max_records)
    from ringward.operations.inventory.events import freshness_events

    _emit(*freshness_events(result))
    if json_output:
        print_json({k: v for k, v in result.items() if k != "report"})
        return
    typer.echo(f"{result['alert_level'].upper()}: {result['summary']['scope_count']} scopes, "
               f"{result['summary']['silent_source_count']} silent sources, "
               f"{result['summary']['stale_host_count']} hosts with stale inventory (report {result['report_id']})")
    print_table(["scope", "observed at", "age h", "severity", "stale hosts"],
                [[f"{r['provider']}/{r['channel']}/{r['deployment_target']}", r["observed_at"], r["age_hours"],
                  r["severity"], "-" if r["hosts"] is None else r["hosts"]["inventory_warning_count"]
                  + r["hosts"]["inventory_critical_count"]] for r in result["latest_ingestions"]])
    for alert in result["alerts"]:
        typer.echo(f"{alert['severity']}: {alert['message']}")
    for change in result["changes"]:
        typer.echo(f"state change: {change['state']} {change['from']} -> {change['to']}")
    typer.echo(f"evidence {result['evidence']['evidence_id']}")


@app.command("pull")
def pull(
    provider: str = typer.Option(..., "--provider", help="jamf | intune | fleet"),
    config: Path = typer.Option(..., "--config", envvar="RINGWARD_CONNECTORS",
                                help="Connector configuration naming the source (url, secret references)."),
    source: str | None = typer.Option(None, "--source", help="Destination name of the source when several match."),
    channel: str | None = typer.Option(None, "--channel", help="Release channel these endpoints follow."),
    software: list[str] = typer.Option(["cavra-runtime"], "--software",
                                       help="Name of the runtime as the provider lists it (repeatable)."),
    full: bool = typer.Option(False, "--full", help="Read the whole fleet, not only hosts changed since the cursor."),
    full_every: str = typer.Option("24h", "--full-every", help="A full read at least this often (deleted devices)."),
    page_size: int | None = typer.Option(None, "--page-size", help="Hosts per page (default 200 jamf, 100 others)."),
    max_hosts: int = typer.Option(1_000_000, "--max-hosts", help="Refuse a fleet larger than this."),
    actor: str | None = ACTOR,
    at: str | None = AT,
    json_output: bool = JSON,
    use_prefect: bool = typer.Option(False, "--prefect", help="Run as a tracked Prefect flow run (inventory-pull)."),
) -> None:
    """Pull a fleet from Jamf Pro, Intune (Graph) or Fleet and ingest it (incremental after the first read)."""
    from ringward.operations.inventory.common import parse_age

    every = parse_age(full_every, option="--full-every")
    now = _now(at)
    if use_prefect:
        from flows._common import run_flow
        from flows.inventory_pull import inventory_pull_flow

        result = run_flow(inventory_pull_flow, provider=provider, config_path=str(config.absolute()), source=source,
                          channel=channel, software=list(software), full=full, full_every=full_every,
                          page_size=page_size, max_hosts=max_hosts, actor=_actor(actor), now=now)
    else:
        from ringward.cli.connectors_cmd import _lookups
        from ringward.operations.delivery.delivery_ops import load_connector_config
        from ringward.operations.inventory.events import ingested_event
        from ringward.operations.inventory.pull_ops import pull_inventory

        lookups = _lookups(load_connector_config(config))  # Prefect Secret blocks only when referenced
        with _store() as store:
            result = pull_inventory(store, config_path=config, provider=provider, now=now, actor=_actor(actor),
                                    lookups=lookups, source=source, channel=channel, software=tuple(software),
                                    full=full, full_every=every, page_size=page_size, max_hosts=max_hosts)
        _emit(ingested_event(result["ingestion"]))
    if json_output:
        print_json(result)
        return
    ingestion = result["ingestion"]
    verb = "INGESTED" if ingestion["status"] == "ingested" else "UNCHANGED"
    typer.echo(f"PULLED: {result['provider']}/{result['source']} {result['mode']}, {result['page_count']} pages, "
               f"{result['hosts_fetched']} hosts pulled, fleet {result['host_count']} -> {verb} "
               f"{result['inventory_id']} ({ingestion['endpoint_count']} endpoints)")
    typer.echo(f"cursor: {result['cursor']['before'] or '-'} -> {result['cursor']['after'] or '-'}; "
               f"observations: {result['observations']} (evidence {result['evidence']['evidence_id']})")
    for warning in (result["warnings"] + ingestion["warnings"])[:20]:
        typer.echo(f"warning: {warning}", err=True)


@app.command("recover-webhooks")
def recover_webhooks(
    config: Path | None = typer.Option(None, "--config", envvar="RINGWARD_WEBHOOKS",
                                       help="Webhook receiver configuration (default <RINGWARD_HOME>/webhooks.yaml): "
                                       "its output_root and per-source software names."),
    include_dispatched: bool = typer.Option(False, "--include-dispatched",
                                            help="Also re-ingest receipts handed to Prefect whose flow run never "
                                            "finished them (harmless: ingestion is content-addressed)."),
    limit: int = typer.Option(1000, "--limit", min=1, max=100000, help="Most receipts handled in one run."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Ingest signed-webhook bodies a crash left un-ingested, from the stored raw body (re-running is a no-op).

    Exit 1 when a receipt's stored body is missing or altered (it stays open and is listed)."""
    from ringward.operations.inventory.webhook_ops import load_receiver
    from ringward.operations.inventory.webhook_ops import recover_webhooks as recover

    receiver = load_receiver(config)
    with _store() as store:
        result = recover(store, receiver, now=_now(at), include_dispatched=include_dispatched, limit=limit)
    if json_output:
        print_json(result)
        raise typer.Exit(1 if result["error"] else 0)
    typer.echo(f"RECOVERED: {result['recovered']} receipts ({result['ingested']} ingested, {result['rejected']} "
               f"rejected, {result['error']} errors)")
    if result["receipts"]:
        print_table(["receipt", "status", "inventory / reason"],
                    [[r["receipt_id"], r["status"], r.get("inventory_id") or r.get("reason", "")[:100]]
                     for r in result["receipts"]])
    if result["error"]:
        raise typer.Exit(1)
