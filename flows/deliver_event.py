"""Flow ``deliver-event``: deliver one event to every selected destination, concurrently.

One task per destination key (retried by Prefect only for transport failures), then one evidence
record for the event and the connector dashboard as artifacts. The CLI's in-process path
(``ringward connectors deliver``) runs the same operations and writes the same evidence.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows._common import connectors_config, current_flow_run_id, emit
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from ringward.core.errors import DeliveryFailedError
from ringward.operations.delivery import delivery_ops as ops
from tasks.delivery import (
    RetryableDelivery,
    connector_dashboard,
    deliver_to_destination,
    load_delivery_inputs,
    record_delivery_evidence,
)

DASHBOARD_KEY = "connector-delivery-dashboard"


def _result_of(future: Any, event_id: str, name: str, provider: str) -> dict[str, Any] | None:
    """The task's result, or the result carried by its final retryable failure, or a config error."""
    state = future.state
    if state.is_completed():
        value = future.result()
        return value if value is None else dict(value)
    failure = state.result(raise_on_failure=False)
    if isinstance(failure, RetryableDelivery):
        return failure.result
    now = ops.now_utc()
    return DestinationResult(
        event_id=event_id,
        provider=provider,
        destination=name,
        status=DeliveryStatus.CONFIG_ERROR,
        started_at=now,
        completed_at=now,
        error=f"{type(failure).__name__}: {failure}"[:500],
    ).model_dump(mode="json")


def publish_dashboard(dashboard: dict[str, Any]) -> None:
    create_markdown_artifact(
        markdown=ops.dashboard_markdown(dashboard),
        key=DASHBOARD_KEY,
        description="Connector delivery dashboard",
    )
    create_table_artifact(
        table=[
            {
                k: p[k]
                for k in (
                    "destination",
                    "provider",
                    "total",
                    "success",
                    "failed",
                    "attempt_count",
                    "last_delivery_at",
                    "last_error",
                    "disabled",
                )
            }
            for p in dashboard["providers"]
        ]
        or [{"destination": "-", "total": 0}],
        key=f"{DASHBOARD_KEY}-table",
        description="Connector delivery per destination",
    )


@flow(name="deliver-event", log_prints=True)
def deliver_event_flow(
    config_path: str | None = None,
    event_path: str | None = None,
    event: dict[str, Any] | None = None,
    providers: str = "all",
    fail_on_undelivered: bool = True,
    retry_delay_seconds: float | None = None,
) -> dict[str, Any]:
    """Deliver an event (a file path or the event document) to ``providers`` of ``config_path`` (default:
    the connector configuration in the settings of the process running the flow).

    ``retry_delay_seconds`` overrides the delivery task's exponential Prefect retry delays.
    """
    logger = get_run_logger()
    flow_run_id = current_flow_run_id()
    config_path = connectors_config(config_path)
    document, selected = load_delivery_inputs(event_path, event, config_path, providers)
    event_id = document["event_id"]
    deliver = deliver_to_destination
    if retry_delay_seconds is not None:
        deliver = deliver_to_destination.with_options(retry_delay_seconds=retry_delay_seconds)
    futures = [(name, kind, deliver.submit(document, event_id, config_path, name)) for name, kind in selected]
    results: list[dict[str, Any]] = []
    filtered: list[str] = []
    for name, kind, future in futures:
        future.wait()
        value = _result_of(future, event_id, name, kind)
        if value is None:
            filtered.append(name)
        else:
            results.append(value)
    run_id = f"flow-{flow_run_id}" if flow_run_id else ops.new_run_id("flow")
    result = record_delivery_evidence(document, results, config_path, run_id, flow_run_id, filtered)
    rows = [
        {
            "destination": d["destination"],
            "provider": d["provider"],
            "status": d["status"],
            "status_code": d["status_code"],
            "attempts": d["attempt_count"],
            "error": d["error"],
        }
        for d in result["deliveries"]
    ]
    create_table_artifact(
        table=rows or [{"destination": "-", "status": "no destination selected"}],
        key="connector-delivery-last",
        description=f"Delivery of {event_id}",
    )
    publish_dashboard(connector_dashboard())
    failed = [d["destination"] for d in result["deliveries"] if not d["success"]]
    emit(
        "ringward.connector.delivery.failed" if failed else "ringward.connector.delivery.succeeded",
        f"ringward.connector.event.{event_id}",
        {"event_id": event_id, "failed": failed, "evidence_id": result["evidence_id"]},
    )
    logger.info("event %s: %d destinations, failed: %s", event_id, len(rows), ", ".join(failed) or "none")
    if failed and fail_on_undelivered:
        raise DeliveryFailedError(f"event {event_id} not delivered to: {', '.join(failed)}")
    return result
