"""Inventory flows as tracked Prefect runs (shared test server), and the Dask partitioned path on a
small local cluster agreeing with the single-process engine."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.inventory.reconcile import KIND_RECONCILIATION
from tests.inventory.conftest import InventoryWorld, at, iso, records

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_ingest_then_reconcile_as_flow_runs(prefect_server: None, world: InventoryWorld,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.inventory_ingest as ingest_flows
    import flows.inventory_reconcile as reconcile_flows
    from flows._common import run_flow

    emitted: list[tuple[str, str, dict[str, Any]]] = []
    for module in (ingest_flows, reconcile_flows):
        monkeypatch.setattr(module, "emit", lambda name, resource, payload: emitted.append((name, resource, payload)))
    fleet = world.aligned_endpoints()
    fleet[0]["installed_version"] = "1.2.2"
    source = world.write("fleet.json", {"endpoints": fleet})
    ingested = run_flow(ingest_flows.inventory_ingest_flow, source=str(source), provider="linux", channel="stable",
                        software=["rt"], now=at(1))
    assert ingested["status"] == "ingested"
    (record,) = records(world.store, "endpoint-inventory-ingestion")
    assert record.flow_run_id
    result = run_flow(reconcile_flows.inventory_reconcile_flow, package_dir=str(world.package),
                      observations=ingested["observations"], trust_root=str(world.keys.trust_root), now=at(2))
    assert result["drift_status"] == "drift_detected"
    assert [name for name, _, _ in emitted] == ["ringward.inventory.ingested", "ringward.inventory.drift-detected"]
    assert emitted[1][1] == "ringward.channel.stable"
    # a refusal comes back as the same one-line error the CLI prints
    from ringward.core.errors import InputError

    with pytest.raises(InputError, match="--provider"):
        run_flow(ingest_flows.inventory_ingest_flow, source=str(source), provider="sccm", now=at(1))


def test_dask_partitions_agree_with_the_engine(prefect_server: None, world: InventoryWorld) -> None:
    from flows._common import run_flow
    from flows.inventory_reconcile import partitioned_flow
    from ringward.operations.inventory.engine import reconcile_file
    from ringward.operations.inventory.reconcile import desired_state
    from ringward.operations.promotion.channel_ops import load_verified_release
    from ringward.operations.trust.keys import load_trust_root

    fleet = []
    targets = list(world.targets().items())
    for index in range(400):
        target, sha = targets[index % (len(targets) - 1)]
        fleet.append({"endpoint_id": f"h-{index}", "deployment_target": target if index % 97 else "rogue",
                      "installed_version": "1.2.3" if index % 13 else "v1.1.0",
                      "binary_sha256": sha if index % 31 else "0" * 64,
                      "last_seen_at": iso(at(-1 if index % 17 else -40))})
    observations = Path(world.ingest({"endpoints": fleet}, now=at(1))["observations"])
    result = run_flow(partitioned_flow(n_workers=2, processes=False), package_dir=str(world.package),
                      observations=str(observations), trust_root=str(world.keys.trust_root), partitions=5,
                      now=at(2), output=str(world.work / "partitioned"))
    report = json.loads(Path(result["report"]).read_bytes())
    assert report["engine"] == "dask-partitions"
    release = load_verified_release(world.package, load_trust_root(world.keys.trust_root), now=at(2))
    desired, _ = desired_state(release)
    single = reconcile_file(observations, desired, now=at(2), stale_after=timedelta(hours=24))
    assert report["reconciliation_id"] == single.reconciliation.reconciliation_id
    assert report["drift_items"] == list(single.reconciliation.drift_items)
    assert report["summary"] == single.reconciliation.summary()
    assert records(world.store, KIND_RECONCILIATION)[-1].payload["engine"] == "dask-partitions"
