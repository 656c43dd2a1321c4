"""Delivery operations over the real store: evidence records, idempotency across runs and
processes, redelivery, history, dashboard, and the scan of every stored record for secrets."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ringward.core.delivery.results import DELIVERY_EVIDENCE_KIND, DeliveryKey, DeliveryState
from ringward.core.evidence.query import EvidenceQuery
from ringward.operations.delivery import delivery_ops as ops
from ringward.operations.delivery.delivery_ops import DeliveryHooks
from ringward.store import Store, open_store
from ringward.store.delivery.delivery_log import DeliveryLog
from ringward.store.tables import METADATA
from tests.connectors import workers
from tests.connectors.conftest import SECRETS, FakeClock, config_of, make_event, scan_for_secrets
from tests.connectors.fault_server import Fault, FaultServer

MY_TABLES = ("connector_delivery", "connector_event", "connector_destination")


def test_delivery_log_schema_matches_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import ringward.store.delivery.delivery_log  # noqa: F401  (registers the tables)

    with open_store(db_url) as store, store.engine.connect() as conn:
        ours = sa.MetaData()
        for name in MY_TABLES:
            METADATA.tables[name].to_metadata(ours)
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), ours)
        diffs = [d for d in diffs if _table(d) in MY_TABLES]
        assert diffs == [], diffs


def _table(diff: Any) -> str:
    if isinstance(diff, list):
        return _table(diff[0])
    op, obj = diff[0], diff[1]
    if op in ("add_table", "remove_table"):
        return str(obj.name)
    if op.endswith(("_index", "_constraint", "_fk")):
        return str(obj.table.name)
    return str(diff[2])


def test_deliver_writes_one_truthful_evidence_record_and_never_resends(
    fault_server: FaultServer, sqlite_store: Store, hooks: DeliveryHooks, secret_env: Any
) -> None:
    ok, flaky = fault_server.route(), fault_server.route().script(503, 500)
    config = config_of(
        {"name": "fleet", "provider": "linux", "url": ok.url},
        {"name": "hook", "provider": "webhook", "url": flaky.url, "signing_secret": "env:RW_WEBHOOK_SECRET"},
    )
    event = make_event()
    run = ops.deliver_event(event, config, store=sqlite_store, hooks=hooks, run_id="cli-1")
    assert run.success and run.evidence_id is not None
    record = sqlite_store.get_evidence(run.evidence_id)
    assert record.kind == DELIVERY_EVIDENCE_KIND and record.subject.success is True
    payload = record.payload
    assert payload["delivery"]["schema_version"] == "cavra.connector.delivery.v1"
    assert payload["event_id"] == event.event_id and payload["attempt_count"] == 4
    assert payload["providers"] == ["fleet", "hook"] and payload["failed_providers"] == []
    hook = next(d for d in payload["delivery"]["deliveries"] if d["destination"] == "hook")
    assert [a["status_code"] for a in hook["attempts"]] == [503, 500, 200]
    assert hook["request"]["headers"]["webhook-signature"] == "REDACTED"

    again = ops.deliver_event(event, config, store=sqlite_store, hooks=hooks, run_id="cli-2")
    assert again.success and {r.status.value for r in again.results} == {"already-delivered"}
    assert again.payload["attempt_count"] == 0
    assert (len(ok.requests), len(flaky.requests)) == (1, 3)
    page = sqlite_store.search_evidence(EvidenceQuery(kind=DELIVERY_EVIDENCE_KIND))
    assert page.total == 2


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_processes_deliver_each_event_exactly_once(
    fault_server: FaultServer, tmp_path: Path, db: str, request: pytest.FixtureRequest
) -> None:
    if db == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        from tests.store.dbfixtures import drop_pg_schema, make_pg_schema

        base = request.getfixturevalue("postgres_url")
        schema, url = make_pg_schema(base)
        request.addfinalizer(lambda: drop_pg_schema(base, schema))
    open_store(url).close()
    route = fault_server.route().script(default=Fault(status=200, delay=0.02))
    ids = [f"race-{n}" for n in range(12)]
    results = workers.run_parallel([(url, route.url, ids, tag) for tag in range(4)])
    assert all(kind == "ok" for kind, _ in results), results
    received = Counter(json.loads(r.body)["event"]["event_id"] for r in route.requests)
    assert received == Counter(ids)  # each event exactly once, whoever won the claim
    for event_id in ids:
        statuses = Counter(statuses[event_id] for _, statuses in results)
        assert statuses["delivered"] == 1
        assert statuses["delivered"] + statuses["already-delivered"] + statuses["in-flight"] == 4


def test_redelivery_retries_due_failures_inside_their_window(
    fault_server: FaultServer, sqlite_store: Store, clock: FakeClock, hooks: DeliveryHooks
) -> None:
    down = fault_server.route().script(503, 503, 503, 503, 503)
    later = fault_server.route().script(*([500] * 20))
    config = config_of(
        {"name": "down", "provider": "linux", "url": down.url, "max_attempts": 2},
        {
            "name": "later",
            "provider": "linux",
            "url": later.url,
            "max_attempts": 2,
            "redeliver_window_seconds": 600,
        },
    )
    run = ops.deliver_event(make_event(), config, store=sqlite_store, hooks=hooks)
    assert not run.success and {r.status.value for r in run.results} == {"failed"}
    log = DeliveryLog(sqlite_store)
    assert ops.redeliver_due(config, store=sqlite_store, hooks=hooks).due == 0  # not due yet
    clock.advance(120)
    report = ops.redeliver_due(config, store=sqlite_store, hooks=hooks)
    assert report.due == 2 and report.delivered == 0 and report.still_failing == 2
    clock.advance(120)
    report = ops.redeliver_due(config, store=sqlite_store, hooks=hooks)
    assert report.delivered == 1  # "down" recovered after five 503s
    entry = log.get(DeliveryKey("evt-promotion-0001", "linux", "down"))
    assert entry is not None and entry.state is DeliveryState.SUCCEEDED and entry.attempt_count == 6
    assert entry.run_count == 3
    clock.advance(1200)  # "later" is past its 10-minute window: expired, never retried again
    report = ops.redeliver_due(config, store=sqlite_store, hooks=hooks)
    assert (report.expired, report.due) == (1, 0)
    later_entry = log.get(DeliveryKey("evt-promotion-0001", "linux", "later"))
    assert later_entry is not None and later_entry.state is DeliveryState.EXPIRED
    assert len(down.requests) == 6 and len(later.requests) == 6


def test_history_and_dashboard(fault_server: FaultServer, sqlite_store: Store, hooks: DeliveryHooks) -> None:
    good, bad = fault_server.route(), fault_server.route().script(default=Fault.of(401, "Invalid token"))
    config = config_of(
        {"name": "good", "provider": "linux", "url": good.url},
        {"name": "bad", "provider": "linux", "url": bad.url},
    )
    ops.deliver_events(
        [make_event("a"), make_event("b", event_type="ringward.rollback.executed")],
        config,
        store=sqlite_store,
        hooks=hooks,
    )
    failed = ops.delivery_history(sqlite_store, success=False)
    assert failed["schema_version"] == "cavra.release.connector_delivery_history.v1"
    assert {(i["event_id"], i["destination"], i["state"]) for i in failed["items"]} == {
        ("a", "bad", "rejected"),
        ("b", "bad", "rejected"),
    }
    assert failed["items"][0]["attempts"][0]["status_code"] == 401
    assert ops.delivery_history(sqlite_store, provider="good")["total"] == 2
    dashboard = ops.delivery_dashboard(sqlite_store, now=hooks.clock())
    assert dashboard["alert_level"] == "critical"  # a rollback event was not delivered
    assert (dashboard["total"], dashboard["success"], dashboard["failed"], dashboard["success_rate"]) == (
        4,
        2,
        2,
        0.5,
    )
    assert dashboard["failing_destinations"] == ["bad"]
    bad_row = next(p for p in dashboard["providers"] if p["destination"] == "bad")
    assert bad_row["last_error"].startswith("HTTP 401") and "Invalid token" in bad_row["last_error"]
    markdown = ops.dashboard_markdown(dashboard)
    assert "| bad | linux | 2 | 0 | 2 | 0.0% |" in markdown


def test_no_secret_reaches_any_stored_record(
    fault_server: FaultServer,
    sqlite_store: Store,
    hooks: DeliveryHooks,
    secret_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every provider, every credential kind, hostile servers that echo credentials back in error
    bodies, failures and successes: then every evidence record and delivery-log row is scanned."""

    configured = {k: v for k, v in SECRETS.items() if k != "RW_SENTINEL_TOKEN"}  # sentinel uses client creds

    def echo(status: int) -> Fault:
        return Fault.of(status, " ".join(configured.values()))

    routes = {
        name: fault_server.route()
        for name in (
            "splunk",
            "sentinel",
            "token",
            "datadog",
            "webhook",
            "jira",
            "snow",
            "pd",
            "jamf",
            "jamf-token",
            "linux",
            "queue",
        )
    }
    routes["splunk"].script(echo(503), echo(401))
    routes["datadog"].script(echo(500), default=202)
    routes["webhook"].script(echo(400))
    routes["jira"].script(echo(429), Fault.of(200, '{"issues": []}'), Fault.of(201, '{"key": "OPS-1"}'))
    routes["snow"].script(echo(403))
    routes["pd"].script(echo(400))
    routes["token"].script(Fault.of(200, json.dumps({"access_token": "dynamic-entra-token-0123456789"})))
    routes["jamf-token"].script(echo(401))
    slack, teams = fault_server.route(SECRETS["RW_SLACK_URL_PATH"]), fault_server.route("/workflows/abc")
    slack.script(Fault.of(404, "no_service"))
    teams.script(echo(500), default=202)
    monkeypatch.setenv("RW_SLACK_URL", slack.url)
    monkeypatch.setenv("RW_TEAMS_URL", teams.url + f"?sig={SECRETS['RW_TEAMS_SIG']}")
    config = config_of(
        {
            "name": "splunk",
            "provider": "splunk",
            "url": routes["splunk"].url,
            "token": "env:RW_SPLUNK_TOKEN",
            "headers": {"X-Custom-Token": "env:RW_CUSTOM_HEADER"},
        },
        {
            "name": "sentinel",
            "provider": "sentinel",
            "url": routes["sentinel"].url,
            "dcr_immutable_id": "dcr-00112233445566778899aabbccddeeff",
            "stream_name": "Custom-R_CL",
            "client_id": "app",
            "client_secret": "env:RW_SENTINEL_SECRET",
            "token_url": routes["token"].url,
        },
        {"name": "dd", "provider": "datadog", "url": routes["datadog"].url, "api_key": "env:RW_DD_API_KEY"},
        {
            "name": "hook",
            "provider": "webhook",
            "url": routes["webhook"].url,
            "signing_secret": "env:RW_WEBHOOK_SECRET",
        },
        {"name": "slack", "provider": "slack", "url": "env:RW_SLACK_URL"},
        {"name": "teams", "provider": "teams", "url": "env:RW_TEAMS_URL"},
        {
            "name": "jira",
            "provider": "jira",
            "url": routes["jira"].url,
            "email": "bot@example.com",
            "api_token": "env:RW_JIRA_TOKEN",
            "project_key": "OPS",
        },
        {
            "name": "snow",
            "provider": "servicenow",
            "url": routes["snow"].url,
            "username": "svc",
            "password": "env:RW_SN_PASSWORD",
        },
        {"name": "pd", "provider": "pagerduty", "url": routes["pd"].url, "routing_key": "env:RW_PD_ROUTING"},
        {
            "name": "jamf",
            "provider": "jamf",
            "mode": "relay",
            "url": routes["jamf"].url,
            "client_id": "c",
            "client_secret": "env:RW_JAMF_SECRET",
            "token_url": routes["jamf-token"].url,
        },
        {"name": "linux", "provider": "linux", "url": routes["linux"].url, "token": "env:RW_LINUX_TOKEN"},
        {
            "name": "queue",
            "provider": "private_queue",
            "url": routes["queue"].url,
            "token": "env:RW_QUEUE_TOKEN",
        },
        {"name": "unset", "provider": "linux", "url": routes["linux"].url, "token": "env:RW_NOT_SET"},
        max_attempts=2,
    )
    runs = ops.deliver_events(
        [make_event("s1"), make_event("s2", severity="critical")], config, store=sqlite_store, hooks=hooks
    )
    statuses = {r.destination: r.status.value for run in runs for r in run.results}
    assert statuses["unset"] == "config-error" and statuses["jira"] in ("delivered", "failed")
    errors = " ".join(r.error or "" for run in runs for r in run.results)
    assert "REDACTED" in errors and "environment variable RW_NOT_SET is not set" in errors
    ops.redeliver_due(config, store=sqlite_store, hooks=hooks)
    assert (
        scan_for_secrets(sqlite_store, {**configured, "entra-token": "dynamic-entra-token-0123456789"}) == []
    )
    with sqlite_store.engine.connect() as conn:
        evidence_text = " ".join(
            str(r[0]) for r in conn.execute(sa.text("SELECT payload FROM evidence_record"))
        )
    assert "REDACTED" in evidence_text and "/workflows/" not in evidence_text


def test_enable_requeues_blocked_deliveries(
    fault_server: FaultServer, sqlite_store: Store, hooks: DeliveryHooks, clock: FakeClock
) -> None:
    route = fault_server.route().script(410)
    config = config_of({"name": "gone", "provider": "linux", "url": route.url})
    assert not ops.deliver_event(make_event(), config, store=sqlite_store, hooks=hooks).success
    blocked = ops.deliver_event(make_event("next"), config, store=sqlite_store, hooks=hooks)
    assert blocked.results[0].status.value == "destination-disabled"
    assert ops.delivery_dashboard(sqlite_store)["disabled_destinations"] == {
        "gone": f"HTTP 410 Gone at {clock.now.isoformat()}"
    }
    assert ops.enable_destination(sqlite_store, "gone", now=clock.now) == 1
    with pytest.raises(Exception, match="not disabled"):
        ops.enable_destination(sqlite_store, "gone")
    clock.advance(timedelta(minutes=1).total_seconds())
    report = ops.redeliver_due(config, store=sqlite_store, hooks=hooks)
    assert report.delivered == 1 and len(route.requests) == 2
