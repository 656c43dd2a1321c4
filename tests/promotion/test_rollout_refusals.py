"""Every refusal of the rollout flow: each test fails if its check is removed, and a refused step
leaves no output directory and no ledger row, only its refusal record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.core.common.checksums import render_checksums
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalExpiredError,
    ApprovalStateError,
    BindingMismatchError,
    DigestMismatchError,
    ExecutionReplayError,
    InputError,
    MalformedDocumentError,
    SeparationOfDutiesError,
    SignatureError,
    StateError,
    UntrustedKeyError,
    VerificationError,
)
from ringward.core.evidence.query import EvidenceQuery
from ringward.core.promotion import rollout as ro
from ringward.core.promotion.signed_payload import ROLLOUT_PROMOTION_SIGNATURE, sign_payload
from ringward.operations.approvals.approval_ops import request_approval
from tests.promotion.conftest import RolloutWorld, later

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None], *,
             key: Ed25519PrivateKey | None = None) -> None:
    """Edit a signed request in place; with ``key``, re-sign it (an insider with a pinned key)."""
    document = json.loads(path.read_bytes())
    change(document)
    if key is not None:
        document = sign_payload(document, private_key=key, signer="mallory", schema_version=ROLLOUT_PROMOTION_SIGNATURE)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _executions(w: RolloutWorld) -> int:
    return w.store.search_evidence(EvidenceQuery(kind=ro.KIND_EXECUTION)).total or 0


def _refusals(w: RolloutWorld, code: str) -> int:
    page = w.store.search_evidence(EvidenceQuery(kind=ro.KIND_REFUSAL, limit=500))
    return sum(1 for r in page.items if r.payload["code"] == code)


def _requested(w: RolloutWorld, **extra: Any) -> dict[str, Any]:
    return w.request(w.capture()["output_dir"], **extra)


def _approved(w: RolloutWorld) -> dict[str, Any]:
    requested = _requested(w)
    w.approve(requested["approval_id"])
    return requested


# --- the request -------------------------------------------------------------------------------------


@SQLITE
def test_request_signed_by_unpinned_or_release_key_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    captured = w.capture()
    with pytest.raises(UntrustedKeyError, match="not pinned"):
        w.request(captured["output_dir"], key=w.keys.unpinned_pem)
    with pytest.raises(UntrustedKeyError, match="expected an active promotion-role key"):
        w.request(captured["output_dir"], key=w.keys.release_pem)
    assert w.store.approvals.list(now=later())[1] == 0  # nothing opened
    assert [p.name for p in w.work.iterdir() if p.name.startswith("rpr_")] == []


@SQLITE
def test_forged_request_under_an_unpinned_key_is_refused_at_execution(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    _rewrite(Path(requested["request_path"]), lambda d: d.update(change_record="CHG-FORGED"), key=w.keys.unpinned)
    with pytest.raises(UntrustedKeyError, match="does not pin"):
        w.execute(requested["request_path"], requested["approval_id"])
    assert _executions(w) == 0 and w.store.approvals.get(requested["approval_id"]).consumed_at is None
    assert _refusals(w, "untrusted-key") == 1


@SQLITE
def test_release_role_signed_request_is_refused_at_execution(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    _rewrite(Path(requested["request_path"]), lambda d: None, key=w.keys.release)
    with pytest.raises(UntrustedKeyError, match="expected a promotion-role key"):
        w.execute(requested["request_path"], requested["approval_id"])
    assert _executions(w) == 0


def test_request_tampered_after_approval_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    path = Path(requested["request_path"])
    original = path.read_bytes()
    _rewrite(path, lambda d: d.update(target_ring="production"))
    with pytest.raises(SignatureError, match="changed after signing"):
        w.execute(path, requested["approval_id"])
    # an insider re-signs the altered request with the pinned promotion key: the binding still holds
    path.write_bytes(original)
    _rewrite(path, lambda d: d["deployment_targets"].pop(), key=w.keys.promotion)
    with pytest.raises(ApprovalBindingError, match="subject_digest"):
        w.execute(path, requested["approval_id"])
    assert _executions(w) == 0 and w.store.approvals.get(requested["approval_id"]).consumed_at is None


@SQLITE
def test_approval_for_another_ring_or_rollout_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    captured = w.capture()
    broad = w.request(captured["output_dir"], target_ring="broad")
    production = w.request(captured["output_dir"], target_ring="production")
    w.approve(production["approval_id"])
    with pytest.raises(ApprovalBindingError, match="the approval the request opened"):
        w.execute(broad["request_path"], production["approval_id"])
    # re-signed by an insider to name the other approval: the store's binding (target) refuses it
    _rewrite(Path(broad["request_path"]), lambda d: d["approval"].update(approval_id=production["approval_id"]),
             key=w.keys.promotion)
    with pytest.raises(ApprovalBindingError, match=r"subject_digest|target"):
        w.execute(broad["request_path"], production["approval_id"])
    # an approval for another rollout
    other = w.request(w.capture(ring="canary", rollout_id="canary-1")["output_dir"], target_ring="broad")
    w.approve(other["approval_id"])
    _rewrite(Path(production["request_path"]), lambda d: d["approval"].update(approval_id=other["approval_id"]),
             key=w.keys.promotion)
    with pytest.raises(ApprovalBindingError):
        w.execute(production["request_path"], other["approval_id"])
    assert _executions(w) == 0


def test_replayed_execution_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    first = w.execute(requested["request_path"], requested["approval_id"])
    with pytest.raises(ExecutionReplayError, match="already executed"):
        w.execute(requested["request_path"], requested["approval_id"], output=w.work / "again")
    assert not (w.work / "again").exists()
    assert _executions(w) == 1 and Path(first["execution_path"]).is_file()


@SQLITE
def test_expired_approval_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    with pytest.raises(ApprovalExpiredError, match="expired"):
        w.execute(requested["request_path"], requested["approval_id"], at=later(25))
    assert _executions(w) == 0 and not (w.work / ro.promotion_execution_id(
        requested["request_id"], requested["approval_id"])).exists()


@SQLITE
def test_self_approval_is_refused_and_authorises_nothing(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _requested(w, requester="alice")
    with pytest.raises(SeparationOfDutiesError):
        w.approve(requested["approval_id"], actor="Alice ")
    with pytest.raises(ApprovalStateError, match="expected approved"):
        w.execute(requested["request_path"], requested["approval_id"], actor="alice")


@SQLITE
def test_quorum_is_required(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _requested(w, quorum=2)
    w.approve(requested["approval_id"], actor="bob")
    with pytest.raises(ApprovalStateError):
        w.execute(requested["request_path"], requested["approval_id"])
    w.approve(requested["approval_id"], actor="zoe", at=later(0.25))
    assert w.execute(requested["request_path"], requested["approval_id"])["approval"]["approvers"] == ["bob", "zoe"]


@SQLITE
def test_planned_rollout_cannot_be_requested(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    captured = w.capture(status="planned")
    with pytest.raises(StateError, match="staged or succeeded"):
        w.request(captured["output_dir"])
    assert w.store.approvals.list(now=later())[1] == 0


@SQLITE
@pytest.mark.parametrize("record", [None, "", "  ", "unassigned", "UNASSIGNED"])
def test_capture_requires_a_change_record(rollout_world: RolloutWorld, record: str | None) -> None:
    w = rollout_world
    with pytest.raises(InputError, match="change record is required"):
        w.capture(change_record=record, output=w.work / "refused")
    assert not (w.work / "refused").exists()


@SQLITE
def test_unassigned_change_record_in_rollout_evidence_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    rollout_dir = Path(w.capture()["output_dir"])
    _edit_rollout(rollout_dir, lambda d: d.update(change_record="unassigned"))
    with pytest.raises(MalformedDocumentError, match="change_record"):
        w.ops().verify_rollout(w.store, rollout_dir=rollout_dir, trust_root=w.keys.trust_root, actor="a",
                               now=later())


def _edit_rollout(rollout_dir: Path, change: Callable[[dict[str, Any]], None], *, fix_checksums: bool = True) -> None:
    path = rollout_dir / ro.ROLLOUT_EVIDENCE_FILE
    document = json.loads(path.read_bytes())
    change(document)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    if fix_checksums:
        digests = {name: hashlib.sha256((rollout_dir / name).read_bytes()).hexdigest()
                   for name in (ro.ROLLOUT_EVIDENCE_FILE, ro.ROLLOUT_EVIDENCE_MD)}
        (rollout_dir / "checksums.txt").write_bytes(render_checksums(digests))


@SQLITE
def test_rollout_evidence_tampered_after_capture_is_caught_at_execution(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    rollout_dir = Path(json.loads(Path(requested["request_path"]).read_bytes())["rollout_dir"])
    _edit_rollout(rollout_dir, lambda d: d.update(actor="someone-else"), fix_checksums=False)
    with pytest.raises(DigestMismatchError, match="rollout checksum mismatch"):
        w.execute(requested["request_path"], requested["approval_id"])
    _edit_rollout(rollout_dir, lambda d: d.update(actor="someone-else"))  # checksums made consistent
    with pytest.raises(BindingMismatchError, match="changed since the request"):
        w.execute(requested["request_path"], requested["approval_id"])
    (rollout_dir / "extra.txt").write_text("planted")
    with pytest.raises(VerificationError, match="not listed"):
        w.execute(requested["request_path"], requested["approval_id"])
    assert _executions(w) == 0 and w.store.approvals.get(requested["approval_id"]).consumed_at is None


@SQLITE
def test_package_tampered_between_request_and_execution_is_caught(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    requested = _approved(w)
    binary = sorted((w.package / "bin").iterdir())[0]
    w.sim.flip_bit(binary)
    with pytest.raises(VerificationError, match="release package"):
        w.execute(requested["request_path"], requested["approval_id"])
    assert _executions(w) == 0 and w.store.approvals.get(requested["approval_id"]).consumed_at is None


@SQLITE
def test_source_artifact_changed_is_caught(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    rollout_dir = Path(w.capture()["output_dir"])
    _edit_rollout(rollout_dir, lambda d: d["source_artifacts"]["release_evidence"].update(sha256="0" * 64))
    with pytest.raises(DigestMismatchError, match="rollout source artifact checksum mismatch"):
        w.ops().verify_rollout(w.store, rollout_dir=rollout_dir, trust_root=w.keys.trust_root, actor="a",
                               now=later())


# --- rollback ----------------------------------------------------------------------------------------


def test_rollback_happens_once_even_with_a_fresh_approval(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    _, _, executed = w.promoted()
    rr = w.request_rollback(executed["execution_path"])
    w.approve(rr["approval_id"], actor="frank")
    w.rollback(executed["execution_path"], rr["approval_id"])
    with pytest.raises(ExecutionReplayError, match="already rolled back"):
        w.rollback(executed["execution_path"], rr["approval_id"], output=w.work / "again")
    with pytest.raises(ExecutionReplayError, match="already rolled back"):
        w.request_rollback(executed["execution_path"], requester="gina")
    # a fresh approval with exactly the rollback binding, opened by hand, changes nothing
    data = Path(executed["execution_path"]).read_bytes()
    doc = json.loads(data)
    fresh = request_approval(
        w.store, action=ro.ACTION_ROLLBACK, subject_digest=ro.bytes_digest(data),
        target=ro.rollback_target(doc["execution_id"], "broad", "pilot"), requester="gina", now=later(0.6))
    w.approve(fresh.approval_id, actor="hank", at=later(0.61))
    with pytest.raises(ExecutionReplayError, match="already rolled back"):
        w.rollback(executed["execution_path"], fresh.approval_id, at=later(0.7), output=w.work / "again2")
    assert not (w.work / "again").exists() and not (w.work / "again2").exists()
    assert w.store.search_evidence(EvidenceQuery(kind=ro.KIND_ROLLBACK)).total == 1
    assert w.store.approvals.get(fresh.approval_id).consumed_at is None


def test_rollback_approval_bound_to_another_execution_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    _, _, first = w.promoted()
    other = w.request(w.capture(ring="canary", rollout_id="canary-1")["output_dir"], target_ring="pilot")
    w.approve(other["approval_id"])
    second = w.execute(other["request_path"], other["approval_id"])
    rr = w.request_rollback(first["execution_path"])
    w.approve(rr["approval_id"], actor="frank")
    with pytest.raises(ApprovalBindingError, match="subject_digest"):
        w.rollback(second["execution_path"], rr["approval_id"])
    assert w.store.approvals.get(rr["approval_id"]).consumed_at is None
    assert w.store.search_evidence(EvidenceQuery(kind=ro.KIND_ROLLBACK)).total == 0


@SQLITE
def test_altered_execution_record_cannot_be_rolled_back_or_audited(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    _, _, executed = w.promoted()
    path = Path(executed["execution_path"])
    doc = json.loads(path.read_bytes())
    doc["ring_advancement"]["from"] = "canary"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with pytest.raises(BindingMismatchError, match="altered"):
        w.request_rollback(path)
    with pytest.raises(BindingMismatchError, match="altered"):
        w.ops().audit(w.store, record_path=path, output=w.work / "audit", actor="soc")
    assert not (w.work / "audit").exists()


@SQLITE
def test_rollback_without_a_signed_request_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    _, _, executed = w.promoted()
    data = Path(executed["execution_path"]).read_bytes()
    doc = json.loads(data)
    hand_made = request_approval(
        w.store, action=ro.ACTION_ROLLBACK, subject_digest=ro.bytes_digest(data),
        target=ro.rollback_target(doc["execution_id"], "broad", "pilot"), requester="gina", now=later(0.4))
    w.approve(hand_made.approval_id, actor="hank", at=later(0.45))
    with pytest.raises(StateError, match="no signed rollback request"):
        w.rollback(executed["execution_path"], hand_made.approval_id)


@SQLITE
def test_rerequest_reuses_the_live_approval(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    captured = w.capture()
    first = w.request(captured["output_dir"])
    again = w.request(captured["output_dir"], at=later(0.15))
    assert again["approval_id"] == first["approval_id"] and again["approval_reused"] is True
    assert again["request_id"] == first["request_id"]
    w.approve(first["approval_id"])
    # the second request file is just as executable (same binding)
    assert w.execute(again["request_path"], again["approval_id"])["approval_id"] == first["approval_id"]
    # once used, a new request opens a new approval (and the promoted rollout is refused anyway)
    with pytest.raises(ExecutionReplayError, match="already promoted"):
        w.request(captured["output_dir"], at=later(0.6))


@SQLITE
def test_capturing_the_same_rollout_id_twice_is_refused(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    w.capture()
    with pytest.raises(StateError, match="already captured"):
        w.capture(output=w.work / "second")  # same environment, version and second: same default id
    assert not (w.work / "second").exists()


# --- promotion windows ------------------------------------------------------------------------------

FREEZE = """\
schema_version: ringward.promotion-windows.v1
freezes:
  - name: broad-freeze
    targets: [ring:broad]
    reason: Thanksgiving change freeze
    start_at: 2026-11-22T00:00:00Z
    end_at: 2026-11-23T08:00:00Z
"""


def _break_glass(w: RolloutWorld, request_id: str, *, approver: str = "ciso") -> str:
    from ringward.core.promotion.windows_policy import BREAK_GLASS_ACTION, break_glass_binding

    binding = break_glass_binding(["ring:broad", "environment:production"], subject=request_id,
                                  overridden_action="rollout")
    approval = request_approval(w.store, action=BREAK_GLASS_ACTION, subject_digest=binding.subject_digest,
                                target=binding.target, requester="carol", now=later(0.21))
    w.approve(approval.approval_id, actor=approver, at=later(0.22), reason="sev1 fix must ship")
    return approval.approval_id


@SQLITE
def test_closed_window_refuses_with_the_next_opening(rollout_world: RolloutWorld) -> None:
    from ringward.core.errors import PromotionWindowError

    w = rollout_world
    policy = w.work.parent / "windows.yaml"
    policy.write_text(FREEZE)
    requested = _approved(w)
    with pytest.raises(PromotionWindowError, match=r"broad-freeze.*next opening 2026-11-23T08:00:00Z"):
        w.execute(requested["request_path"], requested["approval_id"], windows=policy)
    assert _executions(w) == 0 and w.store.approvals.get(requested["approval_id"]).consumed_at is None
    refusal = w.store.search_evidence(EvidenceQuery(kind=ro.KIND_REFUSAL)).items[0]
    assert refusal.payload["code"] == "window-closed" and refusal.payload["window"]["allowed"] is False
    # after the freeze the same approval executes (approved for 24 h)
    done = w.execute(requested["request_path"], requested["approval_id"], windows=policy, at=later(21))
    assert done["break_glass"] is False and done["window"]["allowed"] is True


@SQLITE
def test_break_glass_runs_a_closed_window_and_is_marked(rollout_world: RolloutWorld) -> None:
    w = rollout_world
    policy = w.work.parent / "windows.yaml"
    policy.write_text(FREEZE)
    requested = _approved(w)
    other = _break_glass(w, "rpr_000000000000")
    from ringward.core.errors import ApprovalBindingError as Binding

    with pytest.raises(Binding):  # a break-glass approval for another execution does not count
        w.execute(requested["request_path"], requested["approval_id"], windows=policy, break_glass_approval=other)
    glass = _break_glass(w, requested["request_id"])
    done = w.execute(requested["request_path"], requested["approval_id"], windows=policy,
                     break_glass_approval=glass)
    doc = json.loads(Path(done["execution_path"]).read_bytes())
    assert doc["break_glass"] is True and doc["break_glass_approval_id"] == glass
    assert "break-glass-approval-consumed" in doc["controls"] and doc["window"]["allowed"] is False
    assert w.store.approvals.get(glass).consumed_at is not None
    record = w.store.get_evidence(int(done["evidence"]["evidence_id"]))
    assert record.payload["break_glass"] is True
