"""The delivery log on both backends (SQLite and PostgreSQL): claims by compare-and-swap, lost
claims never overwrite, attempts numbered across runs, redelivery queue, stats, destinations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import (
    AttemptRecord,
    ClaimStatus,
    Completion,
    DeliveryKey,
    DeliveryState,
    DeliveryStatus,
    DestinationResult,
)
from ringward.store import Store, open_store
from ringward.store.delivery.delivery_log import DeliveryLog
from tests.connectors.conftest import T0, make_event


@pytest.fixture
def log(db_url: str) -> Iterator[DeliveryLog]:
    store: Store = open_store(db_url)
    try:
        yield DeliveryLog(store)
    finally:
        store.close()


def result(
    key: DeliveryKey, status: DeliveryStatus, *codes: int, at=T0, error: str | None = None
) -> DestinationResult:
    attempts = tuple(
        AttemptRecord(
            number=n,
            started_at=at,
            completed_at=at,
            outcome=Outcome.DELIVERED if 200 <= code < 300 else Outcome.RETRY,
            status_code=code,
        )
        for n, code in enumerate(codes, start=1)
    )
    return DestinationResult(
        event_id=key.event_id,
        provider=key.provider,
        destination=key.destination,
        status=status,
        status_code=codes[-1] if codes else None,
        attempts=attempts,
        started_at=at,
        completed_at=at,
        error=error,
    )


def test_claims_completions_and_redelivery(log: DeliveryLog) -> None:
    key = DeliveryKey("evt-1", "splunk", "soc")
    types = {"evt-1": "ringward.rollback.executed"}
    log.record_events([make_event("evt-1")], now=T0)
    assert log.claim([key], event_types=types, owner="A", now=T0, lease_seconds=60) == {
        key: ClaimStatus.CLAIMED
    }
    assert log.claim([key], event_types=types, owner="B", now=T0, lease_seconds=60) == {
        key: ClaimStatus.IN_FLIGHT
    }
    # the same owner (a Prefect retry of the same task run) takes its claim back
    assert log.claim([key], event_types=types, owner="A", now=T0, lease_seconds=60) == {
        key: ClaimStatus.CLAIMED
    }
    # B did not win the claim: its completion is ignored
    log.complete([Completion(result(key, DeliveryStatus.DELIVERED, 200))], owner="B", now=T0)
    assert log.get(key).state is DeliveryState.IN_PROGRESS  # type: ignore[union-attr]
    failed = Completion(
        result(key, DeliveryStatus.FAILED, 503, 503, error="gave up"),
        next_attempt_after=T0 + timedelta(seconds=30),
        redeliver_window_seconds=600,
    )
    log.complete([failed], owner="A", now=T0)
    assert log.due(now=T0 + timedelta(seconds=10)) == []
    (due,) = log.due(now=T0 + timedelta(seconds=31))
    assert (due.state, due.attempt_count, due.redeliver_until) == (
        DeliveryState.FAILED,
        2,
        T0 + timedelta(seconds=600),
    )
    assert log.claim([key], event_types=types, owner="C", now=T0, lease_seconds=60) == {
        key: ClaimStatus.CLAIMED
    }
    log.complete([Completion(result(key, DeliveryStatus.DELIVERED, 200))], owner="C", now=T0)
    entry = log.get(key)
    assert entry is not None and entry.state is DeliveryState.SUCCEEDED and entry.run_count == 3
    assert [(a.number, a.status_code) for a in entry.attempts] == [(1, 503), (2, 503), (3, 200)]
    assert [a.number for a in log.run_attempts(key, "A")] == [1, 2]
    assert log.claim([key], event_types=types, owner="D", now=T0, lease_seconds=60) == {
        key: ClaimStatus.ALREADY_DELIVERED
    }
    assert list(log.load_events(["evt-1"])) == ["evt-1"]


def test_expiry_stats_and_destinations(log: DeliveryLog) -> None:
    keys = [DeliveryKey(f"e{n}", "webhook", "hook") for n in range(3)]
    types = {k.event_id: "ringward.rollback.executed" for k in keys}
    log.claim(keys, event_types=types, owner="A", now=T0, lease_seconds=60)
    log.complete(
        [
            Completion(result(keys[0], DeliveryStatus.DELIVERED, 200)),
            Completion(
                result(keys[1], DeliveryStatus.FAILED, 500, error="HTTP 500"), redeliver_window_seconds=60
            ),
            Completion(result(keys[2], DeliveryStatus.REJECTED, 400, error="HTTP 400 bad")),
        ],
        owner="A",
        now=T0,
    )
    assert log.expire_overdue(now=T0 + timedelta(seconds=61)) == 1
    (stats,), types_count = log.stats()
    assert (stats.total, stats.success, stats.failed, stats.attempt_count, stats.rollback_failures) == (
        3,
        1,
        2,
        3,
        2,
    )
    assert stats.last_error in ("HTTP 500", "HTTP 400 bad")
    assert types_count == {"ringward.rollback.executed": 3}
    entries, total = log.history(success=False)
    assert total == 2 and {e.state for e in entries} == {DeliveryState.EXPIRED, DeliveryState.REJECTED}
    log.disable_destination("hook", provider="webhook", reason="HTTP 410", now=T0)
    log.disable_destination("hook", provider="webhook", reason="HTTP 410 again", now=T0)
    assert log.disabled_destinations() == {"hook": "HTTP 410 again"}
    assert log.claim(
        [DeliveryKey("e9", "webhook", "hook")], event_types={}, owner="A", now=T0, lease_seconds=5
    ) == {DeliveryKey("e9", "webhook", "hook"): ClaimStatus.DESTINATION_DISABLED}
    assert log.enable_destination("hook", now=T0) == 0
    assert log.enable_destination("hook", now=T0) == -1


def test_fresh_and_general_completion_paths_store_identical_rows(db_url: str) -> None:
    """complete() writes keys this instance just claimed without reading them first; the row must be
    byte-for-byte what the general path (a key claimed by another instance) writes."""
    import sqlalchemy as sa

    with open_store(db_url) as store:
        fresh_log, other_log = DeliveryLog(store), DeliveryLog(store)
        keys = {name: DeliveryKey(f"evt-{name}", "splunk", "soc") for name in ("fresh", "general")}
        types = {k.event_id: "t" for k in keys.values()}
        fresh_log.claim([keys["fresh"]], event_types=types, owner="run", now=T0, lease_seconds=60)
        other_log.claim([keys["general"]], event_types=types, owner="run", now=T0, lease_seconds=60)
        assert fresh_log._fresh and not {k[0] for k in fresh_log._fresh} & {"evt-general"}
        later = T0 + timedelta(seconds=5, microseconds=250)
        for name in ("fresh", "general"):
            completion = Completion(
                result(keys[name], DeliveryStatus.FAILED, 503, 503, at=later, error="gave up"),
                next_attempt_after=later + timedelta(seconds=30),
                redeliver_window_seconds=3600,
            )
            # the general path: the instance that did not claim the key completes it
            (fresh_log if name == "fresh" else DeliveryLog(store)).complete([completion], owner="run", now=later)
        assert not fresh_log._fresh
        with store.reading() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT event_id, state, owner, lease_until, attempt_count, status_code, outcome, error, "
                    "CAST(first_attempt_at AS TEXT), CAST(last_attempt_at AS TEXT), CAST(succeeded_at AS TEXT), "
                    "CAST(next_attempt_after AS TEXT), CAST(redeliver_until AS TEXT), external_ref, attempts, "
                    "CAST(updated_at AS TEXT) FROM connector_delivery ORDER BY event_id"
                )
            ).all()
        (fresh_row, general_row) = sorted(rows, key=lambda r: r[0] != "evt-fresh")
        assert fresh_row[1:] == general_row[1:]
        assert fresh_row[1] == "failed" and fresh_row[2] is None and fresh_row[4] == 2
        entry = DeliveryLog(store).get(keys["fresh"])
        assert entry is not None and entry.next_attempt_after == later + timedelta(seconds=30)
        assert entry.first_attempt_at == later and [a.number for a in entry.attempts] == [1, 2]


def test_a_fresh_claim_taken_over_by_another_owner_is_not_overwritten(log: DeliveryLog) -> None:
    key = DeliveryKey("evt-x", "splunk", "soc")
    log.claim([key], event_types={"evt-x": "t"}, owner="A", now=T0, lease_seconds=1)
    # A's lease expires; B takes the key over and completes it
    other = DeliveryLog(log._store)
    late = T0 + timedelta(seconds=5)
    assert other.claim([key], event_types={"evt-x": "t"}, owner="B", now=late, lease_seconds=60) == {
        key: ClaimStatus.CLAIMED
    }
    other.complete([Completion(result(key, DeliveryStatus.DELIVERED, 200, at=late))], owner="B", now=late)
    # A finally completes on its fast path: the guarded UPDATE must miss
    lost = Completion(result(key, DeliveryStatus.FAILED, 503, at=late), redeliver_window_seconds=60)
    log.complete([lost], owner="A", now=late)
    entry = log.get(key)
    assert entry is not None and entry.state is DeliveryState.SUCCEEDED and entry.attempt_count == 1
