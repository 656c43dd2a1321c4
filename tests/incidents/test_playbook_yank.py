"""Release yank end to end, in-process: 1.3.0 is yanked on stable under an approval (the high-water mark
stays at 1.3.0), the channel is held, the fleet's latest observations are reconciled against the
replacement 1.2.3 and a rollback remediation request is opened for the hosts running 1.3.0; afterwards
1.3.0 is never requested or exported again and 1.2.3 is not silently promoted in its place. Plus the
promotion domain's yank rules (CH5) on their own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ringward.core.errors import RollbackError, YankedReleaseError
from ringward.core.promotion.channels import (
    ChannelState,
    PromotedRelease,
    check_candidate,
    check_not_yanked,
    previous_release,
    yank,
)
from tests.incidents.test_playbook_world import (  # noqa: F401 - the fixture
    PLAYBOOK_STEP,
    World,
    at,
    cli,
    step,
    world,
)
from tests.release.simulator import NOW

D1, D2, D3 = ("sha256:" + c * 64 for c in "abc")


def _release(version: str, digest: str, hours: float) -> PromotedRelease:
    return PromotedRelease(version=version, digest=digest, promoted_at=NOW + timedelta(hours=hours), actor="carol")


def test_yank_rules_ch5() -> None:
    state = ChannelState(channel="stable")
    for n, (version, digest) in enumerate((("1.2.3", D1), ("1.3.0", D2), ("1.4.0", D3))):
        state = state.model_copy(update={"history": (*state.history, _release(version, digest, n)),
                                         "current": _release(version, digest, n), "high_water": _release(version,
                                                                                                        digest, n)})
    assert "yanked" not in state.stored_value() and "yanked" not in state.to_document()  # unchanged row shape
    yanked, changed = yank(state, version="v1.3.0", digest=D2, actor="secops", reason="bad build", now=NOW, ref="r")
    assert changed and yanked.high_water == state.high_water and yanked.current == state.current
    assert yank(yanked, version="1.3.0", digest=None, actor="x", reason="again", now=NOW)[1] is False
    assert yanked.stored_value()["yanked"][0]["version"] == "v1.3.0"
    with pytest.raises(YankedReleaseError, match=r"1\.3\.0 was yanked by secops"):
        check_candidate(yanked, version="1.3.0", digest=D2)
    with pytest.raises(YankedReleaseError):  # the yank is checked before the hold
        check_candidate(yanked.model_copy(update={"hold": None}), version="1.3.0+build", digest=D2)
    check_not_yanked(yanked, "1.4.0")
    assert previous_release(state) is not None and previous_release(state).version == "1.3.0"
    assert previous_release(yanked).version == "1.2.3"  # a rollback never lands on a yanked version
    with pytest.raises(RollbackError):
        check_candidate(yanked, version="1.2.3", digest=D1)


def test_yank_end_to_end(world: World, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    w = world
    old = w.package("1.2.3")
    new = w.package("1.3.0")
    w.promote(old, hours=0.1)
    w.promote(new, hours=0.3)
    # a re-export of 1.3.0 approved before the yank (same version, same bytes: allowed until the yank)
    pending = w.request(new, hours=0.5)
    w.approve(pending["approval_id"], hours=0.55)
    fleet = w.fleet(old, "1.2.3", prefix="old") + w.fleet(new, "1.3.0", prefix="new")[:2]
    w.ingest(fleet, hours=0.6)

    base = ["playbook", "yank", "--version", "1.3.0", "--replacement", str(old), "--remediation-key",
            str(w.keys.remediation_pem), "--trust-root", str(w.keys.trust_root), "--reason", "crash on start",
            "--json"]
    code, first, err = cli(capsys, *base, "--at", at(1).isoformat())
    assert code == 0, err
    assert first["awaiting"]["step"] == "yank" and first["awaiting"]["plan"]["channels"] == ["stable"]
    assert step(first, "locate")["output"]["digest"] == pending["subject_digest"]
    assert len(step(first, "locate")["output"]["binaries"]) >= 4
    assert w.channel().yanked == () and w.channel().hold is None  # nothing destructive without the approval

    approval = first["awaiting"]["approval_id"]
    w.approve(approval, hours=1.1)
    code, done, err = cli(capsys, *base, "--approval", approval, "--at", at(1.2).isoformat())
    assert code == 0, err
    assert done["status"] == "completed"
    state = w.channel()
    assert [y.version for y in state.yanked] == ["1.3.0"] and state.yanked[0].ref == first["run_id"]
    assert state.hold is not None and state.high_water is not None and state.high_water.version == "1.3.0"
    reconciled = step(done, "reconcile")["output"]
    assert reconciled["running_yanked"] == 2
    (row,) = reconciled["ingestions"]
    assert sorted(row["endpoints"]) == ["new-0", "new-1"]
    assert row["reconciliation"]["drift_status"] == "drift_detected"
    (request,) = step(done, "remediate")["output"]["requests"]
    assert request["request_id"].startswith("err_") and w.store.approvals.get(request["approval_id"]).state.value \
        == "pending"
    kinds = {w.store.get_evidence(i).kind for i in step(done, "yank")["evidence_ids"]}
    assert {"approval-request", "approval-consumption", "release-channel-state", PLAYBOOK_STEP} <= kinds
    assert {w.store.get_evidence(i).kind for i in step(done, "remediate")["evidence_ids"]} == {
        "endpoint-drift-remediation-request", PLAYBOOK_STEP}

    # the yanked version is never exported again (checked before the hold), nor requested
    with pytest.raises(YankedReleaseError, match="yanked"):
        w.export(pending, new, hours=1.3)
    code, _, err = cli(capsys, "channel", "request-promotion", str(new), "--channel", "stable", "--target-ring",
                       "enterprise", "--requester", "alice", "--signing-key", str(w.keys.ops_pem), "--trust-root",
                       str(w.keys.trust_root), "--at", at(1.4).isoformat())
    assert code == 1 and "1.3.0 was yanked" in err and "never promoted or exported again" in err
    code, _, err = cli(capsys, "channel", "unhold", "stable", "--reason", "fix in progress", "--actor", "lead")
    assert code == 0, err
    with pytest.raises(YankedReleaseError):
        w.export(pending, new, hours=1.5)
    # the mark stays at 1.3.0: the older release is not re-promoted in its place
    with pytest.raises(RollbackError, match=r"below the high-water mark 1\.3\.0"):
        w.request(old, hours=1.6)
    code, status, _ = cli(capsys, "channel", "status", "--channel", "stable", "--json")
    assert status["channels"][0]["yanked"][0]["version"] == "1.3.0"

    # idempotent: the same yank again repeats nothing
    count = w.count()
    code, again, _ = cli(capsys, *base, "--at", at(2).isoformat())
    assert code == 0 and again["run"] == done["run"] and w.count() == count


def test_yank_refusals(world: World, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    w = world
    package = w.package("1.2.3")
    w.promote(package, hours=0.1)
    code, _, err = cli(capsys, "playbook", "yank", "--version", "9.9.9")
    assert code == 2 and "never promoted on any channel" in err
    code, _, err = cli(capsys, "playbook", "yank", "--version", "1.2")
    assert code == 2 and "not a canonical SemVer" in err
    code, _, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--replacement", str(package))
    assert code == 2 and "--remediation-key" in err
    code, _, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--digest", "sha256:abc")
    assert code == 2 and "--digest" in err
    # without fleet data or a replacement: yank, then reconcile finds nothing and remediation is skipped
    code, first, _ = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--json", "--at", at(1).isoformat())
    approval = first["awaiting"]["approval_id"]
    # an approval approved for another target is refused by its binding
    other = w.request(w.package("1.4.0"), hours=1.05)
    w.approve(other["approval_id"], hours=1.06)
    code, _, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--approval", other["approval_id"],
                       "--at", at(1.1).isoformat())
    assert code == 1 and "awaits approval" in err and w.channel().yanked == ()
    w.approve(approval, hours=1.15)
    code, done, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--approval", approval, "--json",
                          "--at", at(1.2).isoformat())
    assert code == 0, err
    assert step(done, "reconcile")["output"]["running_yanked"] == 0
    assert step(done, "remediate")["status"] == "skipped"
    # an expired approval cannot be used either (a second run of another version)
    from ringward.operations.promotion.channel_ops import unhold_channel

    unhold_channel(w.store, "stable", reason="1.5.0 fixes it", actor="lead", now=at(1.25))
    w.promote(w.package("1.5.0"), hours=1.3)
    code, run2, _ = cli(capsys, "playbook", "yank", "--version", "1.5.0", "--json", "--expires-in", "1h",
                        "--at", at(2).isoformat())
    w.approve(run2["awaiting"]["approval_id"], hours=2.1)
    code, _, err = cli(capsys, "playbook", "yank", "--version", "1.5.0", "--approval",
                       run2["awaiting"]["approval_id"], "--at", at(3.5).isoformat())
    assert code == 1 and "expired" in err
    assert all(y.version != "1.5.0" for y in w.channel().yanked)
    # re-run after expiry: a new approval replaces the expired one
    code, run3, _ = cli(capsys, "playbook", "yank", "--version", "1.5.0", "--json", "--at", at(3.6).isoformat())
    assert run3["awaiting"]["approval_id"] != run2["awaiting"]["approval_id"]
    assert step(run3, "yank")["replaced_approvals"] == [run2["awaiting"]["approval_id"]]
