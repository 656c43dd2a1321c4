"""Whole-store backup and restore: round trips on each backend and across them, the table guard."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ringward.core.delivery.results import DeliveryKey
from ringward.core.evidence.records import EvidenceDraft
from ringward.operations.evidence.backup import (
    BACKUP_SCHEMA,
    MANIFEST_NAME,
    check_backup,
    create_backup,
    restore_backup,
)
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import Store, open_store
from ringward.store import backup as rows
from ringward.store.db import known_revisions
from ringward.store.delivery.delivery_log import DeliveryLog
from tests.backup.helpers import T0, dump, empty_store, populate
from tests.connectors.conftest import make_event


def _round_trip(source: Store, target: Store, tmp_path: Path) -> None:
    populate(source)
    before = dump(source)
    source_head = source.head()
    result = create_backup(source, tmp_path / "backup", now=T0)
    manifest = result.manifest
    assert manifest.schema_version == BACKUP_SCHEMA
    assert manifest.schema_revision == known_revisions()[0]
    assert manifest.source_database == source.dialect
    # 2 appends, the approval's request and decision (each recorded as evidence), and more
    assert manifest.evidence_head.last_id == source_head.last_id >= 4
    assert manifest.evidence_head.last_hash == source_head.last_hash
    assert manifest.counts() == {name: len(items) for name, items in before.items()}
    for table in ("evidence_record", "approval", "approval_decision", "connector_delivery", "kv_state", "api_token"):
        assert manifest.counts()[table] >= 1, table

    restored = restore_backup(target, tmp_path / "backup")
    assert restored.ok, restored.chain.summary()
    assert restored.chain.records_checked == source_head.last_id
    assert restored.restored == manifest.counts()
    assert dump(target) == before  # every column of every row, hashes included
    head = target.head()
    assert (head.last_id, head.last_hash) == (source_head.last_id, source_head.last_hash)
    assert verify_evidence(target, check_files=False).ok

    # the restored store keeps working: ids continue after the restored ones (PostgreSQL sequences)
    appended = target.append(EvidenceDraft(kind="after-restore", actor="ops", payload={}), now=T0 + timedelta(hours=1))
    assert appended.id == source_head.last_id + 1
    log = DeliveryLog(target)
    log.record_events([make_event("evt-after-restore")], now=T0)
    key = DeliveryKey("evt-after-restore", "splunk", "soc")
    log.claim([key], event_types={"evt-after-restore": "x.y"}, owner="B", now=T0, lease_seconds=60)
    with target.reading() as conn:
        table = sa.Table("connector_delivery", sa.MetaData(), autoload_with=conn)
        ids = sorted(conn.execute(sa.select(table.c.id)).scalars())
    assert ids == list(range(1, len(ids) + 1)) and len(ids) == manifest.counts()["connector_delivery"] + 1
    assert verify_evidence(target, check_files=False).ok


def test_round_trip_same_backend(store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with empty_store(store.dialect, tmp_path, request) as target:
        _round_trip(store, target, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize(("source_kind", "target_kind"), [("sqlite", "postgresql"), ("postgresql", "sqlite")])
def test_round_trip_across_backends(
    source_kind: str, target_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with (
        empty_store(source_kind, tmp_path, request, name="source") as source,
        empty_store(target_kind, tmp_path, request, name="target") as target,
    ):
        _round_trip(source, target, tmp_path)


def test_backup_of_an_empty_store_restores_to_an_empty_store(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with empty_store("sqlite", tmp_path, request, name="source") as source:
        result = create_backup(source, tmp_path / "backup", now=T0)
    assert result.manifest.evidence_head.last_id == 0
    assert all(t.rows == 0 for t in result.manifest.tables if t.name != rows.HEAD_TABLE)
    with empty_store("sqlite", tmp_path, request) as target:
        restored = restore_backup(target, tmp_path / "backup")
        assert restored.ok and restored.chain.records_checked == 0
        with target.reading() as conn:
            assert rows.occupied_tables(conn) == {}


def test_backup_layout_is_self_describing(store: Store, tmp_path: Path) -> None:
    populate(store)
    create_backup(store, tmp_path / "backup", now=T0)
    out = tmp_path / "backup"
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == sorted(["checksums.txt", MANIFEST_NAME] + [f"tables/{t.name}.jsonl" for t in rows.state_tables()])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["schema_version"] == "ringward.backup.v1"
    assert manifest["created_at"] == "2026-12-01T09:30:15.123456Z"
    tokens = [json.loads(line) for line in (out / "tables/api_token.jsonl").read_text().splitlines()]
    assert tokens and all(len(t["token_sha256"]) == 64 for t in tokens)  # hashed only: no secret column exists
    first = json.loads((out / "tables/evidence_record.jsonl").read_text().splitlines()[0])
    assert first["created_at"] == "2026-12-01T09:30:15.123456+00:00"
    assert check_backup(out).manifest.counts()["evidence_record"] == store.head().last_id
    # readable by its owner only (it holds every record and the token hashes)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    # no staging directory is left beside the backup
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".backup")] == []


# --- the guard: every table of the migrated schema is covered ---------------------------------------


def test_every_table_of_the_migrated_schema_is_backed_up(db_url: str, tmp_path: Path) -> None:
    with open_store(db_url) as opened, opened.reading() as conn:
        in_database = set(sa.inspect(conn).get_table_names()) - rows.EXCLUDED_TABLES
    covered = {t.name for t in rows.state_tables()}
    assert in_database == covered, (
        f"tables not covered by ringward backup: {sorted(in_database - covered)}; "
        f"covered but not in the schema: {sorted(covered - in_database)}"
    )
    with open_store(db_url) as opened:
        manifest = create_backup(opened, tmp_path / "backup", now=T0).manifest
    assert {t.name for t in manifest.tables} == in_database
    for expected in (
        "evidence_record",
        "approval",
        "connector_delivery",
        "kv_state",
        "rollout_step",
        "sla_event",
        "webhook_receipt",
        "api_token",
    ):
        assert expected in covered


def test_an_unsupported_column_type_is_refused_up_front() -> None:
    table = sa.Table("x_backup_probe", sa.MetaData(), sa.Column("v", sa.LargeBinary()))
    with pytest.raises(TypeError, match=r"x_backup_probe\.v: column type"):
        rows.encode_row(table, {"v": b"\x00"})
