"""Inventory ingestion as a tracked flow run: one provider payload -> observations + evidence.

Publishes a summary and a per-target table under stable artifact keys, and emits
``ringward.inventory.ingested`` (resource ``ringward.inventory.<provider>``, payload ``inventory_id`` and
``channel`` only) for a new ingestion: the ``inventory-automation-on-ingest`` deployment reconciles the
channel's current release on it and opens or attaches to a remediation request
(``flows/inventory_automation.py``). A refused payload ends the run Failed carrying the refusal; its raw
bytes are already evidence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed

from flows._common import current_flow_run_id, emit, unwrap, utc_now
from ringward.operations.inventory.events import ingested_event
from tasks.inventory_steps import ingest_inventory, ingest_webhook_receipt

INGEST_KEY = "inventory-ingestion"


def step(state: State, title: str) -> tuple[Any, State | None]:
    result = unwrap(state)
    if isinstance(result, dict) and result.get("refused"):
        return result, Failed(message=f"{title}: refused ({result['errors'][0]['message'][:300]})", data=result)
    return result, None


@flow(name="inventory-ingest", log_prints=True)
def inventory_ingest_flow(source: str, provider: str, channel: str | None = None,
                          software: list[str] | None = None, output: str | None = None, actor: str | None = None,
                          now: datetime | None = None) -> State:
    params = {"source": source, "provider": provider, "channel": channel, "software": software, "output": output,
              "actor": actor}
    result, refused = step(ingest_inventory(params, now or utc_now(), current_flow_run_id(), return_state=True),
                           "inventory-ingest")
    if refused is not None:
        return refused
    title = f"inventory {result['inventory_id']} ({result['provider']})"
    create_markdown_artifact(
        key=f"{INGEST_KEY}-{result['provider']}", description=title,
        markdown="\n".join([f"# {title}", "", f"**{result['status']}**: {result['endpoint_count']} endpoints, "
                            f"channel {result['channel'] or 'unassigned'}, observed {result['observed_at']}", "",
                            *[f"- warning: {w}" for w in result["warnings"][:20]]]) + "\n")
    create_table_artifact(key=f"{INGEST_KEY}-{result['provider']}-targets", description=title,
                          table=[{"deployment_target": t} for t in result["deployment_targets"]] or [{"-": "none"}])
    event = ingested_event(result)
    if event is not None:
        emit(*event)
    return Completed(message=f"{result['status']} {result['inventory_id']}", data=result)


@flow(name="inventory-ingest-receipt", log_prints=True)
def inventory_ingest_receipt_flow(receipt_id: int, now: datetime | None = None) -> State:
    """Ingest one signed webhook body by its receipt id (what ``ringward.inventory.received`` carries):
    the path, provider, channel and output come from the receipt the API stored, never from the
    event, and a receipt already finished is not ingested again."""
    outcome, refused = step(ingest_webhook_receipt(receipt_id, now or utc_now(), current_flow_run_id(),
                                                   return_state=True), "inventory-ingest-receipt")
    if refused is not None:
        return refused
    if outcome.get("already_finished"):
        return Completed(message=f"receipt {receipt_id} already {outcome['status']}; nothing to do", data=outcome)
    if outcome["status"] != "ingested":
        return Failed(message=f"receipt {receipt_id} rejected: {outcome.get('reason')}"[:500], data=outcome)
    result = outcome["result"]
    event = ingested_event(result)
    if event is not None:
        emit(*event)
    return Completed(message=f"receipt {receipt_id}: {result['status']} {result['inventory_id']}", data=outcome)
