"""The evidence chain in the store: appends, reads, searches, concurrency (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from ringward.core.errors import EvidenceNotFoundError, InputError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.evidence.records import (
    GENESIS_HASH,
    EvidenceArtifact,
    EvidenceDraft,
    EvidenceRecord,
    EvidenceSubject,
)
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import Store, open_store
from tests.store import workers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def draft(i: int = 0, **subject: object) -> EvidenceDraft:
    return EvidenceDraft(
        kind=str(subject.pop("kind", "managed-endpoint-rollout")),
        actor="release-bot",
        subject=EvidenceSubject(**subject),  # type: ignore[arg-type]
        payload={"i": i, "text": "é✓"},
    )


def test_append_links_records_into_a_chain(store: Store) -> None:
    first = store.append(draft(1), now=T0)
    second = store.append(draft(2), now=T0 + timedelta(seconds=1))
    assert isinstance(first, EvidenceRecord)
    assert (first.id, second.id) == (1, 2)
    assert first.previous_hash == GENESIS_HASH
    assert second.previous_hash == first.record_hash
    assert first.expected_hash() == first.record_hash
    assert first.created_at == T0 and first.created_at.tzinfo is not None
    assert store.get_evidence(2) == second
    head = store.head()
    assert (head.last_id, head.last_hash) == (2, second.record_hash)


def test_created_at_is_utc_and_never_runs_backwards(store: Store) -> None:
    later = store.append(draft(1), now=T0 + timedelta(hours=1))
    earlier_clock = store.append(draft(2), now=datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))))
    assert earlier_clock.created_at == later.created_at  # clamped, not earlier than its predecessor
    offset = store.append(draft(3), now=datetime(2026, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=5))))
    assert offset.created_at == datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
    assert store.get_evidence(3).created_at.utcoffset() == timedelta(0)


def test_payload_round_trips_exactly(store: Store) -> None:
    payload = {"nested": {"b": [1, 2.5, None, True], "a": "ü"}, "big": 2**62}
    record = store.append(EvidenceDraft(kind="k", actor="a", payload=payload))
    assert store.get_evidence(record.id).payload == payload
    assert verify_evidence(store, check_files=False).ok


def test_bundle_fields_are_stored(store: Store) -> None:
    artifact = EvidenceArtifact(name="report.json", sha256="a" * 64, size_bytes=3)
    record = store.append(EvidenceDraft(kind="k", actor="a", payload={}, bundle_dir="k/2026/x", artifacts=(artifact,)))
    assert store.get_evidence(record.id).artifacts == (artifact,)
    assert store.get_evidence(record.id).bundle_dir == "k/2026/x"


def test_missing_record_is_not_found(store: Store) -> None:
    with pytest.raises(EvidenceNotFoundError, match="evidence record 42 not found"):
        store.get_evidence(42)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"payload": {"x": float("nan")}}, "payload is not plain JSON"),
        ({"payload": {"x": object()}}, "payload is not plain JSON"),
        ({"payload": {}, "bundle_dir": "../escape"}, "bundle_dir"),
        ({"payload": {}, "bundle_dir": "/abs"}, "absolute"),
        ({"payload": {}, "kind": "bad kind"}, "kind"),
        ({"payload": {}, "actor": "a\x00b"}, "control character"),
        (
            {"payload": {}, "artifacts": ({"name": "a", "sha256": "0" * 64, "size_bytes": 1},)},
            "bundle_dir is missing",
        ),
        (
            {
                "payload": {},
                "bundle_dir": "b",
                "artifacts": ({"name": "../x", "sha256": "0" * 64, "size_bytes": 1},),
            },
            "artifact name",
        ),
        (
            {
                "payload": {},
                "bundle_dir": "b",
                "artifacts": ({"name": "checksums.txt", "sha256": "0" * 64, "size_bytes": 1},),
            },
            "reserved",
        ),
    ],
)
def test_invalid_drafts_are_refused_before_the_store(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"kind": "k", "actor": "a", **fields}
    with pytest.raises(ValidationError, match=message):
        EvidenceDraft(**values)  # type: ignore[arg-type]


def test_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(InputError, match="naive"):
        store.append(draft(1), now=datetime(2026, 1, 1))
    assert store.head().last_id == 0


def test_append_many_batches_and_refuses_non_drafts(store: Store) -> None:
    records = store.append_many([draft(i) for i in range(25)], batch_size=10, now=T0)
    assert [r.id for r in records] == list(range(1, 26))
    with pytest.raises(InputError, match="expected an EvidenceDraft"):
        store.append_many([{"kind": "x"}])  # type: ignore[list-item]
    with pytest.raises(InputError, match="batch_size"):
        store.append_many([draft(1)], batch_size=0)
    assert verify_evidence(store, check_files=False).ok


def _seed(store: Store) -> None:
    rows = []
    for i in range(60):
        rows.append(
            draft(
                i,
                kind="managed-endpoint-rollout" if i % 2 else "endpoint-management-export",
                status=["staged", "succeeded", "failed"][i % 3],
                deployment_target=f"target-{i % 4}",
                ring="pilot" if i < 30 else "broad",
                environment="prod",
                provider="jamf" if i % 5 == 0 else None,
                success=i % 3 != 2,
                approval_state="approved" if i % 7 == 0 else None,
                execution_status="succeeded" if i % 6 == 0 else None,
                release_version="1.2.3",
            )
        )
    for i, d in enumerate(rows):
        store.append(d, now=T0 + timedelta(minutes=i))


def _ids(store: Store, **filters: object) -> list[int]:
    return [r.id for r in store.search_evidence(EvidenceQuery(limit=500, **filters)).items]  # type: ignore[arg-type]


def test_search_filters_and_orders_newest_first(store: Store) -> None:
    _seed(store)
    page = store.search_evidence(
        EvidenceQuery(kind="managed-endpoint-rollout", status="succeeded", deployment_target="target-1", limit=50)
    )
    expected = [i + 1 for i in range(60) if i % 2 and i % 3 == 1 and i % 4 == 1]
    assert [r.id for r in page.items] == sorted(expected, reverse=True)
    assert page.total == len(expected)
    assert _ids(store, ring="broad") == list(range(60, 30, -1))
    assert _ids(store, provider="jamf") == [i + 1 for i in range(59, -1, -1) if i % 5 == 0]
    assert _ids(store, success=False) == [i + 1 for i in range(59, -1, -1) if i % 3 == 2]
    assert _ids(store, approval_state="approved") == [i + 1 for i in range(59, -1, -1) if i % 7 == 0]
    assert _ids(store, execution_status="succeeded") == [i + 1 for i in range(59, -1, -1) if i % 6 == 0]
    assert _ids(store, environment="nowhere") == []
    assert _ids(store, actor="release-bot", release_version="1.2.3")[:3] == [60, 59, 58]


def test_search_date_range_is_inclusive_exclusive(store: Store) -> None:
    _seed(store)
    ids = _ids(store, created_from=T0 + timedelta(minutes=10), created_to=T0 + timedelta(minutes=13))
    assert ids == [13, 12, 11]
    assert _ids(store, created_from=T0 + timedelta(minutes=5), created_to=T0 + timedelta(minutes=5)) == []
    with pytest.raises(ValidationError, match="timezone-aware"):
        EvidenceQuery(created_from=datetime(2026, 1, 1))


def test_search_pages_without_a_fixed_cap(store: Store) -> None:
    _seed(store)
    first = store.search_evidence(EvidenceQuery(limit=25))
    assert [r.id for r in first.items] == list(range(60, 35, -1))
    assert first.total == 60 and first.next_before_id == 36
    second = store.search_evidence(EvidenceQuery(limit=25, before_id=first.next_before_id))
    assert [r.id for r in second.items] == list(range(35, 10, -1))
    third = store.search_evidence(EvidenceQuery(limit=25, before_id=second.next_before_id))
    assert [r.id for r in third.items] == list(range(10, 0, -1)) and third.next_before_id is None
    by_offset = store.search_evidence(EvidenceQuery(limit=10, offset=50))
    assert [r.id for r in by_offset.items] == list(range(10, 0, -1))
    oldest = store.search_evidence(EvidenceQuery(limit=3, order="oldest", with_total=False))
    assert [r.id for r in oldest.items] == [1, 2, 3] and oldest.total is None


@pytest.mark.parametrize(
    "bad",
    [
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"before_id": 0},
        {"unknown": 1},
        {"order": "sideways"},
        {"kind": "a\x00b"},
    ],
)
def test_search_parameters_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EvidenceQuery(**bad)  # type: ignore[arg-type]


def test_edited_row_is_caught_by_verify(store: Store) -> None:
    _seed(store)
    with store.writing() as conn:
        conn.execute(sa.text("UPDATE evidence_record SET status = 'tampered' WHERE id = 17"))
    report = verify_evidence(store, check_files=False)
    assert not report.ok and report.first_break is not None
    assert (report.first_break.record_id, report.first_break.check) == (17, "record_hash")


def test_concurrent_appends_from_8_processes_leave_one_unbroken_chain(db_url: str) -> None:
    open_store(db_url).close()  # schema first; the workers race only on appends
    results = workers.run_parallel(workers.append_worker, [(db_url, 1000, tag) for tag in range(8)])
    assert sorted(results) == [("ok", tag) for tag in range(8)]
    with open_store(db_url) as store:
        assert store.head().last_id == 8000
        report = verify_evidence(store, check_files=False)
        assert report.ok, report.summary()
        assert report.records_checked == 8000
        with store.reading() as conn:
            per_proc = conn.execute(
                sa.text("SELECT actor, count(*) FROM evidence_record GROUP BY actor ORDER BY actor")
            ).all()
            payloads = conn.execute(sa.text("SELECT payload FROM evidence_record WHERE actor = 'proc-3'")).all()
    assert [tuple(r) for r in per_proc] == [(f"proc-{t}", 1000) for t in range(8)]
    assert sorted(json.loads(p[0])["i"] for p in payloads) == list(range(1000))
