"""Reconciliation as tracked flow runs: in one process, or partitioned across Dask workers.

- ``inventory-reconcile``: the ``inventory reconcile`` operation in one task (columnar engine).
- ``inventory-reconcile-partitioned``: for fleets beyond one machine. The package is verified first
  (always), the observations file (Ringward's line layout) is cut into line-aligned byte ranges,
  each range is reconciled by a task on the flow's task runner -- a ``DaskTaskRunner`` over a
  ``distributed`` cluster -- and the partials are merged with the core's rules; the id pass runs
  beside them. The cluster is the shared scheduler ``$RINGWARD_DASK_SCHEDULER`` (``tcp://host:port``)
  names, read when this module builds the flow object (a deployment's run imports it in the worker's
  flow-run process: the worker host's setting), else a ``LocalCluster`` started by each run;
  ``partitioned_flow(cluster_address)`` picks one explicitly. Dask workers need the observations
  file at the same path (a shared volume) and Ringward installed. A file in another layout is
  reconciled in one task.

Both publish the drift summary (``inventory-drift-<channel>``) and the per-target table, and end
Completed when aligned, Failed (with the result) when drift is detected, so the run list shows it;
``ringward.inventory.drift-detected`` is emitted on drift for the remediation automation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.states import Completed, Failed
from prefect_dask.task_runners import DaskTaskRunner

from flows._common import current_flow_run_id, emit, utc_now
from flows.inventory_ingest import step
from ringward import settings
from ringward.core.errors import InputError, TransportError
from ringward.operations.inventory.events import drift_event
from tasks.inventory_steps import (
    observation_digests,
    plan_partitions,
    prepare_reconciliation,
    reconcile_inventory,
    reconcile_partition,
    record_reconciliation,
)
from tasks.promotion_channel import refusal

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
    try:  # the first submit connects to the cluster (or starts the LocalCluster)
        digest = observation_digests.submit(observations, plan, prepared.desired)
    except OSError as exc:  # a scheduler that does not answer: distributed gives up after its connect timeout
        error = TransportError(f"dask cluster: {' '.join(str(exc).split())[:300]}")
        return Failed(message=error.message, data=refusal(error))
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


def _task_runner(cluster_address: str | None, *, n_workers: int = 2, processes: bool = True) -> DaskTaskRunner:
    """The scheduler at ``cluster_address``, else a ``LocalCluster`` of ``n_workers`` started by the run (threads
    when ``processes`` is False). Nothing connects or starts before the run's first partition is submitted."""
    if cluster_address:
        return DaskTaskRunner(address=cluster_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": processes,
                                          "dashboard_address": None})


def _configured_runner() -> tuple[DaskTaskRunner, InputError | None]:
    """This host's ``$RINGWARD_DASK_SCHEDULER``; a malformed value does not break the import (other flows of the
    module, ``prefect deploy``): the runs of the flow object built from it refuse it instead."""
    try:
        return _task_runner(settings.dask_scheduler()), None
    except InputError as exc:
        return _task_runner(None), exc


_RUNNER, _SETTING_ERROR = _configured_runner()


def partitioned_flow(cluster_address: str | None = None, *, n_workers: int = 2, processes: bool = True) -> Any:
    """``inventory-reconcile-partitioned`` on a Dask task runner: the scheduler at ``cluster_address``,
    else a ``LocalCluster`` of ``n_workers`` (threads when ``processes`` is False), whatever
    ``$RINGWARD_DASK_SCHEDULER`` says."""
    runner = _task_runner(cluster_address, n_workers=n_workers, processes=processes)
    return inventory_reconcile_partitioned_flow.with_options(task_runner=runner)  # type: ignore[arg-type]


def _refused_setting() -> State | None:
    """A Failed state naming the malformed setting when this run uses the flow object built from it."""
    context = FlowRunContext.get()
    if _SETTING_ERROR is None or context is None or context.flow is None or context.flow.task_runner is not _RUNNER:
        return None
    return Failed(message=f"dask cluster: refused ({_SETTING_ERROR.message[:300]})", data=refusal(_SETTING_ERROR))


@flow(name="inventory-reconcile-partitioned", log_prints=True, task_runner=_RUNNER)  # type: ignore[arg-type]
def inventory_reconcile_partitioned_flow(package_dir: str, observations: str, trust_root: str,
                                         stale_after: str = "24h", partitions: int = 8, output: str | None = None,
                                         actor: str | None = None, now: datetime | None = None) -> State:
    refused = _refused_setting()
    if refused is not None:
        return refused
    return _partitioned(package_dir, observations, trust_root, stale_after, partitions, output, actor, now)
