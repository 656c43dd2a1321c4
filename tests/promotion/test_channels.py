"""Channel state: the high-water mark, holds and the single-use rollback allowance -- the pure rules,
the compare-and-swap repository on SQLite and PostgreSQL, the CLI, and `release validate-upgrade
--channel`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.cli.main import run
from ringward.core.errors import (
    BindingMismatchError,
    ChannelHeldError,
    ExecutionReplayError,
    InputError,
    RollbackError,
    StateError,
    VersionConflictError,
)
from ringward.core.promotion.channels import (
    CandidateVerdict,
    ChannelState,
    PromotedRelease,
    check_candidate,
    grant_rollback,
    hold,
    normalise_digest,
    promote,
)
from ringward.store.promotion.channel_repo import ChannelRepository
from tests.promotion.conftest import ChannelWorld, later
from tests.release.simulator import NOW

D1, D2, D3 = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64


def release(version: str, digest: str, minutes: int = 0) -> PromotedRelease:
    return PromotedRelease(version=version, digest=digest, promoted_at=NOW + timedelta(minutes=minutes), actor="carol",
                           export_id=f"eme_{version}")


def promoted(*releases: PromotedRelease) -> ChannelState:
    state = ChannelState(channel="stable")
    for item in releases:
        state = promote(state, item)
    return state


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


# --- pure rules ----------------------------------------------------------------------------------------


def test_high_water_mark_only_moves_up_and_refuses_rollback_and_conflicts() -> None:
    state = promoted(release("1.2.3", D1))
    assert check_candidate(state, version="1.2.4", digest=D2) is CandidateVerdict.NEW
    assert check_candidate(state, version="1.2.3", digest=D1) is CandidateVerdict.SAME
    with pytest.raises(RollbackError, match=r"below the high-water mark 1\.2\.3"):
        check_candidate(state, version="1.2.2", digest=D2)
    with pytest.raises(VersionConflictError, match="other bytes"):
        check_candidate(state, version="1.2.3", digest=D2)
    # build metadata does not order: the same version with other bytes conflicts
    with pytest.raises(VersionConflictError):
        check_candidate(state, version="1.2.3+rebuild", digest=D2)
    # 1.2.10 > 1.2.9, rc below its release
    state = promoted(release("1.2.9", D1))
    assert check_candidate(state, version="1.2.10", digest=D2) is CandidateVerdict.NEW
    with pytest.raises(RollbackError):
        check_candidate(promoted(release("1.3.0", D1)), version="1.3.0-rc.1", digest=D2)
    # a leading v (Go tags) is the same version: 1.3.0 cannot come back as v1.3.0 with other bytes
    with pytest.raises(VersionConflictError):
        check_candidate(promoted(release("1.3.0", D1)), version="v1.3.0", digest=D2)
    # promoting keeps the highest mark; the current release follows the export
    after = promote(promoted(release("1.2.3", D1), release("1.2.4", D2)), release("1.2.4", D2, 5))
    assert after.high_water is not None and after.high_water.version == "1.2.4"
    assert len(after.history) == 3


def test_a_held_channel_refuses_every_candidate() -> None:
    state = hold(promoted(release("1.2.3", D1)), actor="sec", reason="incident INC-7", now=NOW)
    with pytest.raises(ChannelHeldError, match="held by sec"):
        check_candidate(state, version="9.9.9", digest=D2)
    with pytest.raises(StateError, match="already held"):
        hold(state, actor="sec", reason="again", now=NOW)
    with pytest.raises(InputError, match="--reason"):
        hold(promoted(), actor="sec", reason="  ", now=NOW)


def test_rollback_allowance_is_single_use_and_only_to_the_previous_release() -> None:
    state = promoted(release("1.2.2", D1), release("1.2.3", D2, 1))
    with pytest.raises(BindingMismatchError, match=r"expects current release 1\.2\.2"):
        grant_rollback(state, from_version="1.2.2", from_digest=D1, rollback_id="rb-1", actor="exec", now=NOW)
    granted, changed = grant_rollback(state, from_version="1.2.3", from_digest=D2, rollback_id="rb-1",
                                      actor="exec", now=NOW)
    assert changed and granted.rollback_allowance is not None
    assert (granted.rollback_allowance.to_version, granted.rollback_allowance.to_digest) == ("1.2.2", D1)
    again, changed = grant_rollback(granted, from_version="1.2.3", from_digest=D2, rollback_id="rb-1", actor="exec",
                                    now=NOW)
    assert not changed and again == granted
    # only exactly the earlier release, and not some other lower version
    with pytest.raises(RollbackError):
        check_candidate(granted, version="1.2.1", digest=D3)
    with pytest.raises(RollbackError):
        check_candidate(granted, version="1.2.2", digest=D3)
    assert check_candidate(granted, version="1.2.2", digest=D1) is CandidateVerdict.ROLLBACK
    rolled = promote(granted, release("1.2.2", D1, 2))
    assert rolled.rollback_allowance is None
    assert rolled.current is not None and rolled.current.kind.value == "rollback"
    assert rolled.current.rollback_id == "rb-1"
    assert rolled.high_water is not None and rolled.high_water.version == "1.2.3"  # the mark stays
    with pytest.raises(RollbackError):  # consumed: a second export of 1.2.2 is refused
        check_candidate(rolled, version="1.2.2", digest=D1)
    with pytest.raises(ExecutionReplayError, match="rb-1 was already exported"):
        grant_rollback(rolled, from_version="1.2.2", from_digest=D1, rollback_id="rb-1", actor="exec", now=NOW)


def test_rollback_needs_an_earlier_promotion_and_a_digest() -> None:
    with pytest.raises(StateError, match="no earlier promotion"):
        grant_rollback(promoted(release("1.2.3", D1)), from_version="1.2.3", from_digest=D1, rollback_id="rb",
                       actor="exec", now=NOW)
    assert normalise_digest("a" * 64) == "sha256:" + "a" * 64
    with pytest.raises(InputError, match="sha256"):
        normalise_digest("sha1:abc")


# --- the repository (compare-and-swap, evidence, rollback API) ---------------------------------------


def test_repository_holds_promotes_and_grants_rollbacks_with_evidence(channel_world: ChannelWorld) -> None:
    repo = ChannelRepository(channel_world.store)
    assert repo.get("stable").version == 0 and repo.list() == []
    held, record = repo.hold("stable", actor="sec", reason="INC-1", now=later(1))
    assert held.held and held.version == 1 and record.kind == "release-channel-state"
    assert record.subject.status == "held" and record.payload["hold"]["reason"] == "INC-1"
    with pytest.raises(StateError):
        repo.hold("stable", actor="sec", reason="INC-1", now=later(1))
    unheld, record = repo.unhold("stable", actor="sec", reason="fixed", now=later(2))
    assert not unheld.held and unheld.version == 2 and record.subject.status == "unheld"

    # two promotions through exports, then the rollout-rollback executor's API
    first = channel_world.sim.package("1.2.2", out="older")
    _, low = channel_world.promote(first, at=later(3))
    _, high = channel_world.promote(at=later(4))
    digest_low, digest_high = low["subject_digest"], high["subject_digest"]
    assert repo.channels_at("1.2.3", digest_high) == ["stable"]
    assert repo.channels_at("1.2.2", digest_low) == []
    state = repo.allow_rollback("stable", from_version="1.2.3", from_digest=digest_high.removeprefix("sha256:"),
                                rollback_id="rb-7", actor="rollout-executor", now=later(5))
    assert state.rollback_allowance is not None and state.rollback_allowance.to_version == "1.2.2"
    assert repo.allow_rollback("stable", from_version="1.2.3", from_digest=digest_high, rollback_id="rb-7",
                               actor="rollout-executor", now=later(5)).version == state.version
    assert [r.subject.status for r in channel_world.records("release-channel-state", status="rollback-allowed")] \
        == ["rollback-allowed"]
    with pytest.raises(BindingMismatchError):
        repo.allow_rollback("stable", from_version="1.2.2", from_digest=digest_low, rollback_id="rb-8",
                            actor="rollout-executor", now=later(5))


def test_concurrent_holds_one_wins(channel_world: ChannelWorld) -> None:
    from concurrent.futures import ThreadPoolExecutor

    repo = ChannelRepository(channel_world.store)

    def attempt(n: int) -> str:
        try:
            repo.hold("beta", actor=f"sec-{n}", reason="INC", now=later(1))
        except StateError:
            return "refused"
        return "held"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert outcomes.count("held") == 1 and outcomes.count("refused") == 5
    assert repo.get("beta").version == 1
    assert len(channel_world.records("release-channel-state", channel="beta")) == 1


# --- CLI ----------------------------------------------------------------------------------------------------

pytestmark_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytestmark_sqlite
def test_cli_hold_status_unhold(channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "channel", "hold", "stable", "--reason", "INC-42 crash loop", "--actor", "sec")
    assert code == 0 and out.startswith("HELD: channel stable")
    code, out, _ = cli(capsys, "channel", "status", "--json")
    doc = json.loads(out)
    (stable,) = doc["channels"]
    assert stable["held"] and stable["hold"]["actor"] == "sec" and stable["hold"]["reason"] == "INC-42 crash loop"
    code, out, err = cli(capsys, "channel", "hold", "stable", "--reason", "again")
    assert code == 1 and "already held" in err and len(err.strip().splitlines()) == 1
    code, out, _ = cli(capsys, "channel", "status")
    assert code == 0 and "HELD by sec" in out
    code, out, _ = cli(capsys, "channel", "unhold", "stable", "--reason", "fixed in 1.2.4", "--actor", "sec")
    assert code == 0 and out.startswith("UNHELD")
    code, out, err = cli(capsys, "channel", "unhold", "stable", "--reason", "x")
    assert code == 1 and "not held" in err
    code, out, err = cli(capsys, "channel", "hold", "Stable!", "--reason", "x")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    held = channel_world.records("release-channel-state", channel="stable")
    assert [r.subject.status for r in held] == ["unheld", "held"]
    assert {r.actor for r in held} == {"sec"}


@pytestmark_sqlite
def test_validate_upgrade_checks_the_channel_high_water_mark_and_hold(
    channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = channel_world.sim
    older = sim.package("1.2.2", out="older")
    newer = sim.package("1.2.4", out="newer")
    conflicting = sim.package("1.2.3", out="conflict", payload=b"# rebuilt\n")
    channel_world.promote()  # stable at 1.2.3
    trust = str(channel_world.keys.trust_root)

    def validate(previous: Path, candidate: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        code, out, _ = cli(capsys, "release", "validate-upgrade", str(previous), str(candidate), "--trust-root",
                           trust, "--channel", "stable", "--json", *extra)
        return code, json.loads(out)

    code, result = validate(channel_world.package, newer)
    assert code == 0 and result["valid"] and result["channel_check"]["passed"]
    # a "previous" below the candidate does not make a rollback legitimate: the persisted mark decides
    code, result = validate(sim.package("1.2.1", out="oldest"), older)
    assert code == 1 and [e["code"] for e in result["errors"]] == ["rollback-rejected"]
    assert "below the high-water mark 1.2.3" in result["errors"][0]["message"]
    code, result = validate(older, conflicting)
    assert code == 1 and [e["code"] for e in result["errors"]] == ["version-conflict"]
    ChannelRepository(channel_world.store).hold("stable", actor="sec", reason="INC-9", now=later(2))
    code, result = validate(channel_world.package, newer)
    assert code == 1 and [e["code"] for e in result["errors"]] == ["channel-held"]
    # without --channel the comparison alone passes (the check is opt-in per invocation)
    code, out, _ = cli(capsys, "release", "validate-upgrade", str(channel_world.package), str(newer),
                       "--trust-root", trust, "--json")
    assert code == 0 and "channel_check" not in json.loads(out)
    records = channel_world.records("release-upgrade-validation")
    assert records[1].payload["channel_check"]["errors"][0]["code"] == "channel-held"
