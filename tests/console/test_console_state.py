"""The console's state assembly and rendering, on stores populated through the real operations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ringward.core.errors import InputError
from ringward.operations.common import console
from ringward.operations.common.console import (
    OVERVIEW_KEY,
    PAGES,
    gather_console,
    overview_markdown,
    page_markdown,
    page_table,
)
from ringward.store import Store, open_store
from tests.connectors.fault_server import FaultServer
from tests.console.populate import NOW, populate, reconciliation, sla_cycle


@pytest.fixture
def store(ringward_home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The configured store of a fresh home, once per backend (release verification records are
    written through the configured store too)."""
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    opened = open_store()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def populated(store: Store, fault_server: FaultServer) -> Store:
    populate(store, fault_server)
    return store


def test_empty_store_says_nothing_yet_on_every_page(store: Store) -> None:
    state = gather_console(store, now=NOW)
    assert [p.name for p in state.pages] == list(PAGES)
    assert [p.key for p in state.pages] == [key for key, _ in PAGES.values()]
    for page in state.pages:
        assert page.level == "empty", page
        assert page.summary.startswith("Nothing yet"), page.summary
        assert "Nothing yet" in page_markdown(page, generated_at=state.generated_at)
        assert page_table(page) == [{"status": "empty", "summary": page.summary}]
    assert state.unavailable() == []
    overview = overview_markdown(state)
    assert overview.startswith("# Ringward overview — OK")
    for key, title in PAGES.values():
        assert f"[{title}](/artifacts/key/{key})" in overview


def test_artifact_keys_are_valid_prefect_keys() -> None:
    import re

    for key in [*(k for k, _ in PAGES.values()), OVERVIEW_KEY, *(f"{k}-table" for k, _ in PAGES.values())]:
        assert re.fullmatch(r"[a-z0-9-]+", key), key


def test_populated_store(populated: Store) -> None:
    state = gather_console(populated, now=NOW)
    assert state.unavailable() == []

    releases = state.page("releases")
    by_version = {r["version"]: r for r in releases.rows}
    assert by_version["1.4.1"]["status"] == "VALID"  # the newer verification wins
    assert by_version["1.4.2"]["status"] == "INVALID"
    assert by_version["1.4.2"]["first_error"] == "signature-invalid: release.sig | does not verify"
    assert releases.level == "attention" and "2 package(s): 1 valid, 1 invalid" in releases.summary

    channels = state.page("channels")
    (stable,) = channels.rows
    assert stable["channel"] == "stable" and stable["held"] == "HELD"
    assert "by security" in str(stable["hold"]) and "KEV match" in str(stable["hold"])
    assert channels.level == "attention"

    approvals = state.page("approvals")
    assert [r["target"] for r in approvals.rows] == ["channel:stable"]  # the expired one is not pending
    assert approvals.rows[0]["votes"] == "0/1" and approvals.summary == "1 approval(s) pending."

    rollouts = state.page("rollouts")
    assert [(r["ring"], r["rollout_id"]) for r in rollouts.rows] == [("broad", "ro-broad-1"), ("pilot", "ro-pilot-1")]
    markdown = page_markdown(rollouts, generated_at=state.generated_at)
    assert "## Ring broad" in markdown and "## Ring pilot" in markdown
    assert markdown.index("ro-broad-1") < markdown.index("## Ring pilot") < markdown.index("ro-pilot-1")

    fleet = {r["channel"]: r for r in state.page("fleet").rows}
    assert fleet["stable"]["drift_status"] == "aligned"  # the latest reconciliation per channel
    assert fleet["beta"]["drift_status"] == "drifted" and fleet["beta"]["drifted"] == 2
    assert "1 aligned, 1 drifted" in state.page("fleet").summary

    (escalation,) = state.page("escalations").rows
    assert (escalation["owner"], escalation["group_key"], escalation["items"]) == ("team-a", "g1", 2)

    (incident,) = state.page("incidents").rows
    assert incident["severity"] == "critical" and "first-action breached" in str(incident["clocks"])
    assert "1 with a clock breached" in state.page("incidents").summary

    deliveries = state.page("deliveries")
    rows = {r["destination"]: r for r in deliveries.rows}
    assert rows["siem-good"]["ok"] == 1 and rows["siem-bad"]["failed"] == 1
    assert "HTTP 401" in str(rows["siem-bad"]["last_error"])
    assert deliveries.level == "attention"

    evidence = state.page("evidence")
    items = {r["item"]: r for r in evidence.rows}
    assert set(items) == {"chain head", "last verification", "last verified head"}
    assert str(items["last verification"]["detail"]).startswith("INTACT through record")
    assert evidence.level == "ok" and "1 record(s) since" in evidence.summary  # the verification record itself

    overview = overview_markdown(state, ui_url="http://127.0.0.1:4200/")
    assert overview.startswith("# Ringward overview — ATTENTION")
    assert "[Channels](http://127.0.0.1:4200/artifacts/key/console-channels)" in overview
    assert "Needs a look:" in overview and "Rollouts by ring" not in overview.split("Needs a look:")[1]


def test_markdown_escapes_table_cells(populated: Store) -> None:
    state = gather_console(populated, now=NOW)
    markdown = page_markdown(state.page("releases"), generated_at=state.generated_at)
    assert "release.sig \\| does not verify" in markdown
    channel_md = page_markdown(state.page("channels"), generated_at=state.generated_at)
    assert "KEV match \\| CVE-2026-0001" in channel_md
    table = page_table(state.page("channels"))
    assert table[0]["held"] == "HELD" and table[0]["current"] == ""  # never promoted: empty cell, not "None"


def test_row_limit_reports_what_it_left_out(populated: Store) -> None:
    state = gather_console(populated, now=NOW, limit=1)
    releases = state.page("releases")
    assert len(releases.rows) == 1 and releases.omitted == 1
    assert "1 more not listed (row limit)." in page_markdown(releases, generated_at=NOW)
    assert "2 package(s)" in releases.summary  # the summary counts them all


def test_scan_cap_is_said_on_the_page(store: Store) -> None:
    for channel in ("a", "b", "c"):
        reconciliation(store, channel, "aligned", 0)
    fleet = gather_console(store, now=NOW, scan_records=2).page("fleet")
    assert {r["channel"] for r in fleet.rows} == {"c", "b"}
    assert fleet.notes == ("Only the newest 2 reconciliation records were read.",)


def test_sla_cycle_with_nothing_open_is_ok(store: Store) -> None:
    sla_cycle(store, "fleet", {"team-a": [{"group_key": "g1", "state": "open", "alerts": []}]})
    sla_cycle(store, "fleet", {})  # the latest cycle of the scope has nothing open
    page = gather_console(store, now=NOW).page("escalations")
    assert page.level == "ok" and page.rows == () and page.summary.startswith("No open escalations")


def test_never_verified_chain_needs_attention(store: Store) -> None:
    sla_cycle(store, "fleet", {})
    page = gather_console(store, now=NOW).page("evidence")
    assert page.level == "attention" and "never verified" in page.summary


def test_broken_chain_is_reported(store: Store) -> None:
    from ringward.core.evidence.records import ChainBreak, ChainReport
    from ringward.operations.evidence.evidence_ops import record_verification

    sla_cycle(store, "fleet", {})
    broken = ChainReport(ok=False, records_checked=1, bundles_checked=0, files_checked=0, head_id=1, head_hash="0" * 64,
                         first_break=ChainBreak(record_id=1, check="record_hash", expected="aa", found="bb"))
    record_verification(store, broken, actor="auditor")
    page = gather_console(store, now=NOW).page("evidence")
    assert page.level == "attention" and page.summary.startswith("BROKEN")
    detail = {r["item"]: r for r in page.rows}["last verification"]["detail"]
    assert detail == "BROKEN at record 1: record_hash expected aa, found bb"


def test_a_failing_read_makes_only_its_page_unavailable(store: Store) -> None:
    """A stored incident that no longer parses: the incidents page says so, the others still render."""
    import json

    import sqlalchemy as sa

    from ringward.core.incidents.record import IncidentSeverity, IncidentType
    from ringward.operations.incidents.incident_ops import open_incident
    from ringward.store.tables import kv_state_table

    opened = open_incident(store, type=IncidentType.KEV_MATCH, severity=IncidentSeverity.HIGH, summary="x",
                           actor="ringward-kev", now=NOW)
    with store.writing() as conn:
        conn.execute(sa.update(kv_state_table)
                     .where(kv_state_table.c.namespace == "incidents.records",
                            kv_state_table.c.key == opened["incident"]["incident_id"])
                     .values(value=json.dumps({"schema_version": "ringward.incident.v1"})))
    state = gather_console(store, now=NOW)
    assert state.unavailable() == ["incidents"]
    summary = state.page("incidents").summary
    incident_id = opened["incident"]["incident_id"]
    assert summary.startswith(f"Unavailable: stored incident {incident_id} is not a valid"), summary
    assert state.page("evidence").level == "attention"  # the open's record is there, never verified
    overview = overview_markdown(state)
    assert "| UNAVAILABLE |" in overview and "Needs a look: " in overview and "Open incidents" in overview


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"now": datetime(2026, 12, 6, 9, 0)}, "now: expected a time with a UTC offset"),
    ({"limit": 0}, "limit: expected 1..500, found 0"),
    ({"limit": 501}, "limit: expected 1..500, found 501"),
    ({"scan_records": 0}, "scan_records: expected >= 1, found 0"),
])
def test_bad_parameters_are_refused(store: Store, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"now": NOW, **kwargs}
    with pytest.raises(InputError) as caught:
        gather_console(store, **arguments)  # type: ignore[arg-type]
    assert caught.value.message == message


def test_pending_approval_past_expiry_between_refreshes(store: Store) -> None:
    from ringward.operations.approvals.approval_ops import request_approval
    from tests.console.populate import DIGEST

    request_approval(store, action="channel.promote", subject_digest=DIGEST, target="channel:stable",
                     requester="alice", now=NOW, expires_in=timedelta(hours=1))
    assert gather_console(store, now=NOW).page("approvals").level == "attention"
    assert gather_console(store, now=NOW + timedelta(hours=2)).page("approvals").level == "empty"


def test_module_imports_no_prefect() -> None:
    assert "prefect" not in Path(console.__file__).read_text()
