"""`ringward migrate reference --from DIR` against installations written from the spec
(tests/migration/reference_installation.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ringward.cli.main import run
from ringward.core.delivery.config import parse_connector_config
from ringward.store import open_store
from tests.migration.reference_installation import (
    LITERAL_SECRETS,
    approval,
    build_installation,
    clean_connector_config,
    rollout_metadata,
    write_approvals_json,
    write_approvals_sqlite,
    write_connectors,
    write_metadata_sqlite,
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)  # type: ignore[no-any-return]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    try:
        run(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return Result(code, captured.out, captured.err)


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("RINGWARD_HOME", str(home))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(home / "evidence"))
    monkeypatch.setenv("RINGWARD_ACTOR", "migrator")
    yield home


def _records(url: str) -> list[dict[str, Any]]:
    with open_store(url) as store, store.reading() as conn:
        rows = conn.execute(sa.text("SELECT id, kind, actor, payload FROM evidence_record ORDER BY id")).all()
    return [{"id": r[0], "kind": r[1], "actor": r[2], "payload": json.loads(r[3])} for r in rows]


def _approval_rows(url: str) -> dict[str, dict[str, Any]]:
    with open_store(url) as store, store.reading() as conn:
        rows = conn.execute(sa.text("SELECT approval_id, state, origin, note, imported FROM approval")).all()
    return {r[0]: {"state": r[1], "origin": r[2], "note": r[3], "imported": json.loads(r[4])} for r in rows}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _problem_lines(report: dict[str, Any]) -> list[str]:
    return [p["line"] for p in report["problems"]]


# --- the whole installation --------------------------------------------------------------------


def test_imports_every_store_keeps_ids_marks_imported_and_rerun_is_a_no_op(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    written = build_installation(project)

    result = cli(capsys, "migrate", "reference", "--from", str(project), "--json")

    report = result.json()
    # github (a CI trigger) and jira (no project key in the reference) cannot be migrated: exit 1
    assert result.code == 1, result
    assert report["exit_code"] == 1
    assert sorted(p["record"] for p in report["problems"]) == ["connectors.github", "connectors.jira"]
    jira = next(p for p in report["problems"] if p["record"] == "connectors.jira")
    assert jira["field"] == "project_key" and jira["source"] == ".cavra/connectors.json"

    # sources: every file with the digest of its bytes
    cavra = project / ".cavra"
    expected_sources = {
        ".cavra/evidence/metadata.json": ["evidence-json"],
        ".cavra/api/evidence-metadata.json": ["evidence-json"],
        ".cavra/evidence/metadata.db": ["evidence-sqlite"],
        ".cavra/api/approvals.json": ["approvals-json"],
        ".cavra/api/approvals.db": ["approvals-sqlite"],
        ".cavra/connectors.json": ["connectors"],
    }
    assert {s["path"]: s["kinds"] for s in report["sources"]} == expected_sources
    for source in report["sources"]:
        assert source["sha256"] == _sha(project / source["path"])

    records = _records(db_url)
    # 1. the import record opens the imported history, with the source digests
    opening = records[0]
    assert opening["kind"] == "reference-import" and opening["id"] == report["import_record"]["record_id"] == 1
    assert opening["payload"]["verified"] is False
    assert {f["path"]: f["sha256"] for f in opening["payload"]["source_files"]} == {
        path: _sha(project / path) for path in expected_sources
    }
    assert report["import_record"]["status"] == "recorded"

    # 2. evidence: each item once (the JSON and SQLite stores overlap), reference ids kept, marked
    metadata = [r for r in records if r["payload"].get("ringward_import")]
    unique = {json.dumps(m, sort_keys=True): m for m in written["metadata"]}
    assert len(metadata) == len(unique) == report["evidence"]["imported"] == 8
    assert report["evidence"] == {
        "found": 12,
        "imported": 8,
        "already_present": 4,
        "skipped": 0,
        "ids": [r["id"] for r in metadata],
    }
    assert {r["payload"]["session_id"] for r in metadata} == {m["session_id"] for m in written["metadata"]}
    for record in metadata:
        marker = record["payload"]["ringward_import"]
        assert marker["origin"] == "cavra" and marker["verified"] is False
        assert marker["import_id"] == report["import_record"]["import_id"]
        assert marker["source_sha256"] == _sha(project / marker["source"])
        item = {k: v for k, v in record["payload"].items() if k != "ringward_import"}
        assert json.dumps(item, sort_keys=True) in unique
        assert record["kind"] == item.get("metadata_kind", "session-evidence")
        assert record["actor"] == "migrator"

    # 3. approvals: reference ids, history only (origin import), record kept verbatim for export
    approvals = _approval_rows(db_url)
    assert set(approvals) == {a["approval_id"] for a in written["approvals"]}
    assert report["approvals"]["imported"] == 5 and report["approvals"]["already_present"] == 1
    for item in written["approvals"]:
        row = approvals[item["approval_id"]]
        assert row["origin"] == "import" and row["imported"] == item
        assert "not verified by Ringward" in row["note"]
    assert approvals[written["approvals"][4]["approval_id"]]["note"].endswith("(break_glass)")

    # 4. connectors: a valid Ringward file, secrets as references, none copied anywhere
    output = env / "connectors.yaml"
    assert report["connectors"]["status"] == "written" and report["connectors"]["output"] == str(output)
    config = parse_connector_config(output.read_bytes(), source=str(output))
    by_name = {d.name: d for d in config.providers}
    assert set(by_name) == {"splunk", "datadog", "slack", "servicenow", "webhook"}
    assert str(by_name["splunk"].token) == "env:SPLUNK_HEC_TOKEN"
    assert str(by_name["datadog"].api_key) == "env:RINGWARD_DATADOG_API_KEY"
    assert str(by_name["slack"].url) == "env:RINGWARD_SLACK_URL"
    assert str(by_name["servicenow"].url) == "env:SN_URL"
    assert by_name["splunk"].headers == {
        "x-splunk-request-channel": "not-a-secret",
        "x-auth-token": "env:RINGWARD_SPLUNK_HEADER_X_AUTH_TOKEN",
    }
    assert by_name["webhook"].enabled is False
    literal = {(r["destination"], r["field"]) for r in report["connectors"]["references"] if r["literal_in_source"]}
    assert literal == {
        ("datadog", "api_key"),
        ("slack", "url"),
        ("servicenow", "authorization"),
        ("splunk", "header_x-auth-token"),
    }
    with open_store(db_url) as store, store.reading() as conn:
        everything = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM evidence_record")) for v in row)
    for secret in LITERAL_SECRETS:
        assert secret not in output.read_text()
        assert secret not in result.out
        assert secret not in everything
    assert oct(output.stat().st_mode & 0o777) == "0o600"
    assert records[-1]["kind"] == "reference-connectors-import"
    assert records[-1]["payload"]["output"]["sha256"] == _sha(output)

    # the chain still verifies
    verified = cli(capsys, "evidence", "verify", "--no-files", "--json")
    assert verified.code == 0 and json.loads(verified.out)["ok"] is True

    # re-running is a no-op (the same problems are reported again, nothing is added)
    before = len(_records(db_url))
    again = cli(capsys, "migrate", "reference", "--from", str(cavra), "--json").json()
    assert again["import_record"] == {"import_id": report["import_record"]["import_id"], "status": "already-recorded",
                                      "record_id": None}
    assert again["evidence"]["imported"] == 0 and again["evidence"]["already_present"] == 12
    assert again["approvals"]["imported"] == 0 and again["approvals"]["already_present"] == 6
    assert again["connectors"]["status"] == "unchanged"
    assert len(_records(db_url)) == before
    assert len(_approval_rows(db_url)) == 5


def test_clean_installation_exits_0_and_export_gives_the_reference_items_back(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    written = build_installation(project, connectors=clean_connector_config())

    result = cli(capsys, "migrate", "reference", "--from", str(project))

    assert result.code == 0, result
    assert "evidence items: 12 found, imported 8, already present 4, skipped 0" in result.out
    assert "approvals: 6 found, imported 5, already present 1, skipped 0" in result.out
    assert "uses TEAMS_WEBHOOK_URL for teams.url" in result.out
    assert "skipped:" not in result.out

    exported = tmp_path / "export.json"
    assert cli(capsys, "evidence", "export", str(exported)).code == 0
    items = {i["session_id"]: i for i in json.loads(exported.read_text())["items"]}
    for item in written["metadata"]:
        if item["session_id"] != "session-0000":
            assert items[item["session_id"]] == item  # the marker is dropped on export
    approvals_out = tmp_path / "approvals.json"
    assert cli(capsys, "approval", "export", str(approvals_out)).code == 0
    exported_ids = {i["approval_id"] for i in json.loads(approvals_out.read_text())["items"]}
    assert exported_ids == {a["approval_id"] for a in written["approvals"]}


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "migrate", "reference", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "0 everything imported" in text
    assert "1 some records were malformed and skipped" in text
    assert "2 unusable input" in text


# --- malformed records: reported by index, skipped whole ---------------------------------------


def test_malformed_records_are_reported_by_file_record_and_field_and_skipped_whole(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    cavra = project / ".cavra"
    good = rollout_metadata(0)
    # written in this order (the reference sorts by session_id; indexes here are the file's)
    _write_items(
        cavra / "evidence" / "metadata.json",
        [
            good,
            {**rollout_metadata(1), "created_at": "yesterday", "blocked_count": -1},
            {**rollout_metadata(2), "session_id": ""},
            {**rollout_metadata(3), "decision_count": True},
            {**rollout_metadata(4), "metadata_kind": "has spaces"},
            {"session_id": "zz-not-an-envelope", "ringward_import": {"verified": True}},
        ],
    )
    ok_approval = approval("approved", n=0)
    bad_state = {**approval("pending", n=1), "state": "rejected-by-bot"}
    bad_binding = approval("approved", n=2)
    bad_binding["decision"] = {**bad_binding["decision"], "decision_id": "someone-else:decision"}
    naive_time = {**approval("pending", n=3), "requested_at": "2026-11-02T09:30:00"}
    bad_glass = {**approval("break_glass", n=4), "break_glass": False}
    write_approvals_json(cavra / "api" / "approvals.json", [ok_approval, bad_state, bad_binding, naive_time, "x"])
    # SQLite rows: a column that disagrees with its payload, and a payload that is not JSON
    db = write_approvals_sqlite(cavra / "api" / "approvals.db", [bad_glass, approval("denied", n=5)])
    conn = sqlite3.connect(db)
    denied_id = approval("denied", n=5)["approval_id"]
    conn.execute("UPDATE approvals SET state = 'approved' WHERE approval_id = ?", (denied_id,))
    conn.execute("INSERT INTO approvals VALUES ('apr_broken', 'd', NULL, 'pending', 'g', NULL, 't', 't', NULL, NULL, "
                 "NULL, 0, '{not json')")
    conn.commit()
    conn.close()

    result = cli(capsys, "migrate", "reference", "--from", str(project), "--json")

    assert result.code == 1, result
    report = result.json()
    lines = _problem_lines(report)
    meta = ".cavra/evidence/metadata.json"
    appr = ".cavra/api/approvals.json"
    adb = ".cavra/api/approvals.db"
    expected_fragments = [
        f"{meta} items[1].created_at: expected an ISO 8601 time with a UTC offset, or null, found 'yesterday'",
        f"{meta} items[1].blocked_count: expected an integer >= 0, found -1",
        f"{meta} items[2].session_id: expected a non-empty string",
        f"{meta} items[3].decision_count: expected an integer >= 0, found True",
        f"{meta} items[4].metadata_kind: expected a kind name",
        f"{meta} items[5].ringward_import: expected no such field",
        f"{appr} items[1].state: expected one of pending, approved, denied, expired, break_glass, "
        "found 'rejected-by-bot'",
        f"{appr} items[2].decision.decision_id: expected the record's decision_id 'rpr_2:decision', "
        "found 'someone-else:decision'",
        f"{appr} items[3].requested_at: expected an ISO 8601 time with a UTC offset, found '2026-11-02T09:30:00'",
        f"{appr} items[4]: expected an object, found str",
        f"{adb} approvals[rowid=1].break_glass: expected true exactly when state is break_glass",
        f"{adb} approvals[rowid=2].state: expected the payload's value 'denied' (column and payload disagree), "
        "found 'approved'",
        f"{adb} approvals[rowid=3].payload: expected strict JSON of one object",
    ]
    for fragment in expected_fragments:
        assert any(line.startswith(fragment) for line in lines), (fragment, lines)
    assert len(lines) == len(expected_fragments)
    by_line = {p["line"]: p for p in report["problems"]}
    first = by_line[next(line for line in lines if "items[1].created_at" in line)]
    assert (first["source"], first["record"], first["index"], first["field"]) == (meta, "items[1]", 1, "created_at")

    assert report["evidence"] == {"found": 6, "imported": 1, "already_present": 0, "skipped": 5,
                                  "ids": report["evidence"]["ids"]}
    assert report["approvals"]["found"] == 8 and report["approvals"]["imported"] == 1
    assert report["approvals"]["skipped"] == 7

    # nothing of a skipped record reached the store (never half-imported)
    records = _records(db_url)
    sessions = {r["payload"].get("session_id") for r in records if r["payload"].get("ringward_import")}
    assert sessions == {good["session_id"]}
    assert set(_approval_rows(db_url)) == {ok_approval["approval_id"]}
    # the import record names what was skipped
    assert records[0]["payload"]["problems"] == lines


def _write_items(path: Path, items: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"items": items}, indent=2, sort_keys=True))


def test_file_level_problems_skip_that_file_and_import_the_rest(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    cavra = project / ".cavra"
    (cavra / "evidence").mkdir(parents=True)
    (cavra / "evidence" / "metadata.json").write_text('{"items": [1, 2,]}')
    write_approvals_json(cavra / "api" / "approvals.json", [approval("pending", n=9)])
    # a SQLite store with a rollback journal beside it: a writer is mid-transaction
    busy = write_metadata_sqlite(cavra / "evidence" / "metadata.db", [rollout_metadata(0)])
    busy.with_name("metadata.db-journal").write_bytes(b"\x00" * 512)
    # a SQLite store missing a column of the reference schema
    odd = sqlite3.connect(cavra / "old.sqlite")
    odd.execute("CREATE TABLE evidence_metadata (session_id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
    odd.commit()
    odd.close()
    # a .db that is not SQLite, and a SQLite file that is some other database: ignored, said so
    (cavra / "cache.db").write_bytes(b"not sqlite at all")
    other = sqlite3.connect(cavra / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    (cavra / "connectors.yaml").write_text("connectors: [unterminated")
    # a store that is a symbolic link is not followed (the digest must be of the file named)
    elsewhere = write_approvals_json(tmp_path / "elsewhere.json", [approval("approved", n=8)])
    (cavra / "api" / "evidence-metadata.json").symlink_to(elsewhere)

    result = cli(capsys, "migrate", "reference", "--from", str(project), "--json")

    assert result.code == 1, result
    report = result.json()
    lines = _problem_lines(report)
    assert any(line.startswith(".cavra/evidence/metadata.json: expected a reference JSON store") for line in lines)
    assert any(
        line.startswith(".cavra/evidence/metadata.db: expected a database at rest") and "metadata.db-journal" in line
        for line in lines
    )
    assert any(line.startswith(".cavra/old.sqlite: expected table evidence_metadata with the reference's columns")
               and "no column created_at, signer" in line for line in lines)
    assert any(line.startswith(".cavra/connectors.yaml: expected a reference connector file") and "YAML" in line
               for line in lines)
    assert any(line.startswith(".cavra/api/evidence-metadata.json: expected a readable regular file, found ")
               and "symbolic link" in line for line in lines)
    assert len(lines) == 5, lines
    assert sorted(report["ignored"]) == [
        ".cavra/cache.db: not a SQLite database",
        ".cavra/other.db: no evidence_metadata or approvals table",
    ]
    assert report["approvals"]["imported"] == 1
    assert report["connectors"]["status"] == "none"
    assert not (env / "connectors.yaml").exists()


# --- unusable input: exit 2, one line -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p / "missing", "directory not found"),
        (lambda p: _file(p / "a-file"), "not a directory"),
        (lambda p: _dir(p / "plain"), "not a reference installation (expected a .cavra/ directory in it"),
        (lambda p: _dir(p / "empty" / ".cavra").parent, "not a reference installation (.cavra/ holds no evidence"),
        (lambda p: _loop(p / "loop"), "symbolic link loop"),
    ],
    ids=["missing", "file", "no-cavra", "empty-cavra", "symlink-loop"],
)
def test_unusable_input_is_exit_2_with_one_line(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, fragment: str
) -> None:
    target = make(tmp_path)
    result = cli(capsys, "migrate", "reference", "--from", str(target))
    assert result.code == 2, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --from"), result.err
    assert fragment in lines[0], lines[0]
    assert _records(db_url) == []


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _loop(path: Path) -> Path:
    os.symlink(path, path)
    return path


def test_connectors_output_that_cannot_be_written_is_exit_2(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    build_installation(project, connectors=clean_connector_config())
    blocker = _file(tmp_path / "blocker")
    result = cli(capsys, "migrate", "reference", "--from", str(project), "--connectors-output", str(blocker / "c.yaml"))
    assert result.code == 2 and "--connectors-output" in result.err and "not a directory" in result.err


# --- dry run, existing output, interplay with `evidence import` ---------------------------------


def test_dry_run_changes_nothing_and_predicts_the_import(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    build_installation(project, connectors=clean_connector_config())

    dry = cli(capsys, "migrate", "reference", "--from", str(project), "--dry-run", "--json")

    assert dry.code == 0, dry
    planned = dry.json()
    assert planned["dry_run"] is True
    assert planned["import_record"]["status"] == "would-record"
    assert (planned["evidence"]["imported"], planned["evidence"]["already_present"]) == (8, 4)
    assert (planned["approvals"]["imported"], planned["approvals"]["already_present"]) == (5, 1)
    assert planned["connectors"]["status"] == "would-write"
    assert _records(db_url) == [] and _approval_rows(db_url) == {}
    assert not (env / "connectors.yaml").exists()

    real = cli(capsys, "migrate", "reference", "--from", str(project), "--json").json()
    assert real["evidence"]["imported"] == 8 and real["approvals"]["imported"] == 5

    after = cli(capsys, "migrate", "reference", "--from", str(project), "--dry-run").out
    assert "import record" in after and "already-recorded" in after
    assert "evidence items: 12 found, would import 0, already present 12" in after
    assert "connectors: .cavra/connectors.json" in after and ": unchanged;" in after


def test_an_existing_different_connectors_file_is_never_overwritten(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    build_installation(project, connectors=clean_connector_config())
    mine = tmp_path / "mine.yaml"
    mine.write_text("# my own\n")

    result = cli(capsys, "migrate", "reference", "--from", str(project), "--connectors-output", str(mine), "--json")

    assert result.code == 1
    report = result.json()
    assert report["connectors"]["status"] == "exists-differs"
    assert _problem_lines(report) == [
        f"{mine}: expected no file there, or the same migrated connectors.yaml (a re-run), found a different file "
        "(left unchanged; edit it by hand or pass --connectors-output elsewhere)"
    ]
    assert mine.read_text() == "# my own\n"
    assert report["evidence"]["imported"] == 8  # everything else still imported


def test_items_already_imported_by_evidence_import_are_not_duplicated(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    build_installation(project, connectors=clean_connector_config())
    first = cli(capsys, "evidence", "import", str(project / ".cavra" / "evidence" / "metadata.json"), "--json")
    assert first.code == 0 and json.loads(first.out)["imported"] == 6

    report = cli(capsys, "migrate", "reference", "--from", str(project), "--json").json()

    assert report["evidence"]["imported"] == 2  # the two items only the SQLite / API stores hold
    sessions = [r["payload"]["session_id"] for r in _records(db_url) if "session_id" in r["payload"]]
    assert len(sessions) == len(set(sessions)) == 8


def test_yaml_connector_file_and_bare_provider_map(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    write_approvals_json(project / ".cavra" / "api" / "approvals.json", [approval("pending", n=1)])
    write_connectors(
        project,
        {
            "teams": {"url": "https://example.webhook.office.com/webhookb2/abc/IncomingWebhook/secret-path"},
            "linux": {"url": "https://fleet.example.com/hook?token=in-clear-token", "api_key_env": "FLEET_KEY"},
            "intune": {"url": "http://intune-relay.example.com/cavra"},
            "splunk": "not an object",
        },
        yaml_format=True,
    )

    result = cli(capsys, "migrate", "reference", "--from", str(project), "--json")

    report = result.json()
    assert result.code == 1
    assert report["connectors"]["destinations"] == ["teams", "linux"]
    lines = _problem_lines(report)
    assert lines == [
        ".cavra/connectors.yaml intune.url: expected an https URL (not an https URL (plain http is allowed only for "
        "loopback hosts)), found 'http://intune-relay.example.com/cavra'",
        ".cavra/connectors.yaml splunk: expected an object (connector <p> config must be an object), found str",
    ]
    text = (env / "connectors.yaml").read_text()
    assert "secret-path" not in text and "in-clear-token" not in text
    assert "url: env:RINGWARD_TEAMS_URL" in text and "url: env:RINGWARD_LINUX_URL" in text
    assert "api_key: env:FLEET_KEY" in text


# --- two processes at once ----------------------------------------------------------------------


def test_two_concurrent_runs_import_everything_exactly_once(db_url: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    build_installation(project, evidence=40, approvals=25, connectors=clean_connector_config())
    open_store(db_url).close()  # migrated up front: the race under test is the import
    environment = {
        **os.environ,
        "RINGWARD_HOME": str(tmp_path / "home"),
        "RINGWARD_DATABASE_URL": db_url,
        "RINGWARD_ACTOR": "migrator",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ringward", "migrate", "reference", "--from", str(project), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    reports = [json.loads(out) for out, _ in outputs]

    unique_items = 40 + 3 + 1  # rollouts, execution, delivery, session 0; plus the API store's session 1
    assert sum(r["evidence"]["imported"] for r in reports) == unique_items
    assert sum(r["approvals"]["imported"] for r in reports) == 25
    assert sorted(r["import_record"]["status"] for r in reports) == ["already-recorded", "recorded"]
    assert sorted(r["connectors"]["status"] for r in reports) == ["unchanged", "written"]
    records = _records(db_url)
    kinds = [r["kind"] for r in records]
    assert kinds.count("reference-import") == 1
    assert kinds.count("reference-connectors-import") == 1
    sessions = [r["payload"]["session_id"] for r in records if r["payload"].get("ringward_import")]
    assert len(sessions) == len(set(sessions)) == unique_items
    assert len(_approval_rows(db_url)) == 25
    with open_store(db_url) as store:
        from ringward.operations.evidence.evidence_ops import verify_evidence

        assert verify_evidence(store, check_files=False).ok


def test_an_item_larger_than_a_record_may_hold_is_reported_not_truncated(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    huge = {**rollout_metadata(1), "notes": "x" * (5 * 1024 * 1024)}
    _write_items(project / ".cavra" / "evidence" / "metadata.json", [rollout_metadata(0), huge])

    result = cli(capsys, "migrate", "reference", "--from", str(project), "--json")

    assert result.code == 1
    report = result.json()
    (line,) = _problem_lines(report)
    assert line.startswith(".cavra/evidence/metadata.json items[1]: expected an importable record, found ")
    assert "bytes, expected at most" in line and len(line) < 400
    assert report["evidence"]["imported"] == 1 and report["evidence"]["skipped"] == 1


def test_an_imported_approved_approval_never_authorises_an_execution(
    env: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    from ringward.core.errors import RingwardError
    from ringward.operations.approvals.approval_ops import consume_approval

    project = tmp_path / "project"
    item = approval("approved", n=3)
    write_approvals_json(project / ".cavra" / "api" / "approvals.json", [item])
    assert cli(capsys, "migrate", "reference", "--from", str(project)).code == 0

    with open_store(db_url) as store:
        imported = store.approvals.get(item["approval_id"])
        assert imported.origin == "import" and imported.state.value == "approved"
        with pytest.raises(RingwardError) as refused:
            consume_approval(
                store,
                imported.approval_id,
                action=imported.action,
                subject_digest=imported.subject_digest,
                target=imported.target,
                actor="executor",
                now=imported.created_at + timedelta(minutes=40),  # inside its validity window
            )
        # AP6: an imported decision carries no approver recorded in Ringward
        assert refused.value.code == "approval-state"
        assert "0 of 1 required approvals recorded in Ringward" in refused.value.message
        assert store.approvals.get(item["approval_id"]).consumed_at is None
