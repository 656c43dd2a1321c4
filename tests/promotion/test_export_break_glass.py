"""`ringward endpoint export --break-glass-approval`: outside its promotion window an export runs only on an
approved, unexpired, unconsumed ``break_glass`` approval bound (like a rollout's) to action ``export``, the
request id and the export's window targets; it is consumed in the same transaction as the export's own
approval (through the public ``ApprovalRepository.consume_in``) and the export is marked. Every refusal
leaves no export directory, both approvals unconsumed and the channel's mark unchanged."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.cli.main import run
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalConsumedError,
    ApprovalExpiredError,
    ApprovalStateError,
    PromotionWindowError,
    RingwardError,
    SeparationOfDutiesError,
)
from ringward.core.promotion.windows_policy import BREAK_GLASS_ACTION, break_glass_binding
from ringward.operations.approvals.approval_ops import consume_approval, decide_approval, request_approval
from ringward.store.promotion.channel_repo import ChannelRepository
from tests.promotion.conftest import REQUEST_FILE, ChannelWorld, later

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# NOW (tests.release.simulator) is Sunday 2026-11-22 12:00 UTC: outside the enterprise ring's weekday window
WINDOWS = """\
schema_version: ringward.promotion-windows.v1
default: allow
allow:
  - name: enterprise-weekdays
    targets: [ring:enterprise]
    rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
    start: 2026-01-05T09:00
    duration: 8h
    timezone: UTC
"""
TARGETS = ["channel:stable", "ring:enterprise"]
EXPORT_AT = later(1)  # Sunday 13:00 UTC: closed
OPEN_AT = later(46)  # Tuesday 10:00 UTC: open


@pytest.fixture
def policy(channel_world: ChannelWorld) -> Path:
    path = channel_world.work.parent / "windows.yaml"
    path.write_text(WINDOWS)
    return path


def approved_request(world: ChannelWorld) -> dict[str, Any]:
    requested = world.request(output=world.work / f"req-{len(list(world.work.iterdir()))}",
                              expires_in=timedelta(days=7))
    world.approve(requested["approval_id"])
    return requested


def break_glass(world: ChannelWorld, subject: str, *, targets: list[str] | None = None, action: str = "export",
                requester: str = "carol", approver: str | None = "ciso", at: datetime | None = None,
                expires_in: timedelta = timedelta(hours=4)) -> str:
    """A break-glass approval bound to ``subject`` (requested by ``requester``, approved by ``approver``)."""
    moment = at or later(0.5)
    binding = break_glass_binding(targets or TARGETS, subject=subject, overridden_action=action)
    approval = request_approval(world.store, action=BREAK_GLASS_ACTION, subject_digest=binding.subject_digest,
                                target=binding.target, requester=requester, expires_in=expires_in, now=moment,
                                note="sev1: the fix must reach enterprise laptops tonight")
    if approver is not None:
        from ringward.core.approvals.rules import Decision

        decide_approval(world.store, approval.approval_id, decision=Decision.APPROVE, actor=approver,
                        reason="incident INC-77", now=moment + timedelta(minutes=5))
    return approval.approval_id


def unconsumed(world: ChannelWorld, *approval_ids: str) -> bool:
    return all(world.store.approvals.get(a).consumed_at is None for a in approval_ids)


def refused(world: ChannelWorld, requested: dict[str, Any], error: type[RingwardError], *, match: str | None = None,
            **kwargs: Any) -> RingwardError:
    """The export fails with ``error``: no directory, the export approval unconsumed, the mark unchanged, and
    the refusal's own evidence record written."""
    output = world.work / f"refused-{len(list(world.work.iterdir()))}"
    before = ChannelRepository(world.store).get("stable")
    kwargs.setdefault("at", EXPORT_AT)
    with pytest.raises(error, match=match) as info:
        world.export(requested, output=output, **kwargs)
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]
    after = ChannelRepository(world.store).get("stable")
    assert after.version == before.version and after.high_water == before.high_water
    assert unconsumed(world, requested["approval_id"])
    latest = world.records("endpoint-management-export")[0]
    assert latest.subject.status == "refused" and latest.payload["error"]["type"] == type(info.value).__name__
    return info.value


# --- refused without, accepted with -------------------------------------------------------------------------


def test_a_closed_window_refuses_the_export_without_break_glass(channel_world: ChannelWorld, policy: Path) -> None:
    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"])  # exists, but is not named
    error = refused(channel_world, requested, PromotionWindowError, match="ring:enterprise", windows=policy)
    assert "next opening 2026-11-23T09:00:00Z" in str(error)
    assert unconsumed(channel_world, glass)
    record = channel_world.records("endpoint-management-export")[0]
    assert record.payload["window"]["allowed"] is False and "break_glass_approval_id" not in record.payload


def test_break_glass_runs_the_export_in_a_closed_window_and_marks_it(
    channel_world: ChannelWorld, policy: Path
) -> None:
    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"])
    output = channel_world.work / "export"
    result = channel_world.export(requested, output=output, windows=policy, break_glass_approval=glass,
                                  at=EXPORT_AT)
    export_id = result["export_id"]
    assert result["break_glass"] is True and result["break_glass_approval_id"] == glass
    assert result["window"]["allowed"] is False and result["window"]["denied_targets"] == ["ring:enterprise"]

    # both approvals consumed by this export, once; the mark raised
    for approval_id in (requested["approval_id"], glass):
        approval = channel_world.store.approvals.get(approval_id)
        assert approval.consumed_at == EXPORT_AT and approval.consumed_by == "carol"
        assert approval.execution_ref == export_id
    state = ChannelRepository(channel_world.store).get("stable")
    assert state.high_water is not None and state.high_water.export_id == export_id

    # the manifest and the export record say so, with the (closed) window decision
    manifest = json.loads((output / "endpoint-management-export-manifest.json").read_bytes())
    assert manifest["break_glass"] is True and manifest["break_glass_approval_id"] == glass
    assert manifest["controls"][-1] == "break-glass-approval-consumed"
    assert manifest["window"]["allowed"] is False and "next opening" in manifest["window"]["reason"]
    (record,) = channel_world.records("endpoint-management-export", status="exported")
    assert record.payload["break_glass"] is True and record.payload["break_glass_approval_id"] == glass
    assert record.payload["window"]["allowed"] is False and f"approval://{glass}" in record.payload["evidence_refs"]
    assert record.payload["manifest"]["break_glass"] is True

    # one transaction: export approval consumed, break-glass consumed, channel state, export record
    consumptions = sorted(channel_world.records("approval-consumption"), key=lambda r: r.id)
    assert [c.subject.approval_id for c in consumptions] == [requested["approval_id"], glass]
    (promoted,) = channel_world.records("release-channel-state", status="promoted")
    assert [r.id for r in consumptions] + [promoted.id] == [record.id - 3, record.id - 2, record.id - 1]
    assert result["evidence_ids"] == [consumptions[0].id, consumptions[1].id, promoted.id, record.id]


def test_an_open_window_leaves_the_break_glass_approval_unused(channel_world: ChannelWorld, policy: Path) -> None:
    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"], expires_in=timedelta(days=3))
    result = channel_world.export(requested, windows=policy, break_glass_approval=glass, at=OPEN_AT)
    assert result["break_glass"] is False and result["break_glass_approval_id"] is None
    assert result["window"]["allowed"] is True
    assert unconsumed(channel_world, glass)
    manifest = json.loads(Path(result["manifest"]).read_bytes())
    assert manifest["break_glass"] is False and "break-glass-approval-consumed" not in manifest["controls"]


# --- wrong bindings, replays, approval rules ----------------------------------------------------------------


def test_break_glass_for_another_export_or_other_targets_is_refused(
    channel_world: ChannelWorld, policy: Path
) -> None:
    requested = approved_request(channel_world)
    wrong = {
        "another request": break_glass(channel_world, "rcp_000000000000"),
        "other targets": break_glass(channel_world, requested["request_id"], targets=["ring:enterprise"]),
        "another channel": break_glass(channel_world, requested["request_id"],
                                       targets=["channel:beta", "ring:enterprise"]),
        "a rollout": break_glass(channel_world, requested["request_id"], action="rollout"),
    }
    for why, glass in wrong.items():
        error = refused(channel_world, requested, ApprovalBindingError, windows=policy, break_glass_approval=glass)
        assert glass in str(error), why
        assert unconsumed(channel_world, glass), why
        record = channel_world.records("endpoint-management-export")[0]
        assert record.payload["break_glass_approval_id"] == glass and record.payload["window"]["allowed"] is False
    # the export's own promotion approval is no break-glass approval
    refused(channel_world, requested, ApprovalBindingError, match="action expected", windows=policy,
            break_glass_approval=requested["approval_id"])


def test_a_consumed_break_glass_approval_is_refused(channel_world: ChannelWorld, policy: Path) -> None:
    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"])
    # already used (e.g. by an earlier run of the same export that a retry repeats)
    binding = break_glass_binding(TARGETS, subject=requested["request_id"], overridden_action="export")
    consume_approval(channel_world.store, glass, action=BREAK_GLASS_ACTION, subject_digest=binding.subject_digest,
                     target=binding.target, actor="carol", execution_ref="eme_000000000000", now=later(0.9))
    refused(channel_world, requested, ApprovalConsumedError, match="single-use", windows=policy,
            break_glass_approval=glass)
    assert channel_world.store.approvals.get(glass).execution_ref == "eme_000000000000"


def test_replaying_a_break_glass_export_is_refused_and_consumes_nothing_more(
    channel_world: ChannelWorld, policy: Path
) -> None:
    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"])
    channel_world.export(requested, windows=policy, break_glass_approval=glass, at=EXPORT_AT)
    consumed = channel_world.store.approvals.get(glass)
    with pytest.raises(ApprovalConsumedError, match="single-use"):
        channel_world.export(requested, output=channel_world.work / "again", windows=policy,
                             break_glass_approval=glass, at=EXPORT_AT + timedelta(minutes=1))
    assert not (channel_world.work / "again").exists()
    assert channel_world.store.approvals.get(glass) == consumed
    assert len(channel_world.records("approval-consumption")) == 2


def test_the_break_glass_requester_cannot_approve_it_and_it_must_be_approved_and_unexpired(
    channel_world: ChannelWorld, policy: Path
) -> None:
    from ringward.core.approvals.rules import Decision

    requested = approved_request(channel_world)
    pending = break_glass(channel_world, requested["request_id"], approver=None)
    with pytest.raises(SeparationOfDutiesError, match="cannot approve"):
        decide_approval(channel_world.store, pending, decision=Decision.APPROVE, actor="carol", reason="mine",
                        now=later(0.6))
    refused(channel_world, requested, ApprovalStateError, match="expected approved", windows=policy,
            break_glass_approval=pending)
    expired = break_glass(channel_world, requested["request_id"], expires_in=timedelta(minutes=10))
    refused(channel_world, requested, ApprovalExpiredError, windows=policy, break_glass_approval=expired)


@SQLITE
def test_a_malformed_break_glass_id_is_bad_input(channel_world: ChannelWorld, policy: Path) -> None:
    from ringward.core.errors import InputError

    requested = approved_request(channel_world)
    with pytest.raises(InputError, match="--break-glass-approval"):
        channel_world.export(requested, windows=policy, break_glass_approval="apr 1; drop", at=EXPORT_AT)


# --- exactly once under concurrency -------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [8])
def test_concurrent_break_glass_exports_succeed_exactly_once(
    channel_world: ChannelWorld, policy: Path, threads: int
) -> None:
    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"])
    parent = channel_world.work / "concurrent"
    parent.mkdir()
    barrier = threading.Barrier(threads)
    outcomes: list[Any] = [None] * threads

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = channel_world.export(requested, output=parent / f"out-{n}", windows=policy,
                                               break_glass_approval=glass, at=EXPORT_AT)
        except RingwardError as exc:
            outcomes[n] = exc

    workers = [threading.Thread(target=attempt, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if not isinstance(o, dict)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, (ApprovalConsumedError, ApprovalStateError)) for o in losses), losses
    assert [p.name for p in parent.iterdir()] == [Path(wins[0]["output_dir"]).name]
    consumptions = channel_world.records("approval-consumption")
    assert sorted(c.subject.approval_id for c in consumptions) == sorted([requested["approval_id"], glass])
    assert channel_world.store.approvals.get(glass).execution_ref == wins[0]["export_id"]
    assert len(channel_world.records("endpoint-management-export", status="exported")) == 1
    assert len(channel_world.records("endpoint-management-export", status="refused")) == threads - 1
    assert ChannelRepository(channel_world.store).get("stable").version == 1


# --- CLI --------------------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@SQLITE
def test_cli_export_with_break_glass(channel_world: ChannelWorld, policy: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    requested = approved_request(channel_world)
    keys = channel_world.keys
    base = ["endpoint", "export", str(channel_world.package), "--channel", "stable", "--promotion-request",
            str(Path(requested["output_dir"]) / REQUEST_FILE), "--trust-root", str(keys.trust_root), "--actor",
            "carol", "--windows", str(policy), "--at", EXPORT_AT.isoformat()]
    code, _, err = cli(capsys, *base, "--output", str(channel_world.work / "closed"))
    assert code == 1 and "refused by promotion windows" in err and len(err.strip().splitlines()) == 1

    # the binding the requester asks for, as `ringward window break-glass` prints it
    code, out, _ = cli(capsys, "window", "break-glass", "-t", "channel:stable", "-t", "ring:enterprise",
                       "--subject", requested["request_id"], "--action", "export", "--json")
    assert code == 0
    binding = json.loads(out)
    assert binding["target"] == f"export:{requested['request_id']}"
    glass = break_glass(channel_world, requested["request_id"])
    assert channel_world.store.approvals.get(glass).subject_digest == binding["subject_digest"]

    code, out, err = cli(capsys, *base, "--output", str(channel_world.work / "export"),
                         "--break-glass-approval", glass)
    assert code == 0, err
    assert "(BREAK GLASS)" in out and f"break-glass approval {glass} consumed" in out
    code, _, err = cli(capsys, *base, "--output", str(channel_world.work / "again"), "--break-glass-approval", glass)
    assert code == 1 and "already consumed" in err and len(err.strip().splitlines()) == 1


def test_window_break_glass_help_explains_the_export_subject(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "window", "break-glass", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "export" in text and "rcp_" in text and "channel:<C>" in text
    code, out, _ = cli(capsys, "endpoint", "export", "--help")
    assert code == 0 and "--break-glass-approval" in out


# --- the Prefect flow ---------------------------------------------------------------------------------------


@pytest.mark.prefect
@SQLITE
def test_export_flow_takes_the_break_glass_approval(
    prefect_server: None, channel_world: ChannelWorld, policy: Path
) -> None:
    import flows.promotion_channel as channel_flows
    from flows._common import run_flow

    requested = approved_request(channel_world)
    glass = break_glass(channel_world, requested["request_id"])
    export = dict(package_dir=str(channel_world.package), channel="stable", provider="linux",
                  promotion_request=str(Path(requested["output_dir"]) / REQUEST_FILE),
                  trust_root=str(channel_world.keys.trust_root), actor="carol", windows=str(policy), now=EXPORT_AT)
    state = channel_flows.export_endpoint_flow(output=str(channel_world.work / "closed"), return_state=True, **export)
    assert state.is_failed()
    refusal = state.result(raise_on_failure=False)
    assert isinstance(refusal, dict) and refusal["errors"][0]["error_type"] == "WindowClosedError"
    with pytest.raises(PromotionWindowError, match="refused by promotion windows"):
        channel_flows.raise_refusal(refusal)
    assert unconsumed(channel_world, requested["approval_id"], glass)

    exported = run_flow(channel_flows.export_endpoint_flow, output=str(channel_world.work / "export"),
                        break_glass_approval=glass, **export)
    assert exported["break_glass"] is True and exported["break_glass_approval_id"] == glass
    (record,) = channel_world.records("endpoint-management-export", status="exported")
    assert record.flow_run_id and record.payload["break_glass"] is True
    assert channel_world.store.approvals.get(glass).execution_ref == exported["export_id"]
