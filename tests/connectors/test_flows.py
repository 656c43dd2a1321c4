"""Connector flows on the shared Prefect test server (kept few: each flow run costs ~1 s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringward.operations.delivery import delivery_ops as ops
from ringward.store import open_store
from tests.connectors.conftest import make_event, write_config
from tests.connectors.fault_server import FaultServer

pytestmark = pytest.mark.prefect

VOLATILE = {"generated_at", "created_at", "run_id", "session_id", "started_at", "completed_at"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_deliver_event_flow_retries_transport_failures_and_matches_the_cli_path(
    prefect_server: None, ringward_home: Path, tmp_path: Path, fault_server: FaultServer
) -> None:
    from prefect.artifacts import Artifact

    from flows.deliver_event import deliver_event_flow

    fleet, flaky, rejecting = fault_server.route(), fault_server.route().script(503), fault_server.route()
    rejecting.script(default=400)
    config = write_config(
        tmp_path / "connectors.yaml",
        {"name": "fleet", "provider": "linux", "url": fleet.url},
        {"name": "flaky", "provider": "linux", "url": flaky.url, "max_attempts": 1},
        {"name": "tickets", "provider": "linux", "url": rejecting.url},
    )
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(make_event().to_document()))

    result = deliver_event_flow(
        config_path=str(config), event_path=str(event_file), fail_on_undelivered=False, retry_delay_seconds=0
    )
    statuses = {d["destination"]: d["status"] for d in result["deliveries"]}
    assert statuses == {"fleet": "delivered", "flaky": "delivered", "tickets": "rejected"}
    flaky_result = next(d for d in result["deliveries"] if d["destination"] == "flaky")
    # one engine attempt per task try; Prefect retried the task once after the 503
    assert [a["status_code"] for a in flaky_result["attempts"]] == [503, 200]
    assert [a["number"] for a in flaky_result["attempts"]] == [1, 2]
    assert len(rejecting.requests) == 1  # a 400 is final: no Prefect retry either
    assert result["flow_run_id"] and result["evidence_id"]
    dashboard = Artifact.get("connector-delivery-dashboard")
    assert dashboard is not None and "Connector delivery dashboard" in str(dashboard.data)

    # the same flow again: nothing is sent twice
    again = deliver_event_flow(config_path=str(config), event_path=str(event_file), fail_on_undelivered=False)
    assert {d["destination"]: d["status"] for d in again["deliveries"]} == {
        "fleet": "already-delivered",
        "flaky": "already-delivered",
        "tickets": "rejected",
    }
    assert (len(fleet.requests), len(flaky.requests), len(rejecting.requests)) == (1, 2, 2)

    # the CLI's in-process path writes the same evidence for the same input (a fresh store)
    fresh = fault_server.route()
    same = write_config(
        tmp_path / "same.yaml",
        {"name": "cmp-fleet", "provider": "linux", "url": fresh.url},
        {"name": "cmp-tickets", "provider": "linux", "url": rejecting.url},
    )
    via_flow = deliver_event_flow(
        config_path=str(same), event_path=str(event_file), providers="all", fail_on_undelivered=False
    )
    with open_store() as store:
        flow_payload = store.get_evidence(via_flow["evidence_id"]).payload
    with open_store(f"sqlite:///{tmp_path / 'cli.db'}") as cli_store:
        cli_run = ops.deliver_event(make_event(), ops.load_connector_config(same), store=cli_store)
    assert _stable(cli_run.payload) == _stable(flow_payload)
    assert [d["status"] for d in flow_payload["delivery"]["deliveries"]] == ["delivered", "rejected"]


def test_redeliver_failed_flow(
    prefect_server: None, ringward_home: Path, tmp_path: Path, fault_server: FaultServer
) -> None:
    from flows.redeliver_failed import redeliver_failed_flow

    route = fault_server.route().script(503, 503)
    config = write_config(
        tmp_path / "c.yaml", {"name": "siem", "provider": "linux", "url": route.url, "max_attempts": 1}
    )
    with open_store() as store:
        first = ops.deliver_event(make_event("rf-1"), ops.load_connector_config(config), store=store)
    assert not first.success
    summary = redeliver_failed_flow(config_path=str(config))
    assert (summary["due"], summary["delivered"], summary["still_failing"]) == (1, 0, 1)
    summary = redeliver_failed_flow(config_path=str(config))
    assert (summary["due"], summary["delivered"]) == (1, 1) and summary["alert_level"] == "healthy"
    assert len(route.requests) == 3


def test_cli_deliver_with_prefect_flag_runs_the_flow(
    prefect_server: None, ringward_home: Path, tmp_path: Path, fault_server: FaultServer
) -> None:
    """`ringward connectors deliver --prefect` runs deliver-event and reports like the in-process path."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    ok, rejecting = fault_server.route(), fault_server.route()
    rejecting.script(default=400)
    config = write_config(
        tmp_path / "cli-prefect.yaml",
        {"name": "cli-fleet", "provider": "linux", "url": ok.url},
        {"name": "cli-tickets", "provider": "linux", "url": rejecting.url},
    )
    event_file = tmp_path / "cli-event.json"
    event_file.write_text(json.dumps(make_event("cli-prefect-1").to_document()))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "RINGWARD_HOME": str(ringward_home)}
    done = subprocess.run(
        [sys.executable, "-m", "ringward", "connectors", "deliver", str(event_file), "--config", str(config),
         "--prefect", "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # one destination refused the event
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert {d["destination"]: d["status"] for d in result["deliveries"]} == {
        "cli-fleet": "delivered", "cli-tickets": "rejected"}, result["deliveries"]
    assert result["flow_run_id"]
    assert len(ok.requests) == 1
