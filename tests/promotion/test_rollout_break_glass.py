"""A rollout execution outside its promotion window is one decision: the promotion approval, the
break-glass approval and the execution record are committed together or not at all, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ringward.core.approvals.rules import Approval
from ringward.core.errors import ApprovalConsumedError
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.promotion import rollout as ro
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.settings import evidence_root
from ringward.store.promotion.executions_repo import StepFilter
from tests.promotion.conftest import RolloutWorld, later
from tests.promotion.test_rollout_concurrency import REFUSED, _race
from tests.promotion.test_rollout_refusals import FREEZE, _approved, _break_glass


def _closed_window(w: RolloutWorld) -> tuple[Path, dict[str, Any], str]:
    """A freeze over ring:broad, an approved promotion request and an approved break-glass approval."""
    policy = w.work.parent / "windows.yaml"
    policy.write_text(FREEZE)
    requested = _approved(w)
    return policy, requested, _break_glass(w, requested["request_id"])


def _consume_elsewhere(w: RolloutWorld, approval: Approval) -> None:
    w.store.approvals.consume(approval.approval_id, action=approval.action, subject_digest=approval.subject_digest,
                              target=approval.target, actor="mallory", now=later(0.25), execution_ref="elsewhere")


def _recorded(w: RolloutWorld, kind: str) -> int:
    return w.store.search_evidence(EvidenceQuery(kind=kind)).total or 0


@pytest.mark.parametrize("when", ["before", "during"])
def test_a_consumed_break_glass_approval_leaves_the_promotion_approval_unused(
    rollout_world: RolloutWorld, when: str
) -> None:
    """``before``: consumed before the execution starts (its checks refuse it). ``during``: consumed
    by a concurrent execution after those checks read it unused -- the decision itself refuses it,
    and the promotion approval it had already consumed in that transaction is rolled back with it."""
    w = rollout_world
    policy, requested, glass = _closed_window(w)
    if when == "before":
        _consume_elsewhere(w, w.store.approvals.get(glass))
    else:
        real_get: Callable[[str], Approval] = w.store.approvals.get

        def get_then_lose_the_race(approval_id: str) -> Approval:
            seen = real_get(approval_id)
            if approval_id == glass and seen.consumed_at is None:
                _consume_elsewhere(w, seen)  # another execution wins right after this read
            return seen

        w.store.approvals.get = get_then_lose_the_race  # type: ignore[method-assign]
    try:
        with pytest.raises(ApprovalConsumedError, match=rf"approval {glass}: already consumed"):
            w.execute(requested["request_path"], requested["approval_id"], windows=policy,
                      break_glass_approval=glass, output=w.work / "execution")
    finally:
        vars(w.store.approvals).pop("get", None)
    assert w.store.approvals.get(requested["approval_id"]).consumed_at is None
    assert w.store.approvals.get(glass).execution_ref == "elsewhere"
    assert _recorded(w, ro.KIND_EXECUTION) == 0
    assert w.ops().search_rollouts(w.store, StepFilter(step="execution"))["total"] == 0
    assert _recorded(w, "approval-consumption") == 1  # mallory's, only
    assert not (w.work / "execution").exists()
    assert not [p for p in (evidence_root() / ro.KIND_EXECUTION).rglob("*") if p.is_file()]
    (refusal,) = w.store.search_evidence(EvidenceQuery(kind=ro.KIND_REFUSAL)).items
    assert refusal.payload["code"] == "approval-consumed" and refusal.payload["step"] == "execution"
    # the promotion approval is still usable once the window opens again
    done = w.execute(requested["request_path"], requested["approval_id"], windows=policy, at=later(21),
                     output=w.work / "after-the-freeze")
    assert done["break_glass"] is False
    assert verify_evidence(w.store, check_files=True).ok


def test_four_concurrent_break_glass_executions_yield_one(rollout_world: RolloutWorld, db_url: str) -> None:
    w = rollout_world
    policy, requested, glass = _closed_window(w)

    def attempt(n: int) -> Callable[[Any], dict[str, Any]]:
        return lambda store: w.ops().execute_promotion(
            store, request_path=Path(requested["request_path"]), approval_id=requested["approval_id"],
            actor=f"executor-{n}", trust_root=w.keys.trust_root, windows=policy, break_glass_approval=glass,
            now=later(0.3), output=w.work / f"exec-{n}")

    results = _race(db_url, [attempt(n) for n in range(4)])
    winners = [r[1] for r in results if r[0] == "ok"]
    assert len(winners) == 1, results
    assert {r[1] for r in results if r[0] != "ok"} <= REFUSED, results
    (winner,) = winners
    assert winner["break_glass"] is True
    assert [p.name for p in w.work.iterdir() if p.name.startswith("exec-")] == [Path(winner["output_dir"]).name]
    assert _recorded(w, ro.KIND_EXECUTION) == 1
    assert _recorded(w, "approval-consumption") == 2  # the promotion approval and the break glass, once each
    for approval_id in (requested["approval_id"], glass):
        approval = w.store.approvals.get(approval_id)
        assert approval.consumed_by == winner["executed_by"] and approval.execution_ref == winner["execution_id"]
    assert verify_evidence(w.store, check_files=True).ok
