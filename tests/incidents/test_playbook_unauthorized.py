"""Unauthorized release end to end, in-process: stable's endpoints run 1.4.0, which was never promoted on
stable, built by an untrusted builder from another repository and found on the fleet; the playbook
opens a critical unauthorized-release incident at once and holds the channel under an approval. A
clean channel completes with nothing to do; every approval refusal leaves the channel unheld."""

from __future__ import annotations

import pytest

from ringward.core.incidents.record import IncidentType
from ringward.operations.incidents import incident_ops
from tests.incidents.test_playbook_world import (  # noqa: F401 - the fixture
    PLAYBOOK_STEP,
    World,
    at,
    cli,
    step,
    world,
)

EVIL_BUILDER = "https://ci.evil.example/builder"


def test_unauthorized_release_end_to_end(world: World, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    w = world
    good = w.package("1.2.3")
    w.promote(good, hours=0.1)
    rogue = w.package("1.4.0", builder_id=EVIL_BUILDER, repository="mallory/runtime")
    forged = w.package("1.4.1", key=w.sim.attacker_key)
    w.ingest(w.fleet(good, "1.2.3", prefix="ok") + w.fleet(rogue, "1.4.0", prefix="bad")[:3], hours=0.6)
    base = ["playbook", "unauthorized-release", "--channel", "stable", "--trust-root", str(w.keys.trust_root),
            "--package", str(rogue), "--package", str(forged), "--trusted-source", "acme/runtime", "--json"]

    code, first, err = cli(capsys, *base, "--at", at(1).isoformat())
    assert code == 0, err
    detected = step(first, "detect")["output"]
    reasons = sorted({(f["reason"], f["version"]) for f in detected["findings"]})
    assert ("never-promoted", "1.4.0") in reasons and ("untrusted-builder", "1.4.0") in reasons
    assert ("untrusted-source", "1.4.0") in reasons and ("package-does-not-verify", "1.4.1") in reasons
    assert detected["observed_versions"] == {"1.2.3": len(w.targets(good)), "1.4.0": 3}
    # the incident is opened at once (its response clock runs); the hold waits for its approval
    incident_id = step(first, "incident")["output"]["incident_id"]
    incident, _ = incident_ops.get(w.store, incident_id)
    assert incident.type is IncidentType.UNAUTHORIZED_RELEASE and incident.links.channels == ("stable",)
    assert len(incident.links.packages) == 2
    assert first["awaiting"]["step"] == "hold-channel" and w.channel().hold is None

    # an approval of the same playbook step of *another* run is refused by its binding
    other_run = w.work / "other-observations.json"
    other_run.write_text('{"schema_version": "cavra.endpoint-observations.v1", "provider": "linux", '
                         '"observed_at": "2026-11-22T12:30:00Z", "endpoints": [{"endpoint_id": "x", '
                         '"deployment_target": "t", "installed_version": "9.0.0"}]}')
    code, other, _ = cli(capsys, "playbook", "unauthorized-release", "--channel", "stable", "--trust-root",
                         str(w.keys.trust_root), "--observations", str(other_run), "--json",
                         "--at", at(1.05).isoformat())
    assert other["run_id"] != first["run_id"] and other["awaiting"]["step"] == "hold-channel"
    w.approve(other["awaiting"]["approval_id"], hours=1.1)
    code, _, err = cli(capsys, *base, "--approval", other["awaiting"]["approval_id"], "--at", at(1.15).isoformat())
    assert code == 1 and "bound to playbook.unauthorized-release.hold-channel" in err
    assert w.channel().hold is None
    # an unknown approval id
    code, _, err = cli(capsys, *base, "--approval", "apr_000000000000", "--at", at(1.16).isoformat())
    assert code == 1 and "not found" in err

    approval = first["awaiting"]["approval_id"]
    w.approve(approval, hours=1.2)
    code, done, err = cli(capsys, *base, "--approval", approval, "--at", at(1.3).isoformat())
    assert code == 0, err
    assert done["status"] == "completed" and step(done, "hold-channel")["output"]["held"] == ["stable"]
    assert w.channel().hold is not None
    # the other run's approval, consumed there, cannot serve again; this run's own is harmless now
    code, _, _ = cli(capsys, "playbook", "unauthorized-release", "--channel", "stable", "--trust-root",
                     str(w.keys.trust_root), "--observations", str(other_run), "--approval",
                     other["awaiting"]["approval_id"], "--at", at(1.4).isoformat())
    assert code == 0  # the other run consumes it: channel already held -> done, nothing new held
    code, _, err = cli(capsys, *base, "--approval", other["awaiting"]["approval_id"], "--at", at(1.5).isoformat())
    assert code == 1 and "no step of run" in err
    # promotion is blocked by the hold the playbook placed
    with pytest.raises(Exception, match="held by secops"):
        w.request(w.package("1.5.0"), hours=1.6)
    kinds = [w.store.get_evidence(i).kind for i in step(done, "incident")["evidence_ids"]]
    assert kinds.count("incident-opened") == 1 and "incident-updated" in kinds


def test_clean_channel_completes_without_approval(world: World, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    w = world
    good = w.package("1.2.3")
    w.promote(good, hours=0.1)
    code, _, err = cli(capsys, "playbook", "unauthorized-release", "--channel", "stable", "--trust-root",
                       str(w.keys.trust_root))
    assert code == 2 and "no ingested inventory for the channel" in err
    w.ingest(w.fleet(good, "v1.2.3"), hours=0.6)
    code, done, err = cli(capsys, "playbook", "unauthorized-release", "--channel", "stable", "--trust-root",
                          str(w.keys.trust_root), "--package", str(good), "--json", "--at", at(1).isoformat())
    assert code == 0, err
    assert done["status"] == "completed" and step(done, "detect")["output"]["findings"] == []
    assert step(done, "incident")["status"] == "skipped" and step(done, "hold-channel")["status"] == "skipped"
    assert incident_ops.list_incidents(w.store) == [] and w.channel().hold is None
    code, text, _ = cli(capsys, "playbook", "status")
    assert code == 0 and done["run_id"] in text
    code, _, err = cli(capsys, "playbook", "unauthorized-release", "--channel", "Stable!", "--trust-root",
                       str(w.keys.trust_root))
    assert code == 2 and "--channel" in err
    code, _, err = cli(capsys, "playbook", "unauthorized-release", "--channel", "stable", "--trust-root",
                       str(w.keys.trust_root), "--package", str(w.work))
    assert code == 2 and "checksums.txt" in err
