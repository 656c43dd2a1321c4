"""Reconciliation rules (pure) and the two engines: the columnar engine and the streaming loop must
give identical results on random fleets, and both must match the reference's id formulas."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import InputError
from ringward.core.inventory.observations import inventory_id, parse_timestamp, render_observations
from ringward.core.inventory.reconcile import (
    DesiredState,
    DesiredTarget,
    check_stale_after,
    is_stale,
    reconcile,
    reconciliation_id,
    version_relation,
)
from ringward.operations.inventory.engine import reconcile_file

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
SHA = hashlib.sha256(b"good").hexdigest()
OTHER = hashlib.sha256(b"evil").hexdigest()
DESIRED = DesiredState("1.2.3", "c0ffee", "acme/rt", tuple(
    DesiredTarget(t, SHA) for t in ("linux-systemd-amd64-workstation", "macos-jamf-arm64-workstation", "never-seen")))


def reference_id(prefix: str, body: dict[str, Any]) -> str:
    return prefix + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


@pytest.mark.parametrize("observed,relation", [
    ("1.2.3", None), ("v1.2.3", None), ("1.2.3+build.7", None), ("1.2.2", "behind"), ("v1.10.0", "ahead"),
    ("1.2.3-rc.1", "behind"), ("1.2", "not-semver"), ("latest", "not-semver"), ("01.2.3", "not-semver"),
])
def test_version_relation_by_semver(observed: str, relation: str | None) -> None:
    assert version_relation("1.2.3", observed) == relation


def test_version_relation_when_manifest_is_not_semver() -> None:
    assert version_relation("nightly", "nightly") is None
    assert version_relation("nightly", "1.2.3") == "not-semver"


@pytest.mark.parametrize("seen,stale", [
    (None, False), ("", False), ("2026-11-22T11:00:00Z", False), ("2026-11-21T12:00:00Z", False),
    ("2026-11-21T11:59:59Z", True), ("2026-11-22T13:00:00+02:00", False), ("garbage", True),
    ("2026-11-22T11:00:00", True), ("2026-11-22 11:00:00Z", True), ("2026-13-01T00:00:00Z", True),
    ("2026-11-22T11:00:00.1234567Z", True), ("2030-01-01T00:00:00Z", False),
])
def test_staleness(seen: str | None, stale: bool) -> None:
    assert is_stale(seen, now=NOW, stale_after=timedelta(hours=24)) is stale


def test_stale_after_minimum() -> None:
    with pytest.raises(InputError, match="--stale-after: expected at least 1:00:00"):
        check_stale_after(timedelta(minutes=59))


def test_ids_match_the_reference_formulas() -> None:
    endpoints = [{"endpoint_id": "é-1", "deployment_target": "t", "installed_version": "1.2.3"}, {"endpoint_id": "2"}]
    assert inventory_id("jamf", None, "2026-11-22T12:00:00Z", endpoints) == reference_id(
        "eii_", {"provider": "jamf", "channel": None, "observed_at": "2026-11-22T12:00:00Z", "endpoints": endpoints})
    assert reconciliation_id(DESIRED, "2026-11-22T12:00:00Z", endpoints) == reference_id(
        "mer_", {"version": "1.2.3", "commit": "c0ffee", "observed_at": "2026-11-22T12:00:00Z",
                 "endpoints": endpoints})


def test_rules_and_report_shape() -> None:
    endpoints = [
        {"endpoint_id": "ok", "deployment_target": "linux-systemd-amd64-workstation", "installed_version": "v1.2.3",
         "binary_sha256": SHA.upper(), "last_seen_at": "2026-11-22T11:00:00Z"},
        {"endpoint_id": "old", "deployment_target": "linux-systemd-amd64-workstation", "version": "1.2.2",
         "installed_binary_sha256": OTHER, "last_seen_at": "2026-11-19T00:00:00Z"},
        {"endpoint_id": "quiet", "target_id": "macos-jamf-arm64-workstation", "last_seen_at": "2026-11-01T00:00:00Z"},
        {"endpoint_id": "rogue", "deployment_target": "zz-unknown", "installed_version": "9.9.9"},
        {"endpoint_id": "blank", "deployment_target": ""},
    ]
    result = reconcile(DESIRED, endpoints, observed_at="2026-11-22T11:00:00Z", now=NOW)
    assert [(i["type"], i.get("endpoint_id")) for i in result.drift_items] == [
        ("version_drift,binary_drift,stale_observation", "old"),
        ("stale_observation", "quiet"),
        ("missing_observation", None),
        ("unknown_deployment_target", "rogue"),
    ]
    old = result.drift_items[0]
    assert old["severity"] == "critical" and old["version_relation"] == "behind"
    assert old["observed_binary_sha256"] == OTHER and old["expected_binary_sha256"] == SHA
    assert result.drift_items[1]["severity"] == "warning"
    summary = result.summary()
    assert {k: summary[k] for k in ("observed_endpoint_count", "compliant_endpoint_count", "drifted_endpoint_count",
                                    "missing_target_count", "unknown_target_count", "stale_endpoint_count")} == {
        "observed_endpoint_count": 5, "compliant_endpoint_count": 1, "drifted_endpoint_count": 1,
        "missing_target_count": 1, "unknown_target_count": 1, "stale_endpoint_count": 2}
    assert result.alert_level() == "critical" and result.drift_status() == "drift_detected"


def test_alert_levels() -> None:
    one = DesiredState("1.2.3", "c", None, (DesiredTarget("t", SHA),))
    aligned = reconcile(one, [{"endpoint_id": "a", "deployment_target": "t"}], observed_at="x", now=NOW)
    assert aligned.alert_level() == "healthy" and aligned.drift_status() == "aligned"
    stale = reconcile(one, [{"endpoint_id": "a", "deployment_target": "t", "last_seen_at": "bad"}], observed_at="x",
                      now=NOW)
    assert stale.alert_level() == "warning" and stale.drift_status() == "drift_detected"
    unknown = reconcile(one, [{"endpoint_id": "a", "deployment_target": "t"},
                              {"endpoint_id": "b", "deployment_target": "u"}], observed_at="x", now=NOW)
    assert unknown.alert_level() == "warning"


# --- engines agree ---------------------------------------------------------------------------------------

VERSIONS = ["1.2.3", "v1.2.3", "1.2.3+b", "1.2.2", "v1.3.0", "1.2.3-rc.1", "latest", "", None]
SEEN = ["2026-11-22T11:00:00Z", "2026-11-22T11:00:00.5+01:00", "2026-11-20T00:00:00Z", "2026-11-21T12:00:00Z",
        "2026-11-21T11:59:59.999999Z", "junk", "2026-11-22T11:00:00", "2026-02-30T00:00:00Z", "", None]
TARGETS = [*DESIRED.target_ids[:2], "extra-target", "zz-other", "", None]


def random_fleet(rng: random.Random, size: int) -> list[dict[str, Any]]:
    fleet = []
    for index in range(size):
        endpoint: dict[str, Any] = {"endpoint_id": f"h-{index}-{rng.randrange(10**6)}"}
        for key, choices in (("deployment_target", TARGETS), ("installed_version", VERSIONS),
                             ("binary_sha256", [SHA, SHA.upper(), OTHER, "", None]), ("last_seen_at", SEEN),
                             ("hostname", ["n\u00e9", "a\"b", "x, y", None])):
            value = rng.choice(choices)
            if value is not None:
                endpoint[key] = value
        if rng.random() < 0.1:
            endpoint["target_id"] = rng.choice(TARGETS[:3])
        if rng.random() < 0.1:
            endpoint["version"] = rng.choice(VERSIONS[:6])
        fleet.append(endpoint)
    return fleet


def write_observations(path: Path, endpoints: list[dict[str, Any]]) -> Path:
    header = {"schema_version": "cavra.endpoint-observations.v1", "provider": "fleet", "channel": "stable",
              "observed_at": "2026-11-22T11:00:00Z", "product": "Ringward"}
    path.write_bytes(b"".join(render_observations(header, endpoints)))
    return path


@pytest.mark.parametrize("seed", range(12))
def test_columnar_and_streaming_engines_agree(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    fleet = random_fleet(rng, rng.choice([0, 1, 7, 300]))
    path = write_observations(tmp_path / "obs.json", fleet)
    stale_after = timedelta(hours=rng.choice([1, 24, 72]))
    columnar = reconcile_file(path, DESIRED, now=NOW, stale_after=stale_after, engine="columnar")
    streamed = reconcile_file(path, DESIRED, now=NOW, stale_after=stale_after, engine="stream")
    assert columnar.engine == "columnar" and streamed.engine == "stream"
    assert columnar.reconciliation == streamed.reconciliation
    assert columnar.file_sha256 == streamed.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    pure = reconcile(DESIRED, fleet, observed_at="2026-11-22T11:00:00Z", now=NOW, stale_after=stale_after)
    assert pure == columnar.reconciliation
    assert pure.reconciliation_id == reference_id("mer_", {"version": "1.2.3", "commit": "c0ffee",
                                                           "observed_at": "2026-11-22T11:00:00Z", "endpoints": fleet})


def test_reference_layout_is_streamed(tmp_path: Path) -> None:
    fleet = random_fleet(random.Random(99), 50)
    document = {"schema_version": "cavra.endpoint-observations.v1", "provider": "linux", "channel": None,
                "observed_at": "2026-11-22T11:00:00Z", "endpoints": fleet, "source": "x.json"}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True))  # the reference's own layout
    result = reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24))
    assert result.engine == "stream"
    assert result.reconciliation == reconcile(DESIRED, fleet, observed_at="2026-11-22T11:00:00Z", now=NOW)


@pytest.mark.parametrize("line", ['{"deployment_target": "t", "endpoint_id": 5}',
                                  '{"deployment_target": "t", "endpoint_id": "a", "nested": {"k": "v"}}'])
def test_line_layout_with_non_string_values_goes_to_the_loop(tmp_path: Path, line: str) -> None:
    path = write_observations(tmp_path / "obs.json", [{"endpoint_id": "a", "deployment_target": "t"}])
    text = path.read_text().replace('{"deployment_target": "t", "endpoint_id": "a"}', line)
    path.write_text(text)
    if '"endpoint_id": 5' in line:
        with pytest.raises(InputError, match=r"endpoints\[0\]: endpoint_id: Input should be a valid string"):
            reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24))
    else:
        assert reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24)).engine == "stream"


@pytest.mark.parametrize("content,message", [
    (b'{"schema_version": "cavra.endpoint-observations.v2", "provider": "x", "observed_at": "t", "endpoints": []}',
     "schema_version: expected 'cavra.endpoint-observations.v1'"),
    (b'{"schema_version": "cavra.endpoint-observations.v1", "provider": "x", "observed_at": "t"}',
     "endpoints: field required"),
    (b'{"schema_version": "cavra.endpoint-observations.v1", "provider": "x", "observed_at": "t", "endpoints": [1]}',
     r"endpoints\[0\]: expected an object, found int"),
    (b'{"schema_version": "cavra.endpoint-observations.v1", "provider": "x", "observed_at": "t", "endpoints": [',
     "invalid JSON"),
    (b'{"provider": "x", "provider": "y"}', "duplicate key 'provider'"),
    (b'{"schema_version": "cavra.endpoint-observations.v1", "provider": "x", "endpoints": []}',
     "observed_at: Field required"),
    (b'{"schema_version": "cavra.endpoint-observations.v1", "provider": "x", "observed_at": "t", "endpoints": []} x',
     "trailing data"),
])
def test_bad_observation_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24))


def test_timestamps_parse_to_utc() -> None:
    assert parse_timestamp("2026-11-22T13:00:00.25+01:00") == datetime(2026, 11, 22, 12, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_partitions_merge_to_the_whole(tmp_path: Path, partitions: int) -> None:
    from ringward.core.inventory.reconcile import merge
    from ringward.operations.inventory.partitions import digests, plan_partitions, reconcile_range

    fleet = random_fleet(random.Random(partitions), 120)
    path = write_observations(tmp_path / "obs.json", fleet)
    plan = plan_partitions(path, partitions)
    assert plan is not None and 1 <= len(plan.ranges) <= partitions + 1
    partials = [reconcile_range(path, part, DESIRED, observed_at=plan.header.observed_at, now=NOW,
                                stale_after=timedelta(hours=24)) for part in reversed(plan.ranges)]
    merged = merge(DESIRED, partials, reconciliation_id=digests(path, plan.layout, DESIRED)[0])
    assert merged == reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24)).reconciliation


def test_partition_refusals(tmp_path: Path) -> None:
    from ringward.operations.inventory.partitions import plan_partitions, reconcile_range

    path = write_observations(tmp_path / "obs.json", [{"endpoint_id": "a"}, {"endpoint_id": "b"}])
    with pytest.raises(InputError, match="--partitions"):
        plan_partitions(path, 0)
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"schema_version": "cavra.endpoint-observations.v1", "provider": "x",
                                     "observed_at": "t", "endpoints": []}, indent=2))
    assert plan_partitions(reference, 2) is None
    plan = plan_partitions(path, 1)
    assert plan is not None
    path.write_text(path.read_text().replace('{"endpoint_id": "b"}', '{"endpoint_id": 7}'))
    with pytest.raises(InputError, match=r"endpoints\[1\]: endpoint_id"):
        reconcile_range(path, plan.ranges[0], DESIRED, observed_at="t", now=NOW, stale_after=timedelta(hours=24))


def test_report_rendering_is_json_with_one_item_per_line() -> None:
    from ringward.core.inventory.observations import render_document

    document = {"b": [{"x": 1, "y": "\u00e9"}], "a": {"k": None}, "drift_items": [{"q": "r"}, {"s": [1]}]}
    text = render_document(document, list_key="drift_items")
    assert json.loads(text) == document
    assert text.decode().splitlines()[4:6] == ['    {"q": "r"},', '    {"s": [1]}']
    assert json.loads(render_document({"drift_items": []}, list_key="drift_items")) == {"drift_items": []}
