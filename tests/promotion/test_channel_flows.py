"""The channel promotion steps as tracked Prefect flow runs on the shared test server: the same result
dicts as in-process, evidence carrying the flow-run id, the `ringward.promotion.requested` event,
and `--prefect` on the CLI (run as a subprocess, as users run it) with refusals as one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.connectors.conftest import SECRETS
from tests.connectors.fault_server import FaultServer
from tests.promotion.conftest import REQUEST_FILE, ChannelWorld, later

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def fleet() -> Iterator[Any]:
    server = FaultServer().start()
    yield server.route("/fleet")
    server.stop()


def test_request_export_deliver_flows(
    prefect_server: None, channel_world: ChannelWorld, fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.promotion_channel as channel_flows
    from flows._common import run_flow

    emitted: list[tuple[str, str, dict[str, Any]]] = []
    real_emit = channel_flows.emit

    def recording_emit(name: str, resource: str, payload: dict[str, Any]) -> None:
        emitted.append((name, resource, payload))
        real_emit(name, resource, payload)

    monkeypatch.setattr(channel_flows, "emit", recording_emit)
    monkeypatch.setenv("RW_LINUX_TOKEN", SECRETS["RW_LINUX_TOKEN"])
    keys = channel_world.keys
    requested = run_flow(
        channel_flows.request_channel_promotion_flow, package_dir=str(channel_world.package), channel="stable",
        target_ring="broad", requester="alice", signing_key=str(keys.promotion_pem), trust_root=str(keys.trust_root),
        output=str(channel_world.work / "request"), now=later(0.1),
    )
    assert requested["approval_state"] == "pending" and requested["target_ring"] == "broad"
    assert [(name, resource) for name, resource, _ in emitted] == [
        ("ringward.promotion.requested", "ringward.channel.stable")]
    assert emitted[0][2]["approval_id"] == requested["approval_id"]
    (record,) = channel_world.records("release-channel-promotion-request")
    assert record.flow_run_id and record.payload["request_id"] == requested["request_id"]

    channel_world.approve(requested["approval_id"])
    export = dict(package_dir=str(channel_world.package), channel="stable", provider="linux",
                  promotion_request=str(Path(requested["output_dir"]) / REQUEST_FILE),
                  trust_root=str(keys.trust_root), actor="carol", now=later(0.3))
    exported = run_flow(channel_flows.export_endpoint_flow, output=str(channel_world.work / "export"), **export)
    (export_record,) = channel_world.records("endpoint-management-export", status="exported")
    assert export_record.flow_run_id and export_record.payload["export_id"] == exported["export_id"]
    # a refused step ends the run Failed carrying the refusal, which front doors re-raise as itself
    state = channel_flows.export_endpoint_flow(output=str(channel_world.work / "again"), return_state=True, **export)
    assert state.is_failed()
    refusal = state.result(raise_on_failure=False)
    assert refusal["refused"] and refusal["errors"][0]["error_type"] == "ApprovalConsumedError"
    from ringward.core.errors import ApprovalConsumedError

    with pytest.raises(ApprovalConsumedError, match="single-use"):
        channel_flows.raise_refusal(refusal)
    assert not (channel_world.work / "again").exists()

    config = channel_world.work.parent / "connectors.yaml"
    config.write_text(yaml.safe_dump({"providers": [{"name": "linux-fleet", "provider": "linux", "url": fleet.url,
                                                     "token": "env:RW_LINUX_TOKEN"}]}))
    delivered = run_flow(channel_flows.deliver_endpoint_export_flow, export_manifest=exported["manifest"],
                         config=str(config), actor="carol")
    assert delivered["success"] and delivered["export_id"] == exported["export_id"]
    assert len(fleet.successes) == 1
    (publication,) = channel_world.records("endpoint-management-publication-delivery")
    assert publication.flow_run_id and publication.subject.success is True


def test_cli_prefect_flag_runs_the_steps_as_flows(prefect_server: None, channel_world: ChannelWorld) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    keys = channel_world.keys

    def ringward(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ringward", *argv], env=env, capture_output=True, text=True,
                              timeout=300, check=False, cwd=channel_world.work)

    done = ringward("channel", "request-promotion", str(channel_world.package), "--channel", "stable",
                    "--target-ring", "enterprise", "--requester", "alice", "--signing-key", str(keys.promotion_pem),
                    "--trust-root", str(keys.trust_root), "--json", "--prefect")
    assert done.returncode == 0, done.stderr[-2000:]
    requested = json.loads(done.stdout)
    assert channel_world.store.get_evidence(int(requested["evidence"]["evidence_id"])).flow_run_id
    channel_world.approve(requested["approval_id"], at=datetime.now(UTC))  # the CLI ran at the real time
    request_file = str(Path(requested["output_dir"]) / REQUEST_FILE)
    export = ["endpoint", "export", str(channel_world.package), "--channel", "stable", "--provider", "intune",
              "--promotion-request", request_file, "--trust-root", str(keys.trust_root), "--actor", "carol"]
    done = ringward(*export, "--output", str(channel_world.work / "export"), "--json", "--prefect")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["providers"] == ["intune"]
    again = ringward(*export, "--output", str(channel_world.work / "again"), "--prefect")
    last = again.stderr.strip().splitlines()[-1]
    assert again.returncode == 1 and last.startswith("error: approval ") and "already consumed" in last
    # the refused run's logs carry the refusal, not a traceback nor Prefect's empty `NoneType: None`
    logs = again.stdout + again.stderr
    assert "Traceback" not in logs and "NoneType: None" not in logs, logs[-3000:]
    assert "already consumed" in logs.split(last)[0]  # the Failed run state says why, before the error line
    assert not (channel_world.work / "again").exists()

    older = channel_world.sim.package("1.2.2", out="older")
    oldest = channel_world.sim.package("1.2.1", out="oldest")
    done = ringward("release", "validate-upgrade", str(oldest), str(older), "--trust-root", str(keys.trust_root),
                    "--channel", "stable", "--json", "--prefect")
    result = json.loads(done.stdout)
    assert done.returncode == 1 and [e["code"] for e in result["errors"]] == ["rollback-rejected"], done.stderr
    (record,) = channel_world.records("release-upgrade-validation")
    assert record.flow_run_id and record.payload["channel"] == "stable"
