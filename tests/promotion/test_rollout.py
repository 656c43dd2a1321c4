"""Rollouts end to end: capture -> verify -> request -> approve -> execute -> request rollback ->
approve -> rollback -> audit, in-process and through the CLI; the auditor's drill-down and listings."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ringward.cli.main import run
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.promotion import rollout as ro
from ringward.core.promotion.signed_payload import verify_signed_payload
from ringward.core.trust.root import Role
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store.promotion.executions_repo import StepFilter
from tests.promotion.conftest import RolloutWorld, later
from tests.release.simulator import NOW


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        run(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out, captured.err


def test_happy_path_end_to_end(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    captured = w.capture()
    rollout_dir = Path(captured["output_dir"])
    assert sorted(p.name for p in rollout_dir.iterdir()) == [
        "checksums.txt", ro.ROLLOUT_EVIDENCE_FILE, ro.ROLLOUT_EVIDENCE_MD]
    evidence = json.loads((rollout_dir / ro.ROLLOUT_EVIDENCE_FILE).read_bytes())
    assert evidence["schema_version"] == ro.ROLLOUT_EVIDENCE_SCHEMA
    assert evidence["change_record"] == "CHG-1001"
    assert evidence["package_dir"] == str(w.package)
    assert evidence["controls"] == list(ro.ROLLOUT_CONTROLS)
    assert {t["id"] for t in evidence["deployment_targets"]} == set(captured["deployment_targets"])

    verified = w.ops().verify_rollout(w.store, rollout_dir=rollout_dir, trust_root=w.keys.trust_root,
                                      actor="auditor", now=later(0.05))
    assert verified["evidence"]["kind"] == "managed-endpoint-rollout"
    record = w.store.get_evidence(int(verified["evidence"]["evidence_id"]))
    assert record.payload["session_id"] == captured["rollout_id"]
    assert record.payload["metadata_kind"] == "managed-endpoint-rollout"

    requested = w.request(rollout_dir)
    request = json.loads(Path(requested["request_path"]).read_bytes())
    assert request["schema_version"] == ro.PROMOTION_REQUEST_SCHEMA
    assert request["request_id"] == ro.promotion_request_id(captured["rollout_id"], "broad")
    assert request["approval"]["approval_id"] == requested["approval_id"]
    assert request["approval"]["subject_digest"] == ro.promotion_subject_digest(request)
    assert request["rollback_evidence_refs"][0]["ref"].startswith(f"rollback://{captured['rollout_id']}/")
    check = verify_signed_payload(request, trust_root=w.keys.trust(), role=Role.PROMOTION, now=later(),
                                  label="request")
    assert check.signer == "alice"
    approval = w.store.approvals.get(requested["approval_id"])
    assert (approval.action, approval.target) == (ro.ACTION_PROMOTE, f"{captured['rollout_id']}->broad")

    w.approve(requested["approval_id"], actor="bob")
    executed = w.execute(requested["request_path"], requested["approval_id"], actor="carol")
    doc = json.loads(Path(executed["execution_path"]).read_bytes())
    assert doc["execution_id"] == ro.promotion_execution_id(request["request_id"], requested["approval_id"])
    assert doc["ring_advancement"] == {"from": "pilot", "to": "broad", "previous_rollout_status": "staged",
                                       "new_rollout_status": "promoted"}
    assert doc["approval"]["decided_by"] == "bob" and doc["approval"]["decided_at"]
    assert doc["executed_by"] == "carol" and doc["break_glass"] is False
    assert doc["request_sha256"] == hashlib.sha256(Path(requested["request_path"]).read_bytes()).hexdigest()
    assert doc["evidence_refs"][0] == f"rollout://{captured['rollout_id']}"
    assert w.store.approvals.get(requested["approval_id"]).consumed_by == "carol"
    listed = (Path(executed["output_dir"]) / "checksums.txt").read_text()
    assert ro.PROMOTION_EXECUTION_FILE in listed and ro.PROMOTION_EXECUTION_MD in listed

    rollback_request = w.request_rollback(executed["execution_path"], requester="dave")
    w.approve(rollback_request["approval_id"], actor="frank")
    rolled = w.rollback(executed["execution_path"], rollback_request["approval_id"], actor="erin")
    rb = json.loads(Path(rolled["rollback_path"]).read_bytes())
    assert rb["schema_version"] == ro.ROLLBACK_EXECUTION_SCHEMA
    assert rb["rollback_id"] == ro.rollback_id(doc["execution_id"], rollback_request["approval_id"])
    assert rb["ring_rollback"]["from"] == "broad" and rb["ring_rollback"]["to"] == "pilot"
    assert rb["rollback_reason"] == "crash loop on pilot laptops"
    assert rb["promotion_execution_sha256"] == hashlib.sha256(Path(executed["execution_path"]).read_bytes()).hexdigest()

    audited = w.ops().audit(w.store, record_path=Path(executed["output_dir"]), output=w.work / "audit-promotion",
                            actor="soc", now=later(1))
    names = set(audited["files"])
    assert {ro.PROMOTION_AUDIT_FILE, "splunk-hec-events.json", "sentinel-log-analytics.json", "datadog-events.json",
            "webhook-payload.json", "jira-issue.json", "servicenow-change-task.json", "checksums.txt"} == names
    event = json.loads((w.work / "audit-promotion" / ro.PROMOTION_AUDIT_FILE).read_bytes())
    assert event["schema_version"] == ro.PROMOTION_AUDIT_SCHEMA and event["execution_id"] == doc["execution_id"]
    checksums = (w.work / "audit-promotion" / "checksums.txt").read_text().splitlines()
    assert len(checksums) == 7
    rb_audit = w.ops().audit(w.store, record_path=Path(rolled["rollback_path"]), output=w.work / "audit-rollback",
                             actor="soc", now=later(1))
    event = json.loads((w.work / "audit-rollback" / ro.ROLLBACK_AUDIT_FILE).read_bytes())
    assert event["severity"] == "critical" and rb_audit["kind"] == "rollback"

    report = verify_evidence(w.store, check_files=True)
    assert report.ok, report.summary()


def test_show_drills_down_from_any_id(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    captured, requested, executed = w.promoted()
    rollback_request = w.request_rollback(executed["execution_path"])
    w.approve(rollback_request["approval_id"], actor="frank", reason="rollback agreed with CAB")
    rolled = w.rollback(executed["execution_path"], rollback_request["approval_id"])
    w.ops().audit(w.store, record_path=Path(executed["execution_path"]), output=w.work / "a1", actor="soc")
    for ident in (captured["rollout_id"], requested["request_id"], executed["execution_id"], rolled["rollback_id"],
                  requested["approval_id"]):
        view = w.ops().show_rollout(w.store, ident)
        assert view["rollout_id"] == captured["rollout_id"]
    assert (view["current_ring"], view["current_status"]) == ("pilot", "rolled_back")
    (promotion,) = view["promotions"]
    assert promotion["request"]["ref_id"] == requested["request_id"]
    votes = promotion["approval"]["votes"]
    assert [(v["actor"], v["decision"], v["reason"]) for v in votes] == [
        ("bob", "approve", "CAB approved"), ("carol", "consume", executed["execution_id"])]
    assert all(v["evidence_id"] for v in votes)
    (execution,) = promotion["executions"]
    assert execution["ref_id"] == executed["execution_id"] and execution["actor"] == "carol"
    ev = w.store.get_evidence(int(execution["evidence"]["evidence_id"]))
    assert execution["evidence"]["record_hash"] == ev.record_hash and ev.kind == ro.KIND_EXECUTION
    assert execution["audits"][0]["actor"] == "soc"
    (rr,) = execution["rollback_requests"]
    assert rr["approval"]["votes"][0]["reason"] == "rollback agreed with CAB"
    (rb,) = execution["rollbacks"]
    assert rb["ref_id"] == rolled["rollback_id"] and rb["evidence"]["kind"] == ro.KIND_ROLLBACK
    assert [s["step"] for s in view["timeline"]] == [
        "capture", "request", "execution", "rollback-request", "rollback", "audit"]


def test_list_and_search_filter_and_page(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    w.promoted()  # rollout A: promoted to broad
    w.capture(status="planned", ring="pilot", environment="staging", at=later(2))  # rollout B
    page = w.ops().list_rollouts(w.store, StepFilter())
    assert page["total"] == 2
    promoted = w.ops().list_rollouts(w.store, StepFilter(status="promoted"))
    assert [i["ring"] for i in promoted["items"]] == ["broad"]
    assert w.ops().list_rollouts(w.store, StepFilter(environment="staging"))["items"][0]["status"] == "planned"
    assert w.ops().list_rollouts(w.store, StepFilter(release_version="9.9.9"))["total"] == 0
    first = w.ops().list_rollouts(w.store, StepFilter(), limit=1, offset=0)["items"]
    second = w.ops().list_rollouts(w.store, StepFilter(), limit=1, offset=1)["items"]
    assert first[0]["rollout_id"] != second[0]["rollout_id"]
    steps = w.ops().search_rollouts(w.store, StepFilter(step="execution"))
    assert steps["total"] == 1 and steps["items"][0]["actor"] == "carol"
    assert w.ops().search_rollouts(w.store, StepFilter(until=NOW))["total"] == 0
    assert w.ops().search_rollouts(w.store, StepFilter(until=later(0.25)))["total"] == 2  # capture A, request
    assert w.ops().search_rollouts(w.store, StepFilter(since=later(1.5)))["items"][0]["environment"] == "staging"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_walkthrough(rollout_world: RolloutWorld, capsys: pytest.CaptureFixture[str]) -> None:
    w = rollout_world
    keys = w.keys
    # the approval CLI decides at the real clock: run the whole walkthrough at it (no --at)
    code, out, err = _cli(capsys, "rollout", "capture", str(w.package), "--environment", "production", "--ring",
                          "pilot", "--status", "succeeded", "--change-record", "CHG-7", "--trust-root",
                          str(keys.trust_root), "--output", str(w.work / "r1"), "--json")
    assert code == 0, err
    rollout_id = json.loads(out)["rollout_id"]
    code, out, err = _cli(capsys, "rollout", "verify", str(w.work / "r1"), "--trust-root", str(keys.trust_root),
                          )
    assert code == 0 and out.startswith("VALID: rollout"), err
    code, out, err = _cli(capsys, "rollout", "request-promotion", str(w.work / "r1"), "--target-ring", "broad",
                          "--requester", "alice", "--signing-key", str(keys.promotion_pem), "--trust-root",
                          str(keys.trust_root), "--json")
    assert code == 0, err
    requested = json.loads(out)
    code, out, err = _cli(capsys, "approval", "approve", requested["approval_id"], "--actor", "alice",
                          "--reason", "mine")
    assert code == 1 and "cannot approve" in err  # self-approval
    w.approve(requested["approval_id"], at=datetime.now(UTC))
    code, out, err = _cli(capsys, "rollout", "execute", requested["request_path"], "--approval",
                          requested["approval_id"], "--actor", "carol", "--trust-root", str(keys.trust_root),
                          "--output", str(w.work / "exec"))
    assert code == 0 and out.startswith("EXECUTED: rpe_"), err
    code, out, err = _cli(capsys, "rollout", "execute", requested["request_path"], "--approval",
                          requested["approval_id"], "--actor", "carol", "--trust-root", str(keys.trust_root),
                          "--output", str(w.work / "exec2"))
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "already executed" in err and not (w.work / "exec2").exists()
    code, out, err = _cli(capsys, "rollout", "show", rollout_id)
    assert code == 0 and "execution rpe_" in out and "bob approve" in out
    code, out, err = _cli(capsys, "rollout", "list", "--status", "promoted", "--json")
    assert code == 0 and json.loads(out)["total"] == 1
    code, out, err = _cli(capsys, "rollout", "search", "--step", "nonsense")
    assert code == 2
    code, out, err = _cli(capsys, "rollout", "capture", str(w.package), "--environment", "production", "--ring",
                          "pilot", "--status", "staged", "--trust-root", str(keys.trust_root), "--output",
                          str(w.work / "r2"))
    assert code == 2 and "change record is required" in err and not (w.work / "r2").exists()
    refused = w.store.search_evidence(EvidenceQuery(kind=ro.KIND_REFUSAL))
    assert refused.total == 1 and refused.items[0].payload["code"] == "already-executed"


def _promote_channel(w: RolloutWorld, channel: str, version: str, digest: str, at: float) -> None:
    from ringward.core.approvals.rules import Decision
    from ringward.core.promotion.channels import PromotedRelease
    from ringward.operations.approvals.approval_ops import decide_approval, request_approval
    from ringward.store.promotion.channel_repo import ChannelRepository

    subject = "sha256:" + hashlib.sha256(f"{channel}{version}".encode()).hexdigest()
    approval = request_approval(w.store, action="release_promote_channel_manifest", subject_digest=subject,
                                target=f"{channel}->broad", requester="alice", now=later(at))
    decide_approval(w.store, approval.approval_id, decision=Decision.APPROVE, actor="bob", reason="ok",
                    now=later(at + 0.01))
    ChannelRepository(w.store).execute_promotion(
        channel, release=PromotedRelease(version=version, digest=digest, promoted_at=later(at), actor="carol",
                                         export_id=f"exp-{channel}-{version}"),
        approval_id=approval.approval_id, action="release_promote_channel_manifest", subject_digest=subject,
        target=f"{channel}->broad", actor="carol", now=later(at + 0.02), drafts=lambda before, after, ap: [])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rollback_lets_channels_at_the_release_go_down_once(rollout_world: RolloutWorld) -> None:
    from ringward.store.promotion.channel_repo import ChannelRepository

    w = rollout_world
    digest = "sha256:" + hashlib.sha256((w.package / "checksums.txt").read_bytes()).hexdigest()
    _promote_channel(w, "stable", "1.2.2", "sha256:" + "1" * 64, at=-3)
    _promote_channel(w, "stable", "1.2.3", digest, at=-2)
    _promote_channel(w, "beta", "1.2.3", digest, at=-1)  # no earlier release to go down to
    _, _, executed = w.promoted()
    rr = w.request_rollback(executed["execution_path"])
    w.approve(rr["approval_id"], actor="frank")
    rolled = w.rollback(executed["execution_path"], rr["approval_id"])
    channels = {c["channel"]: c for c in rolled["channels"]}
    assert channels["stable"]["rollback_allowed"] is True
    assert channels["beta"]["rollback_allowed"] is False and "no earlier promotion" in channels["beta"]["error"]
    allowance = ChannelRepository(w.store).get("stable").rollback_allowance
    assert allowance is not None and allowance.rollback_id == rolled["rollback_id"]
    assert allowance.to_version == "1.2.2"
