"""`ringward inventory reconcile`: verification first (never skipped), the report, evidence, refusals."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from ringward.core.errors import DigestMismatchError, InputError, VerificationError
from ringward.core.inventory.reconcile import KIND_RECONCILIATION
from ringward.settings import evidence_root
from tests.inventory.conftest import InventoryWorld, at, cli, iso, records


def drifted_fleet(world: InventoryWorld) -> list[dict[str, object]]:
    fleet = world.aligned_endpoints()
    fleet[0]["installed_version"] = "v1.2.2"          # behind
    fleet[1]["binary_sha256"] = "f" * 64              # checksum drift
    fleet[2]["last_seen_at"] = iso(at(-72))           # stale
    fleet.pop(3)                                      # a target nobody reports
    fleet.append({"endpoint_id": "rogue", "deployment_target": "rogue-target", "installed_version": "1.2.3"})
    return fleet


def test_aligned_fleet(world: InventoryWorld) -> None:
    ingested = world.ingest({"endpoints": world.aligned_endpoints()}, channel="stable")
    result = world.reconcile(Path(ingested["observations"]))
    assert (result["drift_status"], result["alert_level"]) == ("aligned", "healthy")
    report = json.loads(Path(result["report"]).read_bytes())
    assert report["schema_version"] == "cavra.endpoint-reconciliation.v1"
    assert report["reconciliation_id"] == result["reconciliation_id"] and report["drift_items"] == []
    assert report["package_verification"]["valid"] is True
    assert report["desired_manifest"]["schema_version"] == "cavra.go-runtime.endpoint-deployment.v1"
    assert report["observed_inventory"]["inventory_id"] == ingested["inventory_id"]
    assert report["observed_inventory"]["endpoint_count"] == len(world.targets())
    (record,) = records(world.store, KIND_RECONCILIATION)
    assert record.subject.status == "aligned" and record.subject.release_version == "1.2.3"
    assert (evidence_root() / record.bundle_dir / "managed-endpoint-reconciliation.json").read_bytes() == \
        Path(result["report"]).read_bytes()


def test_drifted_fleet(world: InventoryWorld) -> None:
    ingested = world.ingest({"endpoints": drifted_fleet(world)})
    result = world.reconcile(Path(ingested["observations"]))
    assert (result["drift_status"], result["alert_level"]) == ("drift_detected", "critical")
    summary = result["summary"]
    assert (summary["drifted_endpoint_count"], summary["missing_target_count"], summary["stale_endpoint_count"],
            summary["unknown_target_count"]) == (2, 1, 1, 1)
    report = json.loads(Path(result["report"]).read_bytes())
    kinds = {item["type"] for item in report["drift_items"]}
    assert kinds == {"version_drift", "binary_drift", "stale_observation", "missing_observation",
                     "unknown_deployment_target"}
    (record,) = records(world.store, KIND_RECONCILIATION)
    assert record.payload["blocked_count"] == 3 and record.payload["drift_item_count"] == 5
    assert record.subject.status == "drift_detected" and record.subject.success is False


def test_stale_after_window(world: InventoryWorld) -> None:
    fleet = world.aligned_endpoints(seen=at(-30))
    observations = Path(world.ingest({"endpoints": fleet})["observations"])
    assert world.reconcile(observations)["summary"]["stale_endpoint_count"] == len(fleet)
    assert world.reconcile(observations, stale_after=timedelta(hours=48))["drift_status"] == "aligned"
    with pytest.raises(InputError, match="--stale-after: expected at least"):
        world.reconcile(observations, stale_after=timedelta(minutes=30))


def test_tampered_package_is_refused_and_recorded(world: InventoryWorld) -> None:
    observations = Path(world.ingest({"endpoints": world.aligned_endpoints()})["observations"])
    manifest = world.package / "rt.endpoint-deployment.json"
    manifest.write_text(manifest.read_text().replace('"version": "1.2.3"', '"version": "9.9.9"'))
    with pytest.raises(VerificationError):
        world.reconcile(observations)
    (record,) = records(world.store, KIND_RECONCILIATION)
    assert record.subject.status == "refused" and record.payload["refused"] is True


def test_untrusted_signer_is_refused(world: InventoryWorld, tmp_path: Path) -> None:
    from tests.promotion.conftest import PromotionKeys

    observations = Path(world.ingest({"endpoints": world.aligned_endpoints()})["observations"])
    stranger = PromotionKeys(tmp_path / "stranger")
    with pytest.raises(VerificationError):
        world.reconcile(observations, trust_root=stranger.trust_root)
    assert records(world.store, KIND_RECONCILIATION)[0].subject.status == "refused"


def test_manifest_must_be_the_signed_one(world: InventoryWorld) -> None:
    from ringward.operations.inventory.reconcile import desired_state
    from ringward.operations.promotion.channel_ops import load_verified_release
    from ringward.operations.trust.keys import load_trust_root

    release = load_verified_release(world.package, load_trust_root(world.keys.trust_root), now=at(1))
    manifest = world.package / "rt.endpoint-deployment.json"
    manifest.write_bytes(manifest.read_bytes() + b" ")  # changed after verification
    with pytest.raises(DigestMismatchError, match="not the endpoint deployment manifest the signed checksums"):
        desired_state(release)


def test_bad_observations_are_refused_and_recorded(world: InventoryWorld) -> None:
    bad = world.write("bad.json", {"schema_version": "cavra.endpoint-observations.v0", "provider": "x",
                                   "observed_at": "t", "endpoints": []})
    with pytest.raises(InputError, match=r"schema_version: expected 'cavra\.endpoint-observations\.v1'"):
        world.reconcile(bad)
    assert records(world.store, KIND_RECONCILIATION)[0].subject.status == "refused"
    with pytest.raises(InputError, match=r"OBSERVATIONS .*file not found"):
        world.reconcile(world.work / "missing.json")


def test_existing_output_is_refused(world: InventoryWorld) -> None:
    observations = Path(world.ingest({"endpoints": world.aligned_endpoints()})["observations"])
    output = world.work / "report"
    world.reconcile(observations, output=output)
    with pytest.raises(InputError, match="refusing to overwrite"):
        world.reconcile(observations, output=output)
    # refused before anything is verified or recorded
    assert len(records(world.store, KIND_RECONCILIATION)) == 1


def test_cli_reconcile_exit_codes(world: InventoryWorld, capsys: pytest.CaptureFixture[str]) -> None:
    aligned = world.ingest({"endpoints": world.aligned_endpoints()})["observations"]
    drifted = world.ingest({"endpoints": drifted_fleet(world)}, output=world.work / "drifted")["observations"]
    base = ["inventory", "reconcile", str(world.package)]
    trust = ["--trust-root", str(world.keys.trust_root), "--at", iso(at(2))]
    code, out, err = cli(capsys, *base, aligned, *trust)
    assert code == 0, err
    assert out.startswith("ALIGNED (healthy): release 1.2.3")
    code, out, _ = cli(capsys, *base, drifted, *trust, "--json")
    assert code == 1 and json.loads(out)["drift_status"] == "drift_detected"
    code, _, err = cli(capsys, *base, drifted, *trust, "--stale-after", "soon")
    assert code == 2 and "--stale-after" in err
    code, _, err = cli(capsys, *base, str(world.work / "nope.json"), *trust)
    assert code == 2 and "OBSERVATIONS" in err
