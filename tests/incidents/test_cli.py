"""`ringward incident ...` end to end in-process: exit codes 0/1/2, bad input names the field, and
breach delivery through the connector platform against a loopback Splunk HEC: sent once per
(incident, clock, level), a re-run sends nothing, a failed send is retried by the next run."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from ringward.core.evidence.query import EvidenceQuery
from ringward.store import open_store
from tests.incidents.conftest import DIGEST, HEC_TOKEN, T0, cli, connectors_config

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def _open(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code, out, err = cli(capsys, "incident", "open", "--type", "kev-match", "--severity", "critical", "--summary",
                         "KEV match CVE-2026-20001", "--link", "cve=CVE-2026-20001", "--link", f"package={DIGEST}",
                         "--dedup-key", "kev-match:CVE-2026-20001:" + DIGEST, "--at", _at(0), "--json", *extra)
    assert code == 0, err
    return str(out["incident"]["incident_id"])


def test_lifecycle_through_the_cli(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    iid = _open(capsys)
    assert _open(capsys) == iid  # the same dedup key: no-op
    code, text, _ = cli(capsys, "incident", "list", "--open")
    assert code == 0 and iid in text and "kev-match" in text
    code, out, _ = cli(capsys, "incident", "breaches", "--at", _at(4), "--json")
    assert code == 0 and [b["state"] for b in out["breaches"]] == ["at-risk"]
    code, out, _ = cli(capsys, "incident", "breaches", "--at", _at(4.01), "--json")
    assert code == 0 and [(b["clock"], b["state"]) for b in out["breaches"]] == [("first-action", "breached")]
    code, text, _ = cli(capsys, "incident", "ack", iid, "--actor", "bob", "--at", _at(5))
    assert code == 0 and text.startswith("ACKNOWLEDGED")
    code, out, _ = cli(capsys, "incident", "update", iid, "--note", "pinned", "--disclosure", "fix=2026-12-01",
                       "--at", _at(6), "--json")
    assert code == 0 and out["incident"]["disclosure_timeline"]["fix"] == "2026-12-01T00:00:00Z"
    code, out, _ = cli(capsys, "incident", "close", iid, "--resolution", "VEX not_affected", "--actor", "bob",
                       "--at", _at(7), "--json")
    assert code == 0 and out["incident"]["state"] == "closed"
    code, out, _ = cli(capsys, "incident", "show", iid, "--at", _at(8), "--json")
    assert code == 0 and {c["clock"]: c["state"] for c in out["clocks"]} == {"first-action": "breached",
                                                                             "response": "met"}
    code, text, _ = cli(capsys, "incident", "show", iid, "--at", _at(8))
    assert code == 0 and "first-action: breached" in text and "closed " in text and "VEX not_affected" in text
    assert f"packages: {DIGEST}" in text and "fix 2026-12-01T00:00:00Z" in text
    code, text, _ = cli(capsys, "incident", "list", "--open")
    assert code == 0 and text.strip() == "no incidents"


@SQLITE_ONLY
@pytest.mark.parametrize(("args", "message"), [
    (["open", "--type", "outage", "--severity", "high", "--summary", "x"], "--type: expected one of"),
    (["open", "--type", "supply-chain", "--severity", "urgent", "--summary", "x"], "--severity: expected one of"),
    (["open", "--type", "supply-chain", "--severity", "high", "--summary", " "], "--summary"),
    (["open", "--type", "supply-chain", "--severity", "high", "--summary", "x", "--link", "cve=nope"],
     "--link cve: expected CVE-YYYY-NNNN"),
    (["open", "--type", "supply-chain", "--severity", "high", "--summary", "x", "--at", "yesterday"], "--at:"),
    (["open", "--type", "supply-chain", "--severity", "high", "--summary", "x", "--disclosure-window-days", "0"],
     "--disclosure-window-days"),
    (["update", "inc-00000000000000000000", "--disclosure", "eta=2026-12-01"], "--disclosure 'eta=2026-12-01'"),
    (["ack", "inc-00000000000000000000"], "Missing option '--actor'"),
    (["breaches", "--deliver", "/nonexistent/connectors.yaml"], "connectors.yaml"),
])
def test_bad_input_exits_2_naming_the_field(cli_env: str, capsys: pytest.CaptureFixture[str], args: list[str],
                                             message: str) -> None:
    code, _, err = cli(capsys, "incident", *args)
    assert code == 2 and message in err and "Traceback" not in err


@SQLITE_ONLY
def test_refusals_exit_1(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    iid = _open(capsys)
    code, _, err = cli(capsys, "incident", "close", iid, "--resolution", "x", "--actor", "bob", "--at", _at(1))
    assert code == 1 and "acknowledge it first" in err
    code, _, err = cli(capsys, "incident", "ack", "inc-00000000000000000000", "--actor", "bob")
    assert code == 1 and "not found" in err
    assert cli(capsys, "incident", "ack", iid, "--actor", "bob", "--at", _at(1))[0] == 0
    code, _, err = cli(capsys, "incident", "ack", iid, "--actor", "carol", "--at", _at(1))
    assert code == 1 and "already acknowledged by bob" in err


def _serve_hec(server: HTTPServer, status: int = 200) -> None:
    server.clear()
    if status == 200:
        server.expect_request("/services/collector/event").respond_with_json({"text": "Success", "code": 0})
    else:
        server.expect_request("/services/collector/event").respond_with_data("nope", status=status)


def test_breach_delivery_is_idempotent_per_incident_and_clock(
    cli_env: str, tmp_path: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = connectors_config(tmp_path / "connectors.yaml", httpserver)
    iid = _open(capsys)
    _serve_hec(httpserver)
    deliver = ["incident", "breaches", "--deliver", str(config), "--json", "--actor", "sched"]

    code, out, _ = cli(capsys, *deliver, "--at", _at(3.5))  # at risk (>= 3 h of 4 h)
    assert code == 0 and [r["key"] for r in out["delivered"]] == [f"{iid}|first-action|at-risk"]
    sent = [json.loads(r.data) for r, _ in httpserver.log]
    assert len(sent) == 1 and sent[0]["event"]["event_id"] == f"incident-breach:{iid}:first-action:at-risk"
    assert all(r.headers["Authorization"] == f"Splunk {HEC_TOKEN}" for r, _ in httpserver.log)

    code, out, _ = cli(capsys, *deliver, "--at", _at(3.9))  # the same notice again: nothing sent
    assert code == 0 and out["delivered"] == [] and out["already_delivered"] == [f"{iid}|first-action|at-risk"]
    assert out["evidence_id"] is None and len(httpserver.log) == 1

    # (clearing the server's log) the breach notice fails: exit 1, not recorded, retried by the next run
    _serve_hec(httpserver, status=503)
    code, out, _ = cli(capsys, *deliver, "--at", _at(4.5))
    assert code == 1 and [f["key"] for f in out["failed"]] == [f"{iid}|first-action|breached"]
    _serve_hec(httpserver)
    code, out, _ = cli(capsys, *deliver, "--at", _at(4.6))
    assert code == 0 and [r["key"] for r in out["delivered"]] == [f"{iid}|first-action|breached"]
    assert len(httpserver.log) == 1
    code, out, _ = cli(capsys, *deliver, "--at", _at(5))
    assert code == 0 and out["delivered"] == []
    assert out["already_delivered"] == [f"{iid}|first-action|breached"]
    assert len(httpserver.log) == 1  # the log restarted with the last _serve_hec: still only the retried send

    with open_store(cli_env) as store:
        kinds = [r.kind for r in store.search_evidence(EvidenceQuery(kind="incident-breach-delivery", limit=10)).items]
        assert len(kinds) == 3  # the at-risk send, the failed send, the retried send; re-runs record nothing
        text = json.dumps([r.payload for r in store.search_evidence(EvidenceQuery(limit=100)).items])
        assert HEC_TOKEN not in text


@SQLITE_ONLY
def test_deliver_path_problems_exit_2_naming_the_path(cli_env: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [{name: x, provider: nowhere}]\n")
    for path in (tmp_path, empty, bad, tmp_path / "missing.yaml"):
        code, _, err = cli(capsys, "incident", "breaches", "--deliver", str(path))
        assert code == 2 and str(path) in err and "Traceback" not in err, (path, err)
