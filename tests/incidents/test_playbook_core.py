"""The pure playbook rules (run ids, step order, approval binding, detection rules) and the engine's
resume: a destructive step whose effect failed after its approval was consumed finishes on the next run
under that approval -- never a second consumption, never a new approval."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ringward.core.errors import InputError, StateError, StoreConflictError
from ringward.core.incidents import playbooks as pb
from ringward.core.incidents.playbooks import FindingReason, PlaybookKind, StepStatus
from tests.incidents.test_playbook_world import (  # noqa: F401 - the fixture
    PLAYBOOK_STEP,
    World,
    at,
    cli,
    step,
    world,
)
from tests.release.simulator import NOW


def test_run_ids_steps_and_bindings() -> None:
    inputs = {"version": "1.3.0", "digest": None, "channels": ["stable"]}
    run = pb.new_run(PlaybookKind.YANK, inputs, actor="secops", now=NOW)
    assert run.run_id == pb.run_id_for(PlaybookKind.YANK, dict(reversed(list(inputs.items()))))
    assert run.run_id != pb.run_id_for(PlaybookKind.YANK, {**inputs, "channels": ["beta"]})
    assert run.run_id != pb.run_id_for(PlaybookKind.UNAUTHORIZED_RELEASE, inputs)
    assert [s.name for s in run.steps] == ["locate", "yank", "reconcile", "remediate"]
    assert [s.destructive for s in run.steps] == [False, True, False, False]
    assert run.status == "in-progress" and run.next_step().name == "locate"  # type: ignore[union-attr]
    with pytest.raises(StateError, match="step yank waits for step locate"):
        run.check_ready("yank")
    with pytest.raises(InputError, match="not a step of the yank playbook"):
        run.step("revoke-key")
    done = run.with_step(run.step("locate").model_copy(update={"status": StepStatus.DONE}), now=NOW)
    assert done.check_ready("yank").name == "yank"
    waiting = done.with_step(done.step("yank").model_copy(update={"status": StepStatus.AWAITING_APPROVAL}), now=NOW)
    assert waiting.status == "awaiting-approval"
    failed = waiting.with_step(waiting.step("yank").model_copy(update={"status": StepStatus.FAILED}), now=NOW)
    assert failed.status == "failed"
    finished = run.model_copy(update={"steps": tuple(s.model_copy(update={"status": StepStatus.SKIPPED})
                                                     for s in run.steps)})
    assert finished.status == "completed" and finished.next_step() is None
    assert pb.PlaybookRun.model_validate(finished.model_dump(mode="json")) == finished
    plan = {"channels": ["stable"], "version": "1.3.0"}
    digest = pb.plan_digest(run.run_id, run.playbook, "yank", plan)
    assert digest != pb.plan_digest(run.run_id, run.playbook, "yank", {**plan, "channels": ["stable", "beta"]})
    assert digest != pb.plan_digest("pbr_" + "0" * 20, run.playbook, "yank", plan)
    assert pb.approval_action(run.playbook, "yank") == "playbook.yank.yank"
    with pytest.raises(InputError, match="expected one of key-compromise, yank, unauthorized-release"):
        pb.parse_kind("rollback")


def test_detection_rules() -> None:
    assert pb.signature_names_key({"public_key_sha256": "a" * 64}, key_id="b" * 64, public_key_sha256="a" * 64)
    assert pb.signature_names_key({"key_id": "a" * 16}, key_id="b" * 64, public_key_sha256="a" * 64)
    assert pb.signature_names_key({"key_id": "b" * 64}, key_id="b" * 64, public_key_sha256="a" * 64)
    assert not pb.signature_names_key({"key_id": "c" * 16}, key_id="b" * 64, public_key_sha256="a" * 64)
    assert not pb.signature_names_key("nope", key_id="b" * 64, public_key_sha256="a" * 64)
    assert pb.runs_release({"installed_version": "v1.3.0"}, version="1.3.0", binaries=[])
    assert pb.runs_release({"installed_version": "1.2.3", "binary_sha256": "AB" * 32}, version="1.3.0",
                           binaries=["ab" * 32])
    assert not pb.runs_release({"installed_version": "1.3.0-rc.1"}, version="1.3.0", binaries=[])
    assert not pb.runs_release({}, version="1.3.0", binaries=[])
    found = pb.never_promoted({"1.2.3": ["a"], "v1.4.0": ["b", "c"], "nightly": ["d"]}, ["1.2.3", "1.4.0"],
                              channel="stable")
    assert [(f.version, f.endpoint_count) for f in found] == [("nightly", 1)]
    findings = pb.provenance_findings(version="1.4.0", package_digest="sha256:" + "a" * 64, builder="evil",
                                      repository="mallory/rt", trusted_builders=["good"],
                                      trusted_sources=["acme/rt"])
    assert [f.reason for f in findings] == [FindingReason.UNTRUSTED_BUILDER, FindingReason.UNTRUSTED_SOURCE]
    assert pb.provenance_findings(version="1", package_digest="d", builder="good", repository=None,
                                  trusted_builders=["good"], trusted_sources=[]) == []


def test_a_failed_effect_resumes_under_the_consumed_approval(world: World, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.store.promotion.channel_repo import ChannelRepository

    w = world
    w.promote(w.package("1.2.3"), hours=0.1)
    code, text, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--at", at(1).isoformat())
    assert code == 0, err
    assert "AWAITING APPROVAL: yank 1.2.3 on stable and hold them" in text and "--approval apr_" in text
    code, first, _ = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--json", "--at", at(1).isoformat())
    approval = first["awaiting"]["approval_id"]
    w.approve(approval, hours=1.1)

    real = ChannelRepository.yank
    calls: list[int] = []

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreConflictError("channel stable: changed concurrently; re-read and retry")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ChannelRepository, "yank", flaky)
    code, _, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--approval", approval,
                       "--at", at(1.2).isoformat())
    assert code == 1 and "changed concurrently" in err
    code, failed, _ = cli(capsys, "playbook", "status", first["run_id"], "--json")
    yank_step = step(failed, "yank")
    assert failed["status"] == "failed" and yank_step["status"] == "failed"
    assert yank_step["approval"]["consumed_at"] is not None and w.channel().yanked == ()
    consumptions = w.records("approval-consumption")
    # the next run resumes the effect under the approval it consumed: no approval needed, none consumed again
    code, done, err = cli(capsys, "playbook", "yank", "--version", "1.2.3", "--json", "--at", at(1.3).isoformat())
    assert code == 0, err
    assert done["status"] == "completed" and [y.version for y in w.channel().yanked] == ["1.2.3"]
    assert len(w.records("approval-consumption")) == len(consumptions) == 2  # the export's and the yank's
    assert step(done, "yank")["attempts"] == 2
    events = [r.payload["event"] for r in w.records(PLAYBOOK_STEP) if r.payload["step"] == "yank"]
    assert events == ["awaiting-approval", "approved", "failed", "done"]
    assert NOW + timedelta(hours=1.3) == w.channel().yanked[0].at
