"""`ringward db upgrade` from every earlier schema revision, on SQLite and PostgreSQL: a store
created at that revision and holding evidence is brought to head and its chain still verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from ringward.cli.main import run
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import open_store
from ringward.store.db import alembic_config, create_store_engine, current_revision, known_revisions, write_connection
from ringward.store.evidence import repo

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _earlier_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    ordered = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert ordered[0] == "0001_initial" and ordered[-1] == known_revisions()[0]
    return ordered[:-1]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command."""
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("revision", _earlier_revisions())
def test_db_upgrade_from_every_earlier_revision_keeps_the_chain_verifiable(
    revision: str, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_store_engine(db_url)
    try:
        with write_connection(engine) as conn, conn.begin():
            command.upgrade(alembic_config(conn), revision)
        with write_connection(engine) as conn, conn.begin():
            assert current_revision(conn) == revision
            # records as that revision's code wrote them: the columns 0001 created
            drafts = [
                EvidenceDraft(
                    kind="rollout-promotion-execution",
                    actor="old-ringward",
                    subject=EvidenceSubject(status="succeeded", provider="splunk", success=i % 2 == 0),
                    payload={"i": i},
                )
                for i in range(30)
            ]
            repo.append_locked(conn, drafts, T0)
            repo.append_locked(conn, drafts[:5], T0 + timedelta(hours=1))
    finally:
        engine.dispose()

    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    code, out, _ = _cli(capsys, "db", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "behind" and json.loads(out)["revision"] == revision
    code, out, _ = _cli(capsys, "db", "upgrade", "--json")
    result = json.loads(out)
    assert code == 0, out
    assert (result["from"], result["to"], result["upgraded"]) == (revision, known_revisions()[0], True)
    assert result["evidence_records"] == 35
    code, out, _ = _cli(capsys, "db", "upgrade")
    assert code == 0 and "already at" in out

    with open_store(db_url) as store:
        report = verify_evidence(store, check_files=False)
        assert report.ok and report.records_checked == 35, report.summary()
        with store.reading() as conn:
            assert repo.analyzed_through(conn) == 35  # the upgrade refreshed the statistics
        # the new indexes answer searches over the old records
        from ringward.core.evidence.query import EvidenceQuery

        page = store.search_evidence(EvidenceQuery(provider="splunk", success=False, limit=100))
        assert page.total == 17 and all(r.subject.success is False for r in page.items)
        window = store.search_evidence(EvidenceQuery(created_from=T0 + timedelta(minutes=30)))
        assert [r.id for r in window.items] == [35, 34, 33, 32, 31]
    code, out, _ = _cli(capsys, "evidence", "verify", "--no-files", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_db_status_refuses_a_database_from_a_newer_ringward(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(db_url) as store, store.writing() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    monkeypatch.setenv("RINGWARD_DATABASE_URL", db_url)
    code, out, _ = _cli(capsys, "db", "status", "--json")
    assert code == 1 and json.loads(out)["state"] == "unknown"
    code, _, err = _cli(capsys, "db", "upgrade")
    assert code == 1 and "does not know" in err
