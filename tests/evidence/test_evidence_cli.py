"""`ringward evidence search|show|import|export`, `ringward approval ...` and `ringward api token ...`
as a user runs them: tables by default, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringward.core.evidence.records import EvidenceDraft, EvidenceSubject
from ringward.store import open_store
from tests.evidence.helpers import cli, cli_process, one_error_line

DIGEST = "sha256:" + "1" * 64

REFERENCE_METADATA = {
    "items": [
        {
            "session_id": "rollout-2026-01",
            "metadata_kind": "managed-endpoint-rollout",
            "rollout_status": "staged",
            "environment": "prod",
            "deployment_targets": ["macos-jamf-arm64-workstation"],
            "target_ring": "pilot",
            "created_at": "2026-01-02T03:04:05+00:00",
            "schema_version": "cavra.evidence.metadata.v1",
            "product": "CAVRA",
        },
        {
            "session_id": "exec-7",
            "metadata_kind": "rollout-promotion-execution",
            "promotion_execution_status": "succeeded",
            "approval_state": "approved",
            "approval_id": "apr_0123456789ab",
            "target_ring": "broad",
        },
        {"session_id": "sess-1", "decision_count": 3, "blocked_count": 0, "approval_required_count": 1},
    ]
}

REFERENCE_APPROVALS = {
    "items": [
        {
            "approval_id": "apr_aaaaaaaaaaaa",
            "decision_id": "req-1:decision",
            "session_id": "rollout-2026-01",
            "state": "approved",
            "approver_group": "Change Advisory Board",
            "requested_by": "console",
            "requested_at": "2026-01-01T00:00:00+00:00",
            "expires_at": "2999-01-02T00:00:00+00:00",
            "decided_by": "cab-member",
            "decided_at": "2026-01-01T01:00:00+00:00",
            "decision_reason": "ok",
            "decision": {
                "decision_id": "req-1:decision",
                "action_type": "release_promote_endpoint_rollout",
                "metadata": {"target_ring": "production"},
            },
            "history": [{"event": "requested", "actor": "console", "timestamp": "2026-01-01T00:00:00+00:00"}],
        },
        {
            "approval_id": "apr_bbbbbbbbbbbb",
            "state": "pending",
            "requested_by": "console",
            "requested_at": "2026-01-01T00:00:00Z",
            "expires_at": "2999-01-01T00:00:00Z",
            "decision": {"action_type": "endpoint_drift_remediation", "metadata": {}},
        },
    ]
}


def test_search_table_json_and_paging(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store() as store:
        for i in range(12):
            store.append(
                EvidenceDraft(
                    kind="managed-endpoint-rollout",
                    actor="bot",
                    subject=EvidenceSubject(
                        status="staged" if i % 2 else "failed", deployment_target="fleet", ring="pilot"
                    ),
                    payload={"i": i},
                )
            )
    table = cli(
        capsys,
        "evidence",
        "search",
        "--metadata-kind",
        "managed-endpoint-rollout",
        "--rollout-status",
        "staged",
        "--limit",
        "4",
    )
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["id", "created_at", "kind", "status", "target", "ring", "environment", "actor"]
    assert [line.split()[0] for line in lines[2:6]] == ["12", "10", "8", "6"]
    assert "4 of 6 matching record(s); next page: --before-id 6" in table.out
    page = json.loads(cli(capsys, "evidence", "search", "--status", "staged", "--before-id", "6", "--json").out)
    assert [item["id"] for item in page["items"]] == [4, 2]
    failed = json.loads(
        cli(
            capsys,
            "evidence",
            "search",
            "--rollout-status",
            "failed",
            "--target-ring",
            "pilot",
            "--deployment-target",
            "fleet",
            "--since",
            "2000-01-01",
            "--json",
        ).out
    )
    assert failed["total"] == 6
    shown = cli(capsys, "evidence", "show", "3")
    assert "kind: managed-endpoint-rollout" in shown.out and "subject.status: failed" in shown.out
    assert json.loads(cli(capsys, "evidence", "show", "3", "--json").out)["payload"] == {"i": 2}


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["evidence", "search", "--limit", "0"], 2, "--limit"),
        (["evidence", "search", "--limit", "501"], 2, "--limit"),
        (["evidence", "search", "--since", "last tuesday"], 2, "--since"),
        (["evidence", "search", "--until", "2026-01-01T00:00:00"], 2, "no UTC offset"),
        (["evidence", "show", "999"], 1, "evidence record 999 not found"),
        (["evidence", "show", "0"], 2, "record id"),
        (
            [
                "approval",
                "request",
                "--action",
                "a",
                "--subject-digest",
                "sha256:xyz",
                "--target",
                "t",
                "--requester",
                "r",
            ],
            2,
            "subject_digest: expected sha256",
        ),
        (
            [
                "approval",
                "request",
                "--action",
                "a",
                "--subject-digest",
                DIGEST,
                "--target",
                "t",
                "--requester",
                "r",
                "--expires-in",
                "soon",
            ],
            2,
            "--expires-in",
        ),
        (
            ["approval", "request", "--action", "a b", "--subject-digest", DIGEST, "--target", "t", "--requester", "r"],
            2,
            "action",
        ),
        (["approval", "list", "--state", "lost"], 2, "--state"),
        (["approval", "approve", "apr_000000000000", "--actor", "x", "--reason", "y"], 1, "not found"),
        (["api", "token", "create", "--name", "n", "--role", "root"], 2, "--role"),
        (["api", "token", "create", "--name", "bad name", "--role", "viewer"], 2, "--name"),
        (["api", "token", "revoke", "nobody"], 1, "not found"),
        (["evidence", "import", "/nonexistent/metadata.json"], 2, "not found"),
    ],
)
def test_bad_input_is_one_line_with_the_right_exit_code(
    cli_env: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, fragment: str
) -> None:
    one_error_line(cli(capsys, *args), code, fragment)


def test_approval_cli_flow(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = [
        "approval",
        "request",
        "--action",
        "promote-ring",
        "--subject-digest",
        DIGEST,
        "--target",
        "production",
        "--requester",
        "alice",
        "--expires-in",
        "2h",
        "--quorum",
        "2",
    ]
    created = cli(capsys, *request)
    assert created.code == 0
    approval_id = created.out.strip()
    assert approval_id.startswith("apr_") and len(approval_id) == 16
    one_error_line(
        cli(capsys, "approval", "approve", approval_id, "--actor", "alice", "--reason", "mine"), 1, "requested it"
    )
    first = cli(capsys, "approval", "approve", approval_id, "--actor", "bob", "--reason", "ok")
    assert first.out.strip() == f"{approval_id}: pending (1/2 approvals)"
    one_error_line(
        cli(capsys, "approval", "approve", approval_id, "--actor", "bob", "--reason", "again"), 1, "already approved"
    )
    second = cli(capsys, "approval", "approve", approval_id, "--actor", "carol", "--reason", "ok", "--json")
    assert json.loads(second.out)["state"] == "approved"
    listed = cli(capsys, "approval", "list", "--state", "approved")
    assert approval_id in listed.out and "2/2" in listed.out
    consume = [
        "approval",
        "consume",
        approval_id,
        "--action",
        "promote-ring",
        "--subject-digest",
        DIGEST,
        "--target",
        "production",
        "--actor",
        "deployer",
    ]
    one_error_line(cli(capsys, *consume[:-4], "--target", "broad", "--actor", "deployer"), 1, "target expected")
    assert cli(capsys, *consume).code == 0
    one_error_line(cli(capsys, *consume), 1, "already consumed")
    shown = cli(capsys, "approval", "show", approval_id)
    assert "consumed_by: deployer" in shown.out and "decision:" in shown.out
    denied = cli(capsys, *request[:-2])
    other = denied.out.strip()
    assert cli(capsys, "approval", "deny", other, "--actor", "bob", "--reason", "no").out.strip() == f"{other}: denied"
    assert cli(capsys, "approval", "revoke", other, "--actor", "bob", "--reason", "x").code == 1
    assert json.loads(cli(capsys, "approval", "expire", "--json").out) == {"expired": []}


def test_reference_metadata_import_export_round_trip(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "metadata.json"
    source.write_text(json.dumps(REFERENCE_METADATA))
    imported = cli(capsys, "evidence", "import", str(source), "--json")
    assert json.loads(imported.out)["imported"] == 3
    assert json.loads(cli(capsys, "evidence", "import", str(source), "--json").out) == {
        "schema_version": "cavra.evidence.metadata.v1",
        "imported": 0,
        "skipped": 3,
        "record_ids": [],
    }
    staged = json.loads(
        cli(
            capsys,
            "evidence",
            "search",
            "--metadata-kind",
            "managed-endpoint-rollout",
            "--deployment-target",
            "macos-jamf-arm64-workstation",
            "--json",
        ).out
    )
    assert staged["total"] == 1 and staged["items"][0]["subject"]["ring"] == "pilot"
    executed = json.loads(
        cli(
            capsys,
            "evidence",
            "search",
            "--promotion-execution-status",
            "succeeded",
            "--approval-state",
            "approved",
            "--json",
        ).out
    )
    assert executed["items"][0]["payload"]["session_id"] == "exec-7"
    session = json.loads(cli(capsys, "evidence", "search", "--kind", "session-evidence", "--json").out)
    assert session["total"] == 1
    with open_store() as store:
        store.append(
            EvidenceDraft(
                kind="approval-request",
                actor="alice",
                payload={"x": 1},
                subject=EvidenceSubject(status="requested", deployment_target="t"),
            )
        )
    output = tmp_path / "out" / "metadata.json"
    assert cli(capsys, "evidence", "export", str(output)).code == 0
    exported = json.loads(output.read_text())["items"]
    by_id = {item["session_id"]: item for item in exported}
    assert sorted(by_id) == ["exec-7", "ringward-4", "rollout-2026-01", "sess-1"]
    original = {i["session_id"]: i for i in REFERENCE_METADATA["items"]}
    for key in ("rollout-2026-01", "exec-7", "sess-1"):
        assert {k: by_id[key][k] for k in original[key]} == original[key]
        assert by_id[key]["schema_version"] == "cavra.evidence.metadata.v1"
    own = by_id["ringward-4"]
    assert own["metadata_kind"] == "approval-request" and own["ringward"]["payload"] == {"x": 1}
    assert own["decision_count"] == 0 and own["deployment_targets"] == ["t"]
    one_error_line(cli(capsys, "evidence", "export", str(output)), 2, "refusing to overwrite")


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("[1, 2", "invalid JSON"),
        ('{"items": {}}', 'expected {"items": [...]}'),
        ('{"items": [{"metadata_kind": "x"}]}', "items[0]: metadata must include session_id"),
        ('{"items": [{"session_id": "s", "metadata_kind": "bad kind!"}]}', "items[0].metadata_kind"),
        ('{"items": [{"session_id": "s", "v": NaN}]}', "non-finite"),
        ('{"items": [1]}', "items[0]: expected an object"),
    ],
)
def test_malformed_metadata_import(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, fragment: str
) -> None:
    source = tmp_path / "metadata.json"
    source.write_text(document)
    one_error_line(cli(capsys, "evidence", "import", str(source)), 2, fragment)
    with open_store() as store:
        assert store.head().last_id == 0


def test_reference_approvals_import_is_history_only(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "approvals.json"
    source.write_text(json.dumps(REFERENCE_APPROVALS))
    result = cli(capsys, "approval", "import", str(source), "--actor", "migrator", "--json")
    assert json.loads(result.out)["imported"] == 2
    assert (
        json.loads(cli(capsys, "approval", "import", str(source), "--actor", "migrator", "--json").out)["skipped"] == 2
    )
    shown = json.loads(cli(capsys, "approval", "show", "apr_aaaaaaaaaaaa", "--json").out)
    assert shown["state"] == "approved" and shown["origin"] == "import" and shown["target"] == "production"
    # an approved record from a file authorises nothing: no approver decision was recorded here
    one_error_line(
        cli(
            capsys,
            "approval",
            "consume",
            "apr_aaaaaaaaaaaa",
            "--action",
            "release_promote_endpoint_rollout",
            "--subject-digest",
            shown["subject_digest"],
            "--target",
            "production",
            "--actor",
            "x",
        ),
        1,
        "0 of 1 required approvals",
    )
    # a pending imported approval can be decided here, and then it counts
    assert cli(capsys, "approval", "approve", "apr_bbbbbbbbbbbb", "--actor", "cab", "--reason", "ok").code == 0
    output = tmp_path / "export" / "approvals.json"
    assert cli(capsys, "approval", "export", str(output)).code == 0
    items = {i["approval_id"]: i for i in json.loads(output.read_text())["items"]}
    kept = items["apr_aaaaaaaaaaaa"]
    for key in ("decision_id", "session_id", "approver_group", "decided_by", "decision"):
        assert kept[key] == REFERENCE_APPROVALS["items"][0][key]
    assert kept["state"] == "approved" and kept["ringward"]["origin"] == "import"
    decided = items["apr_bbbbbbbbbbbb"]
    assert decided["state"] == "approved" and decided["history"][-1]["event"] == "approved"
    bad = tmp_path / "bad.json"
    bad.write_text('{"items": [{"approval_id": "apr_1", "state": "bogus"}]}')
    one_error_line(cli(capsys, "approval", "import", str(bad), "--actor", "m"), 2, "unsupported approval state: bogus")


def test_token_cli_shows_the_secret_once(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    created = cli(capsys, "api", "token", "create", "--name", "ci-viewer", "--role", "viewer")
    assert created.code == 0
    secret = created.out.strip()
    assert secret.startswith("rwt_") and "shown once" in created.err
    listed = cli(capsys, "api", "token", "list", "--json")
    assert secret not in listed.out and json.loads(listed.out)[0]["name"] == "ci-viewer"
    one_error_line(cli(capsys, "api", "token", "create", "--name", "ci-viewer", "--role", "admin"), 1, "already exists")
    assert cli(capsys, "api", "token", "revoke", "ci-viewer").code == 0
    assert "revoked" in cli(capsys, "api", "token", "list").out


def test_real_process_has_no_traceback_and_right_codes(cli_env: Path) -> None:
    result = cli_process("evidence", "verify", "--json")
    assert result.code == 0 and json.loads(result.out)["ok"] is True
    bad = cli_process("evidence", "search", "--limit", "-3")
    assert bad.code == 2 and bad.err.startswith("error: --limit")
