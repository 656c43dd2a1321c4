"""The unique import key: insert-or-skip in the append transaction, backed by the index, and the
0003 migration that adds it to a store created at the previous head (backfilling old imports)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ringward.core.evidence.interop import metadata_import_key, parse_metadata_document
from ringward.core.evidence.records import EvidenceDraft
from ringward.operations.evidence.evidence_ops import import_metadata_json, verify_evidence
from ringward.store import Store, open_store
from ringward.store.db import alembic_config, create_store_engine, known_revisions, write_connection
from ringward.store.evidence import repo as evidence_repo

PREVIOUS_HEAD = "0002_connector_delivery"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _items(*names: str) -> list[dict[str, object]]:
    return [{"session_id": f"s-{n}", "metadata_kind": "rollout-status", "rollout_status": n} for n in names]


def _drafts(items: list[dict[str, object]]) -> list[EvidenceDraft]:
    return parse_metadata_document(json.dumps({"items": items}).encode(), source="m.json", actor="importer")


def _keys(store: Store) -> dict[int, str | None]:
    with store.reading() as conn:
        rows = conn.execute(sa.text("SELECT id, import_key FROM evidence_record ORDER BY id")).all()
    return {int(r[0]): r[1] for r in rows}


def test_the_unique_index_refuses_a_second_record_with_the_same_key(store: Store) -> None:
    (draft,) = _drafts(_items("a"))
    key = metadata_import_key(draft)
    with store.writing() as conn:
        evidence_repo.append_locked(conn, [draft], NOW, import_keys=[key])
    with pytest.raises(IntegrityError), store.writing() as conn:
        other = draft.model_copy(update={"actor": "someone-else"})
        evidence_repo.append_locked(conn, [other], NOW, import_keys=[key])
    assert store.count_evidence() == 1


def test_insert_or_skip_holds_even_when_the_check_is_bypassed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the in-lock check ever wrong (a writer bypassing the chain lock), the unique index
    fails the transaction, which rolls back whole; the re-run sees the winner and skips."""
    drafts = _drafts(_items("a", "b"))
    assert [r is not None for r in store.append_absent((metadata_import_key(d), d) for d in drafts)] == [True, True]

    blind = {"left": 1}
    real_keys, real_payloads = evidence_repo.existing_import_keys, evidence_repo.existing_payloads

    def keys_once(conn: sa.Connection, keys: object) -> set[str]:
        found = real_keys(conn, keys)  # type: ignore[arg-type]
        if blind["left"]:
            blind["left"] -= 1
            return set()
        return found

    def payloads(conn: sa.Connection, pairs: object) -> set[tuple[str, str]]:
        return set() if blind["left"] else real_payloads(conn, pairs)  # type: ignore[arg-type]

    monkeypatch.setattr(evidence_repo, "existing_import_keys", keys_once)
    monkeypatch.setattr(evidence_repo, "existing_payloads", payloads)
    more = _drafts(_items("a", "c", "b"))
    results = store.append_absent((metadata_import_key(d), d) for d in more)
    assert blind["left"] == 0  # the blind attempt ran and was refused by the index
    assert [r is not None for r in results] == [False, True, False]
    assert store.count_evidence() == 3
    assert verify_evidence(store, check_files=False).ok


def test_append_absent_skips_repeats_within_one_batch_and_across_batches(store: Store) -> None:
    drafts = _drafts(_items("a", "b", "a", "c", "b"))
    results = store.append_absent(((metadata_import_key(d), d) for d in drafts), batch_size=2)
    assert [r.id if r else None for r in results] == [1, 2, None, 3, None]
    assert sorted(k for k in _keys(store).values() if k) == sorted({metadata_import_key(d) for d in drafts})


def _store_at_previous_head(url: str) -> None:
    from alembic import command

    engine = create_store_engine(url)
    try:
        with write_connection(engine) as conn, conn.begin():
            command.upgrade(alembic_config(conn), PREVIOUS_HEAD)
            a, b, c = _drafts(_items("a", "b", "c"))
            delivery = EvidenceDraft(
                kind="release-connector-delivery",
                actor="ringward",
                payload={"session_id": "rcd-1", "metadata_kind": "release-connector-delivery", "ok": True},
            )
            not_imported = [
                EvidenceDraft(kind="plain", actor="a", payload={"n": 1}),
                # a session_id, but a kind an import of this payload would not give it
                EvidenceDraft(kind="other-kind", actor="a", payload={"session_id": "x", "metadata_kind": "k"}),
                # an import never writes a bundle
                EvidenceDraft(kind="session-evidence", actor="a", payload={"session_id": "y"}, bundle_dir="b/1"),
            ]
            # what the old check-then-append import left after a race: item "a" recorded twice
            evidence_repo.append_locked(conn, [not_imported[0], a, b, a, delivery, c, *not_imported[1:]], NOW)
            columns = {col["name"] for col in sa.inspect(conn).get_columns("evidence_record")}
            assert "import_key" not in columns
    finally:
        engine.dispose()


def test_a_store_at_the_previous_head_upgrades_backfills_and_still_verifies(db_url: str, tmp_path: Path) -> None:
    _store_at_previous_head(db_url)
    with open_store(db_url) as store:
        with store.reading() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == known_revisions()[0]
        report = verify_evidence(store, check_files=False)
        assert report.ok, report.summary()
        assert report.records_checked == 8
        a, b, c = _drafts(_items("a", "b", "c"))
        assert _keys(store) == {
            1: None,
            2: metadata_import_key(a),
            3: metadata_import_key(b),
            4: None,  # the duplicate of "a": only the first copy gets the key
            5: f"metadata:release-connector-delivery:{store.get_evidence(5).payload_sha256}",
            6: metadata_import_key(c),
            7: None,
            8: None,
        }
        # re-importing the items the old import recorded adds nothing; a new item is added once
        source = tmp_path / "m.json"
        source.write_text(json.dumps({"items": _items("a", "b", "c", "d")}))
        result = import_metadata_json(store, source, actor="importer", now=NOW)
        assert (result["imported"], result["skipped"], result["record_ids"]) == (1, 3, [9])
        again = import_metadata_json(store, source, actor="importer", now=NOW)
        assert (again["imported"], again["skipped"]) == (0, 4)
        assert verify_evidence(store, check_files=False).ok
