"""`ringward sla ...`: remediation SLA report, notifications, escalation, acknowledgements, silences,
owner reviews, incidents fed to the engine, owner digests, suppression trends, health, history and
dashboard.

Every command that decides takes ``--at`` (ISO 8601 with offset) so a scenario can be replayed in
virtual time. Exit codes: 0 done; 1 a send failed, an acknowledgement or review was refused or the
state forbids it, health is critical; 2 bad input (unreadable or invalid files, unknown group, bad
matcher, time without offset, no Prefect API for ``health``). The HTTP routes
(``POST /sla/acknowledgements``, ``POST /sla/reviews``, ``POST /webhooks/sla/acknowledgements``)
are not part of this command group.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json, print_table
from ringward.core.errors import InputError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Remediation SLA: report, notify, escalate, acknowledge, review, silence, incidents, digest, trends, "
    "health, history, dashboard.",
)
silence_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Silence alerts by matchers.")
app.add_typer(silence_app, name="silence")

JSON = typer.Option(False, "--json", help="Print the stable machine-readable result.")
AT = typer.Option(None, "--at", help="Act as of this ISO 8601 time with offset (default now).")
POLICY = typer.Option(..., "--policy", help="The SLA routing policy (routing.yaml).")
CONFIG = typer.Option(..., "--config", help="The connector configuration (connectors.yaml).")
REPORT = typer.Argument(..., help="An SLA report JSON (cavra.endpoint-remediation-sla-report.v1).")


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"--at: expected an ISO 8601 time such as 2026-03-09T14:00:00Z, found {value!r}") from None
    if parsed.utcoffset() is None:
        raise InputError(f"--at: {value!r} has no UTC offset (append Z or +hh:mm)")
    return parsed.astimezone(UTC)


def _hours(value: str, option: str) -> float:
    from ringward.core.sla.policy import parse_duration

    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return parse_duration(text, allow_zero=False) / timedelta(hours=1)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _actor(value: str | None) -> str:
    from ringward.operations.release.release_ops import default_actor

    return value or default_actor()


@app.command("report")
def report(
    inputs: list[Path] = typer.Argument(None, help="Handoff / handoff-status JSON files or directories."),
    handoffs: list[Path] = typer.Option([], "--handoffs", help="A directory or file of handoffs and statuses."),
    warning: str = typer.Option("24h", "--warning", help="At risk after this age (24h; a number is hours)."),
    critical: str = typer.Option("48h", "--critical", help="Breached after this age (48h)."),
    at: str | None = AT,
    output: Path | None = typer.Option(None, "--output", help="Write the report JSON here (atomically)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Append the report to the evidence chain."),
    generated_by: str | None = typer.Option(None, "--generated-by"),
    json_output: bool = JSON,
) -> None:
    """Build the remediation SLA report (critical first by rank, then the oldest)."""
    from ringward.operations.sla import sla_ops

    paths = [*(inputs or []), *handoffs]
    if not paths:
        raise InputError("handoffs: give handoff files or directories (arguments or --handoffs)")
    now = _at(at)
    kwargs: dict[str, Any] = {
        "now": now,
        "warning_hours": _hours(warning, "--warning"),
        "critical_hours": _hours(critical, "--critical"),
        "generated_by": _actor(generated_by),
        "output": output,
    }
    if record:
        from ringward.store import open_store

        with open_store() as store:
            built = sla_ops.make_report(paths, store=store, **kwargs)
    else:
        built = sla_ops.make_report(paths, **kwargs)
    if json_output:
        print_json(sla_ops.report_document(built))
        return
    for warning_text in built.warnings:
        typer.echo(f"warning: {warning_text}", err=True)
    rows = [
        (
            w.severity.value,
            w.sla_state.value,
            w.handoff_id,
            w.provider,
            w.status,
            f"{w.age_hours:.1f}",
            f"{w.overdue_hours:.1f}",
        )
        for w in built.work_items
    ]
    print_table(["severity", "sla", "handoff", "provider", "status", "age h", "overdue h"], rows)
    s = built.executive_summary
    typer.echo(
        f"{built.alert_level.value.upper()}: {built.report_id}: {s.breached_count} breached, "
        f"{s.at_risk_count} at risk, {s.completed_count} completed of {s.tracked_work_item_count}"
    )


def _cycle(report_path: Path, policy: Path, config: Path, at: str | None, kinds: Any, json_output: bool) -> None:
    from ringward.cli.connectors_cmd import _lookups
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    loaded_policy = sla_ops.load_policy(policy)
    loaded_config = sla_ops.load_config(config)
    loaded_report = sla_ops.load_report(report_path)
    now = _at(at)
    with open_store() as store:
        # a manual run claims each send (never twice) but not the schedule window (the flow's)
        result = sla_ops.run_cycle(
            store,
            loaded_policy,
            loaded_report,
            loaded_config,
            now=now,
            kinds=kinds,
            claim_window=False,
            actor=_actor(None),
            lookups=_lookups(loaded_config),
        )
    summary = result.summary()
    if json_output:
        print_json(summary)
    else:
        rows = [
            (r["kind"], r["group_key"], r["receiver"], r["reason"], r.get("level") or "-", "sent")
            for r in summary["sent"]
        ]
        rows += [
            (r["kind"], r["group_key"], r["receiver"], r["reason"], r.get("level") or "-", "FAILED")
            for r in summary["failed"]
        ]
        if rows:
            print_table(["kind", "group", "receiver", "reason", "rung", "result"], rows)
        for s in result.plan.suppressions:
            typer.echo(f"suppressed  {s.group_key} {s.receiver or '-'} {s.subject}: {s.code.value}: {s.detail}")
        for w in result.plan.waiting:
            typer.echo(f"waiting     {w.group_key} {w.receiver}: {w.detail} (next {w.next_at.isoformat()})")
        for i in result.plan.incidents:
            ack = f", acknowledged by {i.acknowledged_by}" if i.acknowledged_by else ""
            typer.echo(
                f"incident    {i.group_key} owner {i.owner}: {i.state.value}{ack}, rung {i.level or '-'}, "
                f"ack SLO {i.acknowledgement_slo_state.value}"
            )
        typer.echo(
            f"{len(summary['sent'])} sent, {len(summary['failed'])} failed, "
            f"{len(result.plan.suppressions)} suppressed (evidence {summary['plan_evidence_id']})"
        )
    if summary["failed"]:
        raise typer.Exit(1)


@app.command("notify")
def notify(
    report_path: Path = REPORT,
    policy: Path = POLICY,
    config: Path = CONFIG,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Send the group notifications due now (Alertmanager grouping, dedup, silences)."""
    from ringward.core.sla.history import NotificationKind

    _cycle(report_path, policy, config, at, (NotificationKind.GROUP,), json_output)


@app.command("escalate")
def escalate(
    report_path: Path = REPORT,
    policy: Path = POLICY,
    config: Path = CONFIG,
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Deliver the escalation rungs due now and show every open incident."""
    from ringward.core.sla.history import NotificationKind

    _cycle(report_path, policy, config, at, (NotificationKind.ESCALATION,), json_output)


def _decision_report(store: Any, policy: Any, group: str, report_path: Path | None, now: datetime) -> Any:
    """The report a decision is taken against: ``--report`` for the remediation scope (required
    there), the live incident clocks or the newest health evaluation for the other scopes."""
    from ringward.core.errors import NotFoundError
    from ringward.operations.sla import sla_ops

    try:
        scoped, _, _ = sla_ops.resolve(policy, group)
    except NotFoundError as exc:  # at the CLI an unknown group is bad input (exit 2)
        if report_path is not None:
            sla_ops.load_report(report_path)  # an unreadable report is named first
        raise InputError(exc.message) from None
    if scoped.scope == policy.scope:
        if report_path is None:
            raise InputError("--report: required for a group of the remediation scope (the current SLA report JSON)")
        return sla_ops.load_report(report_path)
    if report_path is not None:
        raise InputError(f"--report: not used for scope {scoped.scope} (decided against its live state)")
    return sla_ops.current_report(store, policy, scoped.scope, now=now)


@app.command("ack")
def ack(
    group: str = typer.Argument(..., help="The route id (or <scope>/<route id>) whose incident is decided."),
    report_path: Path | None = typer.Option(
        None, "--report", help="The current SLA report JSON (remediation groups; incident groups use live clocks)."
    ),
    policy: Path = POLICY,
    state: str = typer.Option("acknowledged", "--state", help="acknowledged | escalated | resolved | dismissed"),
    by: str = typer.Option(..., "--by", help="Who decides: the route's owner, a member, or an admin."),
    comment: str | None = typer.Option(None, "--comment"),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Acknowledge, escalate, resolve or dismiss a group's incident."""
    from ringward.core.sla.acks import AcknowledgementRefused
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    loaded_policy = sla_ops.load_policy(policy)
    now = _at(at)
    with open_store() as store:
        loaded_report = _decision_report(store, loaded_policy, group, report_path, now)
        try:
            payload = sla_ops.acknowledge(
                store, loaded_policy, loaded_report, group=group, state=state, by=by, at=now, comment=comment
            )
        except AcknowledgementRefused as exc:
            typer.echo(f"error: {exc.message} (the refusal is recorded)", err=True)
            raise typer.Exit(1) from None
    if json_output:
        print_json(payload)
    else:
        state, group_key = payload["acknowledgement_state"].upper(), payload["group_key"]
        typer.echo(f"{state}: {group_key} by {payload['acknowledged_by']} ({payload['acknowledgement_id']})")


@silence_app.command("add")
def silence_add(
    matchers: list[str] = typer.Argument(..., help="name=value, name!=value, name=~regex (owner, provider, ...)."),
    policy: Path = POLICY,
    duration: str | None = typer.Option(None, "--duration", help="How long from --starts-at (2h, 1d)."),
    ends_at: str | None = typer.Option(None, "--ends-at", help="End (ISO 8601 with offset)."),
    starts_at: str | None = typer.Option(None, "--starts-at", help="Start (default --at)."),
    comment: str = typer.Option(..., "--comment", help="Why."),
    by: str | None = typer.Option(None, "--by"),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Silence the alerts the matchers select (recorded; suppressed sends are recorded too)."""
    from ringward.core.sla.policy import parse_duration
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    now = _at(at)
    start = _at(starts_at) if starts_at else now
    if (duration is None) == (ends_at is None):
        raise InputError("silence: give exactly one of --duration or --ends-at")
    if duration is not None:
        try:
            end = start + parse_duration(duration, allow_zero=False)
        except ValueError as exc:
            raise InputError(f"--duration: {exc}") from None
    else:
        end = _at(ends_at)
    scope = sla_ops.load_policy(policy).scope
    with open_store() as store:
        event = sla_ops.add_silence(
            store, scope, matchers, starts_at=start, ends_at=end, by=_actor(by), comment=comment, at=now
        )
    if json_output:
        print_json(event.model_dump(mode="json"))
    else:
        typer.echo(f"SILENCED: {event.silence_id} until {end.isoformat()}")


@silence_app.command("list")
def silence_list(policy: Path = POLICY, at: str | None = AT, json_output: bool = JSON) -> None:
    """List silences with their state (pending, active, expired)."""
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    scope = sla_ops.load_policy(policy).scope
    with open_store() as store:
        rows = sla_ops.list_silences(store, scope, now=_at(at))
    if json_output:
        print_json({"silences": rows})
        return
    print_table(
        ["id", "state", "matchers", "ends at", "by", "comment"],
        [
            (r["silence_id"], r["state"], " ".join(r["matchers"]), r["ends_at"], r["created_by"], r["comment"][:60])
            for r in rows
        ],
    )


@silence_app.command("expire")
def silence_expire(
    silence_id: str = typer.Argument(...),
    policy: Path = POLICY,
    by: str | None = typer.Option(None, "--by"),
    at: str | None = AT,
) -> None:
    """End a silence now (its alerts are sent on the next cycle)."""
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store

    scope = sla_ops.load_policy(policy).scope
    with open_store() as store:
        sla_ops.expire_silence(store, scope, silence_id, by=_actor(by), at=_at(at))
    typer.echo(f"EXPIRED: {silence_id}")


@app.command("review")
def review(
    group: str = typer.Argument(..., help="The route id (or <scope>/<route id>) whose open incident is reviewed."),
    policy: Path = POLICY,
    state: str = typer.Option(..., "--state", help="accepted | deferred | resolved | false_positive | escalated"),
    by: str = typer.Option(..., "--by", help="The reviewer: the route's owner, a member, or an admin."),
    report_path: Path | None = typer.Option(None, "--report", help="The current SLA report (remediation groups)."),
    plan_id: str | None = typer.Option(None, "--plan-id", help="The open incident's id (erslaesc-...); checked."),
    owner: str | None = typer.Option(None, "--owner", help="The route's owner (checked when given)."),
    provider: str | None = typer.Option(None, "--provider", help="A receiver of the route (default: all)."),
    until: str | None = typer.Option(None, "--until", help="deferred: until when (ISO 8601 with offset)."),
    defer: str | None = typer.Option(None, "--for", help="deferred: for how long (4h, 1d), instead of --until."),
    external_ref: str | None = typer.Option(None, "--external-ref"),
    comment: str | None = typer.Option(None, "--notes", "--comment"),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Record the owner's review of an escalated incident (§9.11) and apply its effect."""
    from ringward.core.sla.acks import AcknowledgementRefused
    from ringward.core.sla.policy import parse_duration
    from ringward.operations.sla import oversight_ops, sla_ops
    from ringward.store import open_store

    now = _at(at)
    if until is not None and defer is not None:
        raise InputError("review: give at most one of --until or --for")
    end = _at(until) if until is not None else None
    if defer is not None:
        try:
            end = now + parse_duration(defer, allow_zero=False)
        except ValueError as exc:
            raise InputError(f"--for: {exc}") from None
    loaded_policy = sla_ops.load_policy(policy)
    with open_store() as store:
        loaded_report = _decision_report(store, loaded_policy, group, report_path, now)
        try:
            record, _ = oversight_ops.review(
                store, loaded_policy, loaded_report, group=group, state=state, by=by, at=now, plan_id=plan_id,
                owner=owner, provider=provider, until=end, external_ref=external_ref, comment=comment,
            )
        except AcknowledgementRefused as exc:
            typer.echo(f"error: {exc.message} (the refusal is recorded)", err=True)
            raise typer.Exit(1) from None
    if json_output:
        print_json(record)
        return
    until_text = f" until {record['deferred_until']}" if record["deferred_until"] else ""
    typer.echo(
        f"{record['review_state'].upper()}{until_text}: {record['group_key']} ({record['plan_id']}) by "
        f"{record['reviewed_by']}; effect {record['effect']} ({record['review_id']})"
    )


@app.command("incidents")
def incidents(
    policy: Path = POLICY,
    config: Path | None = typer.Option(None, "--config", help="Connector config; without it nothing is sent."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Feed open incidents' response clocks to the engine: notify and escalate them (with --config),
    or show the incident work items and what would happen (without)."""
    from ringward.core.sla.engine import plan
    from ringward.operations.sla import sla_ops
    from ringward.store import open_store
    from ringward.store.sla.ledger import SlaLedger

    loaded_policy = sla_ops.load_policy(policy)
    if loaded_policy.incident_policy is None:
        raise InputError(f"{policy}: no incidents section; add one to feed incidents to the SLA engine")
    now = _at(at)
    with open_store() as store:
        if config is None:
            report = sla_ops.incident_report_now(store, loaded_policy, now=now)
            scoped = loaded_policy.incident_policy
            preview = plan(SlaLedger(store).history(scoped.scope), scoped, report, now)
            body = {"report": sla_ops.report_document(report), "plan": preview.model_dump(mode="json")}
            if json_output:
                print_json(body)
                return
            rows = [(w.severity.value, w.handoff_id, w.provider, w.incident_type, w.incident_severity, w.status,
                     w.recommended_action) for w in report.work_items]
            print_table(["severity", "incident", "clock", "type", "incident severity", "state", "action"], rows)
            typer.echo(f"{len(preview.notifications)} notification(s) due, {len(preview.incidents)} open SLA "
                       "incident(s) (dry run: give --config to send)")
            return
        from ringward.cli.connectors_cmd import _lookups

        loaded_config = sla_ops.load_config(config)
        _, result = sla_ops.run_incident_cycle(store, loaded_policy, loaded_config, now=now, claim_window=False,
                                               actor=_actor(None), lookups=_lookups(loaded_config))
    summary = result.summary()
    if json_output:
        print_json(summary)
    else:
        for row in summary["sent"]:
            typer.echo(f"sent        {row['kind']} {row['group_key']} -> {row['receiver']}: {row['reason']}")
        for row in summary["failed"]:
            typer.echo(f"FAILED      {row['kind']} {row['group_key']} -> {row['receiver']}: {row['error']}")
        typer.echo(f"{len(summary['sent'])} sent, {len(summary['failed'])} failed, "
                   f"{len(summary['suppressed'])} suppressed (evidence {summary['plan_evidence_id']})")
    if summary["failed"]:
        raise typer.Exit(1)


def _duration(value: str, option: str) -> timedelta:
    from ringward.core.sla.policy import parse_duration

    try:
        return parse_duration(value, allow_zero=False)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


@app.command("digest")
def digest(
    policy: Path = POLICY,
    report_path: Path | None = typer.Option(None, "--report", help="Remediation report (default: newest recorded)."),
    window: str = typer.Option("24h", "--window", help="Digest window: one digest per owner per window."),
    deliver: bool = typer.Option(False, "--deliver", help="Send each owner's digest to the owner's receivers."),
    config: Path | None = typer.Option(None, "--config", help="Connector config (with --deliver)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Open escalations per owner across every scope (§9.14 owner digest)."""
    from ringward.operations.sla import oversight_ops, sla_ops
    from ringward.store import open_store

    loaded_policy = sla_ops.load_policy(policy)
    report = sla_ops.load_report(report_path) if report_path else None
    now = _at(at)
    if deliver and config is None:
        raise InputError("--deliver: give the connector config (--config)")
    with open_store() as store:
        if deliver:
            from ringward.cli.connectors_cmd import _lookups

            assert config is not None
            loaded_config = sla_ops.load_config(config)
            result = oversight_ops.deliver_digest(store, loaded_policy, loaded_config, now=now, report=report,
                                                  window=_duration(window, "--window"), actor=_actor(None),
                                                  lookups=_lookups(loaded_config))
        else:
            result = oversight_ops.digest(store, loaded_policy, now=now, report=report,
                                          window=_duration(window, "--window"))
    if json_output:
        print_json(result)
    else:
        rows = [(o["owner"], o["route_count"], o["triggered_count"], o["acknowledged_count"],
                 o["acknowledgement_breach_count"], o["retry_count"], ", ".join(o["providers"]))
                for o in result["owners"]]
        print_table(["owner", "open", "unacknowledged", "acknowledged", "ack SLO breached", "retries", "receivers"],
                    rows)
        typer.echo(f"{result['alert_level'].upper()}: {result['digest_id']}: "
                   f"{result['summary']['unresolved_route_count']} open escalation(s) for "
                   f"{result['summary']['owner_count']} owner(s)")
        if deliver:
            typer.echo(f"{len(result['sent'])} digest(s) sent, {len(result['failed'])} failed, "
                       f"{len(result['skipped'])} skipped")
    if deliver and result["failed"]:
        raise typer.Exit(1)


@app.command("trends")
def trends(
    policy: Path | None = typer.Option(None, "--policy", help="Routing policy (to name owners)."),
    since: str = typer.Option("7d", "--since", help="How far back from --at (7d)."),
    bucket: str = typer.Option("1d", "--bucket", help="Bucket size (1d, 1h)."),
    record: bool = typer.Option(False, "--record", help="Append the trend to the evidence chain."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Suppression trends of the recorded SLA cycles, per bucket and category (§9.14)."""
    from ringward.operations.sla import oversight_ops, sla_ops
    from ringward.store import open_store

    loaded_policy = sla_ops.load_policy(policy) if policy else None
    with open_store() as store:
        result = oversight_ops.trends(store, loaded_policy, now=_at(at), since=_duration(since, "--since"),
                                      bucket=_duration(bucket, "--bucket"), record=record)
    if json_output:
        print_json(result)
        return
    print_table(["bucket", "total", "categories"],
                [(b["start"], b["total"], ", ".join(f"{k} {v}" for k, v in b["categories"].items()))
                 for b in result["buckets"]])
    for category, change in result["direction"].items():
        typer.echo(f"{category}: {change['previous']} -> {change['latest']} ({change['direction']})")
    typer.echo(f"{result['suppression_event_count']} suppression event(s) from {result['observation_count']} "
               f"observation(s) ({result['trend_id']})")


@app.command("health")
def health(
    policy: Path = POLICY,
    prefect_api: str | None = typer.Option(None, "--prefect-api", help="Prefect API URL (default $PREFECT_API_URL)."),
    lookback: str = typer.Option("1h", "--lookback", help="Failed runs and sends counted over this window."),
    expected: str | None = typer.Option(None, "--expected-interval", help="Schedule interval (policy health)."),
    deliver: bool = typer.Option(False, "--deliver", help="Notify the alerts (policy health.receivers)."),
    config: Path | None = typer.Option(None, "--config", help="Connector config (with --deliver)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Append the evaluation to the evidence chain."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Health of the SLA deployments from their Prefect flow-run states (missed, late, failed runs),
    failing sends and stale evaluations; a stable health id per condition. Exit 1 when critical."""
    from ringward.operations.common.prefect_rest import PrefectRest, prefect_api_url_from_env
    from ringward.operations.sla import health_ops, sla_ops
    from ringward.store import open_store

    url = prefect_api or prefect_api_url_from_env()
    if not url:
        raise InputError("--prefect-api: no Prefect API (set PREFECT_API_URL or pass --prefect-api URL)")
    if deliver and config is None:
        raise InputError("--deliver: give the connector config (--config)")
    loaded_policy = sla_ops.load_policy(policy)
    now = _at(at)
    with open_store() as store, PrefectRest(url) as rest:
        interval = _duration(expected, "--expected-interval") if expected else None
        result = health_ops.check_health(store, loaded_policy, rest, now=now,
                                         lookback=_duration(lookback, "--lookback"), expected_interval=interval,
                                         record=record)
        delivered: dict[str, Any] | None = None
        if deliver:
            from ringward.cli.connectors_cmd import _lookups

            assert config is not None
            loaded_config = sla_ops.load_config(config)
            cycle = health_ops.deliver_health(store, loaded_policy, result, loaded_config, now=now,
                                              lookups=_lookups(loaded_config))
            delivered = cycle.summary()
            result["delivery"] = {k: delivered[k] for k in ("sent", "failed", "suppressed", "waiting")}
    if json_output:
        print_json(result)
    else:
        for alert in result["alerts"]:
            typer.echo(f"{alert['level'].upper():8} {alert['category']:18} {alert['message']}")
        if delivered is not None:
            typer.echo(f"{len(delivered['sent'])} alert notification(s) sent, {len(delivered['failed'])} failed, "
                       f"{len(delivered['suppressed'])} suppressed")
        typer.echo(f"{result['alert_level'].upper()}: {result['health_id']}")
    if result["alert_level"] == "critical" or (delivered is not None and delivered["failed"]):
        raise typer.Exit(1)


@app.command("history")
def history(
    scope: list[str] = typer.Option([], "--scope", help="Scopes (default: every scope)."),
    kind: list[str] = typer.Option([], "--kind", help="sent-ok, send-failed, ack, ack-refused, silence, ..."),
    group: str | None = typer.Option(None, "--group", help="A group key (<scope>/<route>)."),
    receiver: str | None = typer.Option(None, "--receiver"),
    by: str | None = typer.Option(None, "--by", help="Who acknowledged, reviewed or silenced."),
    since: str | None = typer.Option(None, "--since", help="From this time (ISO 8601 with offset)."),
    until: str | None = typer.Option(None, "--until", help="Before this time."),
    limit: int = typer.Option(50, "--limit", help="Page size (1..500)."),
    offset: int = typer.Option(0, "--offset"),
    before_id: int | None = typer.Option(None, "--before-id", help="Keyset cursor for deep pages."),
    json_output: bool = JSON,
) -> None:
    """The SLA ledger newest first: sends, failures, acknowledgements, reviews, refusals, silences."""
    from ringward.operations.sla import oversight_ops
    from ringward.store import open_store

    with open_store() as store:
        result = oversight_ops.history(
            store, scopes=scope or None, kinds=kind or None, group=group, receiver=receiver, actor=by,
            since=_at(since) if since else None, until=_at(until) if until else None, limit=limit, offset=offset,
            before_id=before_id,
        )
    if json_output:
        print_json(result)
        return
    rows = [(r["id"], r["at"], r["kind"], r["group_key"] or "-", r.get("receiver") or r.get("by") or "-",
             r.get("reason") or r.get("review_state") or r.get("state") or r.get("silence_id") or "-")
            for r in result["items"]]
    print_table(["id", "at", "kind", "group", "receiver / by", "detail"], rows)
    typer.echo(f"{len(result['items'])} of {result['total']}")


@app.command("dashboard")
def dashboard(
    policy: Path | None = typer.Option(None, "--policy", help="Routing policy (its scopes)."),
    scope: list[str] = typer.Option([], "--scope", help="Scopes (default: the policy's, else endpoint-remediation)."),
    at: str | None = AT,
    json_output: bool = JSON,
) -> None:
    """Deliveries per receiver, failing receivers, outstanding acknowledgements, open escalations per owner."""
    from ringward.operations.sla import oversight_ops, sla_ops
    from ringward.store import open_store

    scopes = list(scope) or (list(sla_ops.load_policy(policy).scopes) if policy else ["endpoint-remediation"])
    with open_store() as store:
        result = oversight_ops.dashboard(store, scopes=scopes, now=_at(at))
    if json_output:
        print_json(result)
        return
    print_table(["scope", "receiver", "total", "ok", "failed", "last delivery", "failing"],
                [(r["scope"], r["receiver"], r["total"], r["success"], r["failed"], r["last_delivery_at"] or "-",
                  "yes" if r["failing"] else "") for r in result["receivers"]])
    for owner, rows in result["open_incidents_by_owner"].items():
        for i in rows:
            typer.echo(f"open        {owner}: {i['group_key']} {i['state']} rung {i['level'] or '-'}")
    for line in result["alerts"]:
        typer.echo(f"alert       {line}")
    typer.echo(f"{result['alert_level'].upper()}: {result['deliveries']['total']} send(s), "
               f"{result['outstanding_acknowledgement_count']} unacknowledged")
