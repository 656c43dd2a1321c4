"""``incident-breaches``: the scheduled incident response-clock report (until the SLA escalation
engine takes incidents over). Evaluates every open incident's clocks at ``now`` and delivers each
new breach / at-risk notice through the connector platform once per (incident, clock, level); a
re-run sends nothing again. Publishes the breaches under a stable artifact key; the run ends
Failed when a delivery failed (the next run retries it)."""

from __future__ import annotations

from datetime import datetime

from prefect import State, flow
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed

from flows._common import current_flow_run_id, utc_now
from flows.inventory_ingest import step
from tasks.incidents_breaches import incident_breaches

BREACHES_KEY = "incident-breaches"


@flow(name="incident-breaches", log_prints=True)
def incident_breaches_flow(config_path: str | None = None, providers: str = "all", actor: str | None = None,
                           now: datetime | None = None) -> State:
    params = {"config_path": config_path, "providers": providers, "actor": actor}
    result, refused = step(incident_breaches(params, now or utc_now(), current_flow_run_id(), return_state=True),
                           "incident-breaches")
    if refused is not None:
        return refused
    title = f"incident clocks: {result['breached']} breached, {result['at_risk']} at risk"
    create_table_artifact(
        key=BREACHES_KEY, description=title,
        table=[{"incident": b["incident_id"], "severity": b["severity"], "clock": b["clock"], "state": b["state"],
                "due_at": b["due_at"], "overdue_hours": round(b["overdue_seconds"] / 3600, 1)}
               for b in result["breaches"][:500]] or [{"-": "no breached or at-risk clock"}])
    if not result.get("ok", True):
        return Failed(message=f"{title}; {len(result['failed'])} notice(s) not delivered", data=result)
    return Completed(message=title, data=result)
