"""Imports are idempotent by a key the store enforces, not by a check made before the append.

``ringward evidence import`` and ``ringward approval import`` run as real processes, eight at once
on the same file, on SQLite and on PostgreSQL: every item must end up recorded exactly once, the
chain must still verify, and importing the file again must add nothing. (Before the unique import
key, eight concurrent imports of a 60-item file left 70-114 records on SQLite and ~300 on
PostgreSQL: each process checked "already recorded?" outside the append's critical section.)

Concurrent deliveries of one signed checkpoint rest on the delivery log's unique
(event id, provider, destination) claim: the SIEM receives it once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import open_store

PROCESSES = 8
ITEMS = 60
APPROVALS = 30


def _command() -> list[str]:
    script = Path(sys.executable).with_name("ringward")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ringward"]


def _env(tmp_path: Path, url: str, name: str) -> dict[str, str]:
    home = tmp_path / name
    return {
        **os.environ,
        "RINGWARD_HOME": str(home),
        "RINGWARD_DATABASE_URL": url,
        "RINGWARD_EVIDENCE_ROOT": str(home / "evidence"),
        "RINGWARD_ACTOR": "importer",
    }


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*_command(), *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _run_parallel(env: dict[str, str], *args: str, count: int = PROCESSES) -> list[dict[str, Any]]:
    """``ringward ARGS --json`` in ``count`` processes started together; every one must succeed."""
    procs = [
        subprocess.Popen(
            [*_command(), *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    problems = [
        (proc.returncode, err.strip()) for proc, (_, err) in zip(procs, outputs, strict=True) if proc.returncode != 0
    ]
    assert problems == [], problems
    return [json.loads(out) for out, _ in outputs]


def _verify(env: dict[str, str]) -> dict[str, Any]:
    done = _run(env, "evidence", "verify", "--no-files", "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["ok"] is True and report["first_break"] is None, report
    return report


def _count(url: str, sql: str) -> int:
    with open_store(url) as store, store.reading() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


# --- evidence import -----------------------------------------------------------------------------


@pytest.fixture
def metadata_file(tmp_path: Path) -> Path:
    """A 60-item metadata.json written by `ringward evidence export` from another store."""
    source_url = f"sqlite:///{tmp_path / 'source' / 'source.db'}"
    kinds = ("release-promotion", "rollout-status", "session-evidence")
    with open_store(source_url) as source:
        source.append_many(
            EvidenceDraft(
                kind=kinds[n % len(kinds)],
                actor="release-bot",
                subject=EvidenceSubject(status="succeeded" if n % 2 else "failed", ring=f"ring-{n % 4}"),
                payload={"n": n, "note": f"item {n}"},
            )
            for n in range(ITEMS)
        )
    output = tmp_path / "m.json"
    done = _run(_env(tmp_path, source_url, "source-home"), "evidence", "export", str(output))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(output.read_text())["items"]) == ITEMS
    return output


def test_concurrent_evidence_imports_record_each_item_once(
    db_url: str, tmp_path: Path, metadata_file: Path
) -> None:
    env = _env(tmp_path, db_url, "home")
    open_store(db_url).close()  # migrated up front: the race under test is the import, not the first open

    results = _run_parallel(env, "evidence", "import", str(metadata_file))

    assert sum(r["imported"] for r in results) == ITEMS
    assert sum(r["skipped"] for r in results) == ITEMS * (PROCESSES - 1)
    assert _count(db_url, "SELECT count(*) FROM evidence_record") == ITEMS
    assert _count(db_url, "SELECT count(DISTINCT payload_sha256) FROM evidence_record") == ITEMS
    assert _count(db_url, "SELECT count(DISTINCT import_key) FROM evidence_record") == ITEMS
    recorded = sorted(i for r in results for i in r["record_ids"])
    assert recorded == list(range(1, ITEMS + 1))
    assert _verify(env)["records_checked"] == ITEMS

    # a re-import is a no-op
    again = _run(env, "evidence", "import", str(metadata_file), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"record_ids": None} == {
        "schema_version": "cavra.evidence.metadata.v1",
        "imported": 0,
        "skipped": ITEMS,
        "record_ids": None,
    }
    assert _count(db_url, "SELECT count(*) FROM evidence_record") == ITEMS
    _verify(env)


def test_an_item_listed_twice_in_one_file_is_recorded_once(db_url: str, tmp_path: Path) -> None:
    item = {"session_id": "s-1", "metadata_kind": "rollout-status", "rollout_status": "ok"}
    other = {"session_id": "s-2", "metadata_kind": "rollout-status", "rollout_status": "ok"}
    source = tmp_path / "dup.json"
    source.write_text(json.dumps({"items": [item, other, item]}))
    env = _env(tmp_path, db_url, "home")
    done = _run(env, "evidence", "import", str(source), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == 2
    assert json.loads(done.stdout)["skipped"] == 1
    assert _count(db_url, "SELECT count(*) FROM evidence_record") == 2


def test_an_item_already_in_the_chain_as_a_native_record_is_not_imported_again(
    db_url: str, tmp_path: Path
) -> None:
    """"Already recorded" still means any record of that kind and payload, not only imported ones."""
    payload = {"session_id": "rcd-native", "metadata_kind": "release-connector-delivery", "success": True}
    with open_store(db_url) as store:
        store.append(EvidenceDraft(kind="release-connector-delivery", actor="ringward", payload=payload))
    source = tmp_path / "m.json"
    source.write_text(json.dumps({"items": [payload]}))
    done = _run(_env(tmp_path, db_url, "home"), "evidence", "import", str(source), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == 0
    assert _count(db_url, "SELECT count(*) FROM evidence_record") == 1


# --- approval import -----------------------------------------------------------------------------


@pytest.fixture
def approvals_file(tmp_path: Path) -> Path:
    """A 30-approval approvals.json written by `ringward approval export` from another store."""
    from ringward.core.approvals.rules import Decision
    from ringward.operations.approvals.approval_ops import decide_approval, request_approval

    source_url = f"sqlite:///{tmp_path / 'source' / 'approvals.db'}"
    now = datetime.now(UTC)
    with open_store(source_url) as source:
        for n in range(APPROVALS):
            approval = request_approval(
                source,
                action="promote-ring",
                subject_digest="sha256:" + f"{n:02d}" * 32,
                target=f"ring-{n % 3}",
                requester="alice",
                expires_in=timedelta(hours=4),
                now=now + timedelta(seconds=n),
            )
            if n % 3 == 1:
                decide_approval(
                    source, approval.approval_id, decision=Decision.APPROVE, actor="bob", reason="ok", now=now
                )
    output = tmp_path / "approvals.json"
    done = _run(_env(tmp_path, source_url, "source-home"), "approval", "export", str(output))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(output.read_text())["items"]) == APPROVALS
    return output


def test_concurrent_approval_imports_record_each_approval_once(
    db_url: str, tmp_path: Path, approvals_file: Path
) -> None:
    env = _env(tmp_path, db_url, "home")
    open_store(db_url).close()

    results = _run_parallel(env, "approval", "import", str(approvals_file), "--actor", "importer")

    assert sum(r["imported"] for r in results) == APPROVALS
    assert sum(r["skipped"] for r in results) == APPROVALS * (PROCESSES - 1)
    imported = [a for r in results for a in r["approval_ids"]]
    assert len(imported) == len(set(imported)) == APPROVALS
    assert _count(db_url, "SELECT count(*) FROM approval") == APPROVALS
    # one "imported" transition record per approval, nothing else
    assert _count(db_url, "SELECT count(*) FROM evidence_record") == APPROVALS
    assert _count(db_url, "SELECT count(DISTINCT approval_id) FROM evidence_record") == APPROVALS
    _verify(env)

    again = _run(env, "approval", "import", str(approvals_file), "--actor", "importer", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"imported": 0, "skipped": APPROVALS, "approval_ids": []}
    assert _count(db_url, "SELECT count(*) FROM evidence_record") == APPROVALS
    _verify(env)


# --- checkpoint delivery ---------------------------------------------------------------------------


HEC_TOKEN = "hec-concurrent-checkpoint-3a9d"


def test_concurrent_deliveries_of_one_checkpoint_reach_the_siem_once(
    db_url: str, tmp_path: Path, httpserver: Any
) -> None:
    """Eight processes deliver the same signed checkpoint at once: the delivery log's unique
    (event id, provider, destination) claim lets one of them send it; the others find it in flight
    or already delivered, send nothing, and each run's evidence record says so."""
    import yaml
    from werkzeug import Request, Response

    from ringward.operations.evidence.evidence_ops import checkpoint_event

    def slow_hec(request: Request) -> Response:
        time.sleep(1.0)  # keep the winner's claim open while the others arrive
        return Response(json.dumps({"text": "Success", "code": 0}), content_type="application/json")

    httpserver.expect_request("/services/collector/event", method="POST").respond_with_handler(slow_hec)
    env = {**_env(tmp_path, db_url, "home"), "RW_CHECKPOINT_HEC": HEC_TOKEN}
    with open_store(db_url) as store:
        store.append_many(EvidenceDraft(kind="plain", actor="a", payload={"n": n}) for n in range(5))
    for name in ("signer",):
        done = _run(
            env,
            "keys",
            "generate",
            "--private-key",
            str(tmp_path / f"{name}.pem"),
            "--public-key",
            str(tmp_path / f"{name}.pub"),
        )
        assert done.returncode == 0, done.stderr
    trust = tmp_path / "trust-root.json"
    done = _run(env, "trust", "init", "--output", str(trust), "--key", f"release={tmp_path / 'signer.pub'}")
    assert done.returncode == 0, done.stderr
    checkpoint_path = tmp_path / "checkpoint.json"
    done = _run(
        env,
        "evidence",
        "checkpoint",
        "--signing-key",
        str(tmp_path / "signer.pem"),
        "--trust-root",
        str(trust),
        "--output",
        str(checkpoint_path),
    )
    assert done.returncode == 0, done.stderr
    from ringward.core.evidence.checkpoint import Checkpoint

    event = checkpoint_event(Checkpoint.model_validate_json(checkpoint_path.read_text()))
    event_file = tmp_path / "checkpoint-event.json"
    event_file.write_text(json.dumps(event.to_document()))
    config = tmp_path / "connectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {"timeout_seconds": 10, "budget_seconds": 20, "max_attempts": 1},
                "providers": [
                    {
                        "name": "soc-splunk",
                        "provider": "splunk",
                        "url": httpserver.url_for("/services/collector/event"),
                        "token": "env:RW_CHECKPOINT_HEC",
                    }
                ],
            }
        )
    )

    procs = [
        subprocess.Popen(
            [*_command(), "connectors", "deliver", str(event_file), "--config", str(config), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert "Traceback" not in err, err
        assert proc.returncode in (0, 1), (proc.returncode, err)
    statuses = Counter(
        d["status"] for out, _ in outputs for d in json.loads(out)["deliveries"]
    )
    assert statuses["delivered"] == 1, statuses
    assert set(statuses) <= {"delivered", "already-delivered", "in-flight"}, statuses
    assert len(httpserver.log) == 1
    (request, _), = httpserver.log
    assert json.loads(request.get_data())["event"]["event_id"] == event.event_id
    # one delivery-log row for the key, succeeded; every run left its own evidence record
    assert _count(db_url, "SELECT count(*) FROM connector_delivery") == 1
    assert _count(db_url, "SELECT count(*) FROM connector_delivery WHERE state = 'succeeded'") == 1
    assert _count(db_url, "SELECT count(*) FROM evidence_record WHERE kind = 'release-connector-delivery'") == PROCESSES
    _verify(env)
