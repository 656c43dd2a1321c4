"""`ringward endpoint export`: the channel promotion's execution. Every refusal is checked to leave no
export directory, an unconsumed approval and the channel's mark unchanged; the successful export
consumes the approval and raises the mark in one transaction, exactly once under concurrency."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringward.cli.main import run
from ringward.core.approvals.rules import Decision
from ringward.core.errors import (
    ApprovalBindingError,
    ApprovalConsumedError,
    ApprovalExpiredError,
    ApprovalNotFoundError,
    ApprovalStateError,
    BindingMismatchError,
    ChannelHeldError,
    DigestMismatchError,
    RingwardError,
    RollbackError,
    SeparationOfDutiesError,
    SignatureError,
    UntrustedKeyError,
    VersionConflictError,
)
from ringward.core.promotion.signed_payload import CHANNEL_PROMOTION_SIGNATURE, sign_payload
from ringward.operations.approvals.approval_ops import decide_approval, request_approval
from ringward.store.promotion.channel_repo import ChannelRepository
from tests.promotion.conftest import REQUEST_FILE, ChannelWorld, later

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def request_path(requested: dict[str, Any]) -> Path:
    return Path(requested["output_dir"]) / REQUEST_FILE


def resign(path: Path, key: Ed25519PrivateKey, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Rewrite the request (optionally changed) and sign it again with ``key`` (an insider or a forger)."""
    document = json.loads(path.read_bytes())
    if change is not None:
        change(document)
    signed = sign_payload(document, private_key=key, signer="mallory", schema_version=CHANNEL_PROMOTION_SIGNATURE)
    target = path.with_name(f"forged-{len(list(path.parent.iterdir()))}.json")
    target.write_text(json.dumps(signed))
    return target


def refused(world: ChannelWorld, request: dict[str, Any] | Path, error: type[RingwardError], *,
            match: str | None = None, **kwargs: Any) -> RingwardError:
    """Export must fail with ``error``, leaving no directory, nothing consumed, the mark unchanged."""
    output = world.work / f"refused-{len(list(world.work.iterdir()))}"
    before = ChannelRepository(world.store).get("stable")
    with pytest.raises(error, match=match) as info:
        world.export(request, output=output, **kwargs)
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]
    after = ChannelRepository(world.store).get(kwargs.get("channel", "stable"))
    assert after.version == before.version and after.high_water == before.high_water
    latest = world.records("endpoint-management-export")[0]
    assert latest.subject.status == "refused" and latest.payload["error"]["type"] == type(info.value).__name__
    return info.value


def approved(world: ChannelWorld, package: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    requested = world.request(package, output=world.work / f"req-{len(list(world.work.iterdir()))}", **kwargs)
    world.approve(requested["approval_id"])
    return requested


# --- the successful export ------------------------------------------------------------------------------


def test_export_consumes_the_approval_raises_the_mark_and_writes_the_reference_files(
    channel_world: ChannelWorld,
) -> None:
    requested = approved(channel_world)
    output = channel_world.work / "export"
    result = channel_world.export(requested, output=output)
    approval_id = requested["approval_id"]
    expected_id = "eme_" + hashlib.sha256(f"stable:1.2.3:intune,jamf,linux:{approval_id}".encode()).hexdigest()[:12]
    assert result["export_id"] == expected_id and result["providers"] == ["jamf", "intune", "linux"]
    assert not result["rollback"]

    # the approval was consumed by this export, once
    approval = channel_world.store.approvals.get(approval_id)
    assert approval.consumed_at == later(0.3) and approval.consumed_by == "carol"
    assert approval.execution_ref == expected_id
    # the channel's mark was raised in the same decision
    state = ChannelRepository(channel_world.store).get("stable")
    assert state.high_water is not None and state.high_water.version == "1.2.3"
    assert state.high_water.digest == requested["subject_digest"] and state.high_water.export_id == expected_id

    manifest = json.loads((output / "endpoint-management-export-manifest.json").read_bytes())
    assert manifest["schema_version"] == "cavra.endpoint-management-export.v1"
    assert manifest["export_id"] == expected_id and manifest["channel"] == "stable"
    assert manifest["approval"] == {"required": True, "request_id": requested["request_id"], "approval_id": approval_id,
                                    "action": "release_promote_channel_manifest", "target": "stable->enterprise",
                                    "subject_digest": requested["subject_digest"]}
    assert manifest["controls"] == ["release-package-verified-before-export",
                                    "channel-promotion-approval-required-before-publish",
                                    "endpoint-tool-import-review-required", "rollback-package-reference-required"]
    listed = dict(reversed(line.split("  ", 1)) for line in (output / "checksums.txt").read_text().splitlines())
    on_disk = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()} - {"checksums.txt"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((output / name).read_bytes()).hexdigest() == digest

    jamf = json.loads((output / "jamf-policy.json").read_bytes())
    assert jamf["schema_version"] == "cavra.endpoint-management.jamf.v1" and jamf["trigger"] == "rt-stable"
    package = (output / "jamf" / jamf["package"]["artifact"]).read_bytes()
    assert hashlib.sha256(package).hexdigest() == jamf["package"]["sha256"]
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert archive.read("rt_1.2.3_darwin_arm64") == \
            (channel_world.package / "bin" / "rt_1.2.3_darwin_arm64").read_bytes()
    intune = json.loads((output / "intune-win32-app.json").read_bytes())
    assert intune["schema_version"] == "cavra.endpoint-management.intune.v1"
    assert intune["detection_rule"]["sha256_values"] == [
        hashlib.sha256((channel_world.package / "bin" / "rt_1.2.3_windows_amd64.exe").read_bytes()).hexdigest()]
    linux = json.loads((output / "linux-fleet-manifest.json").read_bytes())
    assert linux["schema_version"] == "cavra.endpoint-management.linux.v1"
    assert linux["install_script_sha256"] == hashlib.sha256((output / "linux-install-rt.sh").read_bytes()).hexdigest()

    consumption = channel_world.records("approval-consumption")
    promoted = channel_world.records("release-channel-state", status="promoted")
    (export,) = channel_world.records("endpoint-management-export")
    assert len(consumption) == 1 and len(promoted) == 1
    assert consumption[0].id + 1 == promoted[0].id and promoted[0].id + 1 == export.id  # one transaction
    assert export.subject.status == "exported" and export.subject.approval_state == "approved"
    assert export.subject.execution_status == "consumed" and export.payload["approval_state"] == "approved"
    assert export.payload["checksums_sha256"] == hashlib.sha256((output / "checksums.txt").read_bytes()).hexdigest()
    assert export.payload["export_id"] == expected_id and export.actor == "carol"


def test_the_export_evidence_bundle_verifies(channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str]) -> None:
    channel_world.promote()
    code, out, err = cli(capsys, "evidence", "verify", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"]


def test_a_second_export_of_the_same_request_is_refused(channel_world: ChannelWorld) -> None:
    requested, _ = channel_world.promote()
    refused(channel_world, request_path(requested), ApprovalConsumedError, match="single-use",
            at=later(0.5))


@pytest.mark.parametrize("threads", [8])
def test_concurrent_exports_of_one_approved_request_succeed_exactly_once(
    channel_world: ChannelWorld, threads: int
) -> None:
    requested = approved(channel_world)
    parent = channel_world.work / "concurrent"
    parent.mkdir()
    barrier = threading.Barrier(threads)
    outcomes: list[Any] = [None] * threads

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = channel_world.export(requested, output=parent / f"out-{n}")
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
    assert [p.name for p in parent.iterdir()] == [Path(wins[0]["output_dir"]).name]  # no leftovers
    assert len(channel_world.records("approval-consumption")) == 1
    assert len(channel_world.records("endpoint-management-export", status="exported")) == 1
    assert len(channel_world.records("endpoint-management-export", status="refused")) == threads - 1
    assert ChannelRepository(channel_world.store).get("stable").version == 1


# --- signatures and bindings -------------------------------------------------------------------------------


@SQLITE
def test_forged_and_wrongly_signed_requests_are_refused(channel_world: ChannelWorld) -> None:
    requested = approved(channel_world)
    path = request_path(requested)
    keys = channel_world.keys
    refused(channel_world, resign(path, keys.unpinned), UntrustedKeyError, match="does not pin")
    refused(channel_world, resign(path, keys.release), UntrustedKeyError, match="expected a promotion-role key")
    # tampered after signing (and after approval): the signature no longer covers it
    document = json.loads(path.read_bytes())
    document["target_ring"] = "pilot"
    tampered = path.with_name("tampered.json")
    tampered.write_text(json.dumps(document))
    refused(channel_world, tampered, SignatureError, match="changed after signing")
    # still exportable as signed
    channel_world.export(requested)


@SQLITE
def test_a_request_changed_after_approval_and_resigned_by_an_insider_is_refused(channel_world: ChannelWorld) -> None:
    requested = approved(channel_world)
    path = request_path(requested)
    insider = channel_world.keys.promotion

    def to_broad(doc: dict[str, Any]) -> None:
        doc["target_ring"] = "broad"

    refused(channel_world, resign(path, insider, to_broad), BindingMismatchError, match="request_id")

    def to_broad_consistently(doc: dict[str, Any]) -> None:
        doc["target_ring"] = "broad"
        doc["request_id"] = "rcp_" + hashlib.sha256(b"stable:1.2.3:broad").hexdigest()[:12]

    refused(channel_world, resign(path, insider, to_broad_consistently), ApprovalBindingError,
            match="target expected 'stable->enterprise'")
    assert channel_world.store.approvals.get(requested["approval_id"]).consumed_at is None


@SQLITE
def test_approvals_bound_to_another_channel_ring_or_digest_are_refused(channel_world: ChannelWorld) -> None:
    requested = approved(channel_world)
    path = request_path(requested)
    digest = requested["subject_digest"]
    for target, subject in (("beta->enterprise", digest), ("stable->broad", digest),
                            ("stable->enterprise", "sha256:" + "0" * 64)):
        other = request_approval(channel_world.store, action="release_promote_channel_manifest",
                                 subject_digest=subject, target=target, requester="alice", now=later(0.1))
        decide_approval(channel_world.store, other.approval_id, decision=Decision.APPROVE, actor="bob",
                        reason="ok", now=later(0.2))

        def swap(doc: dict[str, Any], aid: str = other.approval_id) -> None:
            doc["approval"]["approval_id"] = aid

        refused(channel_world, resign(path, channel_world.keys.promotion, swap), ApprovalBindingError)
    # an approval for another action entirely
    other = request_approval(channel_world.store, action="release_promote_endpoint_rollout", subject_digest=digest,
                             target="stable->enterprise", requester="alice", now=later(0.1))
    refused(channel_world, resign(path, channel_world.keys.promotion,
                                  lambda d: d["approval"].__setitem__("approval_id", other.approval_id)),
            ApprovalBindingError, match="action")
    refused(channel_world, resign(path, channel_world.keys.promotion,
                                  lambda d: d["approval"].__setitem__("approval_id", "apr_000000000000")),
            ApprovalNotFoundError)


@SQLITE
def test_request_for_another_channel_or_package_is_refused(channel_world: ChannelWorld) -> None:
    requested = approved(channel_world)
    refused(channel_world, requested, BindingMismatchError, match="does not match export channel", channel="beta")
    newer = channel_world.sim.package("1.2.4", out="newer")
    refused(channel_world, requested, BindingMismatchError, match="release.version", package=newer)
    # the package changed after the approval: it no longer verifies
    channel_world.sim.flip_bit(channel_world.package / "bin" / "rt_1.2.3_windows_amd64.exe")
    refused(channel_world, requested, DigestMismatchError, match="rt_1.2.3_windows_amd64.exe")


# --- approval states -------------------------------------------------------------------------------------


@SQLITE
def test_pending_denied_expired_and_self_approved_requests_are_refused(channel_world: ChannelWorld) -> None:
    pending = channel_world.request(output=channel_world.work / "pending")
    refused(channel_world, pending, ApprovalStateError, match="expected approved")

    with pytest.raises(SeparationOfDutiesError):
        channel_world.approve(pending["approval_id"], actor="alice")  # the requester
    refused(channel_world, pending, ApprovalStateError, match="expected approved")

    decide_approval(channel_world.store, pending["approval_id"], decision=Decision.DENY, actor="bob",
                    reason="not this week", now=later(0.2))
    refused(channel_world, pending, ApprovalStateError, match="state denied")

    fresh = approved(channel_world, ring="broad")
    refused(channel_world, fresh, ApprovalExpiredError, at=later(0.1) + timedelta(hours=24, minutes=1))

    revoked = approved(channel_world, ring="pilot")
    decide_approval(channel_world.store, revoked["approval_id"], decision=Decision.REVOKE, actor="bob",
                    reason="wrong build", now=later(0.25))
    refused(channel_world, revoked, ApprovalStateError, match="state revoked")


@SQLITE
def test_quorum_needs_distinct_approvers(channel_world: ChannelWorld) -> None:
    requested = channel_world.request(output=channel_world.work / "q", quorum=2)
    channel_world.approve(requested["approval_id"], actor="bob")
    refused(channel_world, requested, ApprovalStateError)
    channel_world.approve(requested["approval_id"], actor="dana")
    assert channel_world.export(requested)["approval_id"] == requested["approval_id"]


# --- channel rules ----------------------------------------------------------------------------------------


@SQLITE
def test_a_held_channel_refuses_exports_until_unheld(channel_world: ChannelWorld) -> None:
    requested = approved(channel_world)
    repo = ChannelRepository(channel_world.store)
    repo.hold("stable", actor="sec", reason="INC-5", now=later(0.25))
    refused(channel_world, requested, ChannelHeldError, match="INC-5")
    assert channel_world.store.approvals.get(requested["approval_id"]).consumed_at is None
    repo.unhold("stable", actor="sec", reason="resolved", now=later(0.26))
    assert channel_world.export(requested)["version"] == "1.2.3"


@SQLITE
def test_high_water_mark_refuses_rollbacks_and_rebuilt_versions_and_allows_the_rollback_flow_once(
    channel_world: ChannelWorld,
) -> None:
    sim = channel_world.sim
    older = sim.package("1.2.2", out="older")
    rebuilt = sim.package("1.2.3", out="rebuilt", payload=b"# rebuilt\n")
    # approved before anything was promoted: the requests pass, the exports decide
    old_request = approved(channel_world, older)
    rebuilt_request = approved(channel_world, rebuilt, ring="broad")
    first = approved(channel_world, older, ring="pilot")
    current = approved(channel_world)

    channel_world.export(first, older, at=later(0.3))  # stable: 1.2.2
    channel_world.export(current, at=later(0.4))  # stable: 1.2.3
    refused(channel_world, old_request, RollbackError, match="only way down", package=older, at=later(0.5))
    refused(channel_world, rebuilt_request, VersionConflictError, match="other bytes", package=rebuilt,
            at=later(0.5))

    # the rollout-rollback executor allows one export of the previous release
    repo = ChannelRepository(channel_world.store)
    repo.allow_rollback("stable", from_version="1.2.3", from_digest=current["subject_digest"], rollback_id="rb-1",
                        actor="rollout-executor", now=later(0.6))
    result = channel_world.export(old_request, older, at=later(0.7))
    assert result["rollback"] and result["high_water_mark"]["version"] == "1.2.3"
    state = repo.get("stable")
    assert state.current is not None and state.current.version == "1.2.2" and state.current.rollback_id == "rb-1"
    assert state.rollback_allowance is None
    (rolled,) = channel_world.records("release-channel-state", status="rollback-promoted")
    assert rolled.payload["current"]["kind"] == "rollback"
    manifest = json.loads(Path(result["manifest"]).read_bytes())
    assert manifest["rollback"] is True
    # once: another request for 1.2.2 is refused again
    with pytest.raises(RollbackError):
        channel_world.request(older, ring="broad", output=channel_world.work / "again", at=later(0.8))


# --- CLI ------------------------------------------------------------------------------------------------------


@SQLITE
def test_cli_export_and_bad_input(channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str]) -> None:
    requested = approved(channel_world)
    keys = channel_world.keys
    base = [str(channel_world.package), "--channel", "stable", "--promotion-request", str(request_path(requested)),
            "--trust-root", str(keys.trust_root), "--actor", "carol", "--at", later(0.3).isoformat()]
    bad = [
        (["--output", str(channel_world.work / "o1"), "--provider", "sccm"], "unsupported endpoint-management"),
        (["--output", str(channel_world.package)], "not empty"),
        (["--output", str(channel_world.work / "o2"), "--at", "yesterday"], "--at"),
    ]
    for extra, needle in bad:
        code, _, err = cli(capsys, "endpoint", "export", *base, *extra)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    missing = list(base)
    missing[missing.index("--promotion-request") + 1] = str(channel_world.work / "nope.json")
    code, _, err = cli(capsys, "endpoint", "export", *missing, "--output", str(channel_world.work / "o3"))
    assert code == 2 and "file not found" in err
    missing[missing.index("--promotion-request") + 1] = str(channel_world.work)
    code, _, err = cli(capsys, "endpoint", "export", *missing, "--output", str(channel_world.work / "o3"))
    assert code == 2 and "is a directory" in err
    assert channel_world.store.approvals.get(requested["approval_id"]).consumed_at is None

    code, out, err = cli(capsys, "endpoint", "export", *base, "--output", str(channel_world.work / "ok"),
                         "--provider", "linux", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["providers"] == ["linux"] and sorted(p.name for p in (channel_world.work / "ok").iterdir()) == [
        "checksums.txt", "endpoint-management-export-manifest.json", "endpoint-management-export-manifest.md",
        "linux-fleet-manifest.json", "linux-install-rt.sh"]
    code, _, err = cli(capsys, "endpoint", "export", *base, "--output", str(channel_world.work / "again"))
    assert code == 1 and "already consumed" in err and len(err.strip().splitlines()) == 1


# --- promotion windows ---------------------------------------------------------------------------------------


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
freezes:
  - name: stable-freeze
    targets: [channel:stable]
    reason: release train freeze
    start_at: 2026-11-23T00:00:00Z
    end_at: 2026-11-24T00:00:00Z
"""


@SQLITE
def test_promotion_windows_gate_the_export(channel_world: ChannelWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringward.core.errors import PromotionWindowError

    policy = channel_world.work.parent / "windows.yaml"
    policy.write_text(WINDOWS)
    requested = approved(channel_world, expires_in=timedelta(days=7))  # NOW is Sunday 2026-11-22 12:00 UTC
    # Sunday: outside the enterprise ring's weekday window
    error = refused(channel_world, requested, PromotionWindowError, match="ring:enterprise", windows=policy)
    # the next time every target is open at once: Monday is frozen for channel:stable
    assert "next opening 2026-11-24T09:00:00Z" in str(error)
    latest = channel_world.records("endpoint-management-export")[0]
    assert latest.payload["window"]["allowed"] is False
    # Monday 10:00 inside the window, but the stable channel is frozen that day (deny wins); via the env
    monkeypatch.setenv("RINGWARD_WINDOWS", str(policy))
    refused(channel_world, requested, PromotionWindowError, match="stable-freeze",
            at=later(22))
    # Tuesday 10:00: open; the decision travels with the export
    result = channel_world.export(requested, at=later(46))
    assert result["window"]["allowed"] is True
    manifest = json.loads(Path(result["manifest"]).read_bytes())
    assert manifest["window"]["allowed"] is True and "enterprise-weekdays" in manifest["window"]["windows"]
