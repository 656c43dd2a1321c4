"""`ringward status`: each part's health, the deployments with their schedule / trigger and next
run, and the last failed flow runs (Prefect REST API over httpx).

Where to look comes from ``<home>/up.json`` (written by a running ``ringward up``), else from
``PREFECT_API_URL`` and the default API address. The third part is the mode ``up`` runs in: its runner
(Prefect's runner webserver), or with ``up --pool NAME`` its local worker (alive, and online in the work
pool). Exit 0 when every part answers, 1 when one does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ringward.cli.output import print_json

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Health of a running `ringward up`, deployments, failed runs.")


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def collect(failed_limit: int = 10) -> dict[str, Any]:
    """Everything `ringward status` reports, as one JSON-able document."""
    import httpx

    from ringward import settings
    from ringward.operations.common import prefect_rest as rest
    from ringward.operations.common.supervisor import alive

    state = _load_state(settings.up_state_path())
    running = state is not None and alive(int(state.get("pid", 0) or 0))
    prefect_api = (state or {}).get("prefect_api_url") or rest.prefect_api_url_from_env() or "http://127.0.0.1:4200/api"
    api_url = (state or {}).get("api_url") or "http://127.0.0.1:8000"
    parts: dict[str, dict[str, Any]] = {
        "prefect-server": {"url": prefect_api, "problem": rest.api_health(prefect_api)},
        "ringward-api": {"url": api_url, "problem": rest.http_health(api_url.rstrip("/") + "/healthz")},
    }
    mode = (state or {}).get("mode") or "runner"
    pool = (state or {}).get("pool") if mode == "pool" else None
    if running and state is not None and mode == "pool":
        parts["worker"] = _worker_part(state, prefect_api)
    else:
        runner_url = (state or {}).get("runner_health_url")
        parts["runner"] = ({"url": runner_url, "problem": rest.http_health(runner_url)} if running and runner_url
                           else {"url": None, "problem": "no `ringward up` runs for this home"})
    report: dict[str, Any] = {
        "home": str(settings.ringward_home().absolute()),
        "up_pid": (state or {}).get("pid") if running else None,
        "mode": mode if running else None, "pool": pool if running else None,
        "prefect_ui_url": prefect_api.rstrip("/").removesuffix("/api"),
        "parts": {name: {"healthy": part["problem"] is None, **part} for name, part in parts.items()},
        "deployments": [], "failed_runs": [],
    }
    if parts["prefect-server"]["problem"] is None:
        try:
            with rest.PrefectRest(prefect_api) as client:
                report["deployments"] = [d.as_dict() for d in client.overview()]
                report["failed_runs"] = client.failed_runs(failed_limit)
        except httpx.HTTPError as exc:
            parts["prefect-server"]["problem"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            report["parts"]["prefect-server"] = {"healthy": False, **parts["prefect-server"]}
    report["healthy"] = all(p["healthy"] for p in report["parts"].values())
    return report


def _worker_part(state: dict[str, Any], prefect_api: str) -> dict[str, Any]:
    """The health of `ringward up --pool`'s local worker: its process alive and online in the work pool."""
    from ringward.operations.common.prefect_rest import worker_health
    from ringward.operations.common.supervisor import alive

    pool, name = str(state.get("pool") or ""), str(state.get("worker_name") or "")
    pid = int((state.get("pids") or {}).get("worker") or 0)
    problem = worker_health(prefect_api, pool, name) if pid and alive(pid) else f"the worker process ({pid}) is gone"
    return {"url": f"work pool {pool}, worker {name}", "problem": problem}


def _text(report: dict[str, Any]) -> str:
    mode = {"runner": "; runner", "pool": f"; work pool {report['pool']}"}.get(report["mode"] or "", "")
    lines = [f"home {report['home']}" + (f" (ringward up pid {report['up_pid']}{mode})" if report["up_pid"] else "")]
    for name, part in report["parts"].items():
        verdict = "healthy" if part["healthy"] else f"DOWN ({part['problem']})"
        lines.append(f"  {name:<15} {verdict}" + (f"  {part['url']}" if part["url"] else ""))
    if report["parts"]["prefect-server"]["healthy"]:
        lines.append(f"Prefect UI {report['prefect_ui_url']}")
        lines.append(f"deployments ({len(report['deployments'])}):")
        for d in report["deployments"]:
            when = " + ".join([*d["schedules"], *d["triggers"]]) or "on demand"
            nxt = f"  next {d['next_run']}" if d["next_run"] else ""
            lines.append(f"  {d['flow']}/{d['name']}  {when}{'  PAUSED' if d['paused'] else ''}{nxt}")
        lines.append(f"last failed flow runs ({len(report['failed_runs'])}):" if report["failed_runs"]
                     else "no failed flow runs")
        for run in report["failed_runs"]:
            lines.append(f"  {run['end_time'] or '-'}  {run['deployment'] or '-'}  {run['name']}  {run['state']}: "
                         f"{run['message']}")
    return "\n".join(lines)


@app.command()
def status(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    failed: int = typer.Option(10, "--failed", min=0, max=200, help="How many failed flow runs to list."),
) -> None:
    """Report each part's health, every deployment (schedule / trigger, next run), the last failed runs."""
    report = collect(failed)
    if json_output:
        print_json(report)
    else:
        typer.echo(_text(report))
    raise typer.Exit(0 if report["healthy"] else 1)
