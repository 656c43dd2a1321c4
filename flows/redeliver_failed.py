"""Flow ``redeliver-failed`` (scheduled): retry failed deliveries that are due and still inside
their redelivery window, take over stalled claims (a delivering process died holding them: its
lease expired), expire those past the window, and publish the connector dashboard. Deliveries a
live run holds are reported ``held``: exactly one concurrent redelivery sends each key."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows._common import connectors_config, current_flow_run_id
from flows.deliver_event import publish_dashboard
from tasks.delivery import connector_dashboard, redeliver_failed


@flow(name="redeliver-failed", log_prints=True)
def redeliver_failed_flow(config_path: str | None = None, limit: int = 1000) -> dict[str, Any]:
    """Redeliver up to ``limit`` due deliveries using the destinations of ``config_path`` (default: the
    connector configuration in the settings of the process running the flow)."""
    logger = get_run_logger()
    config_path = connectors_config(config_path)
    summary = redeliver_failed(config_path, limit, current_flow_run_id())
    if summary["deliveries"]:
        create_table_artifact(
            table=summary["deliveries"][:500],
            key="connector-redelivery-last",
            description="Last redelivery run",
        )
    dashboard = connector_dashboard()
    publish_dashboard(dashboard)
    logger.info(
        "redelivery: due %d (%d stalled), delivered %d, held %d, still failing %d, expired %d",
        summary["due"],
        summary["stalled"],
        summary["delivered"],
        summary["held"],
        summary["still_failing"],
        summary["expired"],
    )
    return {
        **{k: v for k, v in summary.items() if k != "deliveries"},
        "alert_level": dashboard["alert_level"],
    }
