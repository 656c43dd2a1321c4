"""A store populated through real operations, and table dumps to compare two stores by."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.core.approvals.rules import Decision
from ringward.core.common.checksums import render_checksums
from ringward.core.common.roles import Role
from ringward.core.delivery.results import DeliveryKey
from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.operations.approvals.approval_ops import decide_approval, request_approval
from ringward.store import Store, open_store
from ringward.store import backup as rows
from ringward.store.delivery.delivery_log import DeliveryLog
from tests.connectors.conftest import make_event
from tests.store.dbfixtures import drop_pg_schema, make_pg_schema

T0 = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def populate(store: Store) -> None:
    """Evidence appends, an approval requested and decided, a delivery claim, kv state, a token."""
    store.append(
        EvidenceDraft(
            kind="release-verification",
            actor="ci@example.com",
            subject=EvidenceSubject(release_version="1.4.2", channel="stable", status="passed"),
            payload={"checks": ["signature", "sbom"], "ok": True, "note": "ünïcode ✓"},
        ),
        now=T0,
    )
    store.append(
        EvidenceDraft(kind="rollout-capture", actor="ops", payload={"ring": "pilot"}), now=T0 + timedelta(seconds=1)
    )
    approval = request_approval(
        store,
        action="promote",
        subject_digest=DIGEST,
        target="stable/broad",
        requester="alice",
        now=T0 + timedelta(seconds=2),
    )
    decide_approval(
        store,
        approval.approval_id,
        decision=Decision.APPROVE,
        actor="bob",
        reason="looks good",
        now=T0 + timedelta(seconds=3),
    )
    log = DeliveryLog(store)
    log.record_events([make_event("evt-backup-1")], now=T0)
    key = DeliveryKey("evt-backup-1", "splunk", "soc")
    log.claim([key], event_types={"evt-backup-1": "ringward.promotion.executed"}, owner="A", now=T0, lease_seconds=60)
    store.state.put("channel-hwm", "stable", {"version": "1.4.2"}, actor="ops", now=T0)
    store.tokens.create(name="ci", role=Role.OPERATOR, created_by="admin", now=T0)


def dump(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every state table, rows encoded as in a backup (comparable across backends)."""
    with rows.snapshot(store.engine) as conn:
        return {t.name: list(rows.stream_rows(conn, t)) for t in rows.state_tables()}


@contextmanager
def empty_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "target") -> Iterator[Store]:
    """A fresh, migrated, empty store of ``kind`` (sqlite or postgresql)."""
    if kind == "sqlite":
        with open_store(f"sqlite:///{tmp_path / name / 'ringward.db'}") as opened:
            yield opened
        return
    base = request.getfixturevalue("postgres_url")
    schema, url = make_pg_schema(base)
    try:
        with open_store(url) as opened:
            yield opened
    finally:
        drop_pg_schema(base, schema)


def rewrite_checksums(directory: Path) -> None:
    """Re-issue checksums.txt after a deliberate edit (what a careless or hostile editor would do)."""
    digests = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel != "checksums.txt":
            digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    (directory / "checksums.txt").write_bytes(render_checksums(digests))
