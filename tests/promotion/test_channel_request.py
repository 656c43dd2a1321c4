"""`ringward channel request-promotion`: a signed request (pinned promotion-role key only) and a pending
approval bound to the package digest and `<channel>-><ring>`; every refusal leaves no request, no
approval and no output directory, only its own evidence record."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ringward.cli.main import run
from ringward.core.approvals.rules import ApprovalState
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import (
    ChannelHeldError,
    DigestMismatchError,
    InputError,
    RollbackError,
    UntrustedKeyError,
    VersionConflictError,
)
from ringward.core.promotion.signed_payload import CHANNEL_PROMOTION_SIGNATURE, verify_signed_payload
from ringward.core.trust.root import Role
from ringward.operations.trust.keys import load_trust_root
from ringward.store.promotion.channel_repo import ChannelRepository
from tests.promotion.conftest import REQUEST_FILE, ChannelWorld, later

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def approvals(world: ChannelWorld) -> list[Any]:
    from ringward.operations.approvals.approval_ops import list_approvals

    items, _ = list_approvals(world.store, now=later(0))
    return items


def assert_refused(world: ChannelWorld, output: Path, code: str) -> None:
    """Nothing was opened or written; only the refusal's own record exists."""
    assert approvals(world) == []
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}")]
    (refusal,) = world.records("release-channel-promotion-request")
    assert refusal.subject.status == "refused" and refusal.subject.success is False
    assert refusal.payload["error"]["code"] == code


def test_request_is_signed_by_the_promotion_key_and_opens_a_bound_approval(channel_world: ChannelWorld) -> None:
    out = channel_world.work / "req"
    result = channel_world.request(output=out, quorum=2, expires_in=timedelta(hours=8))
    checksums = (channel_world.package / "checksums.txt").read_bytes()
    digest = "sha256:" + hashlib.sha256(checksums).hexdigest()
    expected_id = "rcp_" + hashlib.sha256(b"stable:1.2.3:enterprise").hexdigest()[:12]
    assert result["request_id"] == expected_id and result["subject_digest"] == digest

    document = loads_strict((out / REQUEST_FILE).read_bytes(), source=REQUEST_FILE)
    check = verify_signed_payload(document, trust_root=load_trust_root(channel_world.keys.trust_root),
                                  role=Role.PROMOTION, now=later(0.2), label="request",
                                  schema_version=CHANNEL_PROMOTION_SIGNATURE)
    assert check.key_id == result["signer_key_id"]
    assert document["schema_version"] == "cavra.go-runtime.release-channel-promotion-request.v1"
    for field in ("request_id", "created_at", "channel", "target_ring", "release", "channel_manifest",
                  "updater_policy", "workstation_targets", "controls", "approval", "signature"):
        assert field in document, field
    assert document["controls"] == ["release-package-verified", "channel-manifest-approval-required",
                                    "updater-policy-approval-required",
                                    "endpoint-export-bundle-required-before-publish",
                                    "rollback-package-reference-required"]
    assert document["channel_manifest"]["path"] == "rt.channels.json"
    assert document["channel_manifest"]["sha256"] == hashlib.sha256(
        (channel_world.package / "rt.channels.json").read_bytes()).hexdigest()
    assert document["release"]["version"] == "1.2.3" and document["subject_digest"] == digest
    embedded = document["approval"]
    assert embedded["approval_id"] == result["approval_id"] and embedded["state"] == "pending"
    assert embedded["decision_id"] == f"{expected_id}:decision"
    assert embedded["session_id"] == "release-channel:stable:1.2.3"
    assert embedded["decision"]["action_type"] == "release_promote_channel_manifest"
    assert embedded["decision"]["target"] == "stable->enterprise"
    assert (out / "release-channel-promotion-request.md").read_text().startswith(
        f"# Release channel promotion request {expected_id}")

    (approval,) = approvals(channel_world)
    assert approval.approval_id == result["approval_id"]
    assert (approval.action, approval.subject_digest, approval.target, approval.requester, approval.quorum,
            approval.state) == ("release_promote_channel_manifest", digest, "stable->enterprise", "alice", 2,
                                ApprovalState.PENDING)
    assert approval.expires_at == later(0.1) + timedelta(hours=8)

    (record,) = channel_world.records("release-channel-promotion-request")
    assert record.subject.status == "requested" and record.subject.approval_id == result["approval_id"]
    assert record.subject.channel == "stable" and record.subject.ring == "enterprise"
    assert record.payload["request"] == document and record.actor == "alice"
    assert {a.name for a in record.artifacts} == {REQUEST_FILE, "release-channel-promotion-request.md"}


def test_a_release_role_key_cannot_sign_a_promotion_request(channel_world: ChannelWorld) -> None:
    out = channel_world.work / "req"
    with pytest.raises(UntrustedKeyError, match="expected a promotion-role key"):
        channel_world.request(output=out, key=channel_world.keys.release_pem)
    assert_refused(channel_world, out, "untrusted-key")


def test_an_unpinned_key_cannot_sign_a_promotion_request(channel_world: ChannelWorld) -> None:
    out = channel_world.work / "req"
    with pytest.raises(UntrustedKeyError, match="does not pin"):
        channel_world.request(output=out, key=channel_world.keys.unpinned_pem)
    assert_refused(channel_world, out, "untrusted-key")


def test_a_held_channel_refuses_requests(channel_world: ChannelWorld) -> None:
    ChannelRepository(channel_world.store).hold("stable", actor="sec", reason="INC-3", now=later(0))
    out = channel_world.work / "req"
    with pytest.raises(ChannelHeldError):
        channel_world.request(output=out)
    assert not out.exists()
    assert [r.subject.status for r in channel_world.records("release-channel-promotion-request")] == ["refused"]
    # another channel is not affected
    channel_world.request(channel="beta", ring="platform-pilot", output=channel_world.work / "beta")


def test_requests_below_the_high_water_mark_or_with_other_bytes_are_refused(channel_world: ChannelWorld) -> None:
    channel_world.promote()  # stable at 1.2.3
    before = len(approvals(channel_world))
    with pytest.raises(RollbackError):
        channel_world.request(channel_world.sim.package("1.2.2", out="older"), output=channel_world.work / "a",
                              at=later(1))
    with pytest.raises(VersionConflictError):
        channel_world.request(channel_world.sim.package("1.2.3", out="rebuilt", payload=b"#x\n"),
                              output=channel_world.work / "b", at=later(1))
    assert len(approvals(channel_world)) == before
    assert not (channel_world.work / "a").exists() and not (channel_world.work / "b").exists()


def test_a_package_that_does_not_verify_is_refused(channel_world: ChannelWorld) -> None:
    channel_world.sim.flip_bit(channel_world.package / "bin" / "rt_1.2.3_linux_amd64")
    out = channel_world.work / "req"
    with pytest.raises(DigestMismatchError):
        channel_world.request(output=out)
    assert_refused(channel_world, out, "digest-mismatch")


def test_unknown_channel_or_ring_is_bad_input(channel_world: ChannelWorld) -> None:
    with pytest.raises(InputError, match="release channel not found: nightly"):
        channel_world.request(channel="nightly", output=channel_world.work / "a")
    with pytest.raises(InputError, match="--target-ring"):
        channel_world.request(ring="everyone", output=channel_world.work / "b")
    assert approvals(channel_world) == []


# --- CLI ----------------------------------------------------------------------------------------------------


def test_cli_request_defaults_to_a_directory_named_after_the_request(
    channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = channel_world.keys
    code, out, err = cli(capsys, "channel", "request-promotion", str(channel_world.package), "--channel", "stable",
                         "--target-ring", "broad", "--requester", "alice", "--signing-key", str(keys.promotion_pem),
                         "--trust-root", str(keys.trust_root), "--quorum", "1", "--expires-in", "2h", "--json")
    assert code == 0, err
    result = json.loads(out)
    expected = channel_world.work / "channel-promotion" / result["request_id"]
    assert Path(result["output_dir"]) == expected and (expected / REQUEST_FILE).is_file()
    # the same request again: the default directory exists, refused before anything is opened
    code, out, err = cli(capsys, "channel", "request-promotion", str(channel_world.package), "--channel", "stable",
                         "--target-ring", "broad", "--requester", "alice", "--signing-key", str(keys.promotion_pem),
                         "--trust-root", str(keys.trust_root))
    assert code == 2 and "not empty" in err and len(approvals(channel_world)) == 1


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda w, a: a.__setitem__(0, str(w.work / "missing")), "does not exist"),
        (lambda w, a: a.__setitem__(0, str(w.package / "checksums.txt")), "is a file"),
        (lambda w, a: a.extend(["--expires-in", "soon"]), "--expires-in"),
        (lambda w, a: a.extend(["--expires-in", "120d"]), "--expires-in"),
        (lambda w, a: a.__setitem__(a.index("--trust-root") + 1, str(w.work)), "is a directory"),
        (lambda w, a: a.__setitem__(a.index("--signing-key") + 1, str(w.work / "nokey.pem")), "file not found"),
        (lambda w, a: a.__setitem__(a.index("--signing-key") + 1, str(w.work)), "is a directory"),
        (lambda w, a: a.__setitem__(a.index("--quorum") + 1, "0"), "quorum"),
    ],
    ids=["missing-package", "package-is-file", "bad-expires-in", "too-long", "trust-root-dir", "missing-key",
         "key-dir", "quorum"],
)
def test_cli_bad_input_exits_2_with_one_line(
    channel_world: ChannelWorld, capsys: pytest.CaptureFixture[str], mutate: object, needle: str
) -> None:
    keys = channel_world.keys
    args = [str(channel_world.package), "--channel", "stable", "--target-ring", "broad", "--requester", "alice",
            "--signing-key", str(keys.promotion_pem), "--trust-root", str(keys.trust_root), "--quorum", "1"]
    mutate(channel_world, args)  # type: ignore[operator]
    code, out, err = cli(capsys, "channel", "request-promotion", *args)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and approvals(channel_world) == []
