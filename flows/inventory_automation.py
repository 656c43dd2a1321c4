"""``inventory-automation``: what ``ringward.inventory.ingested`` triggers (deployment
``inventory-automation-on-ingest``). The event carries ids only (``inventory_id``, ``channel``); the run
looks the ingestion up in the store, reconciles it against its channel's current release (the package
verified against the pinned trust root, always) and, on drift, opens a remediation request signed
with the automation's remediation-role key -- or attaches to the open request for the same release,
targets and drift classes (:mod:`ringward.operations.remediation.automation`).

Publishes ``inventory-automation-<channel>`` (markdown) and ``ringward.inventory.drift-detected`` on
drift; ends Completed with the outcome (requested, attached, aligned, skipped, already automated), or
Failed with the refusal as data (package does not verify, key not pinned for remediation, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from flows._common import current_flow_run_id, emit, utc_now
from flows.inventory_ingest import step
from ringward.operations.inventory.events import drift_event
from tasks.inventory_automation import automate_reconciliation

AUTOMATION_KEY = "inventory-automation"


def _markdown(result: dict[str, Any]) -> str:
    lines = [f"# Inventory automation: {result['status']}", "", result.get("message") or "", ""]
    if result.get("reconciliation_id"):
        release = result["release"]
        lines += [f"- ingestion `{result['inventory_id']}` ({result.get('provider')}), channel {result['channel']}",
                  f"- release {release.get('version')} ({release.get('source')}, `{release.get('digest')}`)",
                  f"- reconciliation `{result['reconciliation_id']}`: {result['drift_status']} "
                  f"({result['alert_level']})"]
    if result.get("request_id"):
        lines.append(f"- remediation request `{result['request_id']}`{' (attached)' if result['attached'] else ''}, "
                     f"approval `{result['approval_id']}` ({result['approval_state']})")
    if result.get("evidence"):
        lines.append(f"- evidence `{result['evidence']['evidence_id']}`")
    return "\n".join(lines) + "\n"


@flow(name="inventory-automation", log_prints=True)
def inventory_automation_flow(inventory_id: str, channel: str | None = None, trust_root: str | None = None,
                              signing_key: str | None = None, packages: str | None = None,
                              channel_releases: str | None = None, strategy: str = "mixed",
                              stale_after: str = "24h", actor: str | None = None,
                              now: datetime | None = None) -> State:
    params = {"inventory_id": inventory_id, "channel": channel, "trust_root": trust_root, "signing_key": signing_key,
              "packages": packages, "channel_releases": channel_releases, "strategy": strategy,
              "stale_after": stale_after, "actor": actor}
    result, refused = step(automate_reconciliation(params, now or utc_now(), current_flow_run_id(),
                                                   return_state=True), "inventory-automation")
    if refused is not None:
        return refused
    create_markdown_artifact(key=f"{AUTOMATION_KEY}-{result.get('channel') or 'unassigned'}",
                             description=f"inventory automation {inventory_id}", markdown=_markdown(result))
    if not result.get("repeat") and result.get("drift_status") == "drift_detected":
        event = drift_event(result)
        if event is not None:
            emit(*event)
    return Completed(message=str(result.get("message") or result["status"])[:500], data=result)
