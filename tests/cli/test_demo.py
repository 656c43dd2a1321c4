"""`ringward demo` (the README's first command) end to end, in its own process, in-process path:
the release steps, then the promotion lifecycle (channel request, approval by another person,
endpoint export, refused re-export, rollout capture/verify/request/approval, window checks,
execution, audit delivery, refused replay, rollback request/approval/rollback, refused second
rollback, drill-down) and the signed checkpoint over all of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ringward.core.evidence.query import EvidenceQuery
from ringward.core.promotion import endpoint_export as ee
from ringward.core.promotion import rollout as ro
from ringward.store import open_store


def _demo(output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGWARD_", "PREFECT_API_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "ringward", "demo", "--output", str(output), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=output.parent,
        timeout=600,
        check=False,
    )


def _steps(stdout: str) -> dict[int, str]:
    """The numbered step lines: number -> text after ``N. ``."""
    steps = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\d+)\. (.*)$", line)
        if match:
            steps[int(match.group(1))] = match.group(2)
    return steps


def _step(steps: dict[int, str], prefix: str) -> str:
    (text,) = [text for text in steps.values() if text.startswith(prefix)]
    return text


def _records(store: Any, kind: str, **filters: Any) -> list[Any]:
    return list(store.search_evidence(EvidenceQuery(kind=kind, limit=500, **filters)).items)


def test_demo_runs_every_step_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    output = tmp_path / "demo-output"
    done = _demo(output)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    steps = _steps(done.stdout)
    assert sorted(steps) == list(range(1, len(steps) + 1)), done.stdout  # one numbered line per step
    assert "promotion key" in steps[1]
    assert steps[3].startswith("verify-package: VALID")
    assert steps[7].startswith("one flipped bit") and "INVALID [digest-mismatch]" in steps[7]
    assert steps[8].startswith("rollback 1.1.0 -> 1.0.0: REFUSED")
    assert steps[9].startswith("delivered event demo-verified-") and ": delivered ->" in steps[9]
    (queued,) = (output / "queue").glob("demo-verified-*.json")
    assert json.loads(queued.read_text())["event"]["event_type"] == "ringward.release.verified"

    # channel promotion: requested by alice, the requester's own vote refused, approved by bob,
    # exported once by carol; the second export with the same request is refused
    assert "-> stable->enterprise by alice: REQUESTED rcp_" in _step(steps, "channel request-promotion")
    approvals = [text for text in steps.values() if text.startswith("approval apr_")]
    assert len(approvals) == 3  # channel promotion, rollout promotion, rollback
    assert "alice (the requester) REFUSED [separation-of-duties]; APPROVED by bob" in approvals[0]
    assert approvals[1].endswith("APPROVED by bob") and approvals[2].endswith("APPROVED by frank")
    assert "EXPORTED eme_" in _step(steps, "endpoint export stable->enterprise for jamf, intune, linux by carol")
    assert "REFUSED [approval-consumed]" in _step(steps, "second export with the same request")
    manifest = json.loads((output / "promotion" / "endpoint-export" / ee.EXPORT_MANIFEST).read_bytes())
    assert manifest["channel"] == "stable" and manifest["target_ring"] == "enterprise"
    assert manifest["window"]["allowed"] is True

    # rollout: capture (staged, change record) -> verify -> request -> approve -> execute inside
    # the production window -> audit delivered to the in-house queue -> replay refused
    assert "staged, change CHG-" in _step(steps, "rollout capture") and "CAPTURED" in _step(steps, "rollout capture")
    assert _step(steps, "rollout verify").startswith("rollout verify: VALID")
    assert "enterprise -> production by alice: REQUESTED rpr_" in _step(steps, "rollout request-promotion")
    assert "OPEN (allow window production-always-open" in _step(steps, "window check ring:production")
    frozen = _step(steps, "window check ring:broad")
    assert "CLOSED (freeze broad-no-friday-changes" in frozen and "next opening" in frozen
    executed = _step(steps, "rollout execute by carol")
    assert "EXECUTED rpe_" in executed and "enterprise -> production" in executed
    audit_line = _step(steps, "rollout audit rpe_")
    assert "inhouse-queue (private_queue): delivered" in audit_line
    assert "REFUSED [already-executed]" in _step(steps, "replayed execution of rpr_")

    execution = json.loads((output / "promotion" / "execution" / ro.PROMOTION_EXECUTION_FILE).read_bytes())
    assert execution["schema_version"] == ro.PROMOTION_EXECUTION_SCHEMA
    assert execution["executed_by"] == "carol" and execution["approval"]["decided_by"] == "bob"
    assert execution["ring_advancement"]["to"] == "production" and execution["break_glass"] is False
    assert execution["window"]["allowed"] is True and execution["window"]["windows"] == ["production-always-open"]
    assert execution["change_record"].startswith("CHG-")
    audit_event = json.loads((output / "queue" / f"{execution['execution_id']}.json").read_text())
    assert audit_event["event"]["event_type"] == ro.PROMOTION_AUDIT_EVENT_TYPE

    # rollback: requested by dave, approved by frank, executed by erin; a second rollback refused
    assert "production -> enterprise by dave: REQUESTED rrq_" in _step(steps, "rollout request-rollback")
    assert "ROLLED BACK rre_" in _step(steps, "rollout rollback by erin")
    assert "REFUSED [already-executed]" in _step(steps, "second rollback of rpe_")
    rollback = json.loads((output / "promotion" / "rollback" / ro.ROLLBACK_EXECUTION_FILE).read_bytes())
    assert rollback["schema_version"] == ro.ROLLBACK_EXECUTION_SCHEMA
    assert rollback["promotion_execution_id"] == execution["execution_id"] and rollback["executed_by"] == "erin"
    assert rollback["approval"]["decided_by"] == "frank"
    # refused steps leave no output
    for refused in ("endpoint-export-again", "execution-again", "rollback-again"):
        assert not (output / "promotion" / refused).exists()

    # the drill-down is printed, and the checkpoint (last step) covers the promotion records too
    assert _step(steps, f"rollout show {execution['execution_id']}")
    assert "now enterprise (rolled_back)" in done.stdout
    last = steps[max(steps)]
    assert last.startswith("signed checkpoint") and last.endswith("INTACT")
    checkpoint = json.loads((output / "checkpoint.json").read_text())
    assert checkpoint["schema_version"] == "ringward.evidence-checkpoint.v1" and checkpoint["signature"]

    # the evidence: execution and rollback records, and every refusal recorded as its own record
    store = open_store(f"sqlite:///{output / 'state' / 'ringward.db'}")
    try:
        (record,) = _records(store, ro.KIND_EXECUTION)
        assert record.payload["execution_sha256"] and record.actor == "carol"
        (record,) = _records(store, ro.KIND_ROLLBACK)
        assert record.payload["promotion_execution_id"] == execution["execution_id"]
        assert int(checkpoint["head_id"]) > record.id  # the signed checkpoint covers the rollback
        refusals = {(r.payload["step"], r.payload["code"], r.actor) for r in _records(store, ro.KIND_REFUSAL)}
        assert refusals == {("execution", "already-executed", "carol"), ("rollback", "already-executed", "erin")}
        (export_refusal,) = _records(store, ee.KIND_EXPORT, status="refused")
        assert export_refusal.payload["error"]["code"] == "approval-consumed"
        (window,) = _records(store, "promotion-window-decision")
        assert window.payload["allowed"] is False and window.payload["next_opening"]
    finally:
        store.close()

    # the chain can be re-verified later from the CLI against the signed checkpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGWARD_")}
    env["RINGWARD_HOME"] = str(output / "state")
    verify = subprocess.run(
        [sys.executable, "-m", "ringward", "evidence", "verify", "--checkpoint", str(output / "checkpoint.json"),
         "--trust-root", str(output / "trust-root.json")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    again = _demo(output)  # never clobbers an earlier run silently
    assert again.returncode == 2 and again.stderr.strip().startswith("error: ") and "--force" in again.stderr
