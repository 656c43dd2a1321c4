"""Races: concurrent runs on the same drift open one approval; concurrent executions use it once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ringward.core.errors import RingwardError
from ringward.store import open_store
from tests.remediation.conftest import RemediationWorld, at, drifted_fleet


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except RingwardError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_runs_on_the_same_drift_open_one_approval(rw: RemediationWorld, db_url: str) -> None:
    from ringward.operations.remediation.remediation_ops import request_remediation

    reports = [rw.reconciliation(drifted_fleet(rw.inv, behind=f"v1.2.{n}"), hours=2 + n / 10) for n in (0, 1, 2)]
    stores = [open_store(db_url) for _ in reports]
    try:
        results = _race([
            (lambda s=s, r=r: request_remediation(
                s, reconciliation=r, strategy="mixed", requester="alice", signing_key=rw.keys.remediation_pem,
                trust_root=rw.keys.trust_root, now=at(3)))
            for s, r in zip(stores, reports, strict=True)
        ])
    finally:
        for s in stores:
            s.close()
    done = [r for r in results if isinstance(r, dict)]
    # the dedup decision runs under the evidence chain's write lock: the runs serialise, one opens
    assert len(done) == 3, results
    assert sum(1 for r in done if not r["attached"]) == 1
    items, _ = rw.store.approvals.list(now=at(3))
    assert len(items) == 1


def test_concurrent_executions_use_the_approval_once(rw: RemediationWorld, db_url: str) -> None:
    from ringward.operations.remediation.remediation_ops import execute_remediation

    requested = rw.request(rw.reconciliation())
    rw.approve(requested["approval_id"])
    stores = [open_store(db_url) for _ in range(3)]
    try:
        results = _race([
            (lambda s=s, n=n: execute_remediation(
                s, request=Path(requested["request"]),
                approval_id=requested["approval_id"], actor=f"exec-{n}", trust_root=rw.keys.trust_root,
                now=at(4), output=rw.inv.work / f"exec-{n}"))
            for n, s in enumerate(stores)
        ])
    finally:
        for s in stores:
            s.close()
    assert sum(1 for r in results if isinstance(r, dict)) == 1
    assert all(isinstance(r, (dict, RingwardError)) for r in results)
    assert rw.store.approvals.get(requested["approval_id"]).consumed_at is not None
