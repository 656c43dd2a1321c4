"""Render ``prefect.yaml`` from the deployment catalog (``deployments/catalog.py``).

    python -m deployments.render            # rewrite prefect.yaml
    python -m deployments.render --check    # exit 1 when prefect.yaml differs from the catalog

prefect.yaml is for the production path (a process work pool and workers on hosts where Ringward
is installed); ``ringward up`` and ``python -m deployments.serve`` serve the same catalog directly.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from deployments.catalog import CATALOG, Cron, Deployment, Interval, Setting

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"
WORK_POOL = "ringward-local"
PREFECT_VERSION = "3.9.1"

HEADER = f"""\
# GENERATED from deployments/catalog.py by `python -m deployments.render`: edit the catalog, not this
# file (tests/flows/test_deployments_agree.py fails when they differ).
#
# Production path, from a checkout where Ringward is installed (`uv sync` or `pip install .`):
#   prefect work-pool create {WORK_POOL} --type process
#   prefect --no-prompt deploy --all
#   prefect worker start --pool {WORK_POOL}     # on every host where Ringward is installed
# Entrypoints are module paths and `pull` is empty: a worker imports the installed `flows` package,
# so it needs no checkout and no RINGWARD_CHECKOUT. Give workers the same RINGWARD_HOME (or
# RINGWARD_DATABASE_URL + RINGWARD_EVIDENCE_ROOT) as the CLI and the API.
# Without a work pool, one command serves all of this: `ringward up` (or `python -m deployments.serve`).
#
# Files are never literals here: runs take them from the worker's settings. A trust root missing from
# an event is $RINGWARD_TRUST_ROOT or $RINGWARD_HOME/trust-root.json; the connector configuration is
# $RINGWARD_CONNECTORS or $RINGWARD_HOME/connectors.yaml. Deployments that need a file that no run can
# default are rendered off (schedule inactive) until you configure them.
"""


def _schedule(schedule: Interval | Cron, active: bool) -> dict[str, Any]:
    if isinstance(schedule, Interval):
        return {"interval": schedule.seconds, "active": active}
    return {"cron": schedule.expression, "timezone": schedule.timezone, "active": active}


def entry(deployment: Deployment) -> dict[str, Any]:
    """One prefect.yaml deployment entry (without its work pool)."""
    spec: dict[str, Any] = {"name": deployment.name, "entrypoint": deployment.module_path,
                            "description": deployment.description, "tags": list(deployment.tags)}
    if deployment.concurrency_limit is not None:
        spec["concurrency_limit"] = deployment.concurrency_limit
    # a Setting is not a literal: the worker resolves it (the parameter is omitted here, the flow or
    # the operator supplies it); see the `needs` comment rendered above the entry
    parameters = {k: v for k, v in deployment.parameters.items() if not isinstance(v, Setting)}
    if parameters:
        spec["parameters"] = parameters
    if deployment.schedules:
        spec["schedules"] = [_schedule(s, active=not deployment.needs) for s in deployment.schedules]
    if deployment.triggers:
        spec["triggers"] = [{"type": "event", "enabled": t.opt_in_env is None and not deployment.needs,
                             "match": {"prefect.resource.id": t.resource}, "expect": [t.event],
                             "parameters": dict(t.parameters)} for t in deployment.triggers]
    return spec


def _comments(deployment: Deployment) -> list[str]:
    lines: list[str] = []
    if deployment.needs:
        settings = [(k, v) for k, v in deployment.parameters.items() if isinstance(v, Setting)]
        what = ", ".join(f"parameters.{k} (e.g. the worker's {v.describe()})" for k, v in settings)
        what = what or ", ".join(n.describe() for n in deployment.needs)
        if deployment.schedules or deployment.triggers:
            lines.append(f"off until configured: set {what}, then `active: true`")
        else:
            lines.append(f"runs need {what}")
    if deployment.note:
        lines.append(deployment.note)
    return [f"  # {part}" for line in lines for part in textwrap.wrap(line, width=104)]


def render() -> str:
    parts = [HEADER, yaml.safe_dump({"name": "ringward", "prefect-version": PREFECT_VERSION}, sort_keys=False),
             "\npull: []\n\ndefinitions:\n  work_pool: &local_pool\n"
             f"    name: {WORK_POOL}\n    work_queue_name: default\n\ndeployments:\n"]
    for deployment in CATALOG:
        body = yaml.safe_dump([entry(deployment)], sort_keys=False, width=120, allow_unicode=True)
        lines = _comments(deployment) + ["  " + line if line else line for line in body.splitlines()]
        lines.append("    work_pool: *local_pool")
        parts.append("\n".join(lines) + "\n\n")
    return "".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args == ["--check"]:
        if PREFECT_YAML.read_text(encoding="utf-8") != text:
            print("prefect.yaml differs from deployments/catalog.py: run `python -m deployments.render`",
                  file=sys.stderr)
            return 1
        return 0
    if args:
        print("usage: python -m deployments.render [--check]", file=sys.stderr)
        return 2
    from ringward.operations.common.files import atomic_write

    atomic_write(PREFECT_YAML, text.encode("utf-8"))
    print(f"wrote {PREFECT_YAML}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
