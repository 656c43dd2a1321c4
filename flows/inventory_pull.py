"""Scheduled inventory pull as a tracked flow run: Jamf Pro, Microsoft Graph (Intune) or Fleet -> ingestion.

Tasks are coarse: ``plan-inventory-pull``, one ``pull-inventory-pages`` per batch of ``batch_pages``
pages, then ``ingest-pulled-inventory`` (merge into the last snapshot, the existing ingestion, the
pull's evidence and its cursor, compare-and-set). The run publishes, under one stable key per source
(``inventory-pull-<provider>-<source>``), a markdown summary and a table (hosts pulled, cursor,
errors), and emits ``ringward.inventory.ingested`` when the fleet is new content, so the
reconciliation automation reacts as it does to any ingestion. A refused step (a 401, retries
exhausted) ends the run Failed carrying the one-line error, also published under the source's key.
With ``skip_unconfigured`` (the scheduled deployments) a connector file without a source for the
provider ends the run Completed with a note: not every site runs all three tools.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from flows._common import current_flow_run_id, emit, utc_now
from flows.inventory_ingest import step
from ringward.operations.inventory.events import ingested_event
from tasks.inventory_pull import ingest_pulled_inventory, plan_inventory_pull, pull_inventory_pages

PULL_KEY = "inventory-pull"


def artifact_key(provider: str, source: str | None) -> str:
    """``inventory-pull-<provider>-<source>`` in the characters artifact keys allow."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{PULL_KEY}-{provider}-{source or 'default'}".lower()).strip("-")


def _publish(provider: str, source: str | None, title: str, row: dict[str, Any], lines: list[str]) -> None:
    key = artifact_key(provider, source)
    create_markdown_artifact(key=key, description=title, markdown="\n".join([f"# {title}", "", *lines]) + "\n")
    create_table_artifact(key=f"{key}-table", description=title, table=[row])


def _refused(provider: str, source: str | None, refusal: State, data: dict[str, Any], stage: str) -> State:
    message = data["errors"][0]["message"]
    _publish(provider, source, f"inventory pull {provider}/{source or '-'}: FAILED",
             {"provider": provider, "source": source or "-", "status": "failed", "stage": stage,
              "errors": message[:500]}, [f"**FAILED** while {stage}: {message}"])
    return refusal


@flow(name="inventory-pull", log_prints=True)
def inventory_pull_flow(provider: str, config_path: str, source: str | None = None, channel: str | None = None,
                        software: list[str] | None = None, full: bool = False, full_every: str = "24h",
                        page_size: int | None = None, batch_pages: int = 10, max_hosts: int | None = None,
                        skip_unconfigured: bool = False, actor: str | None = None,
                        now: datetime | None = None) -> State:
    now = now or utc_now()
    flow_run_id = current_flow_run_id()
    params = {"provider": provider, "config_path": config_path, "source": source, "channel": channel,
              "software": software, "full": full, "full_every": full_every, "page_size": page_size,
              "batch_pages": batch_pages, "max_hosts": max_hosts, "actor": actor}
    plan, refused = step(plan_inventory_pull(params, now, return_state=True), "inventory-pull")
    if refused is not None:
        if skip_unconfigured and plan["errors"][0]["code"] == "no-pull-source":
            return Completed(message=f"no {provider} pull source in {config_path}; nothing to pull",
                             data={"status": "not-configured", "provider": provider})
        return _refused(provider, source, refused, plan, "planning")
    batches: list[dict[str, Any]] = []
    continuation: dict[str, Any] | None = plan["start"]
    while continuation is not None:
        batch, refused = step(pull_inventory_pages(plan, continuation, now, flow_run_id, return_state=True),
                              "inventory-pull")
        if refused is not None:
            return _refused(provider, plan["source"], refused, batch, f"reading page {continuation['index'] + 1}")
        batches.append(batch)
        continuation = batch["next"]
    result, refused = step(ingest_pulled_inventory(plan, batches, now, flow_run_id, return_state=True),
                           "inventory-pull")
    if refused is not None:
        return _refused(provider, plan["source"], refused, result, "ingesting")
    ingestion = result["ingestion"]
    title = (f"inventory pull {provider}/{result['source']}: {result['mode']}, {result['hosts_fetched']} hosts "
             f"pulled, fleet {result['host_count']}")
    _publish(provider, result["source"], title,
             {"provider": provider, "source": result["source"], "status": "pulled", "mode": result["mode"],
              "pages": result["page_count"], "hosts_pulled": result["hosts_fetched"], "fleet": result["host_count"],
              "cursor_before": result["cursor"]["before"] or "-", "cursor_after": result["cursor"]["after"] or "-",
              "inventory_id": result["inventory_id"], "ingestion": ingestion["status"],
              "errors": "; ".join(result["warnings"])[:500] or "-"},
             [f"**{ingestion['status']}** `{result['inventory_id']}` ({ingestion['endpoint_count']} endpoints, "
              f"observed {ingestion['observed_at']})", "",
              f"- mode: {result['mode']}" + (f" ({result['full_reason']})" if result["full_reason"] else ""),
              f"- pages: {result['page_count']}, hosts pulled: {result['hosts_fetched']}",
              f"- cursor: {result['cursor']['before'] or '-'} -> {result['cursor']['after'] or '-'}",
              f"- evidence: `{result['evidence']['evidence_id']}`",
              *[f"- warning: {w}" for w in result["warnings"][:20]]])
    event = ingested_event(ingestion)
    if event is not None:
        emit(*event)
    return Completed(message=title, data=result)
