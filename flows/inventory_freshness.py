"""Inventory freshness as a tracked flow run (the cron deployment: every 15 minutes by default).

Publishes the freshness per scope under stable keys (``inventory-freshness`` markdown and
``inventory-freshness-scopes`` table) so the Prefect UI always shows the current state, and emits
``ringward.inventory.freshness-changed`` once per state change (never per evaluation: the operation
detects changes against the stored state with compare-and-set).
"""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from flows._common import current_flow_run_id, emit, utc_now
from flows.inventory_ingest import step
from ringward.operations.inventory.events import freshness_events
from tasks.inventory_steps import evaluate_freshness

FRESHNESS_KEY = "inventory-freshness"


@flow(name="inventory-freshness", log_prints=True)
def inventory_freshness_flow(provider: str | None = None, channel: str | None = None,
                             deployment_target: str | None = None, max_age: str = "24h", critical_age: str = "48h",
                             scope_thresholds: list[str] | None = None, actor: str | None = None,
                             now: datetime | None = None) -> State:
    params = {"provider": provider, "channel": channel, "deployment_target": deployment_target, "max_age": max_age,
              "critical_age": critical_age, "scope_thresholds": scope_thresholds or [], "actor": actor}
    result, refused = step(evaluate_freshness(params, now or utc_now(), current_flow_run_id(), return_state=True),
                           "inventory-freshness")
    if refused is not None:
        return refused
    title = f"inventory freshness: {result['alert_level']}"
    create_markdown_artifact(
        key=FRESHNESS_KEY, description=title,
        markdown="\n".join([f"# {title}", "", *[f"- {a['severity']}: {a['message']}" for a in result["alerts"][:50]],
                            "", f"Report `{result['report_id']}`, evidence `{result['evidence']['evidence_id']}`."])
        + "\n")
    create_table_artifact(
        key=f"{FRESHNESS_KEY}-scopes", description=title,
        table=[{"scope": f"{r['provider']}/{r['channel']}/{r['deployment_target']}", "observed_at": r["observed_at"],
                "age_hours": r["age_hours"], "severity": r["severity"]} for r in result["latest_ingestions"]]
        or [{"-": "no ingestions"}])
    for event in freshness_events(result):
        emit(*event)
    return Completed(message=title, data=result)
