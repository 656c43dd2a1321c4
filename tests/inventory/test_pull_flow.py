"""The scheduled pull and the freshness cron as tracked Prefect runs (the session's test server): one
task per batch of pages, the per-source artifact, the ingestion event, a refusal re-raised as the same
one-line error, an unconfigured provider skipped, and freshness notifications delivered once."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from ringward.core.errors import ConfigError
from ringward.operations.inventory.pull_ops import KIND_PULL
from tests.inventory.conftest import cli, iso, records
from tests.inventory.pull_emulators import T0, PullLab, lab  # noqa: F401

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_pull_and_freshness_as_flow_runs(prefect_server: None, lab: PullLab,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.artifacts import Artifact

    import flows.inventory_freshness as freshness_flows
    import flows.inventory_pull as pull_flows
    from flows._common import run_flow

    emitted: list[tuple[str, str, dict[str, Any]]] = []
    for module in (pull_flows, freshness_flows):
        monkeypatch.setattr(module, "emit", lambda name, resource, payload: emitted.append((name, resource, payload)))
    lab.seed("fleet", 9)
    result = run_flow(pull_flows.inventory_pull_flow, provider="fleet", config_path=str(lab.config), software=["rt"],
                      channel="stable", page_size=4, batch_pages=1, now=T0)
    assert (result["page_count"], result["host_count"], result["mode"]) == (3, 9, "full")
    (record,) = records(lab.store, KIND_PULL)
    assert record.flow_run_id and record.payload["pages_kept"] == 3
    assert emitted == [("ringward.inventory.ingested", "ringward.inventory.fleet",
                        {"inventory_id": result["inventory_id"], "channel": "stable"})]
    artifact = Artifact.get("inventory-pull-fleet-fleetdm")
    assert "9 hosts pulled" in str(getattr(artifact, "description", None))

    # the CLI's --prefect path: the same flow, the same result
    lab.set_host("fleet", 2, version="1.2.4", at=T0 + timedelta(hours=1))
    code, out, err = cli(capsys, "inventory", "pull", "--provider", "fleet", "--config", str(lab.config),
                         "--software", "rt", "--channel", "stable", "--json", "--prefect", "--at",
                         iso(T0 + timedelta(hours=2)))
    assert code == 0, err
    assert json.loads(out)["mode"] == "incremental" and json.loads(out)["hosts_fetched"] == 2  # + the overlap

    # a provider without a source: the scheduled deployment's run ends Completed; asked directly, refused
    no_jamf = lab.work / "no-jamf.yaml"
    no_jamf.write_text(lab.config.read_text().replace("provider: jamf", "provider: jamf\n    mode: relay"))
    skipped = run_flow(pull_flows.inventory_pull_flow, provider="jamf", config_path=str(no_jamf),
                       skip_unconfigured=True)
    assert skipped["status"] == "not-configured"
    monkeypatch.setenv("RW_PULL_FLEET_TOKEN", "wrong-token-000")
    with pytest.raises(ConfigError, match="HTTP 401 Unauthorized"):
        run_flow(pull_flows.inventory_pull_flow, provider="fleet", config_path=str(lab.config), software=["rt"])

    # freshness: the change is an event and one notification; the next evaluation says nothing
    emitted.clear()
    changed = run_flow(freshness_flows.inventory_freshness_flow, config_path=str(lab.config),
                       now=T0 + timedelta(hours=40))
    assert changed["notifications"]["ok"] and len(changed["notifications"]["delivered"]) == 2
    assert {name for name, _, _ in emitted} == {"ringward.inventory.freshness-changed"}
    again = run_flow(freshness_flows.inventory_freshness_flow, config_path=str(lab.config),
                     now=T0 + timedelta(hours=41))
    assert again["notifications"]["pending"] == 0 and len(list((lab.work / "queue").glob("*.json"))) == 2
    off = run_flow(freshness_flows.inventory_freshness_flow, config_path=str(lab.work / "none.yaml"),
                   now=T0 + timedelta(hours=42))
    assert off["notifications"] is None
