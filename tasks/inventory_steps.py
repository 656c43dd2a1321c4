"""Prefect tasks around the inventory operations: coarse (one per decision, each opening the store
once), no retries -- an ingestion, a reconciliation and a freshness evaluation are each one recorded
decision; re-running one is idempotent (ingestion by content id) or a new evaluation. The partition
tasks are the units a Dask task runner spreads across workers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from ringward.core.inventory.reconcile import DesiredState, Partial, merge
from ringward.operations.inventory import freshness as freshness_ops
from ringward.operations.inventory import ingest as ingest_ops
from ringward.operations.inventory import partitions, webhook_ops
from ringward.operations.inventory import reconcile as reconcile_ops
from ringward.operations.inventory.common import parse_age
from ringward.operations.inventory.engine import EngineResult
from tasks.promotion_channel import refusals_as_state


def _open_store() -> Any:
    from ringward.store import open_store

    return open_store()


@task(name="ingest-inventory", cache_policy=NO_CACHE)
@refusals_as_state
def ingest_inventory(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """Normalise and record one provider payload (``inventory ingest``)."""
    with _open_store() as store:
        return ingest_ops.ingest_inventory(
            store, source=Path(params["source"]), provider=params["provider"], channel=params.get("channel"),
            software=tuple(params.get("software") or ingest_ops.DEFAULT_SOFTWARE), now=now,
            actor=params.get("actor") or "inventory-flow",
            output=Path(params["output"]) if params.get("output") else None, flow_run_id=flow_run_id)


@task(name="ingest-webhook-receipt", cache_policy=NO_CACHE)
@refusals_as_state
def ingest_webhook_receipt(receipt_id: int, now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """Ingest the body a signed webhook delivered, from its stored receipt only."""
    with _open_store() as store:
        return webhook_ops.ingest_receipt_by_id(store, receipt_id, now=now, flow_run_id=flow_run_id)


@task(name="reconcile-inventory", cache_policy=NO_CACHE)
@refusals_as_state
def reconcile_inventory(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """Verify the package and reconcile in one process (``inventory reconcile``)."""
    with _open_store() as store:
        return reconcile_ops.reconcile_inventory(
            store, package_dir=Path(params["package_dir"]), observations=Path(params["observations"]),
            trust_root=Path(params["trust_root"]), now=now, actor=params.get("actor") or "inventory-flow",
            stale_after=parse_age(params.get("stale_after") or "24h", option="--stale-after"),
            output=Path(params["output"]) if params.get("output") else None, flow_run_id=flow_run_id)


@task(name="prepare-reconciliation", cache_policy=NO_CACHE)
@refusals_as_state
def prepare_reconciliation(params: dict[str, Any], now: datetime,
                           flow_run_id: str | None) -> reconcile_ops.Prepared | State:
    """Verify the package (always) and read its signed desired state."""
    with _open_store() as store:
        return reconcile_ops.prepare_reconciliation(
            store, package_dir=Path(params["package_dir"]), observations=Path(params["observations"]),
            trust_root=Path(params["trust_root"]), now=now, actor=params.get("actor") or "inventory-flow",
            stale_after=parse_age(params.get("stale_after") or "24h", option="--stale-after"),
            flow_run_id=flow_run_id)


@task(name="plan-partitions", cache_policy=NO_CACHE)
@refusals_as_state
def plan_partitions(observations: str, count: int) -> partitions.PartitionPlan | State | None:
    return partitions.plan_partitions(Path(observations), count)


@task(name="reconcile-partition", cache_policy=NO_CACHE)
@refusals_as_state
def reconcile_partition(observations: str, part: partitions.PartitionRange, desired: DesiredState,
                        observed_at: str, now: datetime, stale_after: str) -> Partial | State:
    return partitions.reconcile_range(Path(observations), part, desired, observed_at=observed_at, now=now,
                                      stale_after=parse_age(stale_after, option="--stale-after"))


@task(name="observation-digests", cache_policy=NO_CACHE)
def observation_digests(observations: str, plan: partitions.PartitionPlan, desired: DesiredState) -> tuple[str, str]:
    return partitions.digests(Path(observations), plan.layout, desired)


@task(name="record-reconciliation", cache_policy=NO_CACHE)
@refusals_as_state
def record_reconciliation(params: dict[str, Any], prepared: reconcile_ops.Prepared, plan: partitions.PartitionPlan,
                          partials: list[Partial], digest: tuple[str, str], now: datetime,
                          flow_run_id: str | None) -> dict[str, Any] | State:
    """Merge the partitions' partials and write and record the report."""
    reconciliation = merge(prepared.desired, partials, reconciliation_id=digest[0])
    result = EngineResult(plan.header, reconciliation, "dask-partitions", digest[1])
    with _open_store() as store:
        return reconcile_ops.record_reconciliation(
            store, prepared, result, observations=Path(params["observations"]), now=now,
            actor=params.get("actor") or "inventory-flow",
            stale_after=parse_age(params.get("stale_after") or "24h", option="--stale-after"),
            output=Path(params["output"]) if params.get("output") else None, flow_run_id=flow_run_id)


@task(name="evaluate-freshness", cache_policy=NO_CACHE)
@refusals_as_state
def evaluate_freshness(params: dict[str, Any], now: datetime, flow_run_id: str | None) -> dict[str, Any] | State:
    """Freshness per scope, host and source; state changes recorded (``inventory freshness``)."""
    from ringward.core.inventory.freshness import Thresholds, parse_scope_rule

    thresholds = Thresholds(parse_age(params.get("max_age") or "24h", option="--max-age"),
                            parse_age(params.get("critical_age") or "48h", option="--critical-age"))
    with _open_store() as store:
        result = freshness_ops.evaluate_freshness(
            store, now=now, actor=params.get("actor") or "inventory-freshness", thresholds=thresholds,
            rules=tuple(parse_scope_rule(r) for r in params.get("scope_thresholds") or ()),
            provider=params.get("provider"), channel=params.get("channel"),
            deployment_target=params.get("deployment_target"), flow_run_id=flow_run_id)
    result.pop("report", None)
    return result
