"""Incident playbooks as flows: ``playbook-key-compromise``, ``playbook-yank`` and
``playbook-unauthorized-release``. One task per step (the task list shows which step ran, waits or
failed); the run stops at a destructive step awaiting its approval and a later flow run with
``params.approval`` resumes it. Every step is recorded as evidence by the operations the tasks call,
so a flow run and ``ringward playbook ...`` write the same records for the same parameters.

The run ends **Completed** when the playbook completed or awaits an approval (the message says
which) and **Failed** when a step failed or an approval was refused (the refusal as data: front
doors re-raise it as the same one-line error). Artifacts: ``playbook-<playbook>`` (markdown) and
``playbook-<playbook>-steps`` (table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from flows._common import current_flow_run_id, utc_now
from flows.inventory_ingest import step as unwrap_step
from tasks.incidents_playbooks import finish_playbook, playbook_step, start_playbook


def _run(playbook: str, params: dict[str, Any], now: datetime | None) -> State:
    moment = now or utc_now()
    flow_run_id = current_flow_run_id()
    started, refused = unwrap_step(start_playbook(playbook, params, moment, flow_run_id, return_state=True),
                                   f"playbook-{playbook}")
    if refused is not None:
        return refused
    run_id = started["run_id"]
    used = False
    for name in started["steps"]:
        advanced, refused = unwrap_step(playbook_step(playbook, params, run_id, name, moment, flow_run_id,
                                                      return_state=True), f"playbook-{playbook} {name}")
        if refused is not None:
            return refused
        used = used or bool(advanced["approval_used"])
        if advanced["stop"]:
            break
    result, refused = unwrap_step(finish_playbook(params, run_id, used, moment, flow_run_id, return_state=True),
                                  f"playbook-{playbook}")
    if refused is not None:
        return refused
    _publish(playbook, result)
    message = f"playbook {playbook} {run_id}: {result['status']}"
    if result["awaiting"]:
        message += f" (step {result['awaiting']['step']}, approval {result['awaiting']['approval_id']})"
    return Completed(message=message, data=result)


def _publish(playbook: str, result: dict[str, Any]) -> None:
    run = result["run"]
    title = f"playbook {playbook} {run['run_id']}: {result['status']}"
    lines = [f"# {title}", ""]
    waiting = result["awaiting"]
    if waiting:
        lines += [f"**Awaiting approval** `{waiting['approval_id']}` for step `{waiting['step']}` (until "
                  f"{waiting['expires_at']}); someone other than {waiting['requested_by']} approves it, then the "
                  "playbook runs again with `approval` set.", ""]
    lines += [f"- `{s['name']}`: {s['status']}" + (f" -- {s['error']}" if s.get("error") else "") for s in run["steps"]]
    create_markdown_artifact(key=f"playbook-{playbook}", markdown="\n".join(lines) + "\n", description=title)
    create_table_artifact(key=f"playbook-{playbook}-steps", description=title, table=[
        {"step": s["name"], "destructive": s["destructive"], "status": s["status"],
         "approval": (s["approval"] or {}).get("approval_id", "-"),
         "evidence": ", ".join(str(i) for i in s["evidence_ids"][-10:])} for s in run["steps"]])


@flow(name="playbook-key-compromise", log_prints=True)
def key_compromise_flow(key: str, trust_root: str, root_keys: list[str] | None = None, connectors: str | None = None,
                        providers: str = "all", reason: str | None = None, approval: str | None = None,
                        expires_in: str = "24h", actor: str | None = None, time_overridden: bool = False,
                        now: datetime | None = None) -> State:
    """``ringward playbook key-compromise`` (``connectors`` defaults to the settings' connectors.yaml)."""
    return _run("key-compromise", {
        "key": key, "trust_root": trust_root, "root_keys": root_keys or [], "connectors": connectors,
        "providers": providers, "reason": reason, "approval": approval, "expires_in": expires_in, "actor": actor,
        "time_overridden": time_overridden}, now)


@flow(name="playbook-yank", log_prints=True)
def yank_flow(version: str, digest: str | None = None, channels: list[str] | None = None, package: str | None = None,
              replacement: str | None = None, remediation_key: str | None = None, trust_root: str | None = None,
              reason: str | None = None, approval: str | None = None, expires_in: str = "24h",
              actor: str | None = None, time_overridden: bool = False, now: datetime | None = None) -> State:
    """``ringward playbook yank``."""
    return _run("yank", {
        "version": version, "digest": digest, "channels": channels or [], "package": package,
        "replacement": replacement, "remediation_key": remediation_key, "trust_root": trust_root, "reason": reason,
        "approval": approval, "expires_in": expires_in, "actor": actor, "time_overridden": time_overridden}, now)


@flow(name="playbook-unauthorized-release", log_prints=True)
def unauthorized_release_flow(channel: str, trust_root: str, observations: str | None = None,
                              packages: list[str] | None = None, trusted_sources: list[str] | None = None,
                              reason: str | None = None, approval: str | None = None, expires_in: str = "24h",
                              actor: str | None = None, time_overridden: bool = False,
                              now: datetime | None = None) -> State:
    """``ringward playbook unauthorized-release``."""
    return _run("unauthorized-release", {
        "channel": channel, "trust_root": trust_root, "observations": observations, "packages": packages or [],
        "trusted_sources": trusted_sources or [], "reason": reason, "approval": approval,
        "expires_in": expires_in, "actor": actor, "time_overridden": time_overridden}, now)


FLOWS = {"key-compromise": key_compromise_flow, "yank": yank_flow,
         "unauthorized-release": unauthorized_release_flow}
