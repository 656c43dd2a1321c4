"""`ringward evidence verify`: the chain and the files, and the first break of every kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from ringward.core.evidence.records import EvidenceDraft, EvidenceRecord, EvidenceSubject
from ringward.operations.evidence.bundle import write_evidence_bundle
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import Store, open_store
from tests.evidence.helpers import cli

FILES = {"result.json": b'{"valid": true}\n', "logs/run.txt": b"line 1\nline 2\n"}


def _bundle(store: Store, root: Path, n: int) -> EvidenceRecord:
    return write_evidence_bundle(
        kind="release-package-verification",
        actor="ci",
        payload={"n": n},
        files=FILES,
        subject=EvidenceSubject(release_version="1.2.3", status="passed", success=True),
        root=root,
        store=store,
    )


@pytest.fixture
def chain(cli_env: Path) -> tuple[list[EvidenceRecord], Path]:
    """Three bundled records around plain ones: ids 1..6, bundles at 2, 4, 6."""
    records = []
    with open_store() as store:
        for n in range(3):
            records.append(store.append(EvidenceDraft(kind="plain", actor="a", payload={"n": n})))
            records.append(_bundle(store, cli_env, n))
    return records, cli_env


def _break(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    result = cli(capsys, "evidence", "verify", "--json")
    assert result.code == 1, (result.out, result.err)
    doc = json.loads(result.out)
    assert doc["ok"] is False
    return doc["first_break"]  # type: ignore[no-any-return]


def test_intact_chain_and_files_verify(
    chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, "evidence", "verify")
    assert result.code == 0, result.err
    assert result.out.startswith("OK: evidence chain intact: 6 records, 3 bundles, 6 files")
    doc = json.loads(cli(capsys, "evidence", "verify", "--json").out)
    assert doc["records_checked"] == 6 and doc["head_id"] == 6 and doc["first_break"] is None


def test_tampered_evidence_file(chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str]) -> None:
    records, root = chain
    (root / records[3].bundle_dir / "logs/run.txt").write_bytes(b"line 1\nline X\n")  # type: ignore[operator]
    brk = _break(capsys)
    assert brk["record_id"] == 4 and brk["check"] == "file logs/run.txt sha256"
    assert brk["expected"] == records[3].artifacts[0].sha256 or brk["expected"] in {
        a.sha256 for a in records[3].artifacts
    }
    human = cli(capsys, "evidence", "verify")
    assert human.code == 1 and human.out.startswith(
        "BROKEN: evidence chain broken at record 4: file logs/run.txt sha256"
    )


def test_same_size_tamper_and_truncation(
    chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    records, root = chain
    (root / records[1].bundle_dir / "result.json").write_bytes(b'{"valid": tru}\n')  # type: ignore[operator]
    assert _break(capsys)["check"] == "file result.json size"


@pytest.mark.parametrize(
    ("damage", "check"),
    [
        (lambda d: os.unlink(d / "result.json"), "file result.json"),
        (lambda d: (d / "planted.sh").write_bytes(b"#!/bin/sh\n"), "unlisted file"),
        (lambda d: os.unlink(d / "checksums.txt"), "checksums.txt"),
        (lambda d: (d / "checksums.txt").write_text("0" * 64 + "  result.json\n"), "checksums.txt entries"),
        (lambda d: (d / "checksums.txt").write_text("zz  result.json\n"), "checksums.txt"),
        (lambda d: (os.unlink(d / "result.json"), os.symlink("/etc/hostname", d / "result.json")), "file result.json"),
        (lambda d: os.rename(d, d.with_name(d.name + "-moved")), "bundle directory"),
    ],
)
def test_damaged_bundles(
    chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str], damage: object, check: str
) -> None:
    records, root = chain
    damage(root / records[5].bundle_dir)  # type: ignore[operator]
    brk = _break(capsys)
    assert brk["record_id"] == 6 and str(brk["check"]).startswith(check), brk


def test_checksums_edited_consistently_with_file_still_breaks(
    chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker rewrites a file AND its checksums.txt line: the record's digest still differs."""
    import hashlib

    records, root = chain
    directory = root / records[1].bundle_dir  # type: ignore[operator]
    new = b'{"valid": false}\n'
    (directory / "result.json").write_bytes(new)
    lines = (directory / "checksums.txt").read_text().splitlines()
    lines = [f"{hashlib.sha256(new).hexdigest()}  result.json" if ln.endswith("result.json") else ln for ln in lines]
    (directory / "checksums.txt").write_text("\n".join(lines) + "\n")
    brk = _break(capsys)
    assert brk["record_id"] == 2 and brk["check"] == "checksums.txt entry result.json"


@pytest.mark.parametrize(
    ("sql", "record_id", "check"),
    [
        ("UPDATE evidence_record SET payload = '{\"n\": 9}' WHERE id = 3", 3, "payload_sha256"),
        ("UPDATE evidence_record SET actor = 'mallory' WHERE id = 3", 3, "record_hash"),
        ("UPDATE evidence_record SET success = false WHERE id = 2", 2, "record_hash"),
        ("DELETE FROM evidence_record WHERE id = 3", 4, "record id"),
        ("UPDATE evidence_record SET previous_hash = '" + "1" * 64 + "' WHERE id = 5", 5, "previous_hash"),
        ("DELETE FROM evidence_record WHERE id = 6", None, "chain head"),
    ],
)
def test_edited_database_rows_break_the_chain(
    chain: tuple[list[EvidenceRecord], Path],
    capsys: pytest.CaptureFixture[str],
    sql: str,
    record_id: int | None,
    check: str,
) -> None:
    with open_store() as store, store.writing() as conn:
        conn.execute(sa.text(sql))
    brk = _break(capsys)
    assert (brk["record_id"], brk["check"]) == (record_id, check)


def test_no_files_skips_bundle_checks(
    chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    records, root = chain
    os.unlink(root / records[1].bundle_dir / "result.json")  # type: ignore[operator]
    assert cli(capsys, "evidence", "verify", "--no-files").code == 0
    assert cli(capsys, "evidence", "verify").code == 1


def test_record_option_appends_the_result(
    chain: tuple[list[EvidenceRecord], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, "evidence", "verify", "--record", "--json")
    assert result.code == 0
    evidence_id = json.loads(result.out)["evidence_id"]
    with open_store() as store:
        record = store.get_evidence(evidence_id)
    assert record.kind == "evidence-chain-verification" and record.actor == "auditor"
    assert record.payload["records_checked"] == 6 and record.subject.success is True
    assert cli(capsys, "evidence", "verify").out.startswith("OK: evidence chain intact: 7 records")


def test_empty_store_verifies(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "evidence", "verify")
    assert result.code == 0 and "0 records" in result.out


def test_verify_operation_reports_elapsed_and_root(store: Store, tmp_path: Path) -> None:
    _bundle(store, tmp_path, 1)
    report = verify_evidence(store, root=tmp_path)
    assert report.ok and report.bundles_checked == 1 and report.evidence_root == str(tmp_path)
    assert "elapsed_s" not in report.payload() and "database" not in report.payload()


def test_parallel_verification_finds_the_same_first_break(store: Store, tmp_path: Path) -> None:
    """Segments verified by worker processes: same counts, same first break, boundaries checked."""
    for n in range(9):
        store.append(EvidenceDraft(kind="plain", actor="a", payload={"n": n}))
        _bundle(store, tmp_path, n)
    serial, parallel = verify_evidence(store, root=tmp_path), verify_evidence(store, root=tmp_path, jobs=3)
    assert serial.ok and parallel.ok
    assert (parallel.records_checked, parallel.bundles_checked, parallel.files_checked) == (18, 9, 18)
    # record 7 is the first of the second segment (6 records each): break its inbound link
    with store.writing() as conn:
        conn.execute(sa.text("UPDATE evidence_record SET previous_hash = :h WHERE id = 7"), {"h": "9" * 64})
        conn.execute(sa.text("UPDATE evidence_record SET actor = 'mallory' WHERE id = 15"))
    serial, parallel = verify_evidence(store, root=tmp_path), verify_evidence(store, root=tmp_path, jobs=3)
    assert serial.first_break == parallel.first_break
    assert parallel.first_break is not None and parallel.first_break.record_id == 7
    with store.writing() as conn:
        conn.execute(sa.text("DELETE FROM evidence_record WHERE id >= 7"))
        conn.execute(sa.text("UPDATE evidence_head SET last_id = 6"))
    brk = verify_evidence(store, root=tmp_path, jobs=3).first_break
    assert brk is not None and brk.check == "chain head"


def test_jobs_out_of_range_is_refused(store: Store) -> None:
    from ringward.core.errors import InputError

    with pytest.raises(InputError, match="--jobs"):
        verify_evidence(store, jobs=99)


def test_parallel_verification_reports_a_deleted_segment_start_like_the_serial_walk(
    store: Store, tmp_path: Path
) -> None:
    store.append_many([EvidenceDraft(kind="plain", actor="a", payload={"n": n}) for n in range(12)])
    with store.writing() as conn:
        conn.execute(sa.text("DELETE FROM evidence_record WHERE id = 7"))
    serial, parallel = verify_evidence(store, check_files=False), verify_evidence(store, check_files=False, jobs=2)
    assert serial.first_break == parallel.first_break
    assert parallel.first_break is not None and (parallel.first_break.record_id, parallel.first_break.check) == (
        8,
        "record id",
    )
