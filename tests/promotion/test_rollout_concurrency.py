"""Concurrent executions of one approval, and concurrent rollbacks of one execution, on SQLite and
PostgreSQL: exactly one wins, every other attempt is refused and leaves no output."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ringward.core.errors import RingwardError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.promotion import rollout as ro
from ringward.operations.approvals.approval_ops import request_approval
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import open_store
from ringward.store.promotion.executions_repo import StepFilter
from tests.promotion.conftest import RolloutWorld, later

REFUSED = {"approval-consumed", "store-conflict", "already-executed"}


def _race(db_url: str, attempts: list[Callable[[Any], dict[str, Any]]]) -> list[tuple[str, Any]]:
    """Run each attempt on its own thread and store, released together by a barrier."""
    barrier = threading.Barrier(len(attempts))
    results: list[tuple[str, Any]] = [("missing", None)] * len(attempts)

    def worker(index: int, attempt: Callable[[Any], dict[str, Any]]) -> None:
        try:
            with open_store(db_url) as store:
                barrier.wait(timeout=60)
                results[index] = ("ok", attempt(store))
        except RingwardError as exc:
            results[index] = ("refused", exc.code)
        except Exception as exc:  # reported, never swallowed
            results[index] = ("error", f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def test_eight_concurrent_executions_of_one_approval_yield_one(rollout_world: RolloutWorld, db_url: str) -> None:
    w = rollout_world
    requested = w.request(w.capture()["output_dir"])
    w.approve(requested["approval_id"])

    def attempt(n: int) -> Callable[[Any], dict[str, Any]]:
        return lambda store: w.ops().execute_promotion(
            store, request_path=Path(requested["request_path"]), approval_id=requested["approval_id"],
            actor=f"executor-{n}", trust_root=w.keys.trust_root, now=later(0.3), output=w.work / f"exec-{n}")

    results = _race(db_url, [attempt(n) for n in range(8)])
    winners = [r for r in results if r[0] == "ok"]
    assert len(winners) == 1, results
    assert {r[1] for r in results if r[0] != "ok"} <= REFUSED, results
    assert sorted(p.name for p in w.work.iterdir() if p.name.startswith("exec-")) == [
        Path(winners[0][1]["output_dir"]).name]
    assert w.store.search_evidence(EvidenceQuery(kind=ro.KIND_EXECUTION)).total == 1
    assert w.ops().search_rollouts(w.store, StepFilter(step="execution"))["total"] == 1
    assert w.store.search_evidence(EvidenceQuery(kind="approval-consumption")).total == 1
    approval = w.store.approvals.get(requested["approval_id"])
    assert approval.consumed_by == winners[0][1]["executed_by"]
    assert verify_evidence(w.store, check_files=True).ok


def test_concurrent_rollbacks_of_one_execution_yield_one(rollout_world: RolloutWorld, db_url: str) -> None:
    w = rollout_world
    _, _, executed = w.promoted()
    rr = w.request_rollback(executed["execution_path"])
    w.approve(rr["approval_id"], actor="frank")
    # a second approval with the same binding, opened by hand, races too (it has no signed request)
    data = Path(executed["execution_path"]).read_bytes()
    doc = json.loads(data)
    spare = request_approval(w.store, action=ro.ACTION_ROLLBACK, subject_digest=ro.bytes_digest(data),
                             target=ro.rollback_target(doc["execution_id"], "broad", "pilot"), requester="gina",
                             now=later(0.4))
    w.approve(spare.approval_id, actor="hank", at=later(0.41))

    def attempt(n: int, approval_id: str) -> Callable[[Any], dict[str, Any]]:
        return lambda store: w.ops().execute_rollback(
            store, execution_path=Path(executed["execution_path"]), approval_id=approval_id, actor=f"op-{n}",
            trust_root=w.keys.trust_root, now=later(0.5), output=w.work / f"rollback-{n}")

    results = _race(db_url, [attempt(n, rr["approval_id"] if n % 2 else spare.approval_id) for n in range(6)])
    winners = [r for r in results if r[0] == "ok"]
    assert len(winners) == 1, results
    assert winners[0][1]["approval_id"] == rr["approval_id"]
    assert all(r[0] == "refused" for r in results if r[0] != "ok"), results
    assert w.store.search_evidence(EvidenceQuery(kind=ro.KIND_ROLLBACK)).total == 1
    assert len([p for p in w.work.iterdir() if p.name.startswith("rollback-")]) == 1
    assert verify_evidence(w.store, check_files=True).ok
