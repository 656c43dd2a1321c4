"""Inventory freshness as a tracked flow run (the cron deployment: every 15 minutes by default).

Publishes the freshness per scope under stable keys (``inventory-freshness`` markdown and
``inventory-freshness-scopes`` table) so the Prefect UI always shows the current state, and emits
``ringward.inventory.freshness-changed`` once per state change (never per evaluation: the operation
detects changes against the stored state with compare-and-set). With ``config_path`` (the
deployment passes the home's ``connectors.yaml``) each change not yet notified is also delivered
through the connector platform once -- healthy -> warning -> critical -> healthy and a source going
silent or delivering again; a missing connector file switches notifications off (said in the
artifact), and a delivery that failed ends the run Failed (the next evaluation retries it).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed

from flows._common import current_flow_run_id, emit, utc_now
from flows.inventory_ingest import step
from ringward.operations.inventory.events import freshness_events
from tasks.inventory_freshness import notify_freshness_changes
from tasks.inventory_steps import evaluate_freshness

FRESHNESS_KEY = "inventory-freshness"


def _notify(config_path: str | None, providers: str, actor: str | None, now: datetime,
            flow_run_id: str | None) -> tuple[dict[str, Any] | None, State | None, str]:
    """(notification result, refusal, one line for the artifact)."""
    if not config_path:
        return None, None, "Notifications: off (no config_path)."
    if not Path(config_path).is_file():
        return None, None, f"Notifications: off (no connector file at {config_path})."
    outcome, refused = step(notify_freshness_changes({"config_path": config_path, "providers": providers,
                                                      "actor": actor}, now, flow_run_id, return_state=True),
                            "inventory-freshness")
    if refused is not None:
        return None, refused, f"Notifications: refused ({outcome['errors'][0]['message'][:300]})."
    return outcome, None, (f"Notifications: {len(outcome['delivered'])} delivered, {len(outcome['failed'])} "
                           "failed (retried by the next evaluation).")


@flow(name="inventory-freshness", log_prints=True)
def inventory_freshness_flow(provider: str | None = None, channel: str | None = None,
                             deployment_target: str | None = None, max_age: str = "24h", critical_age: str = "48h",
                             scope_thresholds: list[str] | None = None, config_path: str | None = None,
                             providers: str = "all", actor: str | None = None, now: datetime | None = None) -> State:
    now = now or utc_now()
    flow_run_id = current_flow_run_id()
    params = {"provider": provider, "channel": channel, "deployment_target": deployment_target, "max_age": max_age,
              "critical_age": critical_age, "scope_thresholds": scope_thresholds or [], "actor": actor}
    result, refused = step(evaluate_freshness(params, now, flow_run_id, return_state=True), "inventory-freshness")
    if refused is not None:
        return refused
    for event in freshness_events(result):
        emit(*event)
    notified, notify_refused, notify_line = _notify(config_path, providers, actor, now, flow_run_id)
    result["notifications"] = notified
    title = f"inventory freshness: {result['alert_level']}"
    create_markdown_artifact(
        key=FRESHNESS_KEY, description=title,
        markdown="\n".join([f"# {title}", "", *[f"- {a['severity']}: {a['message']}" for a in result["alerts"][:50]],
                            "", *[f"- state change: {c['state']} {c['from']} -> {c['to']}" for c in result["changes"]],
                            "", notify_line,
                            "", f"Report `{result['report_id']}`, evidence `{result['evidence']['evidence_id']}`."])
        + "\n")
    create_table_artifact(
        key=f"{FRESHNESS_KEY}-scopes", description=title,
        table=[{"scope": f"{r['provider']}/{r['channel']}/{r['deployment_target']}", "observed_at": r["observed_at"],
                "age_hours": r["age_hours"], "severity": r["severity"]} for r in result["latest_ingestions"]]
        or [{"-": "no ingestions"}])
    if notify_refused is not None:
        return notify_refused
    if notified is not None and not notified["ok"]:
        return Failed(message=f"{title}; {len(notified['failed'])} notification(s) not delivered", data=result)
    return Completed(message=title, data=result)
