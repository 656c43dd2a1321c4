"""A small read-mostly client of the Prefect server's REST API (plain httpx, no Prefect import), for
``ringward status``, ``ringward up`` and operators' scripts: health, deployments with their
schedules, triggers and next run, recent failed flow runs, starting a run from a deployment.

Also the environment every Prefect process Ringward starts gets: Prefect's outbound telemetry off.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ringward import settings
from ringward.core.errors import InputError

#: Prefect's outbound telemetry switches (kept in settings so the CLI entry point sets them cheaply)
TELEMETRY_OFF: Mapping[str, str] = settings.PREFECT_TELEMETRY_OFF


def telemetry_off(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Turn Prefect's outbound telemetry off in ``environ`` (forced: Ringward never phones home)."""
    environ.update(TELEMETRY_OFF)
    return environ


def api_health(api_url: str, timeout: float = 2.0) -> str | None:
    """None when the Prefect API at ``api_url`` answers its health check, else why not (one line)."""
    try:
        answer = httpx.get(api_url.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:160] or 'no answer'}"
    return None if answer.status_code == 200 else f"HTTP {answer.status_code}"


def http_health(url: str, timeout: float = 2.0) -> str | None:
    """None when ``url`` answers 200, else why not (one line)."""
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:160] or 'no answer'}"
    return None if answer.status_code == 200 else f"HTTP {answer.status_code}"


def worker_health(api_url: str, pool: str, name: str, timeout: float = 2.0) -> str | None:
    """None when the worker ``name`` is online in work pool ``pool`` (its heartbeats reach the Prefect
    server), else why not (one line)."""
    try:
        answer = httpx.post(f"{api_url.rstrip('/')}/work_pools/{pool}/workers/filter", timeout=timeout,
                            json={"workers": {"status": {"any_": ["ONLINE"]}}, "limit": 200})
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:160] or 'no answer'}"
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    if any(row.get("name") == name for row in answer.json()):
        return None
    return f"worker {name} is not online in work pool {pool}"


@dataclass(frozen=True)
class DeploymentView:
    deployment_id: str
    name: str
    flow_name: str
    paused: bool
    #: e.g. "every 300s (inactive)", "cron 15 3 * * * UTC"
    schedules: tuple[str, ...]
    #: e.g. "on ringward.package.published", "on ringward.approval.decided (disabled)"
    triggers: tuple[str, ...]
    next_run: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.deployment_id, "name": self.name, "flow": self.flow_name, "paused": self.paused,
                "schedules": list(self.schedules), "triggers": list(self.triggers), "next_run": self.next_run}


def _describe_schedule(item: Mapping[str, Any]) -> str:
    schedule = item.get("schedule") or {}
    if "interval" in schedule:
        text = f"every {float(schedule['interval']):g}s"
    elif "cron" in schedule:
        text = f"cron {schedule['cron']} {schedule.get('timezone') or 'UTC'}"
    elif "rrule" in schedule:
        text = f"rrule {schedule['rrule']}"
    else:
        text = "schedule"
    return text if item.get("active", True) else f"{text} (inactive)"


class PrefectRest:
    """The Prefect REST API at ``api_url`` (``http://host:port/api``)."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.Client(base_url=self.api_url, timeout=timeout)

    def __enter__(self) -> PrefectRest:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    #: answers that mean "busy, ask again": the Prefect server answers 503 when its SQLite database is
    #: locked by another writer (the transaction was rolled back), 429 when it sheds load
    RETRY_STATUSES = frozenset({429, 502, 503, 504})

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
              attempts: int = 8) -> httpx.Response:
        """One request, retried with backoff while the server is busy or unreachable (only what retrying
        can fix; every POST sent here is a query or carries an idempotency key)."""
        delay = 0.25
        for attempt in range(1, attempts + 1):
            try:
                answer = self._client.request(method, path, json=None if body is None else dict(body))
            except httpx.TransportError:
                if attempt == attempts:
                    raise
            else:
                if answer.status_code not in self.RETRY_STATUSES or attempt == attempts:
                    answer.raise_for_status()
                    return answer
                retry_after = answer.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), 5.0))
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        answer = self._send("POST", path, body)
        return answer.json() if answer.content else None

    def _get(self, path: str) -> Any:
        return self._send("GET", path).json()

    def deployments(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = self._post("/deployments/filter", {"limit": 200, "offset": len(rows), "sort": "NAME_ASC"})
            rows.extend(page)
            if len(page) < 200:
                return rows

    def flow_names(self, flow_ids: set[str]) -> dict[str, str]:
        if not flow_ids:
            return {}
        flows = self._post("/flows/filter", {"flows": {"id": {"any_": sorted(flow_ids)}}, "limit": 200})
        return {f["id"]: f["name"] for f in flows}

    def automations(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every automation (or those named ``names``), page by page."""
        criteria: dict[str, Any] = {} if names is None else {"automations": {"name": {"any_": sorted(set(names))}}}
        rows: list[dict[str, Any]] = []
        while True:
            page = self._post("/automations/filter", {**criteria, "limit": 200, "offset": len(rows)})
            rows.extend(page)
            if len(page) < 200:
                return rows

    def flow_runs(self, *, state_types: list[str], deployment_ids: list[str] | None = None, sort: str,
                  limit: int) -> list[dict[str, Any]]:
        criteria: dict[str, Any] = {"state": {"type": {"any_": state_types}}}
        body: dict[str, Any] = {"flow_runs": criteria, "sort": sort, "limit": limit}
        if deployment_ids is not None:
            body["deployments"] = {"id": {"any_": deployment_ids}}
        return list(self._post("/flow_runs/filter", body))

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return dict(self._get(f"/flow_runs/{flow_run_id}"))

    def deployment_by_name(self, flow_name: str, deployment_name: str) -> dict[str, Any]:
        return dict(self._get(f"/deployments/name/{flow_name}/{deployment_name}"))

    def create_flow_run(self, deployment_id: str, parameters: Mapping[str, Any], *,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a run of a deployment, as the UI's "Run" button does. The idempotency key makes a
        retried request (after a busy answer or a lost response) start one run, not two."""
        key = idempotency_key or f"ringward-{uuid.uuid4()}"
        return dict(self._post(f"/deployments/{deployment_id}/create_flow_run",
                               {"parameters": dict(parameters), "state": {"type": "SCHEDULED"},
                                "idempotency_key": key}))

    def artifacts(self, flow_run_id: str) -> list[dict[str, Any]]:
        return list(self._post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}},
                                                     "limit": 200}))

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        return list(self._post("/task_runs/filter", {"task_runs": {}, "flow_runs": {"id": {"any_": [flow_run_id]}},
                                                     "limit": 200}))

    def emit_event(self, event: Mapping[str, Any]) -> None:
        """POST one event (the server's own ingestion route; what ``prefect event emit`` does over HTTP)."""
        answer = self._client.post("/events", json=[dict(event)])
        answer.raise_for_status()

    def overview(self) -> list[DeploymentView]:
        """Every deployment with its schedules, triggers (automations running it) and next scheduled run."""
        deployments = self.deployments()
        flows = self.flow_names({d["flow_id"] for d in deployments})
        triggers: dict[str, list[str]] = {}
        for automation in self.automations():
            trigger = automation.get("trigger") or {}
            events = ", ".join(sorted(trigger.get("expect") or [])) or trigger.get("type", "trigger")
            text = f"on {events}" + ("" if automation.get("enabled", True) else " (disabled)")
            for action in automation.get("actions") or []:
                if action.get("type") == "run-deployment" and action.get("deployment_id"):
                    triggers.setdefault(action["deployment_id"], []).append(text)
        ids = [d["id"] for d in deployments]
        upcoming = self.flow_runs(state_types=["SCHEDULED"], deployment_ids=ids, sort="EXPECTED_START_TIME_ASC",
                                  limit=200) if ids else []
        next_run: dict[str, str] = {}
        for run in upcoming:
            when = run.get("expected_start_time") or run.get("next_scheduled_start_time")
            if when:
                next_run.setdefault(run["deployment_id"], str(when))
        return [DeploymentView(d["id"], d["name"], flows.get(d["flow_id"], "?"), bool(d.get("paused")),
                               tuple(_describe_schedule(s) for s in d.get("schedules") or []),
                               tuple(sorted(triggers.get(d["id"], []))), next_run.get(d["id"]))
                for d in deployments]

    def failed_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last ``limit`` failed or crashed flow runs, newest first."""
        runs = self.flow_runs(state_types=["FAILED", "CRASHED"], sort="END_TIME_DESC", limit=limit)
        names = {d["id"]: d["name"] for d in self.deployments()} if runs else {}
        return [{"id": r["id"], "name": r["name"], "deployment": names.get(r.get("deployment_id") or ""),
                 "state": (r.get("state") or {}).get("name"), "end_time": r.get("end_time"),
                 "message": ((r.get("state") or {}).get("message") or "")[:200]} for r in runs]


def prefect_api_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if environ is None else environ).get("PREFECT_API_URL", "").strip()
    return value or None


def require_reachable(api_url: str, *, what: str = "PREFECT_API_URL") -> None:
    """Raise one clear InputError (exit 2) when no Prefect server answers at ``api_url``."""
    problem = api_health(api_url)
    if problem is not None:
        raise InputError(f"{what}={api_url}: no Prefect server answers ({problem})")
