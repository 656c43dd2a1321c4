"""SLA automation health (§9.14, rules H1-H8 of ringward.core.sla.health): every rule in virtual time,
a health id that is the identity of the condition (so a delivered alert suppresses its repeats in
later evaluations), and the flow-run states read from a real Prefect server over its REST API."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ringward.core.sla.engine import Outcome, apply, plan
from ringward.core.sla.health import DeploymentView, FlowRunView, SendFailure, evaluate_health, health_report
from ringward.core.sla.history import HistoryEvent
from ringward.operations.common.prefect_rest import PrefectRest
from ringward.operations.delivery.delivery_ops import DeliveryHooks, load_connector_config
from ringward.operations.sla import health_ops, sla_ops
from ringward.store import Store
from tests.connectors.conftest import FakeClock, write_config
from tests.connectors.fault_server import FaultServer
from tests.sla.factory import policy_of
from tests.sla.test_cli import cli  # noqa: F401

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
NAME = "sla-escalation/sla-escalation"


def run(state: str, start: datetime | None, end: datetime | None = None, *, expected: datetime | None = None,
        name: str = "") -> FlowRunView:
    return FlowRunView(id=str(uuid.uuid4()), name=name or state.lower(), state_type=state,
                       state_name={"SCHEDULED": "Scheduled"}.get(state, state.title()),
                       expected_start_time=expected or start, start_time=start, end_time=end)


def deployment(*runs: FlowRunView, **fields: Any) -> DeploymentView:
    base: dict[str, Any] = {"name": NAME, "found": True, "deployment_id": "d1", "active_schedules": 1,
                            "created": NOW - timedelta(days=3), "runs": runs}
    base.update(fields)
    return DeploymentView(**base)


def healthy_runs(now: datetime = NOW) -> list[FlowRunView]:
    return [run("COMPLETED", now - k * 5 * M, now - k * 5 * M + 20 * timedelta(seconds=1)) for k in range(1, 6)]


def health(*deployments: DeploymentView, now: datetime = NOW, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("latest_evaluation_at", now - 5 * M)
    return evaluate_health(list(deployments), now=now, **kwargs)


def categories(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["category"], a["level"]) for a in result["alerts"]]


def test_healthy() -> None:
    result = health(deployment(*healthy_runs()))
    assert result["alert_level"] == "healthy" and result["alerts"] == []
    assert result["deployments"][0]["run_states"] == {"Completed": 5}
    assert result["health_id"].startswith("erslah-")


def test_h1_not_deployed_and_h2_disabled_schedule() -> None:
    assert categories(health(DeploymentView(name=NAME, found=False))) == [("not_deployed", "critical")]
    paused = health(deployment(paused=True))  # no run at all, but nothing is expected while paused
    assert categories(paused) == [("disabled_schedule", "warning")]
    assert categories(health(deployment(*healthy_runs(), active_schedules=0))) == [("disabled_schedule", "warning")]


def test_h3_missed_run() -> None:
    last = NOW - 11 * M
    result = health(deployment(run("COMPLETED", last, last + M)))
    assert categories(result) == [("missed_run", "critical")]
    assert result["alerts"][0]["since"] == "2026-03-04T11:59:00Z" and result["missed_run_count"] == 1
    never = health(deployment())
    assert categories(never) == [("missed_run", "critical")] and "no run ever started" in never["alerts"][0]["message"]


def test_h4_late_runs_warning_then_critical() -> None:
    late = run("SCHEDULED", None, expected=NOW - 3 * M)
    assert categories(health(deployment(*healthy_runs(), late))) == [("late_run", "warning")]
    older = run("SCHEDULED", None, expected=NOW - 11 * M)
    result = health(deployment(*healthy_runs(), late, older))
    assert categories(result) == [("late_run", "critical")] and result["late_run_count"] == 2
    future = run("SCHEDULED", None, expected=NOW + 5 * M)
    assert health(deployment(*healthy_runs(), future))["alerts"] == []


def test_h5_failed_runs_failing_then_recovered_and_cancelled() -> None:
    failing = [*healthy_runs()[2:], run("FAILED", NOW - 10 * M, NOW - 9 * M), run("CRASHED", NOW - 5 * M, NOW - 4 * M)]
    result = health(deployment(*failing))
    assert categories(result) == [("failed_job", "critical")] and result["failed_job_count"] == 2
    assert result["alerts"][0]["since"] == "2026-03-04T11:51:00Z"  # the streak's first failure
    recovered = health(deployment(*failing, run("COMPLETED", NOW - 2 * M, NOW - M)))
    assert categories(recovered) == [("failed_job", "warning")] and "recovered" in recovered["alerts"][0]["message"]
    old = run("FAILED", NOW - 3 * 60 * M, NOW - 3 * 60 * M + M)  # outside the 1 h lookback
    assert health(deployment(*healthy_runs(), old))["alerts"] == []
    cancelled = health(deployment(*healthy_runs(), run("CANCELLED", NOW - 7 * M, NOW - 6 * M)))
    assert categories(cancelled) == [("failed_job", "warning")]


def test_h6_connector_failures_and_h7_stale_metadata() -> None:
    failure = SendFailure(scope="endpoint-remediation", group_key="endpoint-remediation/critical",
                          receiver="jira-gov", at=NOW - 10 * M, error="HTTP 503")
    result = health(deployment(*healthy_runs()), failing_sends=[failure])
    assert categories(result) == [("connector_failure", "critical")]
    assert result["connector_delivery_failure_count"] == 1
    stale = health(deployment(*healthy_runs()), latest_evaluation_at=NOW - 3 * 60 * M)
    assert categories(stale) == [("stale_metadata", "warning")]
    assert categories(health(deployment(*healthy_runs()), latest_evaluation_at=None)) == [("stale_metadata", "warning")]


def test_h8_the_health_id_is_the_condition_not_the_evaluation() -> None:
    first = health(deployment(*healthy_runs(), run("FAILED", NOW - 2 * M, NOW - M)))
    later_now = NOW + 7 * M
    # a later evaluation, one more failed run (the count changes), the same condition: the same id
    later = health(deployment(*healthy_runs(later_now), run("FAILED", NOW - 2 * M, NOW - M),
                              run("FAILED", later_now - 2 * M, later_now - M)), now=later_now,
                   latest_evaluation_at=later_now - M)
    assert later["failed_job_count"] == 2 and first["failed_job_count"] == 1
    assert later["health_id"] == first["health_id"]
    # recovered (warning) is another condition; healthy is yet another
    recovered = health(deployment(*healthy_runs(), run("FAILED", NOW - 9 * M, NOW - 8 * M),
                                  run("COMPLETED", NOW - 2 * M, NOW - M)))
    assert len({first["health_id"], recovered["health_id"], health(deployment(*healthy_runs()))["health_id"]}) == 3


def test_alerts_through_the_engine_are_sent_once_per_repeat_interval_and_resolved_once() -> None:
    policy = policy_of({"health": {"receivers": ["slack-ops"], "repeat_interval": "4h"}}).health_policy
    assert policy is not None and policy.scope == "sla-health"
    history: tuple[HistoryEvent, ...] = ()
    log: list[tuple[str, str]] = []

    def tick(now: datetime, *runs: FlowRunView) -> dict[str, Any]:
        nonlocal history
        result = health(deployment(*runs), now=now, latest_evaluation_at=now - M)
        current = plan(history, policy, health_report(result), now)
        outcomes = [Outcome(notification=n, ok=True, at=now) for n in current.notifications]
        log.extend((now.strftime("%H:%M"), n.reason.value) for n in current.notifications)
        history = apply(history, outcomes)
        return result

    def failing(now: datetime) -> list[FlowRunView]:
        return [run("FAILED", now - k * 5 * M, now - k * 5 * M + M) for k in range(1, 4)]

    # every run of the next half hour fails: more failures each time, the same condition, one id
    results = [tick(NOW + k * 5 * M, *failing(NOW + k * 5 * M)) for k in range(6)]
    assert len({r["health_id"] for r in results}) == 1 and {r["failed_job_count"] for r in results} == {3}
    assert log == [("12:00", "first_notification")]
    # runs complete again: "recovered" (a warning) is a new condition, announced once; an hour
    # later the failures leave the lookback, the condition clears: "resolved" once
    last_failure = NOW + 25 * M - 4 * M
    for k in range(6, 20):
        now = NOW + k * 5 * M
        tick(now, *healthy_runs(now), *[r for r in failing(NOW + 25 * M) if r.end_time and r.end_time <= now])
    assert log == [("12:00", "first_notification"), ("12:30", "new_alerts_in_group"),
                   ("13:25", "all_alerts_resolved")]
    assert last_failure.strftime("%H:%M") == "12:21"


def test_deliver_health_through_connectors_twice_sends_once(store: Store, tmp_path: Path,
                                                           fault_server: FaultServer) -> None:
    route = fault_server.route()
    config = load_connector_config(write_config(tmp_path / "c.yaml", {"name": "slack-ops", "provider": "linux",
                                                                       "url": route.url}))
    policy = policy_of({"health": {"receivers": ["slack-ops"]}})
    fake = FakeClock()
    hooks = DeliveryHooks(clock=fake, sleep=fake.sleep, rng=random.Random(2), flush_interval=0.01)
    first = health(DeploymentView(name=NAME, found=False))
    sent = health_ops.deliver_health(store, policy, first, config, now=NOW, hooks=hooks)
    assert [r["reason"] for r in sent.sent] == ["first_notification"]
    second = health(DeploymentView(name=NAME, found=False), now=NOW + 10 * M, latest_evaluation_at=NOW + 9 * M)
    assert second["health_id"] == first["health_id"]
    assert health_ops.deliver_health(store, policy, second, config, now=NOW + 10 * M, hooks=hooks).sent == []
    assert len(route.requests) == 1
    event = json.loads(route.requests[0].body)
    assert first["health_id"] in json.dumps(event)


# --- a real Prefect server -----------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _prefect(api: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    answer = httpx.request(method, api.rstrip("/") + path, json=body, timeout=30)
    answer.raise_for_status()
    return answer.json() if answer.content else None


@pytest.mark.prefect
def test_health_reads_real_flow_run_states_from_the_prefect_api(
    prefect_server: None, ringward_home: Path, tmp_path: Path, cli: Any  # noqa: F811
) -> None:
    from prefect.settings import PREFECT_API_URL

    api = str(PREFECT_API_URL.value())
    flow_name, dep_name = f"sla-health-{uuid.uuid4().hex[:8]}", "sla-escalation"
    flow = _prefect(api, "POST", "/flows/", {"name": flow_name})
    dep = _prefect(api, "POST", "/deployments/", {"name": dep_name, "flow_id": flow["id"], "paused": False,
                                                  "schedules": [{"schedule": {"interval": 300}, "active": True}]})
    now = datetime.now(UTC)

    def flow_run(final: str | None, scheduled: datetime) -> str:
        created = _prefect(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {
            "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": _iso(scheduled)}}})
        if final is not None:
            for state in ("PENDING", "RUNNING", final):
                _prefect(api, "POST", f"/flow_runs/{created['id']}/set_state",
                         {"state": {"type": state, "message": "boom" if state == "FAILED" else None}, "force": True})
        return str(created["id"])

    flow_run("COMPLETED", now - 10 * M)
    flow_run("FAILED", now - 5 * M)
    flow_run(None, now - 20 * M)  # never picked up: late
    policy_path = tmp_path / "routing.yaml"
    policy_path.write_text(yaml.safe_dump({"health": {"deployments": [f"{flow_name}/{dep_name}",
                                                                     "missing-flow/missing-deployment"]}}))
    from ringward.store import open_store

    with open_store() as store, PrefectRest(api) as rest:
        result = health_ops.check_health(store, sla_ops.load_policy(policy_path), rest, now=datetime.now(UTC))
    found = {(a["category"], a["subject"]): a for a in result["alerts"]}
    mine = f"{flow_name}/{dep_name}"
    assert found[("failed_job", mine)]["level"] == "critical" and "boom" in found[("failed_job", mine)]["message"]
    assert found[("late_run", mine)]["count"] >= 1
    assert found[("not_deployed", "missing-flow/missing-deployment")]["level"] == "critical"
    assert ("missed_run", mine) not in found  # runs did start within 2 intervals
    assert ("stale_metadata", "sla-evaluation") in found  # no SLA cycle recorded in this home
    states = result["deployments"][0]["run_states"]
    assert states.get("Failed") == 1 and states.get("Completed") == 1
    done = cli("sla", "health", "--policy", str(policy_path), "--prefect-api", api, "--json")
    assert done.returncode == 1, done.stderr
    again = json.loads(done.stdout)
    assert again["health_id"] == result["health_id"]  # a second evaluation of the same condition
    unreachable = cli("sla", "health", "--policy", str(policy_path), "--prefect-api", "http://127.0.0.1:9/api")
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1
