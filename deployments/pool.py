"""Register every catalog deployment into a ``process`` work pool (``ringward deploy``).

The deployments are exactly ``prefect.yaml`` as ``python -m deployments.render`` renders it from the
catalog, with the work pool set to the one asked for, deployed by Prefect's own ``prefect --no-prompt
deploy --all``: one source, and the same result as the documented production path. Then the
crash-recovery automations (``deployments/automations.py``) are applied for those deployments.

A redeploy keeps what an operator switched on the Prefect server (the UI or REST): Prefect's upsert
recreates a deployment's schedules and its trigger automations from the file and un-pauses it, so the
rendered defaults (a schedule of a deployment that needs a file rendered ``active: false``) would switch
an operator's choice back on every ``ringward deploy`` and every start of ``ringward up --pool``. Before
deploying, the schedules' ``active`` flags, the triggers' ``enabled`` flags and the deployments'
``paused`` flag of the deployments already in a work pool on the server are read and written into the file
that is deployed (matched by deployment name, a schedule by its slug or its interval / cron / rrule value, a
trigger by the events it expects and the resources it matches); new deployments, schedules and triggers
get the rendered defaults. One line says what was kept.

No Prefect import here: Prefect runs in a subprocess; the server is read with the plain-httpx client.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments import render
from deployments.automations import DEFAULT_MAX_RERUNS, DEFAULT_UNRESPONSIVE_AFTER_S, apply_crash_recovery
from deployments.catalog import CATALOG
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.common.scale_out import PoolSetupError

DEPLOY_TIMEOUT_S = 900


def pool_prefect_yaml(pool: str) -> str:
    """The rendered ``prefect.yaml`` with every deployment in work pool ``pool`` (queue ``default``)."""
    text = render.render()
    if pool == render.WORK_POOL:
        return text
    return _dump(_in_pool(yaml.safe_load(text), pool))


def _in_pool(document: dict[str, Any], pool: str) -> dict[str, Any]:
    for deployment in document["deployments"]:
        deployment["work_pool"] = {"name": pool, "work_queue_name": "default"}
    document["definitions"] = {"work_pool": {"name": pool, "work_queue_name": "default"}}
    return document


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, width=120, allow_unicode=True)


# --- what an operator switched on the server ------------------------------------------------------------------------

Key = tuple[Any, ...]


def schedule_key(schedule: Mapping[str, Any], slug: str | None = None) -> Key:
    """A schedule's identity across redeploys (Prefect gives a redeployed schedule a new id): its slug when it
    has one, else its value (``schedule`` is a prefect.yaml entry or the REST ``schedule`` object)."""
    if slug:
        return ("slug", slug)
    if schedule.get("interval") is not None:
        interval = schedule["interval"]
        return ("interval", float(interval) if isinstance(interval, int | float) else str(interval))
    if schedule.get("cron") is not None:
        return ("cron", " ".join(str(schedule["cron"]).split()), schedule.get("timezone") or "UTC")
    if schedule.get("rrule") is not None:
        return ("rrule", str(schedule["rrule"]), schedule.get("timezone") or "UTC")
    return ("other", repr(sorted(schedule.items())))


def trigger_key(trigger: Mapping[str, Any]) -> Key:
    """An event trigger's identity (a prefect.yaml entry or the REST automation's ``trigger``): the events it
    expects and the resources it matches."""
    match = trigger.get("match") or {}
    return (tuple(sorted(trigger.get("expect") or ())),
            tuple(sorted((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in match.items())))


def trigger_name(deployment: str, index: int) -> str:
    """The name ``prefect deploy`` gives the ``index``-th (0-based) trigger of a deployment's entry."""
    return f"{deployment}__automation_{index + 1}"


@dataclass
class ServerState:
    """One deployment as the Prefect server has it: the switches an operator can flip."""

    paused: bool = False
    schedules: list[tuple[Key, bool]] = field(default_factory=list)
    triggers: list[tuple[Key, bool]] = field(default_factory=list)


def _ours(rows: Iterable[Mapping[str, Any]], entries: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Entry name -> the server's deployment the redeploy updates. A name on several flows: the one with the
    entry's entrypoint (none when that does not decide)."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(str(row.get("name")), []).append(row)
    chosen: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        candidates = by_name.get(entry["name"], [])
        if len(candidates) > 1:
            candidates = [row for row in candidates if row.get("entrypoint") == entry.get("entrypoint")]
        if len(candidates) == 1:
            chosen[entry["name"]] = candidates[0]
    return chosen


def server_states(deployments: Iterable[Mapping[str, Any]], automations: Iterable[Mapping[str, Any]],
                  entries: Sequence[Mapping[str, Any]]) -> dict[str, ServerState]:
    """Deployment name -> its :class:`ServerState`, for the prefect.yaml ``entries`` already in a work pool on
    the server (``deployments`` and ``automations`` are the REST rows). One without a work pool was served by a
    runner: its switches are the runner's (which pauses every deployment when it stops), not an operator's,
    so it gets the rendered defaults."""
    rows = _ours(deployments, entries)
    owned: dict[tuple[str, str], Mapping[str, Any]] = {}
    for automation in automations:
        for action in automation.get("actions") or []:
            if action.get("type") == "run-deployment" and action.get("deployment_id"):
                owned[(str(action["deployment_id"]), str(automation.get("name")))] = automation
    states: dict[str, ServerState] = {}
    for entry in entries:
        row = rows.get(entry["name"])
        if row is None or not row.get("work_pool_name"):
            continue
        state = ServerState(paused=bool(row.get("paused")))
        for item in row.get("schedules") or []:
            state.schedules.append((schedule_key(item.get("schedule") or {}, item.get("slug")),
                                    bool(item.get("active", True))))
        for index in range(len(entry.get("triggers") or [])):
            found = owned.get((str(row["id"]), trigger_name(entry["name"], index)))
            if found is not None:
                state.triggers.append((trigger_key(found.get("trigger") or {}),
                                       bool(found.get("enabled", True))))
        states[entry["name"]] = state
    return states


def _take(kept: list[tuple[Key, bool]], key: Key) -> bool | None:
    """The flag of the first not yet matched ``key`` in ``kept`` (removed), None when there is none."""
    for position, (candidate, flag) in enumerate(kept):
        if candidate == key:
            del kept[position]
            return flag
    return None


def _describe_schedule(spec: Mapping[str, Any]) -> str:
    if spec.get("interval") is not None:
        return f"every {spec['interval']}s"
    if spec.get("cron") is not None:
        return f"cron {spec['cron']}"
    return f"rrule {spec.get('rrule')}" if spec.get("rrule") is not None else "schedule"


def keep_choices(document: dict[str, Any], states: Mapping[str, ServerState]) -> list[str]:
    """Write the server's switches (``states``) into the prefect.yaml ``document`` (in place): each schedule's
    ``active``, each trigger's ``enabled`` and the deployment's ``paused`` that an earlier deploy or an operator
    left on the server. Returns one phrase per switch that differs from the rendered default."""
    changed: list[str] = []
    for entry in document["deployments"]:
        state = states.get(entry["name"])
        if state is None:
            continue
        schedules = list(state.schedules)
        for spec in entry.get("schedules") or []:
            active = _take(schedules, schedule_key(spec, spec.get("slug")))
            if active is not None and active != spec.get("active", True):
                changed.append(f"{entry['name']} schedule {_describe_schedule(spec)} {'on' if active else 'off'}")
            if active is not None:
                spec["active"] = active
        triggers = list(state.triggers)
        for spec in entry.get("triggers") or []:
            enabled = _take(triggers, trigger_key(spec))
            if enabled is not None and enabled != spec.get("enabled", True):
                changed.append(f"{entry['name']} trigger on {', '.join(spec.get('expect') or ())} "
                               f"{'on' if enabled else 'off'}")
            if enabled is not None:
                spec["enabled"] = enabled
        if state.paused:
            entry["paused"] = True
            changed.append(f"{entry['name']} paused")
    return changed


def read_states(api_url: str, entries: Sequence[Mapping[str, Any]]) -> dict[str, ServerState]:
    """The :class:`ServerState` of the ``entries`` already on the Prefect server at ``api_url``."""
    names = [trigger_name(entry["name"], index) for entry in entries
             for index in range(len(entry.get("triggers") or []))]
    with PrefectRest(api_url) as client:
        deployments = client.deployments()
        automations = [] if not names else client.automations(names)
    return server_states(deployments, automations, entries)


def deploy_all(pool: str, env: Mapping[str, str], log_path: Path) -> None:
    """``prefect --no-prompt deploy --all`` of :func:`pool_prefect_yaml` (output appended to ``log_path``), with
    the switches an operator flipped on the server (``env["PREFECT_API_URL"]``) kept (:func:`keep_choices`; one
    line on stderr when one differs from the rendered default); raises :class:`PoolSetupError` (exit 3) naming
    the log when Prefect fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    document = _in_pool(yaml.safe_load(render.render()), pool)
    api_url = env.get("PREFECT_API_URL", "").strip()
    kept: list[str] = []
    if api_url:
        try:
            kept = keep_choices(document, read_states(api_url, document["deployments"]))
        except httpx.HTTPError as exc:  # deploying now would switch the operator's choices back: refuse
            raise PoolSetupError(f"could not read what is switched on or off on the Prefect server at {api_url} "
                                 f"(schedules, triggers, paused: a redeploy keeps them): {type(exc).__name__}: "
                                 f"{str(exc)[:160] or 'no answer'}") from None
    summary = ("kept what was switched on the Prefect server (not the rendered default): " + "; ".join(kept)
               if kept else "")
    with tempfile.TemporaryDirectory(prefix="ringward-deploy-") as scratch:
        project = Path(scratch) / "prefect.yaml"
        project.write_text(_dump(document), encoding="utf-8")
        with log_path.open("ab") as log:
            if summary:
                log.write(f"ringward: {summary}\n".encode())
                log.flush()
            done = subprocess.run(
                [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(project)],
                cwd=scratch, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=DEPLOY_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise PoolSetupError(f"prefect deploy --all exited with code {done.returncode}; see {log_path}")
    if summary:
        print(summary, file=sys.stderr)


def register(api_url: str, pool: str, env: Mapping[str, str], log_path: Path, *,
             unresponsive_after_s: int = DEFAULT_UNRESPONSIVE_AFTER_S,
             max_reruns: int = DEFAULT_MAX_RERUNS) -> tuple[dict[str, str], dict[str, str]]:
    """Every catalog deployment into ``pool`` (:func:`deploy_all`), the crash-recovery automations applied
    for them, and each checked to be in the pool (:class:`PoolSetupError` naming the missing ones):
    ``ringward deploy`` and ``ringward up --pool``. Returns (deployment name -> id, automation -> outcome)."""
    deploy_all(pool, env, log_path)
    ids, outcome = apply_crash_recovery(api_url, catalog_names(), pool=pool, unresponsive_after_s=unresponsive_after_s,
                                        max_reruns=max_reruns)
    missing = sorted(set(catalog_names()) - set(ids))
    if missing:
        raise PoolSetupError(f"prefect deploy did not register {', '.join(missing)} in work pool {pool}; "
                             f"see {log_path}")
    return ids, outcome


def catalog_names() -> list[str]:
    return [deployment.name for deployment in CATALOG]
