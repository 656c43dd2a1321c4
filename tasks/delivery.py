"""Prefect tasks around connector delivery.

One delivery task per (event, destination) key: the task run is named after the key, and its run
id is the delivery log's claim owner, so a Prefect retry of the task takes its own claim back and
a key that succeeded is never sent again (by any run). Prefect retries only transport-type
failures (408/429/5xx, timeouts, refused connections: ``DeliveryRetryableError``); a 4xx
rejection, a 410 or a configuration error ends the task at once (``retry_on_transport_failure``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import task_run
from prefect.tasks import exponential_backoff

from ringward.core.delivery.config import DestinationConfig
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from ringward.core.errors import DeliveryRetryableError, SecretReferenceError
from ringward.operations.delivery import delivery_ops as ops


def prefect_secret_lookup(name: str) -> str:
    """Value of the Prefect Secret block ``name`` (for ``prefect-secret:NAME`` references)."""
    try:
        block = Secret.load(name)
        value = block.get()  # type: ignore[union-attr]  # NOTE: sync context, load() is not a coroutine
    except Exception as exc:  # a missing block is a ValueError; an unreachable API an httpx error
        raise SecretReferenceError(
            f"prefect-secret:{name}: cannot load the Secret block ({type(exc).__name__})"
        ) from exc
    if not isinstance(value, str):
        raise SecretReferenceError(f"prefect-secret:{name}: the Secret block does not hold a string")
    return value


LOOKUPS = {"prefect-secret": prefect_secret_lookup}


class RetryableDelivery(DeliveryRetryableError):
    """Raised by the delivery task so Prefect retries it; carries the (redacted) result so far."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (RetryableDelivery, (self.message, self.result))


def retry_on_transport_failure(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry only what retrying can fix."""
    try:
        state.result()
    except DeliveryRetryableError:
        return True
    except Exception:
        return False
    return False


def _run_id() -> str:
    current = task_run.get_id()
    return f"task-{current}" if current else ops.new_run_id("task")


def destination_limit_names(destination: DestinationConfig) -> tuple[str | None, str | None]:
    """Names of the Prefect global limits a destination asks for: (concurrency, rate)."""
    base = f"ringward-destination-{destination.name}"
    return (base if destination.concurrency_limit else None,
            f"{base}-rate" if destination.rate_limit_per_minute else None)


def ensure_destination_limits(destination: DestinationConfig) -> None:
    """Create or update the destination's global limits on the Prefect server (idempotent by name):
    the concurrency limit holds ``concurrency_limit`` slots; the rate limit holds a burst of one
    second's worth (at least one) and frees ``rate_limit_per_minute / 60`` slots per second."""
    from prefect.client.orchestration import get_client

    concurrency_name, rate_name = destination_limit_names(destination)
    with get_client(sync_client=True) as client:
        if concurrency_name and destination.concurrency_limit:
            _upsert_limit(client, concurrency_name, destination.concurrency_limit, None)
        if rate_name and destination.rate_limit_per_minute:
            per_second = destination.rate_limit_per_minute / 60
            _upsert_limit(client, rate_name, max(1, math.floor(per_second)), per_second)


def _upsert_limit(client: Any, name: str, limit: int, slot_decay_per_second: float | None,
                  attempts: int = 5) -> None:
    """Prefect's own upsert reads then creates, which is not atomic: two flow runs delivering to the
    same destination at once both see no limit, and the slower create fails on the unique name (a
    500 on SQLite, 409 on PostgreSQL). The limit then exists, so read again and update instead."""
    import httpx
    from prefect.exceptions import ObjectAlreadyExists

    for attempt in range(attempts):
        try:
            client.upsert_global_concurrency_limit_by_name(
                name, limit, slot_decay_per_second=slot_decay_per_second)
            return
        except (ObjectAlreadyExists, httpx.HTTPStatusError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


@contextlib.contextmanager
def destination_slots(destination: DestinationConfig) -> Iterator[None]:
    """Hold the destination's global limits (Prefect's machinery, shared by every worker) around one
    delivery: wait for a rate-limit slot, then hold a concurrency slot while sending."""
    concurrency_name, rate_name = destination_limit_names(destination)
    if concurrency_name is None and rate_name is None:
        yield
        return
    from prefect.concurrency.sync import concurrency, rate_limit

    ensure_destination_limits(destination)
    if rate_name is not None:
        rate_limit(rate_name, strict=True)
    if concurrency_name is None:
        yield
        return
    with concurrency(concurrency_name, occupy=1, strict=True):
        yield


@task(
    name="deliver-to-destination",
    task_run_name="deliver {event_id} -> {destination}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transport_failure,
    cache_policy=NO_CACHE,
)
def deliver_to_destination(
    event_document: dict[str, Any], event_id: str, config_path: str, destination: str
) -> dict[str, Any] | None:
    """Deliver one event to one destination; keyed by (event id, provider, destination).

    Returns the redacted result (``None`` when the routing filter rejects the event); raises
    :class:`RetryableDelivery` when the delivery failed in a retryable way within its budget.
    """
    from ringward.core.delivery.event import ConnectorEvent
    from ringward.store import open_store

    event = ConnectorEvent.model_validate(event_document)
    config = ops.load_connector_config(Path(config_path))
    with open_store() as store, destination_slots(config.destination(destination)):
        result = ops.deliver_to_destination(
            event, config, destination, store=store, run_id=_run_id(), lookups=LOOKUPS
        )
    if result is None:
        return None
    document = result.model_dump(mode="json")
    if result.status is DeliveryStatus.FAILED:
        raise RetryableDelivery(f"{destination}: {result.error}", document)
    return document


@task(name="record-delivery-evidence", cache_policy=NO_CACHE)
def record_delivery_evidence(
    event_document: dict[str, Any],
    results: list[dict[str, Any]],
    config_path: str,
    run_id: str,
    flow_run_id: str | None,
    filtered: list[str],
) -> dict[str, Any]:
    """One evidence record for the event (same builder as the CLI path); returns the result."""
    from ringward.core.delivery.event import ConnectorEvent
    from ringward.store import open_store

    event = ConnectorEvent.model_validate(event_document)
    config = ops.load_connector_config(Path(config_path))
    parsed = [DestinationResult.model_validate(r) for r in results]
    scrubber = ops.run_scrubber(config, [r.destination for r in parsed], LOOKUPS)
    with open_store() as store:
        run = ops.record_delivery_evidence(
            event,
            parsed,
            store=store,
            run_id=run_id,
            scrubber=scrubber,
            actor="ringward-flow",
            flow_run_id=flow_run_id,
            filtered=filtered,
        )
    return {**run.payload["delivery"], "evidence_id": run.evidence_id, "flow_run_id": flow_run_id}


@task(name="load-delivery-inputs", cache_policy=NO_CACHE)
def load_delivery_inputs(
    event_path: str | None, event: dict[str, Any] | None, config_path: str, providers: str
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Validate config and event; returns the event document and the selected (name, provider) pairs."""
    from ringward.core.delivery.event import event_from_document

    config = ops.load_connector_config(Path(config_path))
    now = ops.now_utc()
    if event_path is not None:
        parsed = ops.load_event_file(Path(event_path), now=now)
    elif event is not None:
        parsed = event_from_document(event, source="event parameter", now=now)
    else:
        from ringward.core.errors import InputError

        raise InputError("deliver-event needs event_path or event")
    selected = ops.select_destinations(config, providers)
    return parsed.to_document(), [(d.name, d.provider.value) for d in selected]


@task(name="redeliver-failed-deliveries", cache_policy=NO_CACHE)
def redeliver_failed(config_path: str, limit: int, flow_run_id: str | None) -> dict[str, Any]:
    """Retry due failed deliveries inside their window and take over stalled claims (batched
    in-process, one task); deliveries another live run holds are counted ``held``, not failing."""
    from ringward.store import open_store

    config = ops.load_connector_config(Path(config_path))
    with open_store() as store:
        report = ops.redeliver_due(
            config,
            store=store,
            limit=limit,
            lookups=LOOKUPS,
            run_id=ops.new_run_id("redeliver"),
            flow_run_id=flow_run_id,
        )
    return {
        **report.summary(),
        "deliveries": [row | {"event_id": r.event.event_id} for r in report.runs for row in r.summary_rows()],
    }


@task(name="connector-dashboard", cache_policy=NO_CACHE)
def connector_dashboard() -> dict[str, Any]:
    from ringward.store import open_store

    with open_store() as store:
        return ops.delivery_dashboard(store)
