"""Scheduled pulls per provider against the emulators: a multi-page fleet pulled and ingested, then an
incremental pull that fetches only the hosts whose inventory clock moved, merged into the fleet."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.operations.inventory.pull_ops import KIND_PULL
from ringward.operations.inventory.pull_state import PULL_NAMESPACE
from tests.inventory.conftest import records
from tests.inventory.pull_emulators import SOURCES, T0, PullLab, lab  # noqa: F401

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def observed(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from ringward.operations.inventory.observations_file import stream_document

    return {v["endpoint_id"]: v for event, v in stream_document(Path(result["observations"])) if event == "endpoint"}


def filter_of(provider: str, request: Any) -> str | None:
    """The incremental filter a list request carried (None: a full read)."""
    name = {"jamf": "filter", "intune": "$filter", "fleet": "after"}[provider]
    values: list[str] = request.query.get(name) or []
    return values[0] if values else None


@pytest.mark.parametrize("provider", ["jamf", "intune", "fleet"])
def test_full_then_incremental_pull(lab: PullLab, provider: str) -> None:  # noqa: F811
    lab.seed(provider, 23, without_runtime=(7,))
    first = lab.pull(provider, at=T0 + timedelta(hours=1))
    assert (first["mode"], first["full_reason"]) == ("full", "first pull of this source")
    assert (first["page_count"], first["hosts_fetched"], first["host_count"]) == (5, 23, 23)
    assert first["ingestion"]["status"] == "ingested" and first["ingestion"]["endpoint_count"] == 23
    assert first["ingestion"]["version_count"] == 22
    assert first["cursor"] == {"before": None, "after": "2026-11-22T11:00:00Z"}  # host 1: T0 - 1h
    hosts = observed(first)
    assert hosts[lab.host_id(provider, 2)]["installed_version"] == "1.2.3"
    assert "installed_version" not in hosts[lab.host_id(provider, 7)]
    pages = lab.list_requests(provider)
    assert len(pages) == 5 and all(filter_of(provider, r) is None for r in pages)
    if provider == "jamf":
        assert pages[0].query["section"] == ["GENERAL", "APPLICATIONS", "HARDWARE", "OPERATING_SYSTEM"]
        assert pages[0].query["page-size"] == ["5"] and pages[0].query["sort"] == ["id:asc"]
        assert [r.query["page"] for r in pages] == [["0"], ["1"], ["2"], ["3"], ["4"]]
    elif provider == "intune":
        assert len(lab.graph.of("device")) == 23  # each device's detectedApps, once
        assert all(r.query["$expand"] == ["detectedApps"] for r in lab.graph.of("device"))
        assert "$skiptoken" in pages[-1].query
    else:
        assert pages[0].query["populate_software"] == ["true"] and pages[0].query["order_key"] == ["id"]
    (pull_record,) = records(lab.store, KIND_PULL)
    assert pull_record.payload["status"] == "pulled" and pull_record.payload["pages_kept"] == 5
    assert pull_record.payload["inventory_id"] == first["inventory_id"]

    # two hosts move to 1.2.4 and one enrols, two hours after T0; the rest stay as they were
    for n in (3, 11):
        lab.set_host(provider, n, version="1.2.4", at=T0 + timedelta(hours=2))
    lab.set_host(provider, 24, version="1.2.4", at=T0 + timedelta(hours=2, minutes=30))
    before = len(lab.list_requests(provider))
    second = lab.pull(provider, at=T0 + timedelta(hours=3))
    assert second["mode"] == "incremental" and second["since"] == "2026-11-22T10:50:00Z"  # cursor - 10 min
    fetched = lab.list_requests(provider)[before:]
    assert all(filter_of(provider, r) for r in fetched)
    # only the changed hosts, plus host 1 whose clock is the cursor itself (the overlap re-reads it)
    assert second["hosts_fetched"] == 4 and second["host_count"] == 24
    assert second["cursor"]["after"] == "2026-11-22T14:30:00Z"
    hosts = observed(second)
    assert len(hosts) == 24 and second["ingestion"]["status"] == "ingested"
    assert {h for h, v in hosts.items() if v.get("installed_version") == "1.2.4"} == {
        lab.host_id(provider, n) for n in (3, 11, 24)}
    if provider == "intune":
        assert len(lab.graph.of("device")) == 23 + 4

    # nothing changed: an incremental read of the overlap only, the same content, no new ingestion
    third = lab.pull(provider, at=T0 + timedelta(hours=4))
    assert third["mode"] == "incremental" and third["hosts_fetched"] == 1
    assert third["ingestion"]["status"] == "duplicate" and third["inventory_id"] == second["inventory_id"]
    state = lab.store.state.get(PULL_NAMESPACE, f"{provider}/{SOURCES[provider]}")
    assert state is not None and state.value["host_count"] == 24 and state.version == 3


def test_full_read_drops_deleted_devices_and_runs_when_due(lab: PullLab) -> None:  # noqa: F811
    lab.seed("jamf", 6)
    lab.pull("jamf", at=T0)
    lab.remove_host("jamf", 4)
    incremental = lab.pull("jamf", at=T0 + timedelta(hours=1))
    assert incremental["mode"] == "incremental" and incremental["host_count"] == 6  # a deletion is not seen
    forced = lab.pull("jamf", at=T0 + timedelta(hours=2), full=True)
    assert (forced["mode"], forced["full_reason"], forced["host_count"]) == ("full", "--full", 5)
    due = lab.pull("jamf", at=T0 + timedelta(hours=27))
    assert due["mode"] == "full" and "a full read every 24h" in due["full_reason"]
    # the snapshot an incremental read builds on is checked: altered, the next read is full
    state = lab.store.state.get(PULL_NAMESPACE, "jamf/mdm-jamf")
    assert state is not None
    from ringward.operations.inventory.pull_state import snapshots_dir

    snapshot = snapshots_dir() / state.value["snapshot"]["file"]
    snapshot.write_bytes(snapshot.read_bytes().replace(b"mac-001", b"mac-00X"))
    altered = lab.pull("jamf", at=T0 + timedelta(hours=28))
    assert altered["mode"] == "full" and "does not match its recorded digest" in altered["full_reason"]
    assert len(list(snapshots_dir().iterdir())) == 1  # superseded snapshots are removed


def test_pulled_pages_are_evidence_and_feed_the_existing_ingestion(lab: PullLab) -> None:  # noqa: F811
    from ringward.settings import evidence_root

    lab.seed("fleet", 7)
    result = lab.pull("fleet", at=T0, channel="stable")
    (pull_record,) = records(lab.store, KIND_PULL)
    bundle = evidence_root() / pull_record.bundle_dir
    document = json.loads((bundle / "inventory-pull.json").read_text())
    assert [p["records"] for p in document["pages"]] == [5, 2]
    import hashlib

    for page in document["pages"]:
        raw = (bundle / f"page-{page['index']:05d}.json").read_bytes()
        assert hashlib.sha256(raw).hexdigest() == page["sha256"] and json.loads(raw)["hosts"]
    (ingestion,) = records(lab.store, "endpoint-inventory-ingestion")
    assert ingestion.payload["channel"] == "stable" and ingestion.payload["endpoint_count"] == 7
    assert ingestion.payload["provider"] == "fleet" and result["ingestion"]["channel"] == "stable"
    raw = (evidence_root() / ingestion.bundle_dir / "source-payload.json").read_bytes()
    assert sorted(h["id"] for h in json.loads(raw)["hosts"]) == list(range(1, 8))
