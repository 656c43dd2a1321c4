"""Crash recovery for Ringward's flow runs, with Prefect's own machinery: automations.

A worker host that dies mid-run leaves its flow runs ``Running`` (or ``Pending``) forever: nothing is
left to report their end. Flow runs started by a Ringward worker send a heartbeat event
(``prefect.flow-run.heartbeat``) every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (``ringward worker``
sets 30, Prefect's minimum). Four automations, applied by ``ringward deploy`` and ``ringward up``
(idempotently, by name), turn that into recovery; each one is scoped to Ringward's deployments:

1. *unresponsive*: a run that started (``Running``) or sent a heartbeat, then sent nothing for
   ``unresponsive_after_s`` seconds, is marked ``Crashed`` (Prefect's "detect zombie flows" recipe);
2. *stalled*: a run that was handed to a worker (``Pending``) and then sent nothing for as long is marked
   ``Crashed`` too (its worker or host died before the flow started: no heartbeat will ever come);
3. *re-run*: a crashed run whose attempt count (``prefect.run-count``) is at most ``max_reruns`` is set
   back to ``Scheduled`` (named ``AwaitingRetry``), so a live worker picks the **same flow run** up
   again; a run that keeps crashing ends ``Crashed`` after ``max_reruns`` re-runs;
4. *re-run never started*: the same for a run crashed by (2), which never counted an attempt.

A run a worker reported ``Crashed`` before it started (its process could not even start: a broken
host) is **not** re-run, so it cannot loop. Flows key their side effects by stable keys in the store
(insert-or-skip), so a re-run finds what the crashed attempt already recorded and adds nothing.

This module imports no Prefect: specifications are the REST API's JSON, applied with the plain-httpx
client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ringward.core.errors import InputError
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.common.scale_out import PrefectAdmin

#: tag marking the automations this module owns (a stale one, e.g. after a rename, is deleted)
TAG = "ringward-crash-recovery"
DEFAULT_UNRESPONSIVE_AFTER_S = 90
#: a heartbeat comes every 30 s at best (Prefect's minimum): anything shorter crashes healthy runs
MIN_UNRESPONSIVE_AFTER_S = 40
DEFAULT_MAX_RERUNS = 2
MAX_RERUNS_CAP = 10

UNRESPONSIVE = "ringward: crash unresponsive flow runs"
STALLED = "ringward: crash flow runs stalled before start"
RERUN = "ringward: re-run crashed flow runs"
RERUN_NEVER_STARTED = "ringward: re-run crashed flow runs that never started"

#: any event of a flow run shows it (or its worker) is alive: a heartbeat or any state change
ANY_FLOW_RUN_EVENT = "prefect.flow-run.*"


def stalled_message(seconds: int) -> str:
    return (f"Ringward crash detection: Pending for {seconds}s without starting; the worker or its host "
            "died before the flow started")


def unresponsive_message(seconds: int) -> str:
    return f"Ringward crash detection: no heartbeat for {seconds}s; the flow run's process or host died"


def rerun_message(max_reruns: int) -> str:
    return f"Ringward crash recovery: re-run after a crash (at most {max_reruns} re-runs)"


def check_options(unresponsive_after_s: int, max_reruns: int) -> None:
    if unresponsive_after_s < MIN_UNRESPONSIVE_AFTER_S:
        raise InputError(f"--unresponsive-after {unresponsive_after_s}: expected at least {MIN_UNRESPONSIVE_AFTER_S} "
                         "seconds (flow runs send a heartbeat every 30 s at best)")
    if not 0 <= max_reruns <= MAX_RERUNS_CAP:
        raise InputError(f"--max-reruns {max_reruns}: expected 0 to {MAX_RERUNS_CAP}")


def _ours(deployment_ids: Sequence[str]) -> dict[str, Any]:
    return {"prefect.resource.role": "deployment",
            "prefect.resource.id": [f"prefect.deployment.{d}" for d in sorted(deployment_ids)]}


def _state(state: str, message: str, name: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "change-flow-run-state", "state": state, "message": message, "force": False}
    if name is not None:
        action["name"] = name
    return action


def crash_recovery(deployment_ids: Iterable[str], *, unresponsive_after_s: int = DEFAULT_UNRESPONSIVE_AFTER_S,
                   max_reruns: int = DEFAULT_MAX_RERUNS) -> list[dict[str, Any]]:
    """The automations (Prefect REST ``AutomationCreate`` bodies) recovering crashed runs of these
    deployments; ``max_reruns=0`` detects crashes without re-running."""
    check_options(unresponsive_after_s, max_reruns)
    ids = sorted(set(deployment_ids))
    if not ids:
        raise InputError("crash recovery: no Ringward deployment is registered on this Prefect server")
    related = _ours(ids)
    flow_runs = {"prefect.resource.id": "prefect.flow-run.*"}

    def silence(name: str, after: list[str], message: str, description: str) -> dict[str, Any]:
        return {
            "name": name, "description": description, "enabled": True, "tags": [TAG],
            "trigger": {"type": "event", "posture": "Proactive", "match": flow_runs, "match_related": related,
                        "after": after, "expect": [ANY_FLOW_RUN_EVENT], "for_each": ["prefect.resource.id"],
                        "threshold": 1, "within": unresponsive_after_s},
            "actions": [_state("CRASHED", message)],
        }

    def rerun(name: str, match: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name, "description": description, "enabled": True, "tags": [TAG],
            "trigger": {"type": "event", "posture": "Reactive", "match": {**flow_runs, **match},
                        "match_related": related, "after": [], "expect": ["prefect.flow-run.Crashed"],
                        "for_each": ["prefect.resource.id"], "threshold": 1, "within": 0},
            "actions": [_state("SCHEDULED", rerun_message(max_reruns), name="AwaitingRetry")],
        }

    specs = [
        silence(UNRESPONSIVE, ["prefect.flow-run.Running", "prefect.flow-run.Retrying", "prefect.flow-run.heartbeat"],
                unresponsive_message(unresponsive_after_s),
                f"A Ringward flow run silent for {unresponsive_after_s}s after it started or last sent a heartbeat "
                "is Crashed (its process or host died)."),
        # a worker proposes Pending, then Submitting (3.9) before it starts the flow-run process
        silence(STALLED, ["prefect.flow-run.Pending", "prefect.flow-run.Submitting"],
                stalled_message(unresponsive_after_s),
                f"A Ringward flow run handed to a worker that does not start within {unresponsive_after_s}s is "
                "Crashed (the worker or its host died)."),
    ]
    if max_reruns:
        specs += [
            rerun(RERUN, {"prefect.run-count": [str(n) for n in range(1, max_reruns + 1)]},
                  f"A crashed Ringward flow run is scheduled again (same flow run) up to {max_reruns} times; its "
                  "side effects are keyed, so a re-run repeats none."),
            rerun(RERUN_NEVER_STARTED, {"prefect.run-count": "0",
                                        "prefect.state-message": stalled_message(unresponsive_after_s)},
                  "A Ringward flow run crashed before it started because its worker died is scheduled again."),
        ]
    return specs


def ringward_deployment_ids(client: PrefectRest, names: Iterable[str], *, pool: str | None = None) -> dict[str, str]:
    """Deployment name -> id for the Ringward deployments registered on the server (in ``pool`` when given)."""
    wanted = set(names)
    found: dict[str, str] = {}
    for deployment in client.deployments():
        if deployment["name"] in wanted and (pool is None or deployment.get("work_pool_name") == pool):
            found[deployment["name"]] = deployment["id"]
    return found


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    trigger = {k: sorted(v) if k in ("after", "expect", "for_each") else v
               for k, v in (spec.get("trigger") or {}).items() if k != "id"}  # sets, for the server
    return {k: spec.get(k) for k in ("description", "enabled", "tags", "actions")} | {"trigger": trigger}


def _normalise(existing: dict[str, Any]) -> dict[str, Any]:
    """An automation as the server returns it, in the shape of our specs (for an unchanged check)."""
    trigger = dict(existing.get("trigger") or {})
    trigger.pop("id", None)
    within = trigger.get("within")
    if isinstance(within, float) and within.is_integer():
        trigger["within"] = int(within)
    actions = [{k: v for k, v in action.items() if v is not None} for action in existing.get("actions") or []]
    return {**existing, "trigger": trigger, "actions": actions}


def apply(client: PrefectAdmin, specs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Create or update each automation by name (idempotent; an existing one keeps its ``enabled``
    switch); delete ours (tag :data:`TAG`) that are no longer declared, and duplicates of a name.
    Returns name -> created | updated | unchanged | deleted."""
    declared = {spec["name"] for spec in specs}
    existing: dict[str, list[dict[str, Any]]] = {}
    for automation in client.automations():
        if TAG in (automation.get("tags") or []) or automation.get("name") in declared:
            existing.setdefault(automation["name"], []).append(automation)
    outcome: dict[str, str] = {}
    for spec in specs:
        current, *duplicates = existing.pop(spec["name"], []) or [{}]
        for duplicate in duplicates:
            client.delete_automation(duplicate["id"])
        if current:
            # an operator who switched an automation off in the UI keeps it off across redeploys
            spec = {**spec, "enabled": bool(current.get("enabled", spec.get("enabled", True)))}
        if not current:
            client.create_automation(spec)
            outcome[spec["name"]] = "created"
        elif _comparable(_normalise(current)) == _comparable(spec):
            outcome[spec["name"]] = "unchanged"
        else:
            client.replace_automation(current["id"], spec)
            outcome[spec["name"]] = "updated"
    for name, stale in existing.items():
        for automation in stale:
            client.delete_automation(automation["id"])
        outcome[name] = "deleted"
    return outcome


def apply_crash_recovery(api_url: str, names: Iterable[str], *, pool: str | None = None,
                         unresponsive_after_s: int = DEFAULT_UNRESPONSIVE_AFTER_S,
                         max_reruns: int = DEFAULT_MAX_RERUNS) -> tuple[dict[str, str], dict[str, str]]:
    """Apply the crash-recovery automations for the named deployments registered at ``api_url``:
    (deployment name -> id, automation name -> outcome)."""
    with PrefectAdmin(api_url) as client:
        ids = ringward_deployment_ids(client, names, pool=pool)
        return ids, apply(client, crash_recovery(ids.values(), unresponsive_after_s=unresponsive_after_s,
                                                 max_reruns=max_reruns))
