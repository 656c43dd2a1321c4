"""Reconciliation as tracked flow runs: in one process, or partitioned across Dask workers.

- ``inventory-reconcile``: the ``inventory reconcile`` operation in one task (columnar engine).
- ``inventory-reconcile-partitioned``: for fleets beyond one machine. The package is verified first
  (always), the observations file (Ringward's line layout) is cut into line-aligned byte ranges,
  each range is reconciled by a task on the flow's task runner -- a ``DaskTaskRunner`` over a
  ``distributed`` cluster (a ``LocalCluster`` unless ``cluster_address`` names a scheduler) -- and
  the partials are merged with the core's rules; the id pass runs beside them. Workers need the
  observations file at the same path (a shared volume). A file in another layout is reconciled in
  one task.

Both publish the drift summary (``inventory-drift-<channel>``) and the per-target table, and end
Completed when aligned, Failed (with the result) when drift is detected, so the run list shows it;
``ringward.inventory.drift-detected`` is emitted on drift for the remediation automation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed
from prefect_dask.task_runners import DaskTaskRunner

from flows._common import current_flow_run_id, emit, utc_now
from flows.inventory_ingest import step
from ringward.operations.inventory.events import drift_event
from tasks.inventory_steps import (
    observation_digests,
    plan_partitions,
    prepare_reconciliation,
    reconcile_inventory,
    reconcile_partition,
    record_reconciliation,
)

DRIFT_KEY = "inventory-drift"


def _finish(result: dict[str, Any]) -> State:
    channel = result.get("channel") or "unassigned"
    title = f"reconciliation {result['reconciliation_id']} ({result['drift_status']})"
    summary = result["summary"]
    create_markdown_artifact(
        key=f"{DRIFT_KEY}-{channel}", description=title,
        markdown=(f"# {title}\n\nRelease **{result['release']['version']}**, alert level {result['alert_level']}: "
                  f"{summary['observed_endpoint_count']} endpoints, {summary['compliant_endpoint_count']} compliant, "
                  f"{summary['drifted_endpoint_count']} drifted, {summary['stale_endpoint_count']} stale, "
                  f"{summary['missing_target_count']} missing / {summary['unknown_target_count']} unknown targets.\n\n"
                  f"Report `{result['report']}`; evidence `{result['evidence']['evidence_id']}`.\n"))
    create_table_artifact(key=f"{DRIFT_KEY}-{channel}-targets", description=title, table=summary["targets"])
    event = drift_event(result)
    if event is None:
        return Completed(message=title, data=result)
    emit(*event)
    return Failed(message=title, data=result)


@flow(name="inventory-reconcile", log_prints=True)
def inventory_reconcile_flow(package_dir: str, observations: str, trust_root: str, stale_after: str = "24h",
                             output: str | None = None, actor: str | None = None,
                             now: datetime | None = None) -> State:
    params = {"package_dir": package_dir, "observations": observations, "trust_root": trust_root,
              "stale_after": stale_after, "output": output, "actor": actor}
    result, refused = step(reconcile_inventory(params, now or utc_now(), current_flow_run_id(), return_state=True),
                           "inventory-reconcile")
    return refused if refused is not None else _finish(result)


def _partitioned(package_dir: str, observations: str, trust_root: str, stale_after: str, partitions: int,
                 output: str | None, actor: str | None, now: datetime | None) -> State:
    when = now or utc_now()
    run_id = current_flow_run_id()
    params = {"package_dir": package_dir, "observations": observations, "trust_root": trust_root,
              "stale_after": stale_after, "output": output, "actor": actor}
    prepared, refused = step(prepare_reconciliation(params, when, run_id, return_state=True), "verify package")
    if refused is not None:
        return refused
    plan, refused = step(plan_partitions(observations, partitions, return_state=True), "plan partitions")
    if refused is not None:
        return refused
    if plan is None:  # not Ringward's line layout: one process
        result, refused = step(reconcile_inventory(params, when, run_id, return_state=True), "inventory-reconcile")
        return refused if refused is not None else _finish(result)
    digest = observation_digests.submit(observations, plan, prepared.desired)
    futures = [reconcile_partition.submit(observations, part, prepared.desired, plan.header.observed_at, when,
                                          stale_after) for part in plan.ranges]
    partials = []
    for future in futures:
        partial, refused = step(future.wait() or future.state, "reconcile partition")
        if refused is not None:
            return refused
        partials.append(partial)
    result, refused = step(record_reconciliation(params, prepared, plan, partials, digest.result(), when, run_id,
                                                 return_state=True), "record reconciliation")
    return refused if refused is not None else _finish(result)


def partitioned_flow(cluster_address: str | None = None, *, n_workers: int = 2, processes: bool = True) -> Any:
    """``inventory-reconcile-partitioned`` on a Dask task runner: the scheduler at ``cluster_address``,
    else a ``LocalCluster`` of ``n_workers`` (threads when ``processes`` is False)."""
    runner = (DaskTaskRunner(address=cluster_address) if cluster_address else
              DaskTaskRunner(cluster_class="distributed.LocalCluster",
                             cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": processes,
                                             "dashboard_address": None}))
    return inventory_reconcile_partitioned_flow.with_options(task_runner=runner)  # type: ignore[arg-type]


@flow(name="inventory-reconcile-partitioned", log_prints=True,
      task_runner=DaskTaskRunner(cluster_class="distributed.LocalCluster",  # type: ignore[arg-type]
                                 cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}))
def inventory_reconcile_partitioned_flow(package_dir: str, observations: str, trust_root: str,
                                         stale_after: str = "24h", partitions: int = 8, output: str | None = None,
                                         actor: str | None = None, now: datetime | None = None) -> State:
    return _partitioned(package_dir, observations, trust_root, stale_after, partitions, output, actor, now)
