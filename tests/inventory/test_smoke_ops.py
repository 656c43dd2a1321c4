"""First end-to-end path: ingest a collector payload, reconcile it against the signed package."""

from __future__ import annotations

from pathlib import Path

from tests.inventory.conftest import InventoryWorld


def test_ingest_then_reconcile_aligned(world: InventoryWorld) -> None:
    ingested = world.ingest({"endpoints": world.aligned_endpoints()}, channel="stable")
    assert ingested["status"] == "ingested"
    result = world.reconcile(Path(ingested["observations"]))
    assert result["drift_status"] == "aligned", result
    assert result["engine"] == "columnar"
    assert result["summary"]["compliant_endpoint_count"] == len(world.targets())
