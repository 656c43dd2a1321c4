"""`ringward demo` (the README's first command) end to end, in its own process, in-process path:
the release steps, then the promotion lifecycle (channel request, approval by another person,
endpoint export, refused re-export, rollout capture/verify/request/approval, window checks,
execution, audit delivery, refused replay, rollback request/approval/rollback, refused second
rollback, drill-down), the governance steps (KEV match -> channels held + critical incident ->
promotion refused -> VEX not_affected -> released; a Fleet inventory with drift; a breached
remediation SLA escalating owner -> release governance and silent after the owner's ack) and the
signed checkpoint over all of it."""

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


def _number(steps: dict[int, str], prefix: str) -> int:
    (number,) = [n for n, text in steps.items() if text.startswith(prefix)]
    return number


def _records(store: Any, kind: str, **filters: Any) -> list[Any]:
    return list(store.search_evidence(EvidenceQuery(kind=kind, limit=500, **filters)).items)


def test_demo_runs_every_step_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    output = tmp_path / "demo-output"
    done = _demo(output)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    steps = _steps(done.stdout)
    assert sorted(steps) == list(range(1, len(steps) + 1)), done.stdout  # one numbered line per step
    assert "?!" not in done.stdout  # the marker a step prints when it did not do what it shows
    assert "promotion key" in steps[1]
    assert steps[3].startswith("verify-package: VALID")
    assert steps[7].startswith("one flipped bit") and "INVALID [digest-mismatch]" in steps[7]
    assert steps[8].startswith("rollback 1.1.0 -> 1.0.0: REFUSED")
    # a package in the reference system's own format, signed with the key the trust root pins:
    # verified under the reference profile, and auto-detected as one
    assert steps[9].startswith("reference-format (CAVRA) package go-runtime-v1.2.5 signed with the pinned release key: "
                               "--profile reference VALID"), steps[9]
    assert "1 unsigned file(s) ignored" in steps[9]
    assert steps[9].endswith("--profile auto VALID, profile reference (detected: release-evidence.json product "
                             "'CAVRA')"), steps[9]
    reference_package = output / "reference" / "dist" / "go-runtime-v1.2.5"
    assert json.loads((reference_package / "release-evidence.json").read_text())["product"] == "CAVRA"
    assert not (reference_package / "release-evidence.md.sig.json").exists()  # the reference leaves it unsigned
    assert steps[10].startswith("delivered event demo-verified-") and ": delivered ->" in steps[10]
    (queued,) = (output / "queue").glob("demo-verified-*.json")
    assert json.loads(queued.read_text())["event"]["event_type"] == "ringward.release.verified"

    # channel promotion: requested by alice, the requester's own vote refused, approved by bob,
    # exported once by carol; the second export with the same request is refused
    assert "-> stable->enterprise by alice: REQUESTED rcp_" in _step(steps, "channel request-promotion sample-runtime")
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
    show = _number(steps, f"rollout show {execution['execution_id']}")
    assert "now enterprise (rolled_back)" in done.stdout
    # the governance steps come after the rollout, in order, and before the checkpoint
    kev, fleet, sla = (_number(steps, prefix) for prefix in ("kev import ", "inventory ingest ", "sla report "))
    assert show < kev < fleet < sla < max(steps)
    _assert_kev_hold_then_release(output, steps)
    _assert_fleet_drift(output, steps)
    _assert_sla_escalation_stops_at_ack(output, steps)
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
        # ... and the governance steps' records (the SLA acknowledgement is among the last)
        (ack,) = _records(store, "endpoint-remediation-sla-notification-ack")
        assert int(checkpoint["head_id"]) > ack.id
        refusals = {(r.payload["step"], r.payload["code"], r.actor) for r in _records(store, ro.KIND_REFUSAL)}
        assert refusals == {("execution", "already-executed", "carol"), ("rollback", "already-executed", "erin")}
        (export_refusal,) = _records(store, ee.KIND_EXPORT, status="refused")
        assert export_refusal.payload["error"]["code"] == "approval-consumed"
        (window,) = _records(store, "promotion-window-decision")
        assert window.payload["allowed"] is False and window.payload["next_opening"]
        # the reference package's two verifications are evidence too, each naming its profile
        profiles = [
            (r.payload["profile"]["name"], r.payload["profile"]["source"], r.payload["valid"])
            for r in _records(store, "release-package-verification", release_version="v1.2.5")
        ]
        assert sorted(profiles) == [("reference", "detected", True), ("reference", "explicit", True)]
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

    # the output is marked as the demo's own, so a re-run (`demo.sh` then `demo.sh --prefect`) replaces it;
    # a directory the demo did not make is never clobbered without --force
    assert (output / ".ringward-demo").is_file()
    (output / ".ringward-demo").unlink()
    again = _demo(output)
    assert again.returncode == 2 and again.stderr.strip().startswith("error: ") and "--force" in again.stderr
    assert "not made by `ringward demo`" in again.stderr and (output / "checkpoint.json").is_file()


def _store(output: Path) -> Any:
    return open_store(f"sqlite:///{output / 'state' / 'ringward.db'}")


def _assert_kev_hold_then_release(output: Path, steps: dict[int, str]) -> None:
    """KEV match -> channels held + critical kev-match incident -> promotion refused -> VEX
    not_affected stored with the release -> re-check lifts the holds (issue 10)."""
    from ringward.operations.advisories.kev_ops import KIND_IMPORT, KIND_INCIDENT, KIND_RELEASED
    from ringward.operations.incidents.incident_ops import list_incidents
    from ringward.operations.promotion.channel_ops import channels

    held_line = _step(steps, "kev import known_exploited_vulnerabilities.json: IMPORTED catalog ")
    assert ("kev check sample-runtime 1.1.0: MATCH pkg:golang/golang.org/x/sys@v0.38.0 CVE-2026-40001 (rule "
            "product-map) -> HELD beta, canary, stable; critical kev-match incident inc-") in held_line, held_line
    assert "(opened)" in held_line
    refused = _step(steps, "channel request-promotion 1.1.0 -> stable while held: ")
    assert "REFUSED [channel-held] channel stable: held by secops" in refused and "CVE-2026-40001" in refused
    assert not (output / "governance" / "kev" / "request-while-held").exists()
    vex_line = _step(steps, "vex create CVE-2026-40001 not_affected (vulnerable_code_not_in_execute_path) stored "
                            "with release sha256:")
    assert "kev check again: CLEAR, released beta, canary, stable" in vex_line
    catalog = json.loads((output / "governance" / "kev" / "known_exploited_vulnerabilities.json").read_bytes())
    assert catalog["count"] == len(catalog["vulnerabilities"]) == 1
    vex = json.loads((output / "governance" / "kev" / "not-affected.openvex.json").read_bytes())
    assert vex["@context"] == "https://openvex.dev/ns/v0.2.0"
    assert vex["statements"][0]["status"] == "not_affected"

    store = _store(output)
    try:
        (imported,) = _records(store, KIND_IMPORT)
        (incident,) = _records(store, KIND_INCIDENT)
        assert incident.payload["held_channels"] == ["beta", "canary", "stable"]
        assert incident.payload["incident"]["type"] == "kev-match"
        assert incident.payload["incident"]["severity"] == "critical"
        (request_refusal,) = _records(store, "release-channel-promotion-request", status="refused")
        assert request_refusal.payload["error"]["code"] == "channel-held" and request_refusal.actor == "alice"
        (statement,) = _records(store, "openvex-document")
        assert statement.payload["release_digest"] == incident.payload["release_digest"]
        (released,) = _records(store, KIND_RELEASED)
        assert released.payload["released_channels"] == ["beta", "canary", "stable"]
        # in this order: import, hold, refused request, VEX, release
        assert imported.id < incident.id < request_refusal.id < statement.id < released.id
        repo = channels(store)
        assert [repo.get(name).hold for name in ("beta", "canary", "stable")] == [None, None, None]
        # the incident stays open (closing it is a person's decision), noting the VEX resolution
        (opened,) = list_incidents(store)
        assert (opened.type.value, opened.severity.value, opened.state.value) == ("kev-match", "critical", "open")
        assert opened.links.cves == ("CVE-2026-40001",)
        assert "VEX not_affected resolves CVE-2026-40001" in (opened.updates[-1].note or "")
    finally:
        store.close()


def _assert_fleet_drift(output: Path, steps: dict[int, str]) -> None:
    """A Fleet export: most hosts aligned, one behind, one with a foreign binary, one stale (issue 8)."""
    from ringward.core.inventory.reconcile import KIND_RECONCILIATION

    ingested = _step(steps, "inventory ingest fleet-hosts.json (Fleet hosts export) --provider fleet --channel "
                            "stable: INGESTED ")
    assert "(17 endpoints, 9 targets;" in ingested
    reconciled = _step(steps, "inventory reconcile 1.1.0 against its signed deployment manifest: ")
    assert ("DRIFT_DETECTED (critical): 17 endpoints: 14 compliant, 2 drifted (1 version drift, 2 binary drift), "
            "1 stale; 0 missing / 0 unknown targets") in reconciled, reconciled
    hosts = {h["uuid"]: h for h in json.loads((output / "governance" / "fleet" / "fleet-hosts.json").read_bytes())
             ["hosts"]}
    report_path = output / "governance" / "fleet" / "reconciliation" / "managed-endpoint-reconciliation.json"
    assert str(report_path) in reconciled
    report = json.loads(report_path.read_bytes())
    assert report["drift_status"] == "drift_detected" and report["package_verification"]["valid"] is True
    found = {(hosts[d["endpoint_id"]]["software"][0]["version"], d["type"]) for d in report["drift_items"]}
    assert found == {("1.0.0", "version_drift,binary_drift"), ("1.1.0", "binary_drift"),
                     ("1.1.0", "stale_observation")}
    store = _store(output)
    try:
        (ingestion,) = _records(store, "endpoint-inventory-ingestion")
        (record,) = _records(store, KIND_RECONCILIATION)
        assert ingestion.id < record.id
        assert record.subject.status == "drift_detected" and record.subject.release_version == "1.1.0"
        assert record.payload["reconciliation_id"] == report["reconciliation_id"]
    finally:
        store.close()


def _assert_sla_escalation_stops_at_ack(output: Path, steps: dict[int, str]) -> None:
    """A breached remediation handoff pages the owner, then release governance, through the
    in-house queue; the owner's acknowledgement stops it: nothing more is sent (issue 9)."""
    reported = _step(steps, "sla report (--at ")
    assert "CRITICAL ersla_" in reported and "breached" in reported
    assert ("notify +2m: first_notification -> inhouse-queue; escalate +3m: rung owner -> inhouse-queue "
            "(endpoint-ops); +62m unacknowledged: rung governance -> inhouse-queue (release-governance)") in reported
    acked = _step(steps, "sla ack drift-remediation by alice (endpoint-ops) at +70m: ACKNOWLEDGED erslaack-")
    assert acked.endswith("escalate +4h05m and notify +4h06m: nothing sent (suppressed: acknowledged)"), acked
    report = json.loads((output / "governance" / "sla" / "sla-report.json").read_bytes())
    assert report["alert_level"] == "critical" and report["work_items"][0]["sla_state"] == "breached"

    # exactly three deliveries reached the in-house queue: the notification, then the two rungs
    queued = [json.loads(p.read_bytes())["event"] for p in sorted((output / "queue").glob("sla-*.json"))]
    assert sorted((e["event_type"].rsplit(".", 1)[1], e["attributes"]["escalation_level"]) for e in queued) == [
        ("escalation_delivery", "governance"), ("escalation_delivery", "owner"), ("notification", None)]
    store = _store(output)
    try:
        plans = _records(store, "endpoint-remediation-sla-notification-plan")
        sent = [(r.payload["sent"][0]["kind"], r.payload["sent"][0]["level"]) for r in plans if r.payload["sent"]]
        assert sorted(sent, key=str) == sorted([("group", None), ("escalation", "owner"),
                                                ("escalation", "governance")], key=str)
        (ack,) = _records(store, "endpoint-remediation-sla-notification-ack")
        assert ack.actor == "alice" and ack.payload["acknowledgement_state"] == "acknowledged"
        after = [r for r in plans if r.id > ack.id]
        assert len(after) == 2 and all(r.payload["sent"] == [] and r.payload["failed"] == [] for r in after)
        assert all({s["code"] for s in r.payload["suppressed"]} == {"acknowledged"} for r in after)
        assert len(_records(store, "release-connector-delivery")) == 3 + 2  # + the verified event and the audit
    finally:
        store.close()


def test_demo_governance_inputs_are_the_real_formats() -> None:
    """The documents the demo writes go through the same parsers a user's files do: the KEV catalog
    passes the vendored CISA schema and the catalog rules, the product map and the routing policy
    parse, and the handoff breaches exactly at the instant the demo says (not a minute before)."""
    from datetime import UTC, datetime, timedelta

    from ringward.core.advisories.kev import parse_catalog, parse_product_map
    from ringward.core.common.jsonio import dumps_document
    from ringward.core.sla.policy import parse_policy
    from ringward.core.sla.report import build_report
    from ringward.operations import demo_fleet as fx

    released = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
    parsed = parse_catalog(dumps_document(fx.kev_catalog(released)), source="kev.json")
    assert parsed.catalog.catalogVersion == "2026.12.05" and parsed.catalog.count == 1
    assert [e.cveID for e in parsed.catalog.vulnerabilities] == [fx.DEMO_CVE]
    assert parse_product_map(fx.kev_product_map(), source="kev-product-map.json")
    policy = parse_policy(dumps_document(fx.sla_routing_policy("inhouse-queue")), source="routing.json")
    assert [r.rule_id for r in policy.rules] == [fx.SLA_ROUTE]

    breach = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    handoff, started = fx.remediation_handoff(reconciliation_id="mer_0123456789ab", release="1.1.0", channel="stable",
                                              breach_at=breach, action_count=2, queue="private_queue")
    assert started.status.value == "in_progress" and started.handoff_id == handoff.handoff_id
    before = build_report([handoff], [started], now=breach - timedelta(minutes=1))
    after = build_report([handoff], [started], now=breach)
    assert before.executive_summary.breached_count == 0 and before.alert_level.value == "warning"
    assert after.executive_summary.breached_count == 1 and after.alert_level.value == "critical"
