"""The columnar engine against the per-record loop on adversarial random fleets.

The columnar engine either gives exactly the per-record loop's reconciliation (the core's
``ReconcileLoop`` through the streaming reader, and the pure ``reconcile`` over the parsed
endpoints) or hands the file to the streaming loop, which then refuses it with the same one-line
error. Fleets mix valid edge cases the columnar pass must take itself (timestamps at the cutoff,
leap seconds, offsets, fractions, years at the edge of the calendar, SemVer spellings, checksum
case, aliases, blank and unknown targets, duplicates, escapes) with malformed values it must not
(non-strings, nulls, nested values, empty or oversized fields, raw non-ASCII, unpaired
surrogates, a layout that is not one object per line). Small blocks, groups and batches make
every fleet cross block, group and batch boundaries.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.errors import InputError
from ringward.core.inventory.observations import parse_timestamp, render_observations
from ringward.core.inventory.reconcile import DesiredState, DesiredTarget, Reconciliation, is_stale, reconcile
from ringward.operations.inventory import engine
from ringward.operations.inventory.engine import reconcile_file

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
OBSERVED_AT = "2026-11-22T11:00:00Z"
SHA = hashlib.sha256(b"good").hexdigest()
OTHER = hashlib.sha256(b"evil").hexdigest()
TARGETS = ("linux-systemd-amd64-workstation", "macos-jamf-arm64-workstation", "never-reported")
DESIRED = DesiredState("1.2.3", "c0ffee", "acme/rt", tuple(DesiredTarget(t, SHA) for t in TARGETS))

# valid values the columnar pass must take itself
VERSIONS = ["1.2.3", "v1.2.3", "1.2.3+build.9", "1.2.2", "v1.3.0", "1.2.3-rc.1", "1.2", "latest", "01.2.3", ""]
SEEN = [
    "2026-11-22T11:00:00Z", "2026-11-21T12:00:00Z", "2026-11-21T11:59:59Z", "2026-11-21T11:59:59.999999Z",
    "2026-11-21T12:00:00.000001Z", "2026-11-22T13:00:00+02:00", "2026-11-21T13:00:00+01:00",
    "2026-11-22T06:30:00.5-05:30", "2026-11-22T11:00:60Z", "2016-12-31T23:59:60Z", "2026-02-29T00:00:00Z",
    "2024-02-29T12:00:00Z", "2026-13-01T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T11:60:00Z",
    "9999-12-31T23:00:00-05:00", "9999-12-31T23:00:00Z", "0001-01-01T00:00:00+01:00", "0000-01-01T00:00:00Z",
    "2026-11-22T11:00:00z", "2026-11-22T11:00:00", "2026-11-22 11:00:00Z", "2026-11-22T11:00:00.1234567Z",
    "2026-1-22T11:00:00Z", "2026-11-22T11:00:00+24:00", "yesterday", "",
]
CHECKSUMS = [SHA, SHA.upper(), OTHER, "", "not-hex"]
TARGET_CHOICES = [*TARGETS[:2], "retired-kiosk", "zz-unknown", "", "linux-systemd-amd64-workstation "]
TEXT = ["plain", "n\u00e9e", 'quote"d', "back\\slash", "x, {y}: z", "\U0001F600 emoji", "tab\there", "\u2028",
        "\\ud800 (not an escape)"]
# malformed values: each sends the file to the streaming loop (which may accept or refuse it)
MALFORMED: list[tuple[str, Any]] = [
    ("endpoint_id", 7), ("endpoint_id", None), ("endpoint_id", ""), ("endpoint_id", "x" * 513),
    ("deployment_target", 3), ("deployment_target", None), ("deployment_target", "t" * 257),
    ("installed_version", 1.5), ("installed_version", ["1.2.3"]), ("binary_sha256", "a" * 129),
    ("last_seen_at", 1700000000), ("last_seen_at", "2026-11-22T11:00:00Z" + " " * 45),
    ("hostname", {"nested": "x"}), ("hostname", None), ("os", True),
    ("target_id", 5), ("version", None), ("installed_binary_sha256", False), ("labels", ["a", "b"]),
    ("extra", {"k": 1}), ("hostname", "\ud800"), ("hostname", "\udc00x"), ("endpoint_id", "\ud83d"),
    ("hostname", 'looks": 5'),  # valid, but an escaped quote looks like a non-string value: the loop reads it
]


def random_endpoint(rng: random.Random, index: int, *, malformed: float) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"endpoint_id": f"host-{index % 37 if rng.random() < 0.2 else index}"}
    for key, choices in (("deployment_target", TARGET_CHOICES), ("installed_version", VERSIONS),
                         ("binary_sha256", CHECKSUMS), ("last_seen_at", SEEN), ("hostname", TEXT)):
        if rng.random() < 0.85:
            endpoint[key] = rng.choice(choices)
    if rng.random() < 0.15:
        endpoint["target_id"] = rng.choice(TARGET_CHOICES[:4])
    if rng.random() < 0.15:
        endpoint["version"] = rng.choice(VERSIONS)
    if rng.random() < 0.1:
        endpoint["installed_binary_sha256"] = rng.choice(CHECKSUMS)
    if rng.random() < 0.1:
        endpoint["endpoint_id"] = rng.choice(TEXT)
    if rng.random() < malformed:
        key, value = rng.choice(MALFORMED)
        endpoint[key] = value
    return endpoint


HEADER = {"schema_version": "cavra.endpoint-observations.v1", "provider": "fleet", "channel": "stable",
          "observed_at": OBSERVED_AT, "product": "Ringward"}


def write_fleet(path: Path, fleet: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(render_observations(HEADER, fleet)))
    return path


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few lines, groups of three, batches of a few rows: every fleet crosses them all."""
    monkeypatch.setattr(engine, "BLOCK_BYTES", 700)
    monkeypatch.setattr(engine, "_GROUP", 3)
    monkeypatch.setattr(engine, "_IN_FLIGHT", 1)
    monkeypatch.setattr(engine, "_BATCH_ROWS", 9)


def outcome(path: Path, mode: engine.Engine, stale_after: timedelta) -> tuple[str, Any]:
    try:
        result = reconcile_file(path, DESIRED, now=NOW, stale_after=stale_after, engine=mode)
    except InputError as exc:
        return "refused", str(exc)
    return result.engine, (result.reconciliation, result.file_sha256)


def reference_id(fleet: list[dict[str, Any]]) -> str:
    body = {"version": DESIRED.version, "commit": DESIRED.commit, "observed_at": OBSERVED_AT, "endpoints": fleet}
    return "mer_" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def assert_same(columnar: tuple[str, Any], streamed: tuple[str, Any]) -> None:
    if streamed[0] == "refused":
        assert columnar == streamed
        return
    assert columnar[0] in ("columnar", "stream") and streamed[0] == "stream"
    assert columnar[1] == streamed[1]


@pytest.mark.parametrize("seed", range(40))
def test_columnar_equals_the_per_record_loop(tmp_path: Path, small_blocks: None, seed: int) -> None:
    rng = random.Random(seed)
    malformed = 0.0 if seed % 2 == 0 else rng.choice([0.003, 0.02, 0.2])
    fleet = [random_endpoint(rng, i, malformed=malformed) for i in range(rng.choice([1, 2, 17, 90, 400]))]
    path = write_fleet(tmp_path / "obs.json", fleet)
    stale_after = timedelta(hours=rng.choice([1, 24, 24 * 366]))
    columnar = outcome(path, "columnar", stale_after)
    streamed = outcome(path, "stream", stale_after)
    assert_same(columnar, streamed)
    if malformed == 0.0:
        # nothing here may cost the fast path
        assert columnar[0] == "columnar", columnar
    if streamed[0] != "refused":
        reconciliation: Reconciliation = streamed[1][0]
        pure = reconcile(DESIRED, json.loads(path.read_bytes())["endpoints"], observed_at=OBSERVED_AT, now=NOW,
                         stale_after=stale_after)
        assert pure == reconciliation
        assert reconciliation.reconciliation_id == reference_id(json.loads(path.read_bytes())["endpoints"])
        assert streamed[1][1] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("seen", SEEN)
def test_each_timestamp_is_judged_as_the_core_judges_it(tmp_path: Path, seen: str) -> None:
    fleet = [{"endpoint_id": "a", "deployment_target": TARGETS[0], "last_seen_at": seen}]
    path = write_fleet(tmp_path / "obs.json", fleet)
    for hours in (1, 24, 24 * 366):
        result = reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=hours), engine="columnar")
        assert result.engine == "columnar"
        expected = is_stale(seen, now=NOW, stale_after=timedelta(hours=hours))
        assert result.reconciliation.summary()["stale_endpoint_count"] == int(expected), (seen, hours)


def test_timestamps_outside_pythons_calendar_are_unparsable_not_a_crash() -> None:
    assert parse_timestamp("9999-12-31T23:00:00-05:00") is None
    assert parse_timestamp("0001-01-01T00:00:00+01:00") is None
    assert is_stale("9999-12-31T23:00:00-05:00", now=NOW, stale_after=timedelta(hours=24))


@pytest.mark.parametrize("name,value", MALFORMED)
def test_each_malformed_value_leaves_the_fast_path(tmp_path: Path, small_blocks: None, name: str, value: Any) -> None:
    fleet = [{"endpoint_id": f"h{i}", "deployment_target": TARGETS[i % 2], "installed_version": "1.2.3"}
             for i in range(30)]
    fleet[17][name] = value
    path = write_fleet(tmp_path / "obs.json", fleet)
    columnar = outcome(path, "columnar", timedelta(hours=24))
    streamed = outcome(path, "stream", timedelta(hours=24))
    assert columnar[0] != "columnar"
    assert_same(columnar, streamed)
    if streamed[0] == "refused":
        assert "endpoints[17]" in streamed[1]


@pytest.mark.parametrize("edit", [
    pytest.param(lambda text: text.replace("},\n    {", "},\r\n    {", 1), id="crlf"),
    pytest.param(lambda text: text.replace(', "endpoint_id"', ',\r"endpoint_id"', 1), id="cr-between-tokens"),
    pytest.param(lambda text: text.replace("},\n    {", "}\n    {", 1), id="missing-comma"),
    pytest.param(lambda text: text.replace(",\n    {", ",\n     {", 1), id="five-space-indent"),
    pytest.param(lambda text: text.replace(",\n    {", ",\n  {", 1), id="two-space-indent"),
    pytest.param(lambda text: text.replace(",\n    {", ",\n\t{", 1), id="tab-indent"),
    pytest.param(lambda text: text.replace("}\n  ]", "},\n  ]", 1), id="trailing-comma"),
    pytest.param(lambda text: text.replace(",\n    {", ", {", 1), id="two-objects-one-line"),
    pytest.param(lambda text: text.replace('"host-3"', '"h\u00f6st-3"', 1), id="raw-non-ascii"),
    pytest.param(lambda text: text.replace('{"deployment_target"', '[{"deployment_target"', 1), id="not-an-object"),
    pytest.param(lambda text: text.replace('{"deployment_target"', '{}, {"deployment_target"', 1),
                 id="empty-object"),
])
def test_a_file_that_is_not_ringwards_line_layout_is_read_by_the_loop(tmp_path: Path, small_blocks: None,
                                                                       edit: Any) -> None:
    fleet = [{"deployment_target": TARGETS[i % 2], "endpoint_id": f"host-{i}", "installed_version": "1.2.3"}
             for i in range(12)]
    path = write_fleet(tmp_path / "obs.json", fleet)
    text = path.read_text(encoding="utf-8")
    edited = edit(text)
    assert edited != text
    path.write_bytes(edited.encode("utf-8"))
    columnar = outcome(path, "columnar", timedelta(hours=24))
    streamed = outcome(path, "stream", timedelta(hours=24))
    assert_same(columnar, streamed)
    if columnar[0] == "columnar":  # what the fast path took, it read as the reference formula does
        assert columnar[1][0].reconciliation_id == reference_id(json.loads(edited)["endpoints"])


@pytest.mark.parametrize("edit", [
    pytest.param(lambda text: text.replace('"endpoint_id": "host-1"', '"endpoint_id":"host-1"'), id="spacing"),
    pytest.param(lambda text: text.replace('"installed_version": "1.2.2"}', '"installed_version": "1.2.2", '
                                           '"installed_version": "1.2.3"}', 1), id="duplicate-key"),
    pytest.param(lambda text: text.replace('"endpoint_id": "host-1"', '"endpoint_id": "host-1", "os": "' + "o" * 300
                                           + '"'), id="oversized-field-it-does-not-read"),
])
def test_known_limits_of_the_fast_path(tmp_path: Path, edit: Any) -> None:
    """Known limits, as before this engine: the fast path takes the lines to be Ringward's own
    ``json.dumps(sort_keys=True)`` and validates only the fields it reads. A hand-made line with
    other spacing is read right but the id covers its bytes; with a duplicate key polars keeps the
    first value where the loop (Python's ``json``) keeps the last; a field it does not read is
    not length-checked (the loop refuses the file)."""
    fleet = [{"deployment_target": TARGETS[0], "endpoint_id": f"host-{i}", "installed_version": "1.2.2"}
             for i in range(3)]
    path = write_fleet(tmp_path / "obs.json", fleet)
    path.write_text(edit(path.read_text()))
    columnar = reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24), engine="columnar")
    assert columnar.engine == "columnar"
    streamed = outcome(path, "stream", timedelta(hours=24))
    assert streamed[0] == "refused" or streamed[1][0] != columnar.reconciliation


def test_a_line_longer_than_a_block(tmp_path: Path, small_blocks: None) -> None:
    fleet = [{"endpoint_id": f"h{i}", "deployment_target": TARGETS[0], "hostname": "n"} for i in range(20)]
    fleet[5]["hostname"] = "n" * 500  # within the model, several blocks long
    fleet[6]["notes"] = "x" * 5000  # an extra field: any length
    path = write_fleet(tmp_path / "obs.json", fleet)
    assert_same(outcome(path, "columnar", timedelta(hours=24)), outcome(path, "stream", timedelta(hours=24)))
    assert outcome(path, "columnar", timedelta(hours=24))[0] == "columnar"


def test_not_utf8_is_a_one_line_refusal(tmp_path: Path) -> None:
    path = write_fleet(tmp_path / "obs.json", [{"endpoint_id": "a", "deployment_target": TARGETS[0]}])
    path.write_bytes(path.read_bytes().replace(b'"a"', b'"a\xff"'))
    modes: tuple[engine.Engine, ...] = ("columnar", "stream")
    for mode in modes:
        with pytest.raises(InputError, match="expected UTF-8 JSON"):
            reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24), engine=mode)


def test_partition_digests_match_the_engine_when_the_fast_path_is_refused(tmp_path: Path) -> None:
    from ringward.operations.inventory.partitions import digests, plan_partitions

    fleet: list[dict[str, Any]] = [{"endpoint_id": f"h{i}", "deployment_target": TARGETS[0], "hostname": "x"}
                                   for i in range(5)]
    fleet[2]["extra"] = {"nested": [1, 2]}  # valid (extras may be anything), not the fast path
    path = write_fleet(tmp_path / "obs.json", fleet)
    plan = plan_partitions(path, 2)
    assert plan is not None
    result = reconcile_file(path, DESIRED, now=NOW, stale_after=timedelta(hours=24))
    assert result.engine == "stream"
    assert digests(path, plan.layout, DESIRED) == (result.reconciliation.reconciliation_id, result.file_sha256)
