"""`ringward inventory ingest`: observations file, evidence with both digests, idempotency, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ringward.core.errors import InputError, OutputExistsError
from ringward.core.inventory.observations import KIND_INGESTION, ObservationsDocument
from ringward.settings import evidence_root
from tests.inventory import payloads
from tests.inventory.conftest import InventoryWorld, at, cli, records


def test_ingest_writes_observations_and_evidence(world: InventoryWorld) -> None:
    result = world.ingest(payloads.jamf_page(), provider="jamf", channel="stable", name="jamf.json")
    assert result["status"] == "ingested" and result["endpoint_count"] == 3
    observations = Path(result["observations"])
    document = ObservationsDocument.model_validate(json.loads(observations.read_bytes()))
    assert document.schema_version == "cavra.endpoint-observations.v1"
    assert document.provider == "jamf" and document.channel == "stable"
    assert document.inventory_id == result["inventory_id"] and result["inventory_id"].startswith("eii_")
    # observed_at defaults to the newest clock in the payload, not to now
    assert document.observed_at == "2026-11-22T11:02:00Z"
    ingestion = json.loads((observations.parent / "endpoint-inventory-ingestion.json").read_bytes())
    assert ingestion["schema_version"] == "cavra.endpoint-inventory-ingestion.v1"
    assert ingestion["normalised_sha256"] == hashlib.sha256(observations.read_bytes()).hexdigest()
    assert ingestion["raw_payload_sha256"] == hashlib.sha256((world.work / "jamf.json").read_bytes()).hexdigest()
    (record,) = records(world.store, KIND_INGESTION)
    assert record.subject.status == "ingested" and record.subject.provider == "jamf"
    assert record.payload["inventory_id"] == result["inventory_id"]
    assert record.payload["raw_payload_sha256"] == ingestion["raw_payload_sha256"]
    bundle = evidence_root() / record.bundle_dir
    assert (bundle / "source-payload.json").read_bytes() == (world.work / "jamf.json").read_bytes()
    assert (bundle / "endpoint-inventory.json").read_bytes() == observations.read_bytes()
    assert {a.name for a in record.artifacts} == {"endpoint-inventory.json", "endpoint-inventory-ingestion.json",
                                                  "endpoint-inventory-ingestion.md", "source-payload.json"}


def test_identical_reingest_is_one_record(world: InventoryWorld) -> None:
    first = world.ingest(payloads.fleet_hosts(), provider="fleet")
    again = world.ingest(payloads.fleet_hosts(), provider="fleet", now=at(5))
    assert again["status"] == "duplicate" and again["output"] == "unchanged"
    assert again["inventory_id"] == first["inventory_id"]
    assert again["evidence"]["evidence_id"] == first["evidence"]["evidence_id"]
    assert len(records(world.store, KIND_INGESTION)) == 1
    # the same content under another file name and key order is still the same ingestion
    reordered = json.loads(json.dumps(payloads.fleet_hosts(), sort_keys=True))
    third = world.ingest(reordered, provider="fleet", name="other.json", output=world.work / "elsewhere")
    assert third["status"] == "duplicate" and third["output"] == "written"
    assert len(list((evidence_root() / KIND_INGESTION).rglob("endpoint-inventory.json"))) == 1
    changed = payloads.fleet_hosts()
    changed["hosts"][0]["software"][0]["version"] = "1.2.4"
    assert world.ingest(changed, provider="fleet")["status"] == "ingested"
    assert len(records(world.store, KIND_INGESTION)) == 2


def test_malformed_record_keeps_raw_payload_as_evidence(world: InventoryWorld) -> None:
    broken = payloads.intune_devices()
    broken["value"][1]["lastSyncDateTime"] = "last tuesday"
    with pytest.raises(InputError, match="intune record 1: lastSyncDateTime: expected an ISO-8601 time"):
        world.ingest(broken, provider="intune", name="graph.json")
    (record,) = records(world.store, KIND_INGESTION)
    assert record.subject.status == "refused" and record.payload["refused"] is True
    assert "intune record 1" in record.payload["error"]["message"]
    raw = (world.work / "graph.json").read_bytes()
    assert record.payload["raw_payload_sha256"] == hashlib.sha256(raw).hexdigest()
    assert (evidence_root() / record.bundle_dir / "source-payload.json").read_bytes() == raw
    assert not (world.work / "endpoint-inventory").exists()


@pytest.mark.parametrize("content,message", [
    (b"{not json", "invalid JSON"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b"[1, 2]", "jamf inventory payload: expected a JSON object, found list"),
])
def test_unparsable_payload_is_recorded_and_refused(world: InventoryWorld, content: bytes, message: str) -> None:
    source = world.work / "raw.json"
    source.write_bytes(content)
    from ringward.operations.inventory.ingest import ingest_inventory

    with pytest.raises(InputError, match=message):
        ingest_inventory(world.store, source=source, provider="jamf", now=at(1), actor="bot")
    (record,) = records(world.store, KIND_INGESTION)
    assert record.subject.status == "refused"
    assert (evidence_root() / record.bundle_dir / "source-payload.json").read_bytes() == content


def test_refusals_before_reading(world: InventoryWorld) -> None:
    from ringward.operations.inventory.ingest import ingest_inventory

    with pytest.raises(InputError, match="--provider: expected one of"):
        ingest_inventory(world.store, source=world.work / "x.json", provider="sccm", now=at(1), actor="bot")
    with pytest.raises(InputError, match=r"SOURCE .*file not found"):
        ingest_inventory(world.store, source=world.work / "missing.json", provider="jamf", now=at(1), actor="bot")
    with pytest.raises(InputError, match="--channel: expected a channel name"):
        world.ingest({"endpoints": []}, channel="Not A Channel")
    assert records(world.store, KIND_INGESTION) == []


def test_output_that_holds_other_content_is_refused(world: InventoryWorld) -> None:
    output = world.work / "out"
    output.mkdir()
    (output / "endpoint-inventory.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="holds other content"):
        world.ingest({"endpoints": world.aligned_endpoints()}, output=output)


def test_cli_ingest(world: InventoryWorld, capsys: pytest.CaptureFixture[str]) -> None:
    source = world.write("fleet.json", payloads.fleet_hosts())
    code, out, err = cli(capsys, "inventory", "ingest", str(source), "--provider", "fleet", "--software", "rt",
                         "--channel", "beta", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "ingested" and result["channel"] == "beta"
    code, out, err = cli(capsys, "inventory", "ingest", str(source), "--provider", "fleet", "--software", "rt",
                         "--channel", "beta")
    assert code == 0 and out.startswith("ALREADY INGESTED: " + result["inventory_id"])
    broken = world.write("broken.json", {"hosts": [{"uuid": "u", "seen_time": "noon"}]})
    code, out, err = cli(capsys, "inventory", "ingest", str(broken), "--provider", "fleet")
    assert code == 2
    assert err == "error: fleet record 0: seen_time: expected an ISO-8601 time with a zone, found 'noon'\n"
    code, _, err = cli(capsys, "inventory", "ingest", str(source), "--provider", "sccm")
    assert code == 2 and "--provider" in err


def test_payload_channel_is_checked_and_recorded(world: InventoryWorld) -> None:
    with pytest.raises(InputError, match="linux inventory payload: channel: expected a channel name"):
        world.ingest({"channel": "Stable Ring!", "endpoints": world.aligned_endpoints()})
    assert records(world.store, KIND_INGESTION)[0].subject.status == "refused"
    assert world.ingest({"channel": "beta", "endpoints": world.aligned_endpoints()})["channel"] == "beta"
