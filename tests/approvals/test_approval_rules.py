"""Approval workflow on the real store (SQLite and PostgreSQL): every rule and every attack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ringward.core.approvals.rules import ApprovalState, Decision, parse_duration
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalConsumedError,
    ApprovalExpiredError,
    ApprovalNotFoundError,
    ApprovalStateError,
    InputError,
    SeparationOfDutiesError,
)
from ringward.core.evidence.query import EvidenceQuery
from ringward.operations.approvals import approval_ops as ops
from ringward.operations.evidence.evidence_ops import verify_evidence
from ringward.store import Store, open_store
from tests.store import workers

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
DIGEST = "sha256:" + "e" * 64
BINDING = {"action": "promote-ring", "subject_digest": DIGEST, "target": "production"}


def _request(store: Store, *, quorum: int = 1, ttl: timedelta = timedelta(hours=24), at: datetime = T0) -> str:
    approval = ops.request_approval(
        store, **BINDING, requester="alice", quorum=quorum, expires_in=ttl, now=at, note="release 1.2.3"
    )
    assert approval.state is ApprovalState.PENDING
    return approval.approval_id


def _approve(store: Store, approval_id: str, actor: str, *, at: datetime = T0) -> ApprovalState:
    return ops.decide_approval(store, approval_id, decision=Decision.APPROVE, actor=actor, reason="ok", now=at).state


def _consume(store: Store, approval_id: str, *, at: datetime = T0, **binding: str) -> object:
    return ops.consume_approval(store, approval_id, **{**BINDING, **binding}, actor="executor", now=at)


def test_request_approve_consume_and_every_transition_is_evidence(store: Store) -> None:
    approval_id = _request(store)
    assert _approve(store, approval_id, "bob") is ApprovalState.APPROVED
    consumed = ops.consume_approval(store, approval_id, **BINDING, actor="executor", execution_ref="exec-1", now=T0)
    assert consumed.consumed_by == "executor" and consumed.execution_ref == "exec-1"
    page = store.search_evidence(EvidenceQuery(approval_id=approval_id, order="oldest"))
    assert [(r.kind, r.actor, r.subject.status) for r in page.items] == [
        ("approval-request", "alice", "requested"),
        ("approval-decision", "bob", "approved"),
        ("approval-consumption", "executor", "consumed"),
    ]
    assert page.items[-1].payload["execution_ref"] == "exec-1"
    assert verify_evidence(store, check_files=False).ok


def test_requester_cannot_approve_or_deny_own_request(store: Store) -> None:
    approval_id = _request(store)
    for decision in (Decision.APPROVE, Decision.DENY):
        for alias in ("alice", " Alice ", "ALICE"):
            with pytest.raises(SeparationOfDutiesError, match="requested it"):
                ops.decide_approval(store, approval_id, decision=decision, actor=alias, reason="mine", now=T0)
    assert ops.show_approval(store, approval_id).state is ApprovalState.PENDING


def test_quorum_needs_distinct_approvers(store: Store) -> None:
    approval_id = _request(store, quorum=2)
    assert _approve(store, approval_id, "bob") is ApprovalState.PENDING
    with pytest.raises(SeparationOfDutiesError, match="already approved"):
        _approve(store, approval_id, "BOB")
    with pytest.raises(ApprovalStateError, match="expected approved"):
        _consume(store, approval_id)
    assert _approve(store, approval_id, "carol") is ApprovalState.APPROVED
    shown = ops.show_approval(store, approval_id)
    assert shown.approvers() == ["bob", "carol"] and shown.decided_by == "bob, carol"


def test_deny_is_final(store: Store) -> None:
    approval_id = _request(store)
    ops.decide_approval(store, approval_id, decision=Decision.DENY, actor="bob", reason="risky", now=T0)
    with pytest.raises(ApprovalStateError, match="state denied, expected pending"):
        _approve(store, approval_id, "carol")
    with pytest.raises(ApprovalStateError, match="expected approved"):
        _consume(store, approval_id)


def test_expired_approval_cannot_be_decided_and_expiry_is_recorded(store: Store) -> None:
    approval_id = _request(store, ttl=timedelta(hours=1))
    with pytest.raises(ApprovalExpiredError, match="expired at"):
        _approve(store, approval_id, "bob", at=T0 + timedelta(hours=1))
    shown = ops.show_approval(store, approval_id)
    assert shown.state is ApprovalState.EXPIRED
    assert shown.votes[-1].decision is Decision.EXPIRE
    kinds = [r.subject.status for r in store.search_evidence(EvidenceQuery(approval_id=approval_id)).items]
    assert kinds[0] == "expired"


def test_expired_approval_cannot_be_used(store: Store) -> None:
    approval_id = _request(store, ttl=timedelta(hours=1))
    _approve(store, approval_id, "bob")
    with pytest.raises(ApprovalExpiredError):
        _consume(store, approval_id, at=T0 + timedelta(hours=2))
    assert ops.show_approval(store, approval_id).state is ApprovalState.EXPIRED
    with pytest.raises(ApprovalStateError):  # still refused after the expiry was written down
        _consume(store, approval_id, at=T0 + timedelta(minutes=5))


def test_replayed_consume_fails(store: Store) -> None:
    approval_id = _request(store)
    _approve(store, approval_id, "bob")
    _consume(store, approval_id)
    with pytest.raises(ApprovalConsumedError, match="already consumed"):
        _consume(store, approval_id)
    with pytest.raises(ApprovalConsumedError):
        ops.decide_approval(store, approval_id, decision=Decision.REVOKE, actor="bob", reason="late", now=T0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("action", "rollback-ring"), ("subject_digest", "sha256:" + "f" * 64), ("target", "broad")],
)
def test_consume_with_another_binding_fails(store: Store, field: str, value: str) -> None:
    approval_id = _request(store)
    _approve(store, approval_id, "bob")
    with pytest.raises(ApprovalBindingError, match=f"{field} expected"):
        _consume(store, approval_id, **{field: value})
    assert ops.show_approval(store, approval_id).consumed_at is None


def test_revoke_pending_and_approved(store: Store) -> None:
    first = _request(store)
    assert (
        ops.decide_approval(store, first, decision=Decision.REVOKE, actor="alice", reason="withdrawn", now=T0).state
        is ApprovalState.REVOKED
    )
    second = _request(store)
    _approve(store, second, "bob")
    ops.decide_approval(store, second, decision=Decision.REVOKE, actor="carol", reason="freeze", now=T0)
    with pytest.raises(ApprovalStateError):
        _consume(store, second)


def test_unknown_approval_and_blank_inputs(store: Store) -> None:
    with pytest.raises(ApprovalNotFoundError):
        _approve(store, "apr_000000000000", "bob")
    approval_id = _request(store)
    with pytest.raises(InputError, match="reason"):
        ops.decide_approval(store, approval_id, decision=Decision.APPROVE, actor="bob", reason="  ", now=T0)
    with pytest.raises(InputError, match="actor"):
        ops.decide_approval(store, approval_id, decision=Decision.APPROVE, actor="", reason="x", now=T0)
    with pytest.raises(InputError, match="subject_digest: expected sha256"):
        ops.request_approval(store, action="a", subject_digest="md5:abc", target="t", requester="r", now=T0)
    with pytest.raises(InputError, match="expires_in"):
        ops.request_approval(store, **BINDING, requester="r", expires_in=timedelta(days=91), now=T0)


def test_list_filters_on_effective_state(store: Store) -> None:
    pending = _request(store, ttl=timedelta(hours=2))
    stale = _request(store, ttl=timedelta(minutes=30))
    approved = _request(store)
    _approve(store, approved, "bob")
    later = T0 + timedelta(hours=1)

    def ids(state: ApprovalState) -> set[str]:
        items, total = ops.list_approvals(store, state=state, now=later)
        assert total == len(items)
        return {a.approval_id for a in items}

    assert ids(ApprovalState.PENDING) == {pending}
    assert ids(ApprovalState.EXPIRED) == {stale}
    assert ids(ApprovalState.APPROVED) == {approved}
    assert ops.expire_due_approvals(store, now=later) == [stale]
    assert ops.show_approval(store, stale).state is ApprovalState.EXPIRED
    with pytest.raises(InputError, match="limit"):
        ops.list_approvals(store, limit=0, now=later)


def test_edited_approval_row_cannot_bypass_the_vote_record(store: Store) -> None:
    """An attacker with DB access flips a pending approval to approved: AP6 refuses to use it."""
    approval_id = _request(store)
    with store.writing() as conn:
        conn.execute(sa.text("UPDATE approval SET state = 'approved' WHERE approval_id = :id"), {"id": approval_id})
    with pytest.raises(ApprovalStateError, match="0 of 1 required approvals"):
        _consume(store, approval_id)


def test_parse_duration() -> None:
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "0h", "24", "1y", "-1h", "100d"):
        with pytest.raises(InputError, match="--expires-in"):
            parse_duration(bad)


def test_concurrent_approve_and_deny_produce_exactly_one_decision(db_url: str) -> None:
    with open_store(db_url) as store:
        approval_ids = [_request(store, at=datetime.now(UTC)) for _ in range(3)]
    for approval_id in approval_ids:
        args = [(db_url, approval_id, f"approver-{i}", "approve" if i % 2 else "deny") for i in range(6)]
        results = workers.run_parallel(workers.decide_worker, args)
        winners = [r for r in results if r[0] == "ok"]
        assert len(winners) == 1, results
        assert all(r[0] == "refused" and r[2] in ("approval-state", "store-conflict") for r in results if r[0] != "ok")
        with open_store(db_url) as store:
            shown = ops.show_approval(store, approval_id)
            assert shown.state.value == winners[0][2]
            assert [v.actor for v in shown.votes] == [winners[0][1]]
            decisions = store.search_evidence(EvidenceQuery(approval_id=approval_id, kind="approval-decision"))
            assert decisions.total == 1


def test_concurrent_double_consume_only_one_wins(db_url: str) -> None:
    with open_store(db_url) as store:
        approval_id = _request(store, at=datetime.now(UTC))
        ops.decide_approval(
            store, approval_id, decision=Decision.APPROVE, actor="bob", reason="ok", now=datetime.now(UTC)
        )
    args = [(db_url, approval_id, BINDING["action"], DIGEST, BINDING["target"], f"exec-{i}") for i in range(6)]
    results = workers.run_parallel(workers.consume_worker, args)
    assert sum(r[0] == "ok" for r in results) == 1, results
    assert {r[2] for r in results if r[0] != "ok"} <= {"approval-consumed", "store-conflict"}
    with open_store(db_url) as store:
        assert store.search_evidence(EvidenceQuery(approval_id=approval_id, kind="approval-consumption")).total == 1
        assert verify_evidence(store, check_files=False).ok
