"""Serve every Ringward deployment of ``deployments/catalog.py`` from one process (no work pool).

``ringward up`` starts this for you (with a Prefect server and the API). By hand:

    prefect server start            # terminal 1 (UI at http://127.0.0.1:4200)
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve   # terminal 2

The production path is ``prefect deploy --all`` with ``prefect.yaml`` (rendered from the same
catalog) and a process worker.

Settings-valued parameters (the connector configuration, ...) are resolved here, in the process
that also runs the flows, from ``$RINGWARD_HOME`` and friends. A deployment whose needed file does
not exist yet is served with its schedules inactive and its triggers disabled (activate them in the
UI once configured, or restart). ``execute-on-approval``'s trigger is on only with
``RINGWARD_EXECUTE_ON_APPROVAL=1``.

Entrypoints are module paths (``flows.x.flow``), so the process may run from any directory where
Ringward is installed.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron as CronSchedule
from prefect.schedules import Interval as IntervalSchedule
from prefect.schedules import Schedule
from prefect.types.entrypoint import EntrypointType

from deployments.catalog import (
    CATALOG,
    EXECUTE_ON_APPROVAL_ENV,
    Cron,
    Deployment,
    Interval,
    OnEvent,
    opted_in,
    unconfigured_lines,
)

__all__ = ["EXECUTE_ON_APPROVAL_ENV", "build_deployments", "execute_on_approval_enabled", "load_flow", "main"]


def execute_on_approval_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """``RINGWARD_EXECUTE_ON_APPROVAL=1`` turns the execute-on-approval trigger on."""
    return opted_in(EXECUTE_ON_APPROVAL_ENV, os.environ if environ is None else environ)


def load_flow(entrypoint: str) -> Any:
    """The flow object of a ``module:function`` entrypoint."""
    module_name, _, function = entrypoint.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _schedule(schedule: Interval | Cron, active: bool) -> Schedule:
    if isinstance(schedule, Interval):
        return IntervalSchedule(schedule.seconds, active=active)
    return CronSchedule(schedule.expression, timezone=schedule.timezone, active=active)


def _trigger(trigger: OnEvent, configured: bool, environ: Mapping[str, str]) -> DeploymentEventTrigger:
    enabled = configured and (trigger.opt_in_env is None or opted_in(trigger.opt_in_env, environ))
    return DeploymentEventTrigger(enabled=enabled, expect={trigger.event},
                                  match={"prefect.resource.id": trigger.resource}, parameters=dict(trigger.parameters))


def build(deployment: Deployment, environ: Mapping[str, str]) -> RunnerDeployment:
    """One runner deployment of the catalog entry; settings resolve in this process's environment."""
    configured = not deployment.missing()
    options: dict[str, Any] = {}
    if deployment.concurrency_limit is not None:
        options["concurrency_limit"] = deployment.concurrency_limit
    runner: RunnerDeployment = load_flow(deployment.entrypoint).to_deployment(
        name=deployment.name, tags=list(deployment.tags), description=deployment.description,
        entrypoint_type=EntrypointType.MODULE_PATH, parameters=deployment.resolved_parameters(),
        schedules=[_schedule(s, configured) for s in deployment.schedules] or None,
        triggers=[_trigger(t, configured, environ) for t in deployment.triggers] or None, **options)
    return runner


def build_deployments(environ: Mapping[str, str] | None = None) -> list[RunnerDeployment]:
    """Every deployment of the catalog (without serving anything)."""
    env = os.environ if environ is None else environ
    return [build(deployment, env) for deployment in CATALOG]


def main() -> None:
    from prefect import serve

    for line in unconfigured_lines():
        print(line, flush=True)
    serve(*build_deployments())


if __name__ == "__main__":
    main()
