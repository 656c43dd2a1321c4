"""Key compromise end to end, in-process: a key that signed a package, a channel promotion request and a
remediation request is revoked in a signed trust root v2 (root threshold 2), everything it signed is
listed and fails re-verification, the channel carrying the package is held, the SOC is notified over a
loopback Splunk HEC and a supply-chain incident links it all -- each destructive step only under an
approval decided by someone else and consumed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from ringward.core.errors import SeparationOfDutiesError
from ringward.core.trust.root import KeyStatus, TrustRoot
from ringward.operations.incidents import incident_ops
from ringward.operations.trust.keys import load_trust_root
from tests.incidents.test_playbook_world import (  # noqa: F401 - the fixture
    HEC_TOKEN,
    PLAYBOOK_STEP,
    Keys,
    World,
    at,
    cli,
    connectors_config,
    step,
    world,
)


def _affected(w: World) -> tuple[Path, dict[str, object], dict[str, object]]:
    package = w.package("1.2.3")
    assert w.verify(package)["valid"]
    requested, _ = w.promote(package)
    fleet = w.fleet(package, "1.2.3")
    fleet[0]["installed_version"] = "1.2.2"
    remediation = w.remediation_request(package, fleet)
    return package, requested, remediation


def test_key_compromise_end_to_end_with_every_refusal(world: World, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                      httpserver: HTTPServer) -> None:
    w = world
    package, requested, remediation = _affected(w)
    trust_root = str(w.keys.trust_root)
    before = w.keys.trust_root.read_bytes()
    base = ["playbook", "key-compromise", "--key", "ops-1", "--trust-root", trust_root, "--json"]

    # unknown key id: bad input, nothing recorded
    count = w.count()
    code, _, err = cli(capsys, "playbook", "key-compromise", "--key", "ffffffffffff", "--trust-root", trust_root)
    assert code == 2 and "no key with that label, key id or key-id prefix" in err and w.count() == count

    # first run: the destructive revocation waits for an approval; the trust root is untouched
    code, first, err = cli(capsys, *base, "--at", at(1).isoformat())
    assert code == 0, err
    assert first["status"] == "awaiting-approval" and first["awaiting"]["step"] == "revoke-key"
    approval = first["awaiting"]["approval_id"]
    assert first["awaiting"]["target"] == f"playbook-run:{first['run_id']}/revoke-key"
    assert w.keys.trust_root.read_bytes() == before

    # running again without an approval: same run, same approval, nothing new recorded
    count = w.count()
    code, again, _ = cli(capsys, *base, "--at", at(1.1).isoformat())
    assert code == 0 and again["run_id"] == first["run_id"] and again["awaiting"]["approval_id"] == approval
    assert w.count() == count

    # no approval yet: presenting the pending approval is refused (and recorded), nothing revoked
    code, _, err = cli(capsys, *base, "--approval", approval, "--root-key", str(w.keys.root_a_pem),
                       "--root-key", str(w.keys.root_b_pem), "--at", at(1.2).isoformat())
    assert code == 1 and "state pending, expected approved" in err
    assert w.keys.trust_root.read_bytes() == before
    refused = [r for r in w.records(PLAYBOOK_STEP, status="refused")]
    assert refused and refused[-1].payload["step"] == "revoke-key"

    # the requester cannot approve their own request
    with pytest.raises(SeparationOfDutiesError, match="cannot approve it"):
        w.approve(approval, actor="SecOps", hours=1.25)

    w.approve(approval, hours=1.3)
    # below the root threshold (one of two root keys): refused before the approval is used
    code, _, err = cli(capsys, *base, "--approval", approval, "--root-key", str(w.keys.root_a_pem),
                       "--at", at(1.4).isoformat())
    assert code == 1 and "threshold is 2" in err
    assert w.store.approvals.get(approval).consumed_at is None
    assert w.keys.trust_root.read_bytes() == before

    # the root role signs v2: revoked, listed, re-verified; the channel hold waits for its own approval
    code, second, err = cli(capsys, *base, "--approval", approval, "--root-key", str(w.keys.root_a_pem),
                            "--root-key", str(w.keys.root_b_pem), "--at", at(1.5).isoformat())
    assert code == 0, err
    assert second["status"] == "awaiting-approval" and second["awaiting"]["step"] == "hold-channels"
    root = load_trust_root(w.keys.trust_root)
    assert root.version == 2 and root.keys[0].label == "ops-1" and root.keys[0].status is KeyStatus.REVOKED
    consumed = w.store.approvals.get(approval)
    assert consumed.consumed_at is not None and consumed.execution_ref == first["awaiting"]["target"]
    revoked = step(second, "revoke-key")
    assert revoked["status"] == "done" and revoked["output"]["version"] == 2
    assert len(revoked["output"]["signed_by_previous"]) == 2
    # v2 is a valid successor of v1 for any endpoint following the chain
    from ringward.core.trust.rotation import verify_rotation
    verify_rotation(_v1(before), root, at(2))
    listing = step(second, "list-affected")["output"]
    assert listing["counts"] == {"packages": 1, "promotion_requests": 1, "remediation_requests": 1}
    assert listing["packages"][0]["package_dir"] == str(package.absolute())
    assert listing["promotion_requests"][0]["request_id"] == requested["request_id"]
    assert listing["remediation_requests"][0]["request_id"] == remediation["request_id"]
    verified = step(second, "re-verify")["output"]
    assert verified["counts"]["invalid"] == 3 and verified["counts"]["valid"] == 0
    assert all("revoked" in x["error"] for x in (*verified["packages"], *verified["promotion_requests"],
                                                 *verified["remediation_requests"]))
    assert verified["channels"] == ["stable"]
    assert w.channel().hold is None  # the hold is destructive: not before its approval
    hold_approval = second["awaiting"]["approval_id"]

    # a replayed approval (already consumed by the revocation) is refused
    code, _, err = cli(capsys, *base, "--approval", approval, "--at", at(1.6).isoformat())
    assert code == 1 and "already consumed" in err and "single-use" in err
    assert w.channel().hold is None

    w.approve(hold_approval, actor="carol", hours=1.7)
    httpserver.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    config = connectors_config(w.work / "connectors.yaml", httpserver.url_for("/services/collector/event"))
    full = [*base, "--approval", hold_approval, "--connectors", str(config), "--at", at(1.8).isoformat()]
    code, done, err = cli(capsys, *full)
    assert code == 0, err
    assert done["status"] == "completed" and done["awaiting"] is None
    assert w.channel().hold is not None and "playbook key-compromise" in w.channel().hold.reason
    assert step(done, "hold-channels")["output"]["held"] == ["stable"]
    sent = httpserver.log[-1][0]
    assert sent.headers["Authorization"] == f"Splunk {HEC_TOKEN}"
    assert f"playbook:{first['run_id']}:notify" in sent.get_data(as_text=True)
    incident_id = step(done, "incident")["output"]["incident_id"]
    incident, _ = incident_ops.get(w.store, incident_id)
    assert incident.type.value == "supply-chain" and incident.severity.value == "critical"
    digest = verified["packages"][0]["digest"]
    assert incident.links.packages == (digest,) and incident.links.channels == ("stable",)
    assert first["run_id"] in (incident.updates[-1].note or "")
    assert requested["request_id"] in (incident.updates[-1].note or "")

    # each step lists evidence ids that exist; every step is recorded as a playbook-step record
    for s in done["run"]["steps"]:
        assert s["evidence_ids"], s["name"]
        for evidence_id in s["evidence_ids"]:
            w.store.get_evidence(evidence_id)
    kinds = {w.store.get_evidence(i).kind for i in step(done, "revoke-key")["evidence_ids"]}
    assert {"approval-request", "approval-consumption", "trust-root-rotation", PLAYBOOK_STEP} <= kinds
    assert {w.store.get_evidence(i).kind for i in step(done, "hold-channels")["evidence_ids"]} >= {
        "release-channel-state", "approval-consumption"}

    # idempotent: the same command again repeats nothing (no record, no second notification)
    count, sends = w.count(), len(httpserver.log)
    code, rerun, _ = cli(capsys, *base, "--connectors", str(config), "--at", at(2).isoformat())
    assert code == 0 and rerun["status"] == "completed" and w.count() == count and len(httpserver.log) == sends
    # ... and the consumed approval presented to the finished run is harmless, a foreign one is refused
    code, _, _ = cli(capsys, *full)
    assert code == 0 and w.count() == count
    code, status, _ = cli(capsys, "playbook", "status", first["run_id"], "--json")
    assert code == 0 and status["run"] == rerun["run"]
    code, listed, _ = cli(capsys, "playbook", "status", "--json")
    assert [r["run_id"] for r in listed["runs"]] == [first["run_id"]]
    # the evidence chain is intact
    code, _, err = cli(capsys, "evidence", "verify", "--json")
    assert code == 0, err


def _v1(data: bytes) -> TrustRoot:
    from ringward.core.trust.root import parse_trust_root

    return parse_trust_root(data, source="v1")


def test_refusals_before_anything_runs(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    w = world
    legacy = Keys(tmp_path / "legacy", chained=False)
    code, _, err = cli(capsys, "playbook", "key-compromise", "--key", "ops-1", "--trust-root", str(legacy.trust_root))
    assert code == 2 and "pins no root-role key" in err and "trust revoke-key" in err
    code, _, err = cli(capsys, "playbook", "key-compromise", "--key", "ops", "--trust-root", str(tmp_path / "none"))
    assert code == 2 and "file not found" in err
    code, _, err = cli(capsys, "playbook", "key-compromise", "--key", "ops-1", "--trust-root",
                       str(w.keys.trust_root), "--at", "yesterday")
    assert code == 2 and "--at" in err
    code, _, err = cli(capsys, "playbook", "status", "pbr_00000000000000000000")
    assert code == 1 and "not found" in err
    assert w.count() == 0
    # a key-compromise run whose key signed nothing still revokes, holds nothing and records the incident
    code, first, _ = cli(capsys, "playbook", "key-compromise", "--key", "release-2", "--trust-root",
                         str(w.keys.trust_root), "--json", "--at", at(1).isoformat())
    w.approve(first["awaiting"]["approval_id"], hours=1.1)
    code, done, err = cli(capsys, "playbook", "key-compromise", "--key", "release-2", "--trust-root",
                          str(w.keys.trust_root), "--json", "--approval", first["awaiting"]["approval_id"],
                          "--root-key", str(w.keys.root_a_pem), "--root-key", str(w.keys.root_b_pem),
                          "--at", at(1.2).isoformat())
    assert code == 0, err
    assert done["status"] == "completed"
    assert step(done, "hold-channels")["status"] == "skipped" and step(done, "notify")["status"] == "skipped"
    assert json.loads(w.keys.trust_root.read_text())["version"] == 2
