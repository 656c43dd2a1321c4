"""`--with-bundles`: evidence bundles travel with the backup, confined to the evidence root."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from ringward.core.evidence.records import EvidenceSubject
from ringward.operations.evidence.bundle import write_evidence_bundle
from ringward.store import Store, open_store
from ringward.store import backup as rows
from tests.backup.helpers import T0, populate, rewrite_checksums
from tests.evidence.helpers import cli, one_error_line


def _bundles(store: Store, root: Path) -> list[str]:
    out = []
    for n, files in enumerate([{"report.json": b'{"ok":true}\n'}, {"a.txt": b"a", "sub/b.bin": bytes(range(256))}]):
        record = write_evidence_bundle(
            kind="release-verification",
            actor="ci",
            payload={"n": n},
            files=files,
            subject=EvidenceSubject(release_version="1.4.2"),
            root=root,
            store=store,
            now=T0 + timedelta(minutes=n),
        )
        assert record.bundle_dir is not None
        out.append(record.bundle_dir)
    return out


@pytest.fixture
def source(store: Store, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A populated store with two bundles under <tmp>/source-evidence; the env names it."""
    root = tmp_path / "source-evidence"
    populate(store)
    dirs = _bundles(store, root)
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("RINGWARD_EVIDENCE_ROOT", str(root))
    return root, dirs


def _target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    url = f"sqlite:///{tmp_path / 'target' / 'ringward.db'}"
    monkeypatch.setenv("RINGWARD_DATABASE_URL", url)
    return open_store(url)


def _empty(store: Store) -> bool:
    with store.reading() as conn:
        return rows.occupied_tables(conn) == {}


def test_bundles_round_trip(
    source: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root, dirs = source
    created = cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles", "--json")
    assert created.code == 0, created.err
    manifest = json.loads(created.out)
    assert manifest["bundles"] == {"directories": sorted(dirs), "files": 1 + 2 + 2}  # + each checksums.txt
    for d in dirs:
        assert (tmp_path / "backup" / "bundles" / d / "checksums.txt").is_file()
    with _target(tmp_path, monkeypatch) as target:
        new_root = tmp_path / "restored-evidence"
        restored = cli(
            capsys, "backup", "restore", str(tmp_path / "backup"), "--evidence-root", str(new_root), "--json"
        )
        assert restored.code == 0, restored.err
        report = json.loads(restored.out)["chain"]
        assert report["ok"] is True and report["bundles_checked"] == 2 and report["files_checked"] == 3
        for d in dirs:
            for path in (root / d).rglob("*"):
                if path.is_file():
                    assert (new_root / d / path.relative_to(root / d)).read_bytes() == path.read_bytes()
        assert [p.name for p in new_root.iterdir() if p.name.startswith(".ringward-restore-")] == []
        assert target.head().last_id > 0


def test_restore_refuses_an_evidence_root_that_holds_a_bundle(
    source: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root, dirs = source
    assert cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles").code == 0
    with _target(tmp_path, monkeypatch) as target:
        # the source root still holds the bundles: restoring into it would overwrite them
        done = cli(capsys, "backup", "restore", str(tmp_path / "backup"), "--evidence-root", str(root))
        one_error_line(done, 2, dirs[0], "already holds this bundle")
        assert _empty(target)
        assert [p.name for p in root.iterdir() if p.name.startswith(".ringward-restore-")] == []


def test_failed_database_restore_leaves_no_bundle(
    source: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles").code == 0
    path = tmp_path / "backup" / "tables/evidence_record.jsonl"
    path.write_bytes(path.read_bytes()[:-10])
    rewrite_checksums(tmp_path / "backup")
    with _target(tmp_path, monkeypatch) as target:
        new_root = tmp_path / "restored-evidence"
        done = cli(capsys, "backup", "restore", str(tmp_path / "backup"), "--evidence-root", str(new_root))
        one_error_line(done, 1, "evidence_record.jsonl", "truncated")
        assert _empty(target)
        assert list(new_root.iterdir()) == []


def test_missing_bundle_fails_the_backup(
    source: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, dirs = source
    os.rename(root / dirs[1], tmp_path / "moved")
    done = cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles")
    one_error_line(done, 1, dirs[1], "not found", "without --with-bundles")
    assert not (tmp_path / "backup").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".backup")] == []


def test_link_inside_a_bundle_fails_the_backup(
    source: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, dirs = source
    (tmp_path / "secret").write_text("outside the root")
    os.symlink(tmp_path / "secret", root / dirs[0] / "leak.txt")
    done = cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles")
    one_error_line(done, 1, "leak.txt", "not a regular file")
    assert not (tmp_path / "backup").exists()


def test_tampered_bundle_file_fails_checksums(
    source: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, dirs = source
    assert cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles").code == 0
    (tmp_path / "backup" / "bundles" / dirs[0] / "report.json").write_bytes(b'{"ok":false}\n')
    with _target(tmp_path, monkeypatch) as target:
        done = cli(capsys, "backup", "restore", str(tmp_path / "backup"), "--evidence-root", str(tmp_path / "new"))
        one_error_line(done, 1, "report.json", "sha256")
        assert _empty(target)


def test_stray_file_under_bundles_is_refused(
    source: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "backup", "create", str(tmp_path / "backup"), "--with-bundles").code == 0
    (tmp_path / "backup" / "bundles" / "elsewhere").mkdir()
    (tmp_path / "backup" / "bundles" / "elsewhere" / "x").write_text("x")
    rewrite_checksums(tmp_path / "backup")
    with _target(tmp_path, monkeypatch) as target:
        done = cli(capsys, "backup", "restore", str(tmp_path / "backup"), "--evidence-root", str(tmp_path / "new"))
        one_error_line(done, 1, "bundles/elsewhere/x", "not inside a bundle directory")
        assert _empty(target)


def test_database_only_backup_with_files_reports_missing_bundles(
    source: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "backup", "create", str(tmp_path / "backup")).code == 0
    with _target(tmp_path, monkeypatch):
        empty_root = tmp_path / "new"
        empty_root.mkdir()
        done = cli(capsys, "backup", "restore", str(tmp_path / "backup"), "--evidence-root", str(empty_root), "--files")
        assert done.code == 1 and "BROKEN: " in done.out and "restored " in done.out, done.out
        plain = cli(capsys, "backup", "restore", str(tmp_path / "backup"))
        one_error_line(plain, 2, "not empty")
