"""SLA automation health (§9.14): read the SLA deployments' flow runs from the Prefect REST API
(:class:`~ringward.operations.common.prefect_rest.PrefectRest`, plain httpx: the CLI never imports
Prefect), the ledger's failing sends and the newest recorded evaluation; evaluate
(:func:`ringward.core.sla.health.evaluate_health`); record it (``endpoint-remediation-sla-health``);
optionally deliver its alerts through the engine (scope ``health.scope``: grouped, deduplicated by
the condition's identity, repeated, resolved once).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from ringward.core.errors import ConfigError, InputError, NotFoundError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.core.sla.health import DeploymentView, FlowRunView, SendFailure, evaluate_health, health_report
from ringward.core.sla.history import SendFailed, SentOk
from ringward.core.sla.policy import HealthFeed, SlaPolicy

if TYPE_CHECKING:
    from connectors.secrets import SecretLookup
    from ringward.core.delivery.config import ConnectorConfig
    from ringward.operations.common.prefect_rest import PrefectRest
    from ringward.operations.delivery.delivery_ops import DeliveryHooks
    from ringward.operations.sla.sla_ops import CycleResult
    from ringward.store import Store

KIND_HEALTH = "endpoint-remediation-sla-health"
#: flow runs read per deployment (newest expected start first; Prefect schedules at most 100 ahead)
MAX_RUNS = 200
STATE_TYPES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED", "PAUSED",
               "CANCELLING")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def read_deployment(rest: PrefectRest, name: str) -> DeploymentView:
    """One deployment (``<flow>/<deployment>``) and its newest runs (by expected start, the
    scheduled ones included), as the Prefect API reports them.

    Raises:
        InputError: the Prefect API does not answer (one line).
    """
    flow, _, deployment = name.partition("/")
    try:
        found = rest.deployment_by_name(flow, deployment)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return DeploymentView(name=name, found=False)
        raise InputError(f"Prefect API {rest.api_url}: deployment {name}: HTTP {exc.response.status_code}") from None
    except httpx.HTTPError as exc:
        raise InputError(f"Prefect API {rest.api_url}: {type(exc).__name__}: {str(exc)[:160]}") from None
    schedules = found.get("schedules") or []
    active = sum(1 for s in schedules if s.get("active", True))
    try:
        # newest expected start first: the scheduler's future runs, then the recent past
        rows = rest.flow_runs(state_types=list(STATE_TYPES), deployment_ids=[str(found["id"])],
                              sort="EXPECTED_START_TIME_DESC", limit=MAX_RUNS)
    except httpx.HTTPError as exc:
        raise InputError(f"Prefect API {rest.api_url}: flow runs of {name}: {str(exc)[:160]}") from None
    runs = []
    for row in rows or []:
        state = row.get("state") or {}
        runs.append(FlowRunView(
            id=str(row.get("id")),
            name=str(row.get("name") or ""),
            state_type=str(state.get("type") or row.get("state_type") or "UNKNOWN"),
            state_name=str(state.get("name") or row.get("state_name") or ""),
            expected_start_time=_time(row.get("expected_start_time")),
            start_time=_time(row.get("start_time")),
            end_time=_time(row.get("end_time")),
            message=str(state.get("message") or "")[:500],
        ))
    return DeploymentView(
        name=name,
        found=True,
        deployment_id=str(found["id"]),
        paused=bool(found.get("paused")),
        active_schedules=active,
        created=_time(found.get("created")),
        runs=tuple(runs),
    )


def failing_sends(store: Store, scopes: tuple[str, ...]) -> list[SendFailure]:
    """Sends whose latest attempt (per scope, group, receiver, kind) failed, from the ledger."""
    from ringward.store.sla.ledger import SlaLedger

    ledger = SlaLedger(store)
    out: list[SendFailure] = []
    for scope in scopes:
        latest: dict[tuple[str, str, str], SentOk | SendFailed] = {}
        for event in ledger.history(scope):
            if isinstance(event, (SentOk, SendFailed)):
                latest[(event.group_key, event.receiver, event.notification.value)] = event
        out.extend(
            SendFailure(scope=scope, group_key=e.group_key, receiver=e.receiver, at=e.at, error=e.error[:200])
            for e in latest.values()
            if isinstance(e, SendFailed)
        )
    return out


def latest_evaluation(store: Store) -> datetime | None:
    """When the newest SLA cycle plan was recorded (any scope)."""
    from ringward.operations.sla.sla_ops import KIND_PLAN

    page = store.search_evidence(EvidenceQuery(kind=KIND_PLAN, limit=1, with_total=False))
    if not page.items:
        return None
    at = _time(page.items[0].payload.get("at"))
    return at or page.items[0].created_at


def check_health(
    store: Store,
    policy: SlaPolicy,
    rest: PrefectRest,
    *,
    now: datetime,
    lookback: timedelta = timedelta(hours=1),
    expected_interval: timedelta | None = None,
    record: bool = True,
    actor: str = "ringward-sla-health",
) -> dict[str, Any]:
    """Evaluate the SLA automation's health at ``now`` (rules H1-H8) and record it.

    Raises:
        InputError: the Prefect API does not answer.
    """
    feed = policy.health or HealthFeed()
    if now.tzinfo is None:
        raise InputError("at: expected a time with a UTC offset")
    now = now.astimezone(UTC)
    deployments = [read_deployment(rest, name) for name in feed.deployments]
    health = evaluate_health(
        deployments,
        now=now,
        scope=feed.scope,
        expected_interval=expected_interval or feed.expected_interval,
        lookback=lookback,
        stale_after=feed.stale_after,
        latest_evaluation_at=latest_evaluation(store),
        failing_sends=failing_sends(store, tuple(s for s in policy.scopes if s != feed.scope)),
    )
    health["prefect_api_url"] = rest.api_url
    if record:
        draft = EvidenceDraft(
            kind=KIND_HEALTH,
            actor=actor,
            subject=EvidenceSubject(status=health["alert_level"], success=health["alert_level"] == "healthy"),
            payload=health,
        )
        health["evidence_id"] = store.append(draft).id
    return health


def recorded_health(store: Store, *, health_id: str | None = None, scan_limit: int = 200) -> dict[str, Any]:
    """The newest recorded health evaluation (with ``health_id``: the newest with that id).

    Raises:
        NotFoundError: none recorded (among the newest ``scan_limit``).
    """
    before: int | None = None
    seen = 0
    while seen < scan_limit:
        page = store.search_evidence(EvidenceQuery(kind=KIND_HEALTH, before_id=before, limit=50, with_total=False))
        for item in page.items:
            seen += 1
            if health_id is None or item.payload.get("health_id") == health_id:
                return dict(item.payload)
        if page.next_before_id is None or not page.items:
            break
        before = page.next_before_id
    raise NotFoundError("no SLA health evaluation is recorded (run `ringward sla health`)"
                        if health_id is None else f"health_id: no recorded evaluation {health_id!r}")


def deliver_health(
    store: Store,
    policy: SlaPolicy,
    health: Mapping[str, Any],
    config: ConnectorConfig,
    *,
    now: datetime,
    actor: str = "ringward-sla-health",
    lookups: Mapping[str, SecretLookup] | None = None,
    hooks: DeliveryHooks | None = None,
) -> CycleResult:
    """Notify the health alerts through the engine (scope ``health.scope``): a condition already
    delivered inside the repeat interval is suppressed -- in every later evaluation too, since its
    identity (the alerts' labels, the ``health_id``) does not change with time or counts.

    Raises:
        ConfigError: the policy has no ``health`` section or no receiver for it.
    """
    from ringward.operations.sla.sla_ops import run_cycle

    scoped = policy.health_policy
    if scoped is None:
        raise ConfigError("routing policy: no health section; health alerts have no receivers")
    if not scoped.routes["default"].receivers:
        raise ConfigError("routing policy: health.receivers (or default_providers) is empty")
    report = health_report(dict(health), generated_by=actor)
    return run_cycle(store, scoped, report, config, now=now, claim_window=False, actor=actor, lookups=lookups,
                     hooks=hooks)
