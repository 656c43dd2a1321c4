"""Freshness: two clocks per host, per-scope thresholds, silent sources, state changes only on change."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import InputError, StoreConflictError
from ringward.core.evidence.records import EvidenceDraft
from ringward.core.inventory.freshness import (
    KIND_FRESHNESS,
    KIND_FRESHNESS_CHANGE,
    HostClock,
    Ingestion,
    Thresholds,
    evaluate,
    parse_scope_rule,
    select_latest,
)
from ringward.settings import evidence_root
from tests.inventory.conftest import InventoryWorld, at, cli, iso, records
from tests.release.simulator import NOW

DAY = Thresholds(timedelta(hours=24), timedelta(hours=48))


def ingestion(inventory_id: str, observed_at: str, *, provider: str = "jamf", channel: str | None = "stable",
              targets: tuple[str, ...] = ("t1",), missing: int = 0) -> Ingestion:
    return Ingestion(inventory_id, provider, channel, observed_at, targets, 10, missing)


def test_latest_per_scope_by_parsed_time() -> None:
    older = ingestion("eii_a", "2026-11-22T10:00:00Z")
    # later in time, although it sorts lower as text
    newer = ingestion("eii_b", "2026-11-22T09:30:00-02:00")
    invalid = ingestion("eii_c", "yesterday")
    latest = select_latest([invalid, older, newer])
    assert latest[("jamf", "stable", "t1")].inventory_id == "eii_b"
    assert select_latest([invalid])[("jamf", "stable", "t1")].inventory_id == "eii_c"


@pytest.mark.parametrize("age_hours,severity", [(0, "healthy"), (23.9, "healthy"), (24, "warning"),
                                                (47.9, "warning"), (48, "critical")])
def test_scope_severity_by_age(age_hours: float, severity: str) -> None:
    report = evaluate([ingestion("eii_a", iso(NOW - timedelta(hours=age_hours)))], now=NOW, default=DAY)
    (row,) = report["latest_ingestions"]
    assert row["severity"] == severity and report["alert_level"] == severity


def test_per_scope_thresholds_most_specific_wins() -> None:
    rules = (parse_scope_rule("jamf=2h,4h"), parse_scope_rule("jamf/stable/t1=30h,60h"))
    report = evaluate([ingestion("eii_a", iso(NOW - timedelta(hours=10)), targets=("t1", "t2"))], now=NOW,
                      default=DAY, rules=rules)
    rows = {r["deployment_target"]: r for r in report["latest_ingestions"]}
    assert rows["t1"]["severity"] == "healthy" and rows["t1"]["max_age_hours"] == 30
    assert rows["t2"]["severity"] == "critical" and rows["t2"]["max_age_hours"] == 2


def test_host_clocks_and_the_mdm_that_hides_stale_inventory() -> None:
    hosts = [
        HostClock("fresh", "t1", iso(NOW - timedelta(hours=1)), iso(NOW - timedelta(hours=2))),
        # checks in every hour, but its inventory is three days old: the case freshness must see
        HostClock("hiding", "t1", iso(NOW - timedelta(hours=1)), iso(NOW - timedelta(hours=72))),
        HostClock("gone", "t1", iso(NOW - timedelta(hours=50)), iso(NOW - timedelta(hours=30))),
        HostClock("never", "t1", None, None),
        HostClock("other-target", "t2", None, iso(NOW - timedelta(hours=99))),
    ]
    report = evaluate([ingestion("eii_a", iso(NOW - timedelta(hours=1)))], now=NOW, default=DAY,
                      hosts={"eii_a": hosts})
    (row,) = report["latest_ingestions"]
    assert row["severity"] == "healthy"
    assert row["hosts"] == {"host_count": 4, "inventory_warning_count": 1, "inventory_critical_count": 1,
                            "checkin_warning_count": 0, "checkin_critical_count": 1,
                            "without_inventory_clock_count": 1, "checking_in_with_stale_inventory_count": 1,
                            "stale_inventory_examples": ["hiding", "gone"]}
    (alert,) = [a for a in report["alerts"] if a["kind"] == "host-inventory-age"]
    assert alert["severity"] == "warning" and "2 of 4 endpoints" in alert["message"]
    assert report["alert_level"] == "warning" and report["summary"]["stale_host_count"] == 2


def test_silent_source_and_missing_targets() -> None:
    report = evaluate([ingestion("eii_new", iso(NOW - timedelta(hours=1)), targets=("t1",), missing=2),
                       ingestion("eii_old", iso(NOW - timedelta(hours=80)), provider="intune", channel=None)],
                      now=NOW, default=DAY)
    sources = {s["source"]: s["severity"] for s in report["sources"]}
    assert sources == {"jamf/stable": "healthy", "intune/unassigned": "critical"}
    kinds = sorted(a["kind"] for a in report["alerts"])
    assert kinds == ["missing-targets", "scope-age", "source-silent"]
    assert report["summary"]["silent_source_count"] == 1 and report["alert_level"] == "critical"


def test_no_ingestions_is_a_warning_and_report_id_formula() -> None:
    report = evaluate([], now=NOW, default=DAY, provider="fleet")
    assert report["alert_level"] == "warning"
    assert report["warnings"] == ["no endpoint inventory ingestion records matched the freshness scope"]
    body = {"scope": {"provider": "fleet", "channel": None, "deployment_target": None},
            "thresholds": {"max_age_hours": 24.0, "critical_age_hours": 48.0}, "created_at": iso(NOW),
            "inventory_ids": []}
    expected = "eif_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    assert report["report_id"] == expected


@pytest.mark.parametrize("text,message", [
    ("jamf", "expected PROVIDER"), ("a/b/c/d=1h,2h", "expected PROVIDER"), ("jamf=1h", "two durations"),
    ("jamf=soon,2h", "a duration like"), ("jamf=30m,2h", "--max-age: expected at least 1h"),
    ("jamf=5h,2h", "--critical-age: expected at least"),
])
def test_scope_rule_refusals(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_scope_rule(text)


# --- the operation: evidence and state changes -------------------------------------------------------------


def evaluate_at(world: InventoryWorld, hours: float, **extra: Any) -> dict[str, Any]:
    from ringward.operations.inventory.freshness import evaluate_freshness

    return evaluate_freshness(world.store, now=at(hours), actor="freshness-cron", thresholds=DAY, **extra)


def fleet_at(world: InventoryWorld, hours: float) -> dict[str, Any]:
    return {"endpoints": world.aligned_endpoints(seen=at(hours)), "observed_at": iso(at(hours))}


def test_state_changes_are_recorded_only_on_change(world: InventoryWorld) -> None:
    world.ingest(fleet_at(world, 0), channel="stable", provider="linux")
    targets = len(world.targets())
    healthy = evaluate_at(world, 1)
    assert healthy["alert_level"] == "healthy" and healthy["changes"] == []
    assert evaluate_at(world, 2)["changes"] == []
    warning = evaluate_at(world, 30)
    assert warning["alert_level"] == "warning"
    # every scope of the source and the source itself went healthy -> warning, once
    assert len(warning["changes"]) == targets + 1
    assert {(c["from"], c["to"]) for c in warning["changes"]} == {("healthy", "warning")}
    assert evaluate_at(world, 31)["changes"] == []
    critical = evaluate_at(world, 60)
    assert {(c["from"], c["to"]) for c in critical["changes"]} == {("warning", "critical")}
    world.ingest(fleet_at(world, 61), channel="stable", provider="linux", now=at(61))
    recovered = evaluate_at(world, 62)
    assert recovered["alert_level"] == "healthy"
    assert {(c["from"], c["to"]) for c in recovered["changes"]} == {("critical", "healthy")}
    events = records(world.store, KIND_FRESHNESS_CHANGE)
    assert len(events) == 3 * (targets + 1)
    assert len(records(world.store, KIND_FRESHNESS)) == 6  # every evaluation is evidence


def test_a_state_another_evaluation_recorded_is_not_recorded_again(world: InventoryWorld) -> None:
    from ringward.store.inventory.repo import FRESHNESS_NAMESPACE

    world.ingest(fleet_at(world, 0), channel="stable", provider="linux")
    evaluate_at(world, 1)
    for entry in world.store.state.list(FRESHNESS_NAMESPACE):
        world.store.state.put(FRESHNESS_NAMESPACE, entry.key, {**entry.value, "severity": "warning"},
                              actor="other-run", now=at(29), expected_version=entry.version)
    assert evaluate_at(world, 30)["changes"] == []


def test_transition_is_compare_and_set(world: InventoryWorld) -> None:
    from ringward.store.inventory.repo import InventoryRepository

    repo = InventoryRepository(world.store)
    draft = EvidenceDraft(kind=KIND_FRESHNESS_CHANGE, actor="a", payload={"x": 1})
    repo.transition("scope:a/b/c", {"severity": "warning"}, expected_version=0, draft=draft, actor="a", now=at(1))
    with pytest.raises(StoreConflictError):
        repo.transition("scope:a/b/c", {"severity": "critical"}, expected_version=0, draft=draft, actor="a",
                        now=at(2))
    assert len(records(world.store, KIND_FRESHNESS_CHANGE)) == 1  # the loser appended nothing


def test_host_clocks_come_from_the_checked_bundle(world: InventoryWorld) -> None:
    fleet = world.aligned_endpoints(seen=at(0))
    fleet[0]["last_seen_at"] = iso(at(-40))
    world.ingest({"endpoints": fleet, "observed_at": iso(at(0))}, channel="stable")
    report = evaluate_at(world, 1)
    assert report["summary"]["stale_host_count"] == 1
    (ingestion_record,) = [r for r in records(world.store, "endpoint-inventory-ingestion")]
    observations = evidence_root() / ingestion_record.bundle_dir / "endpoint-inventory.json"
    observations.write_bytes(observations.read_bytes().replace(b"host-0", b"host-X"))
    tampered = evaluate_at(world, 2)
    assert any("does not match its recorded digest" in w for w in tampered["warnings"])
    assert all(r["hosts"] is None for r in tampered["latest_ingestions"])


def test_filters(world: InventoryWorld) -> None:
    world.ingest(fleet_at(world, 0), channel="stable")
    world.ingest(fleet_at(world, -100), channel="beta", output=world.work / "beta")
    assert evaluate_at(world, 1, channel="stable")["alert_level"] == "healthy"
    assert evaluate_at(world, 1, channel="beta")["alert_level"] == "critical"
    only = evaluate_at(world, 1, deployment_target="linux-systemd-amd64-workstation")
    assert {r["deployment_target"] for r in only["latest_ingestions"]} == {"linux-systemd-amd64-workstation"}
    assert evaluate_at(world, 1, provider="jamf")["summary"]["scope_count"] == 0
    with pytest.raises(InputError, match="--provider"):
        evaluate_at(world, 1, provider="sccm")


def test_cli_freshness(world: InventoryWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.ingest(fleet_at(world, 0), channel="stable")
    code, out, err = cli(capsys, "inventory", "freshness", "--at", iso(at(30)), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["alert_level"] == "warning" and result["changes"]
    code, out, _ = cli(capsys, "inventory", "freshness", "--at", iso(at(31)), "--scope-threshold", "linux=48h,72h")
    assert code == 0 and out.startswith("HEALTHY")
    for argv, message in ((["--max-age", "48h", "--critical-age", "24h"], "--critical-age"),
                          (["--max-age", "30m"], "--max-age"), (["--scope-threshold", "x"], "--scope-threshold"),
                          (["--max-records", "0"], "--max-records"), (["--channel", "BAD"], "--channel")):
        code, _, err = cli(capsys, "inventory", "freshness", *argv)
        assert code == 2 and message in err, (argv, err)


def test_host_clock_readers_agree(tmp_path: Path) -> None:
    from ringward.core.inventory.observations import render_observations
    from ringward.operations.inventory.freshness import _host_clocks_columnar
    from ringward.operations.inventory.observations_file import stream_document

    endpoints = [{"endpoint_id": "a", "deployment_target": "t", "last_seen_at": "2026-11-22T00:00:00Z"},
                 {"endpoint_id": "b", "deployment_target": "t", "last_checkin_at": "2026-11-22T01:00:00Z",
                  "last_inventory_at": "", "last_seen_at": "2026-11-21T00:00:00Z"},
                 {"endpoint_id": "c", "deployment_target": "u"}]
    header = {"schema_version": "cavra.endpoint-observations.v1", "provider": "linux", "observed_at": "t"}
    lines = tmp_path / "lines.json"
    lines.write_bytes(b"".join(render_observations(header, endpoints)))
    columnar = _host_clocks_columnar(lines)
    assert columnar is not None
    streamed = [HostClock(str(v["endpoint_id"]), str(v["deployment_target"]),
                          v.get("last_checkin_at") or v.get("last_seen_at"),
                          v.get("last_inventory_at") or v.get("last_seen_at"))
                for event, v in stream_document(lines) if event == "endpoint"]
    assert columnar == streamed
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({**header, "endpoints": endpoints}, indent=2))
    assert _host_clocks_columnar(reference) is None
