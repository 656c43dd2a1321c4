"""Refusals of `ringward backup`: each one line with the right exit code, the target left untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringward.store import Store, open_store
from ringward.store import backup as rows
from tests.backup.helpers import dump, populate, rewrite_checksums
from tests.evidence.helpers import cli, cli_process, one_error_line


@pytest.fixture
def backup_dir(
    store: Store, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A backup of a populated store, written through the CLI."""
    populate(store)
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    result = cli(capsys, "backup", "create", str(tmp_path / "backup"))
    assert result.code == 0, result.err
    assert f"wrote {tmp_path / 'backup'}" in result.out
    return tmp_path / "backup"


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """An empty SQLite store that $RINGWARD_DATABASE_URL now names (the restore target)."""
    url = f"sqlite:///{tmp_path / 'target' / 'ringward.db'}"
    monkeypatch.setenv("RINGWARD_DATABASE_URL", url)
    with open_store(url) as opened:
        yield opened


def _assert_empty(store: Store) -> None:
    with store.reading() as conn:
        assert rows.occupied_tables(conn) == {}


def test_cli_create_check_restore(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    checked = cli(capsys, "backup", "check", str(backup_dir))
    assert checked.code == 0 and checked.out.startswith("OK: ")
    restored = cli(capsys, "backup", "restore", str(backup_dir), "--json")
    assert restored.code == 0, restored.err
    document = json.loads(restored.out)
    assert document["ok"] is True and document["chain"]["ok"] is True
    assert document["restored"]["evidence_record"] == target.head().last_id
    verified = cli(capsys, "evidence", "verify", "--no-files")
    assert verified.code == 0 and verified.out.startswith("OK: "), verified.out
    # a second restore into the now populated store is refused, and changes nothing
    before = dump(target)
    again = cli(capsys, "backup", "restore", str(backup_dir))
    one_error_line(again, 2, "target store is not empty", "evidence_record")
    assert dump(target) == before


def test_create_refuses_an_existing_directory(backup_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in backup_dir.rglob("*"))
    one_error_line(cli(capsys, "backup", "create", str(backup_dir)), 2, "already exists")
    assert sorted(p.name for p in backup_dir.rglob("*")) == before


def test_tampered_file_fails_checksums(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    path = backup_dir / "tables/approval.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"bob"', b'"eve"'))
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "tables/approval.jsonl", "sha256")
    one_error_line(cli(capsys, "backup", "check", str(backup_dir)), 1, "tables/approval.jsonl")
    _assert_empty(target)


def test_missing_file_is_refused(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    (backup_dir / "tables/kv_state.jsonl").unlink()
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "tables/kv_state.jsonl", "missing")
    _assert_empty(target)


def test_missing_checksums_is_refused(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    (backup_dir / "checksums.txt").unlink()
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "checksums.txt", "missing")
    _assert_empty(target)


def test_unlisted_file_is_refused(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    (backup_dir / "tables/extra.jsonl").write_text("{}\n")
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "tables/extra.jsonl", "not listed")
    _assert_empty(target)


def test_wrong_schema_revision_is_refused(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["schema_revision"] = "0002_connector_delivery"
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))
    rewrite_checksums(backup_dir)
    one_error_line(
        cli(capsys, "backup", "restore", str(backup_dir)), 2, "schema revision '0002_connector_delivery'", "target"
    )
    _assert_empty(target)


def test_truncated_line_rolls_the_whole_restore_back(
    backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    # the last table in foreign-key order is restored after all others: they must roll back too
    path = backup_dir / "tables/evidence_record.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    rewrite_checksums(backup_dir)
    lines = data[: len(data) - 40].count(b"\n") + 1
    one_error_line(
        cli(capsys, "backup", "restore", str(backup_dir)), 1, f"tables/evidence_record.jsonl line {lines}", "truncated"
    )
    _assert_empty(target)


def test_row_count_differing_from_the_manifest_is_refused(
    backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    path = backup_dir / "tables/kv_state.jsonl"
    path.write_bytes(b"")
    rewrite_checksums(backup_dir)
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "tables/kv_state.jsonl", "0 rows, expected 1")
    _assert_empty(target)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda row: {**row, "extra": 1}, "unexpected ['extra']"),
        (lambda row: {k: v for k, v in row.items() if k != "value"}, "missing ['value']"),
        (lambda row: {**row, "version": "1"}, "version: expected an integer"),
        (lambda row: {**row, "updated_at": "2026-12-01T09:30:15"}, "has no UTC offset"),
        (lambda row: {**row, "updated_by": None}, "updated_by: null"),
    ],
)
def test_malformed_row_is_refused(
    backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str], edit: object, fragment: str
) -> None:
    path = backup_dir / "tables/kv_state.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    path.write_text(json.dumps(edit(row)) + "\n")  # type: ignore[operator]
    rewrite_checksums(backup_dir)
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "tables/kv_state.jsonl line 1", fragment)
    _assert_empty(target)


def test_foreign_manifest_is_refused(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["schema_version"] = "ringward.backup.v0"
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))
    rewrite_checksums(backup_dir)
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "schema_version", "ringward.backup.v1")
    _assert_empty(target)


def test_missing_table_in_manifest_is_refused(
    backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["tables"] = [t for t in manifest["tables"] if t["name"] != "sla_event"]
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))
    (backup_dir / "tables/sla_event.jsonl").unlink()
    rewrite_checksums(backup_dir)
    one_error_line(cli(capsys, "backup", "restore", str(backup_dir)), 1, "missing ['sla_event']")
    _assert_empty(target)


def test_not_a_directory_and_real_process(tmp_path: Path, target: Store) -> None:
    done = cli_process("backup", "restore", str(tmp_path / "nope"))
    one_error_line(done, 2, "nope", "not found")
    _assert_empty(target)


def test_rows_the_schema_refuses_roll_back(backup_dir: Path, target: Store, capsys: pytest.CaptureFixture[str]) -> None:
    path = backup_dir / "tables/kv_state.jsonl"
    path.write_bytes(path.read_bytes() * 2)  # the same primary key twice
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    for table in manifest["tables"]:
        if table["name"] == "kv_state":
            table["rows"] = 2
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))
    rewrite_checksums(backup_dir)
    one_error_line(
        cli(capsys, "backup", "restore", str(backup_dir)), 1, "tables/kv_state.jsonl", "kv_state table refuses"
    )
    _assert_empty(target)
