"""Ingestion -> reconciliation -> remediation request (the operation the inventory automation runs):
the channel's current release from the promotion domain's channel state (or channel-releases.yaml),
package verification never skipped, the dedup rule (a second run attaches, recorded; the same ingestion
announced again is answered from its record), and every refusal recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import (
    BindingMismatchError,
    ConfigError,
    EvidenceIntegrityError,
    InputError,
    MetadataMismatchError,
    NotFoundError,
    UntrustedKeyError,
    VerificationError,
)
from ringward.core.inventory.observations import OBSERVATIONS_FILE
from ringward.core.remediation import request as rq
from ringward.operations.remediation import automation as au
from ringward.settings import evidence_root
from ringward.store.remediation.state import REQUESTS, RemediationStateRepository
from tests.inventory.conftest import records
from tests.promotion.conftest import ChannelWorld
from tests.remediation.conftest import RemediationWorld, at, drifted_fleet


def _channel(rw: RemediationWorld) -> ChannelWorld:
    return ChannelWorld(rw.store, rw.keys, rw.inv.sim, rw.inv.work, rw.inv.package)


def _ingest(rw: RemediationWorld, fleet: list[dict[str, Any]] | None = None, *, channel: str | None = "stable",
            hours: float = 1) -> str:
    rw.counter[0] += 1
    n = rw.counter[0]
    extra: dict[str, Any] = {} if channel is None else {"channel": channel}
    result = rw.inv.ingest({"endpoints": fleet if fleet is not None else drifted_fleet(rw.inv)},
                           name=f"auto-{n}.json", output=rw.inv.work / f"auto-obs-{n}", now=at(hours), **extra)
    return str(result["inventory_id"])


def _automate(rw: RemediationWorld, inventory_id: str, *, hours: float = 3, key: Path | None = None,
              **extra: Any) -> dict[str, Any]:
    extra.setdefault("packages", rw.inv.package.parent)
    return au.automate_reconciliation(rw.store, inventory_id=inventory_id, now=at(hours),
                                      trust_root=rw.keys.trust_root, signing_key=key or rw.keys.remediation_pem,
                                      output_root=rw.inv.work / "automation", **extra)


def _approvals(rw: RemediationWorld) -> list[str]:
    items, _ = rw.store.approvals.list(now=at(3))
    return [a.approval_id for a in items if a.action == rq.ACTION]


def _refusals(rw: RemediationWorld) -> list[str]:
    return [r.payload["error"]["code"] for r in records(rw.store, au.KIND_AUTOMATION) if r.subject.status == "refused"]


@pytest.fixture
def promoted(rw: RemediationWorld) -> RemediationWorld:
    """Channel stable's current release is the package (request -> approve -> export)."""
    _channel(rw).promote(provider="linux")
    return rw


def test_drift_opens_a_request_then_runs_attach(promoted: RemediationWorld) -> None:
    rw = promoted
    first = _automate(rw, _ingest(rw))
    assert first["status"] == "requested" and first["drift_status"] == "drift_detected"
    assert first["release"]["source"] == "channel-state" and first["release"]["version"] == "1.2.3"
    assert Path(first["release"]["package_dir"]) == rw.inv.package
    assert first["approval_state"] == "pending" and first["automation_id"].startswith("era_")
    request = rw.load(first["request"])
    assert request["requested_by"] == "ringward-automation" and request["signature"]
    # the reconciliation verified the package (never skipped)
    report = rw.load(first["report"])
    assert report["package_verification"]["valid"] is True
    # a later ingestion with the same drift classes attaches instead of opening another approval
    later = _ingest(rw, drifted_fleet(rw.inv, behind="v1.2.1"), hours=1.5)
    second = _automate(rw, later, hours=3.2)
    assert second["status"] == "attached" and second["attached"] is True
    assert second["request_id"] == first["request_id"] and second["approval_id"] == first["approval_id"]
    assert _approvals(rw) == [first["approval_id"]]
    entry = RemediationStateRepository(rw.store).get(REQUESTS, first["request_id"])
    assert entry is not None and len(entry.value["attached_runs"]) == 1
    attached = [r for r in records(rw.store, rq.KIND_REQUEST) if r.subject.status == "attached"]
    assert len(attached) == 1 and attached[0].payload["attached_to"] == first["request_id"]
    # the same ingestion announced again: answered from its record, nothing reconciled or attached twice
    reconciliations = len(records(rw.store, "managed-endpoint-reconciliation"))
    again = _automate(rw, later, hours=3.3)
    assert again["repeat"] is True and again["automation_id"] == second["automation_id"]
    assert len(records(rw.store, "managed-endpoint-reconciliation")) == reconciliations
    entry = RemediationStateRepository(rw.store).get(REQUESTS, first["request_id"])
    assert entry is not None and len(entry.value["attached_runs"]) == 1
    automations = [r for r in records(rw.store, au.KIND_AUTOMATION) if r.subject.status != "refused"]
    assert [r.subject.status for r in automations] == ["requested", "attached"]
    doc = json.loads((Path(first["output_dir"]) / au.AUTOMATION_FILE).read_text())
    assert doc["schema_version"] == "cavra.endpoint-reconciliation-automation.v1"
    assert doc["evidence_refs"][-1] == f"approval://{first['approval_id']}"


def test_aligned_fleet_opens_nothing(promoted: RemediationWorld) -> None:
    rw = promoted
    result = _automate(rw, _ingest(rw, rw.inv.aligned_endpoints(seen=at(0.9))))
    assert result["status"] == "aligned" and result["request_id"] is None
    assert _approvals(rw) == []


def test_configured_release_when_the_channel_has_none(rw: RemediationWorld, tmp_path: Path) -> None:
    config = tmp_path / "channel-releases.yaml"
    config.write_text(f"schema_version: ringward.channel-releases.v1\nchannels:\n  stable: {rw.inv.package}\n")
    result = _automate(rw, _ingest(rw), channel_releases=config)
    assert result["status"] == "requested" and result["release"]["source"] == "configured"
    # relative paths are relative to the file; a bad file is one line naming it
    config.write_text("channels:\n  stable: nowhere\n")
    with pytest.raises(ConfigError, match="nowhere is not a release package"):
        _automate(rw, _ingest(rw, drifted_fleet(rw.inv, behind="v1.0.0")), channel_releases=config)
    config.write_text("channels: {stable: x}\nextra: 1\n")
    with pytest.raises(ConfigError, match="extra"):
        _automate(rw, _ingest(rw), channel_releases=config)


def test_nothing_to_reconcile_against_is_skipped(rw: RemediationWorld) -> None:
    assert _automate(rw, _ingest(rw))["status"] == "skipped"  # no promoted release, none configured
    assert _automate(rw, _ingest(rw, channel=None))["status"] == "skipped"  # the ingestion names no channel
    assert _approvals(rw) == [] and not records(rw.store, "managed-endpoint-reconciliation")


def test_refusals_are_recorded(promoted: RemediationWorld, tmp_path: Path) -> None:
    rw = promoted
    inventory_id = _ingest(rw)
    with pytest.raises(MetadataMismatchError, match="event names 'beta'"):
        _automate(rw, inventory_id, channel="beta")
    with pytest.raises(NotFoundError, match="not recorded"):
        _automate(rw, "eii_000000000000")
    with pytest.raises(NotFoundError, match="has no package under"):
        _automate(rw, inventory_id, packages=tmp_path / "empty")
    other = rw.inv.sim.package("1.2.4", out="other")
    config = tmp_path / "channel-releases.yaml"
    config.write_text(f"channels:\n  stable: {other}\n")
    with pytest.raises(BindingMismatchError, match="the channel's current release"):
        _automate(rw, inventory_id, channel_releases=config)
    assert _refusals(rw) == ["metadata-mismatch", "not-found", "not-found", "binding-mismatch"]
    with pytest.raises(InputError, match="eii_"):  # bad input: not recorded
        _automate(rw, "../etc/passwd")
    assert _approvals(rw) == []


def test_the_key_must_be_a_pinned_remediation_key(promoted: RemediationWorld, tmp_path: Path) -> None:
    rw = promoted
    inventory_id = _ingest(rw)
    with pytest.raises(ConfigError, match="no remediation key"):
        _automate(rw, inventory_id, key=tmp_path / "missing.pem")
    for key in (rw.keys.promotion_pem, rw.keys.unpinned_pem):
        with pytest.raises(UntrustedKeyError):
            _automate(rw, inventory_id, key=key)
    assert _approvals(rw) == []
    refused = [r for r in records(rw.store, rq.KIND_REQUEST) if r.subject.status == "refused"]
    assert len(refused) == 2
    # nothing was recorded as automated: the run succeeds once the right key is configured
    assert _automate(rw, inventory_id)["status"] == "requested"


def test_observations_are_rehashed_and_the_package_reverified(promoted: RemediationWorld) -> None:
    rw = promoted
    inventory_id = _ingest(rw)
    (record,) = [r for r in records(rw.store, "endpoint-inventory-ingestion") if r.payload.get("inventory_id")
                 == inventory_id]
    observations = evidence_root() / str(record.bundle_dir) / OBSERVATIONS_FILE
    original = observations.read_bytes()
    observations.write_bytes(original.replace(b"1.2.3", b"1.2.9"))
    with pytest.raises(EvidenceIntegrityError, match="expected"):
        _automate(rw, inventory_id)
    observations.write_bytes(original)
    # the released package changed on disk: it no longer verifies (recorded by the reconciliation)
    sig = next(rw.inv.package.glob("checksums.txt.sig.json"))
    sig.write_text(sig.read_text().replace('"signer"', '"signer_"'))
    with pytest.raises(VerificationError):
        _automate(rw, inventory_id)
    assert _approvals(rw) == []
    assert _refusals(rw) == ["evidence-broken"]
