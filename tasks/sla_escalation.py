"""Prefect tasks of the SLA escalation flow: evaluate -> notify (route + deliver) -> escalate ->
record. Each wraps :mod:`ringward.operations.sla.sla_ops`; no caching (every run reads the store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ringward.core.sla.history import NotificationKind
from ringward.core.sla.report import SlaReport
from ringward.operations.sla import sla_ops


def _flow_run_id() -> str | None:
    value = flow_run.get_id()
    return str(value) if value else None


def _lookups(config_path: str) -> Any:
    from ringward.core.delivery.config import config_to_json
    from tasks.delivery import prefect_secret_lookup

    config = sla_ops.load_config(Path(config_path))
    return {"prefect-secret": prefect_secret_lookup} if '"prefect-secret:' in config_to_json(config) else None


@task(name="sla-evaluate", cache_policy=NO_CACHE)
def sla_evaluate(
    handoffs: list[str], now: datetime, warning_hours: float, critical_hours: float, actor: str
) -> dict[str, Any]:
    """Build (and record) the SLA report at ``now``; returns its JSON document."""
    from ringward.store import open_store

    with open_store() as store:
        report = sla_ops.make_report(
            [Path(p) for p in handoffs],
            now=now,
            warning_hours=warning_hours,
            critical_hours=critical_hours,
            generated_by=actor,
            store=store,
            flow_run_id=_flow_run_id(),
        )
    return sla_ops.report_document(report)


def _cycle(
    report: dict[str, Any],
    policy_path: str,
    config_path: str,
    now: datetime,
    interval_minutes: int,
    kind: NotificationKind,
    claim_window: bool,
    actor: str,
) -> dict[str, Any]:
    from ringward.store import open_store

    policy = sla_ops.load_policy(Path(policy_path))
    config = sla_ops.load_config(Path(config_path))
    with open_store() as store:
        result = sla_ops.run_cycle(
            store,
            policy,
            SlaReport.model_validate(report),
            config,
            now=now,
            kinds=(kind,),
            interval=timedelta(minutes=interval_minutes),
            claim_window=claim_window,
            actor=actor,
            flow_run_id=_flow_run_id(),
            lookups=_lookups(config_path),
        )
    return result.summary()


@task(name="sla-notify", cache_policy=NO_CACHE)
def sla_notify(
    report: dict[str, Any], policy_path: str, config_path: str, now: datetime, interval_minutes: int, actor: str
) -> dict[str, Any]:
    """Take the schedule window's run key (CAS), then route and deliver the group notifications due."""
    return _cycle(report, policy_path, config_path, now, interval_minutes, NotificationKind.GROUP, True, actor)


@task(name="sla-escalate", cache_policy=NO_CACHE)
def sla_escalate(
    report: dict[str, Any], policy_path: str, config_path: str, now: datetime, interval_minutes: int, actor: str
) -> dict[str, Any]:
    """Deliver the escalation rungs due (each send claimed once; the window is already this run's)."""
    return _cycle(report, policy_path, config_path, now, interval_minutes, NotificationKind.ESCALATION, False, actor)


@task(name="sla-incidents", cache_policy=NO_CACHE)
def sla_incidents(
    policy_path: str, config_path: str, now: datetime, interval_minutes: int, actor: str
) -> dict[str, Any] | None:
    """Open incidents' clocks through the engine (their own scope and run key); None when the
    policy has no ``incidents`` section."""
    from ringward.store import open_store

    policy = sla_ops.load_policy(Path(policy_path))
    if policy.incident_policy is None:
        return None
    config = sla_ops.load_config(Path(config_path))
    with open_store() as store:
        report, result = sla_ops.run_incident_cycle(
            store,
            policy,
            config,
            now=now,
            interval=timedelta(minutes=interval_minutes),
            claim_window=True,
            actor=actor,
            flow_run_id=_flow_run_id(),
            lookups=_lookups(config_path),
        )
    return {**result.summary(), "breached": report.executive_summary.breached_count,
            "at_risk": report.executive_summary.at_risk_count}


@task(name="sla-owner-digest", cache_policy=NO_CACHE)
def sla_owner_digest(policy_path: str, report: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The owner digest over every scope at ``now`` (read-only: the artifact of the run)."""
    from ringward.operations.sla import oversight_ops
    from ringward.store import open_store

    policy = sla_ops.load_policy(Path(policy_path))
    with open_store() as store:
        return oversight_ops.digest(store, policy, now=now, report=SlaReport.model_validate(report))


def utc_now() -> datetime:
    return datetime.now(UTC)
