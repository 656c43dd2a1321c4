"""Prefect events from the front doors (CLI and API), sent only when a Prefect API is configured.

The CLI's in-process path stays free of Prefect: nothing here imports Prefect unless
``PREFECT_API_URL`` is set (or ``RINGWARD_EMIT_EVENTS=1`` forces it, e.g. under a test harness
that configures Prefect through its own settings). An event that cannot be sent never fails the
operation that already happened: the evidence record is the source of truth, the event only lets
automations react, so a failure is reported to the caller as a warning string instead.

Event names (a contract with the deployments in ``prefect.yaml``):

- ``ringward.promotion.requested``  resource ``ringward.channel.<channel>`` or ``ringward.rollout.<rollout_id>``
- ``ringward.approval.decided``     resource ``ringward.approval.<approval_id>``
- ``ringward.promotion.executed``   resource ``ringward.rollout.<rollout_id>``
- ``ringward.rollback.executed``    resource ``ringward.rollout.<rollout_id>``
- ``ringward.package.published``    resource ``ringward.package.<runtime>.<version>`` (sent by the
  package-release flow; payload: absolute ``package_dir``/``zip_path`` and the ``trust_root`` or null)

Prefect's outbound telemetry is off in this process unless the caller decided otherwise
(``DO_NOT_TRACK`` and friends, ``ringward.operations.common.prefect_rest.TELEMETRY_OFF``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

PACKAGE_PUBLISHED = "ringward.package.published"
PROMOTION_REQUESTED = "ringward.promotion.requested"
APPROVAL_DECIDED = "ringward.approval.decided"
PROMOTION_EXECUTED = "ringward.promotion.executed"
ROLLBACK_EXECUTED = "ringward.rollback.executed"
KEV_IMPORTED = "ringward.kev.imported"


def events_enabled() -> bool:
    """True when a Prefect API is configured for this process."""
    if os.environ.get("RINGWARD_EMIT_EVENTS", "").strip() in ("0", "false", "no"):
        return False
    return bool(os.environ.get("PREFECT_API_URL")) or os.environ.get("RINGWARD_EMIT_EVENTS", "") in ("1", "true")


@functools.lru_cache(maxsize=4)
def _unreachable(api_url: str) -> str | None:
    """Why the Prefect API at ``api_url`` cannot take events now (None when it answers).

    Prefect sends events from a background worker and retries at process exit, so an unreachable
    server would otherwise cost a short-lived CLI ~15 s and end in Prefect's own error lines; one
    quick health request per process turns that into one warning."""
    import httpx

    try:
        answer = httpx.get(api_url.rstrip("/") + "/health", timeout=2.0)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None if answer.status_code < 500 else f"HTTP {answer.status_code}"


def related_resources() -> list[dict[str, str]]:
    """The API request an event comes from, as a related resource (``ringward.api-request.<id>``,
    role ``api-request``): the Prefect UI shows it on the event and on the flow run it triggers, and
    the same id is in the API's ``X-Request-ID`` answer and its log lines."""
    from ringward.operations.common.logs import REQUEST_ID

    request_id = REQUEST_ID.get()
    if request_id is None:
        return []
    return [{"prefect.resource.id": f"ringward.api-request.{request_id}", "prefect.resource.role": "api-request"}]


def emit_if_configured(name: str, resource_id: str, payload: dict[str, Any]) -> str | None:
    """Emit one Prefect event when a Prefect API is configured.

    Returns None when the event was sent (or events are off), else a one-line warning."""
    if not events_enabled():
        return None
    api_url = os.environ.get("PREFECT_API_URL", "")
    if api_url.startswith(("http://", "https://")):
        problem = _unreachable(api_url)
        if problem is not None:
            return f"event {name} not sent: Prefect API {api_url} unreachable ({problem})"
    from ringward.operations.common.prefect_rest import TELEMETRY_OFF

    for variable, value in TELEMETRY_OFF.items():
        os.environ.setdefault(variable, value)  # before Prefect's import-time analytics
    try:
        from prefect.events import emit_event

        event = emit_event(event=name, resource={"prefect.resource.id": resource_id}, payload=payload,
                           related=related_resources())
    except Exception as exc:  # never fail a decision that is already recorded
        return f"event {name} not sent: {type(exc).__name__}: {str(exc)[:200]}"
    if event is None:
        return f"event {name} not sent: no Prefect events client"
    return None
