"""Owner digests and suppression trends (§9.14, rules D1-D4 and T1-T3 of ringward.core.sla.digest),
the digest delivered once per window per owner, and the ledger's history and dashboard (§4.31)."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringward.core.errors import InputError
from ringward.core.sla.acks import acknowledge, add_silence
from ringward.core.sla.digest import owner_digest, suppression_trends
from ringward.core.sla.engine import iso
from ringward.core.sla.policy import Matcher
from ringward.operations.delivery.delivery_ops import DeliveryHooks, load_connector_config
from ringward.operations.sla import oversight_ops, sla_ops
from ringward.store import Store
from tests.connectors.conftest import FakeClock, write_config
from tests.connectors.fault_server import FaultServer
from tests.sla.factory import handoff, status
from tests.sla.test_cli import cli  # noqa: F401
from tests.sla.test_time_travel import BREACH, H, M, ladder_policy, start_breached


def test_d1_d4_the_digest_lists_open_incidents_per_owner_with_retries() -> None:
    sched = start_breached()
    sched.failing["jira-gov"] = lambda at: True  # governance's receiver is down
    sched.run(BREACH, BREACH + 70 * M)
    due_again = owner_digest([(sched.plan(BREACH + 75 * M), sched.policy)], now=BREACH + 75 * M)
    assert due_again["summary"]["retryable_count"] == 1  # the governance rung's retry is due
    current = sched.plan(BREACH + 70 * M)
    digest = owner_digest([(current, sched.policy)], now=BREACH + 70 * M)
    (owner,) = digest["owners"]
    assert (owner["owner"], owner["route_count"], owner["triggered_count"]) == ("endpoint-ops", 1, 1)
    assert owner["providers"] == {"slack-ops": 1} and owner["routes"][0]["escalation_level"] == "governance"
    assert owner["acknowledgement_breach_count"] == 1  # the 60-minute acknowledgement SLO passed
    assert owner["retry_count"] == 1 and digest["summary"]["waiting_retry_count"] == 1
    assert digest["alert_level"] == "critical"
    # the same window, another minute: the same digest id; acknowledged: a warning
    assert owner_digest([(sched.plan(BREACH + 71 * M), sched.policy)], now=BREACH + 71 * M)["digest_id"] == (
        digest["digest_id"])
    sched.add(acknowledge(current, sched.policy, group="critical", state="acknowledged", by="alice",
                          at=BREACH + 76 * M))
    acked = owner_digest([(sched.plan(BREACH + 77 * M), sched.policy)], now=BREACH + 77 * M)
    assert acked["alert_level"] == "warning" and acked["owners"][0]["acknowledged_count"] == 1
    tomorrow = owner_digest([(sched.plan(BREACH + 25 * H), sched.policy)], now=BREACH + 25 * H)
    assert tomorrow["digest_id"] != digest["digest_id"]


def test_t1_t3_trends_count_an_ongoing_suppression_once_per_bucket() -> None:
    sched = start_breached()
    sched.run(BREACH, BREACH)
    silence = add_silence([Matcher(name="receiver", value="slack-ops")], starts_at=BREACH + 30 * M,
                          ends_at=BREACH + 30 * H, created_by="ops", comment="noisy", at=BREACH + 30 * M)
    sched.add(silence)
    sched.run(BREACH + 30 * M, BREACH + 30 * H, step=timedelta(minutes=30))
    payloads = [{"scope": p.scope, "at": iso(p.generated_at),
                 "suppressed": [s.model_dump(mode="json") for s in p.suppressions]} for p in sched.plans]
    start = BREACH.replace(hour=0)
    trend = suppression_trends(payloads, since=start, until=start + timedelta(days=2),
                               owners={"endpoint-remediation/critical": "endpoint-ops"})
    assert trend["observation_count"] > 50  # seen on every tick ...
    days = [(b["start"][:10], b["categories"]) for b in trend["buckets"]]
    # ... counted once a day: the silenced alert, and the acknowledged-free ladder's superseded rungs never
    assert days == [("2026-03-04", {"silence": 1}), ("2026-03-05", {"silence": 1})]
    assert trend["owner_counts"] == {"endpoint-ops": 2} and trend["receiver_counts"] == {"slack-ops": 2}
    assert trend["direction"] == {"silence": {"previous": 1, "latest": 1, "direction": "flat"}}
    assert trend["latest_events"][0]["category"] == "silence"
    with pytest.raises(InputError, match="is not after since"):
        suppression_trends(payloads, since=start, until=start)


def _setup(store: Store, tmp_path: Path, fault_server: FaultServer) -> tuple[Any, Any, Any, dict[str, Any]]:
    routes = {n: fault_server.route() for n in ("slack-ops", "pager-ops", "jira-gov")}
    config = load_connector_config(write_config(
        tmp_path / "c.yaml", *({"name": n, "provider": "linux", "url": r.url} for n, r in routes.items())))
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(ladder_policy()))
    h = handoff(1, created_at=BREACH - 2 * H)
    inputs = tmp_path / "handoffs"
    inputs.mkdir()
    (inputs / "h.json").write_text(h.model_dump_json())
    (inputs / "s.json").write_text(status(h, "failed", BREACH).model_dump_json())
    report = sla_ops.make_report([inputs], now=BREACH, store=store)
    fake = FakeClock()
    hooks = DeliveryHooks(clock=fake, sleep=fake.sleep, rng=random.Random(5), flush_interval=0.01)
    return sla_ops.load_policy(path), report, config, {"routes": routes, "hooks": hooks}


def test_the_digest_is_delivered_once_per_window_and_a_failed_send_is_retried(
    store: Store, tmp_path: Path, fault_server: FaultServer
) -> None:
    policy, report, config, extra = _setup(store, tmp_path, fault_server)
    pager = extra["routes"]["pager-ops"]
    pager.script(default=503)  # endpoint-ops' receiver fails the first delivery (with its retries)
    first = oversight_ops.deliver_digest(store, policy, config, now=BREACH + 5 * M, hooks=extra["hooks"],
                                         report=report)
    pager.script(default=200)
    assert [(r["owner"], r["receiver"], r["attempt"]) for r in first["failed"]] == [("endpoint-ops", "pager-ops", 1)]
    second = oversight_ops.deliver_digest(store, policy, config, now=BREACH + 10 * M, hooks=extra["hooks"])
    assert [(r["receiver"], r["attempt"]) for r in second["sent"]] == [("pager-ops", 2)]
    third = oversight_ops.deliver_digest(store, policy, config, now=BREACH + 15 * M, hooks=extra["hooks"])
    assert third["sent"] == [] and third["skipped"][0]["reason"] == "already delivered"
    assert len(pager.successes) == 1 and b"SLA digest for endpoint-ops" in pager.successes[0].body
    next_day = oversight_ops.deliver_digest(store, policy, config, now=BREACH + 24 * H, hooks=extra["hooks"])
    assert [r["receiver"] for r in next_day["sent"]] == ["pager-ops"]


def test_history_pages_and_filters_the_ledger_and_the_dashboard_says_what_needs_attention(
    store: Store, tmp_path: Path, fault_server: FaultServer
) -> None:
    policy, report, config, extra = _setup(store, tmp_path, fault_server)
    extra["routes"]["jira-gov"].script(default=503)
    empty = oversight_ops.dashboard(store, scopes=[policy.scope], now=BREACH)
    assert empty["alert_level"] == "warning" and "No SLA notification history" in empty["alerts"][0]
    for minutes in (1, 61, 77):  # the governance rung fails at 61 and again on its retry at 76+
        sla_ops.run_cycle(store, policy, report, config, now=BREACH + minutes * M, hooks=extra["hooks"])
    board = oversight_ops.dashboard(store, scopes=[policy.scope], now=BREACH + 77 * M)
    assert board["alert_level"] == "critical"
    failing = [r for r in board["receivers"] if r["failing"]]
    assert [(r["receiver"], r["failed"]) for r in failing] == [("jira-gov", 2)]
    assert board["outstanding_acknowledgement_count"] == 1
    sla_ops.acknowledge(store, policy, report, group="critical", state="acknowledged", by="alice",
                        at=BREACH + 78 * M)
    sla_ops.add_silence(store, policy.scope, ["receiver=jira-gov"], starts_at=BREACH + 79 * M,
                        ends_at=BREACH + 5 * H, by="ops", comment="jira maintenance", at=BREACH + 79 * M)
    everything = oversight_ops.history(store)
    assert everything["total"] == 6 and [i["kind"] for i in everything["items"]][:2] == ["silence", "ack"]
    assert everything["schema_version"] == "cavra.endpoint_remediation_sla.notification_history.v1"
    failed = oversight_ops.history(store, kinds=["send-failed"])
    assert failed["total"] == 2 and {i["receiver"] for i in failed["items"]} == {"jira-gov"}
    assert oversight_ops.history(store, receiver="slack-ops")["total"] == 1
    assert [i["by"] for i in oversight_ops.history(store, actor="ops")["items"]] == ["ops"]
    assert oversight_ops.history(store, actor="alice")["items"][0]["state"] == "acknowledged"
    assert oversight_ops.history(store, since=BREACH + 60 * M, until=BREACH + 65 * M)["total"] == 1
    page = oversight_ops.history(store, limit=3)
    rest = oversight_ops.history(store, limit=500, before_id=page["next_before_id"])
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in everything["items"]]
    assert oversight_ops.history(store, limit=10_000)["limit"] == 500
    with pytest.raises(InputError, match="--kind: expected one of"):
        oversight_ops.history(store, kinds=["sent"])
    weird = oversight_ops.history(store, receiver='x%"_\\')
    assert weird["total"] == 0
    later = oversight_ops.dashboard(store, scopes=[policy.scope], now=BREACH + 80 * M)
    assert later["active_silence_count"] == 1 and later["acknowledgements"] == {"acknowledged": 1}


def test_cli_history_dashboard_digest_trends(tmp_path: Path, fault_server: FaultServer, cli: Any,  # noqa: F811
                                            ringward_home: Path) -> None:
    from ringward.store import open_store

    with open_store() as store:
        policy, report, config, extra = _setup(store, tmp_path, fault_server)
        sla_ops.run_cycle(store, policy, report, config, now=BREACH + M, hooks=extra["hooks"])
    done = cli("sla", "history", "--json", "--kind", "sent-ok")
    assert done.returncode == 0 and json.loads(done.stdout)["total"] == 2
    board = cli("sla", "dashboard", "--policy", str(tmp_path / "routing.yaml"), "--json", "--at",
                "2026-03-04T08:02:00Z")
    assert board.returncode == 0 and json.loads(board.stdout)["outstanding_acknowledgement_count"] == 1
    digest = cli("sla", "digest", "--policy", str(tmp_path / "routing.yaml"), "--at", "2026-03-04T08:02:00Z")
    assert digest.returncode == 0 and "CRITICAL" in digest.stdout and "endpoint-ops" in digest.stdout
    trends = cli("sla", "trends", "--json", "--at", "2026-03-04T09:00:00Z", "--since", "2h", "--bucket", "1h")
    assert trends.returncode == 0 and len(json.loads(trends.stdout)["buckets"]) == 2
    bad = cli("sla", "history", "--kind", "nope")
    assert bad.returncode == 2 and "--kind: expected one of" in bad.stderr
    no_config = cli("sla", "digest", "--policy", str(tmp_path / "routing.yaml"), "--deliver")
    assert no_config.returncode == 2 and "--config" in no_config.stderr
