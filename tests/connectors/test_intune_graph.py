"""The native Intune (Microsoft Graph) publisher against a stateful Graph/Entra/Azure Blob emulator on
loopback, delivered through the real engine: exact create call (recorded body), content that
decrypts back to the zip of the artifact files, re-entrance after failures at any step, artifact
checks before any upload, 4xx final vs 5xx retried, and no secret in stored evidence."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import json
import os
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from connectors import DeliveryEngine, EngineReport, MemoryLedger, SecretResolver, resolve_destinations
from connectors.providers import intune_graph
from connectors.providers.fleet import Intune
from connectors.providers.intune_graph import (
    ContentIntegrityError,
    IntuneGraph,
    build_zip,
    check_upload_url,
    decrypt_content,
    encrypt_content,
    odata_string,
)
from connectors.registry import provider_for
from ringward.core.delivery.config import ProviderKind, PublishMode
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.intune_publication import parse_intune_publication
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from ringward.core.errors import ConnectorEventError
from ringward.operations.delivery import delivery_ops as ops
from ringward.operations.delivery.delivery_ops import DeliveryHooks
from ringward.store import Store
from tests.connectors.conftest import SECRETS, FakeClock, config_of, make_event, scan_for_secrets
from tests.connectors.graph_emulator import (
    SAS_SIG,
    TOKEN,
    Fault,
    GraphEmulator,
    IntunewinError,
    verify_intunewin,
)
from tests.connectors.test_providers import recorded

EVENT_ID = "emp_3c9d0e1f2a4b"
DISPLAY_NAME = "CAVRA Go Runtime stable"
GROUPS = ("6f1c2d3e-4b5a-4978-8a9b-0c1d2e3f4a5b", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d")
#: lowered in every test so the installer spans several blocks
BLOCK = 16 * 1024
_R = "REDACTED"


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(intune_graph, "SLEEP", waits.append)
    monkeypatch.setattr(intune_graph, "BLOCK_BYTES", BLOCK)
    return waits


def write_artifacts(root: Path) -> dict[str, bytes]:
    files = {
        "install-cavra-runtime.ps1": b'Copy-Item cavra-runtime.exe "$env:ProgramFiles\\CAVRA\\" -Force\r\n',
        "rollback-cavra-runtime.ps1": b'Remove-Item "$env:ProgramFiles\\CAVRA\\cavra-runtime.exe"\r\n',
        "cavra-runtime.exe": random.Random(42).randbytes(50_000),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def artifacts_of(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [
        {"artifact": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in files.items()
    ]


def intune_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "schema_version": "cavra.endpoint-management.intune.v1",
        "display_name": DISPLAY_NAME,
        "install_behavior": "system",
        "install_command": "powershell.exe -ExecutionPolicy Bypass -File install-cavra-runtime.ps1",
        "uninstall_command": "powershell.exe -ExecutionPolicy Bypass -File rollback-cavra-runtime.ps1",
        "detection_rule": {
            "type": "file_sha256",
            "path": "%ProgramFiles%\\CAVRA\\cavra-runtime.exe",
            "sha256_values": ["9f2c" * 16],
        },
        "publication_context": {"provider": "intune", "channel": "stable"},
    }
    payload.update(overrides)
    return payload


def publication_event(files: dict[str, bytes], event_id: str = EVENT_ID, **payload: Any) -> ConnectorEvent:
    return make_event(
        event_id,
        event_type="cavra.endpoint_management_export_publication",
        attributes={"publication_id": event_id, "artifacts": artifacts_of(files)},
        provider_payloads={"intune": intune_payload(**payload)},
    )


def destination(graph: GraphEmulator, root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "intune-prod",
        "provider": "intune",
        "url": graph.base,
        "client_id": "ringward-graph-app",
        "client_secret": "env:RW_INTUNE_SECRET",
        "token_url": graph.token_url,
        "artifact_root": str(root),
        "target_group_ids": list(GROUPS),
        **extra,
    }


def run(
    dest: dict[str, Any],
    events: list[ConnectorEvent],
    clock: FakeClock,
    ledger: MemoryLedger | None = None,
    **defaults: Any,
) -> EngineReport:
    config = config_of(dest, **defaults)
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors, errors
    engine = DeliveryEngine(
        ledger if ledger is not None else MemoryLedger(),
        run_id="intune-test",
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(5),
    )
    return engine.deliver(events, dests)


def only(report: EngineReport) -> DestinationResult:
    (result,) = report.all_results()
    return result


FULL_CONVERSATION = [
    "token",
    "find",
    "create",
    "versions",
    "create version",
    "create file",
    "get file",
    "get file",
    *["block"] * 4,
    "blocklist",
    "commit",
    "get file",
    "get file",
    "patch",
    "assign",
]


# -- the whole publication -------------------------------------------------------------------------------


def test_publishes_a_win32_app_with_encrypted_content_and_assignments(
    graph: GraphEmulator,
    tmp_path: Path,
    sqlite_store: Store,
    hooks: DeliveryHooks,
    secret_env: dict[str, str],
    _fast_polls: list[float],
) -> None:
    files = write_artifacts(tmp_path / "export")
    config = config_of(destination(graph, tmp_path / "export"))
    event = publication_event(files)
    delivery = ops.deliver_event(event, config, store=sqlite_store, hooks=hooks, run_id="intune-1")
    (result,) = delivery.results
    assert result.status is DeliveryStatus.DELIVERED, result.error
    (app_id,) = graph.apps
    assert result.external_ref == app_id
    assert graph.steps() == FULL_CONVERSATION
    # one pending answer per wait, slept through the injected function, never beyond half the time left
    assert len(_fast_polls) == 2 and all(0 < w <= 1.0 for w in _fast_polls)

    (create,) = graph.of_step("create")
    assert (create.method, create.path, create.query) == ("POST", "/v1.0/deviceAppManagement/mobileApps", "")
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["content-type"] == "application/json" and create.headers["accept"] == "application/json"
    assert create.body == recorded("intune_graph", create.body)
    app = create.json()
    assert app["notes"].split()[-1] == f"ringward-event:{EVENT_ID}" and app["displayVersion"] == "1.4.2"
    assert (app["setupFilePath"], app["fileName"]) == ("install-cavra-runtime.ps1", "install-cavra-runtime.intunewin")
    assert [(c["returnCode"], c["type"]) for c in app["returnCodes"]] == [
        (0, "success"),
        (1707, "success"),
        (3010, "softReboot"),
        (1641, "hardReboot"),
        (1618, "retry"),
    ]
    (rule,) = app["rules"]
    assert rule["@odata.type"] == "#microsoft.graph.win32LobAppPowerShellScriptRule"
    script = base64.b64decode(rule["scriptContent"]).decode()
    assert "Get-FileHash -LiteralPath $path -Algorithm SHA256" in script and "9f2c" * 16 in script
    assert "Write-Output" in script and "exit 0" in script

    (find,) = graph.of_step("find")
    assert find.query == "$filter=isof%28%27microsoft.graph.win32LobApp%27%29&$select=id,displayName,notes&$top=100"
    assert app["displayName"] == f"{DISPLAY_NAME} 1.4.2"

    # the uploaded content is the encrypted zip of exactly the artifact files
    package = graph.decrypted(app_id, "1")
    assert package == build_zip(sorted(files.items()))
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files
    (made,) = graph.of_step("create file")
    spec = made.json()
    assert spec == {
        "@odata.type": "#microsoft.graph.mobileAppContentFile",
        "name": "install-cavra-runtime.intunewin",
        "size": len(package),
        "sizeEncrypted": spec["sizeEncrypted"],
        "manifest": None,
        "isDependency": False,
    }
    assert spec["sizeEncrypted"] == 48 + (len(package) // 16 + 1) * 16
    info = graph.of_step("commit")[0].json()["fileEncryptionInfo"]
    assert info["profileIdentifier"] == "ProfileVersion1" and info["fileDigestAlgorithm"] == "SHA256"
    assert base64.b64decode(info["fileDigest"]) == hashlib.sha256(package).digest()

    # blob storage: SAS only (no Graph token, no configured headers), blocks of at most BLOCK bytes
    blocks = graph.of_step("block")
    assert all("authorization" not in b.headers and "x-ms-blob-type" not in b.headers for b in blocks)
    assert all(len(b.body) <= BLOCK for b in blocks) and sum(len(b.body) for b in blocks) == spec["sizeEncrypted"]
    assert all("comp=block&blockid=" in b.query for b in blocks)
    (block_list,) = graph.of_step("blocklist")
    assert "authorization" not in block_list.headers
    assert block_list.body.startswith(b'<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>')
    assert block_list.body.count(b"<Latest>") == 4

    assert graph.apps[app_id]["committedContentVersion"] == "1"
    (assign,) = graph.of_step("assign")
    assert assign.json() == {
        "mobileAppAssignments": [
            {
                "@odata.type": "#microsoft.graph.mobileAppAssignment",
                "intent": "required",
                "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group},
            }
            for group in GROUPS
        ]
    }

    # a second delivery of the same event sends nothing (ledger)
    sent = len(graph.requests)
    again = ops.deliver_event(event, config, store=sqlite_store, hooks=hooks, run_id="intune-2")
    assert {r.status for r in again.results} == {DeliveryStatus.ALREADY_DELIVERED}
    assert len(graph.requests) == sent

    secrets = {"client-secret": SECRETS["RW_INTUNE_SECRET"], "graph-token": TOKEN, "sas-sig": SAS_SIG}
    assert scan_for_secrets(sqlite_store, secrets) == []


def test_without_target_groups_the_app_is_left_unassigned_for_review(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    result = only(run(destination(graph, tmp_path, target_group_ids=[]), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert graph.steps()[-1] == "patch" and graph.assignments == {}


def test_events_without_an_intune_payload_are_filtered(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    report = run(destination(graph, tmp_path), [make_event()], clock)
    assert report.all_results() == [] and report.filtered["evt-promotion-0001"] == ["intune-prod"]
    assert graph.requests == []


def test_relay_mode_keeps_the_envelope_provider() -> None:
    assert isinstance(provider_for(ProviderKind.INTUNE, PublishMode.RELAY), Intune)
    assert isinstance(provider_for(ProviderKind.INTUNE, PublishMode.NATIVE), IntuneGraph)
    relay = config_of({"name": "i", "provider": "intune", "url": "https://relay.example.com/p", "mode": "relay"})
    assert relay.providers[0].publish_mode is PublishMode.RELAY


# -- re-entrance -----------------------------------------------------------------------------------------


def test_a_fresh_run_after_a_failure_mid_upload_resumes_without_a_second_app(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail("block", Fault.ok(), Fault.of(500, f"blob broke for sig={SAS_SIG}"))
    first = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert first.status is DeliveryStatus.FAILED and first.retryable
    assert first.error is not None and first.error.endswith(
        f"upload block 1: HTTP 500 Internal Server Error: blob broke for sig={_R}"
    )
    assert SAS_SIG not in (first.error or "") and first.request is not None and SAS_SIG not in first.request.url
    assert first.request.method == "PUT" and first.request.url.endswith("?REDACTED")
    (app_id,) = graph.apps
    assert graph.apps[app_id]["committedContentVersion"] is None

    second = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert second.status is DeliveryStatus.DELIVERED and second.external_ref == app_id
    assert list(graph.apps) == [app_id] and len(graph.of_step("create")) == 1
    assert graph.versions[app_id] == ["1", "2"] and graph.apps[app_id]["committedContentVersion"] == "2"
    assert graph.decrypted(app_id, "2") == build_zip(sorted(files.items()))


def test_a_commit_whose_patch_failed_is_reused_not_uploaded_again(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail("patch", Fault.of(503, '{"error":{"code":"ServiceUnavailable","message":"busy"}}', Retry_After="4"))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert [a.status_code for a in result.attempts] == [503, 204]
    assert "set committedContentVersion: HTTP 503" in (result.attempts[0].error or "")
    assert clock.sleeps == [4.0]
    assert len(graph.of_step("block")) == 4 and len(graph.of_step("create")) == 1  # uploaded once
    assert graph.steps()[FULL_CONVERSATION.index("patch") + 1 :] == [
        "find",
        "get app",
        "versions",
        "version files",
        "patch",
        "assign",
    ]


def test_a_slow_create_that_the_server_finished_is_found_not_duplicated(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    # the app is made at once and its answer held back far beyond the per-call timeout: the outcome
    # does not depend on how fast this machine is
    graph.fail("create", Fault(delay=30.0, handle_first=True))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock, timeout_seconds=1.5))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].outcome is Outcome.RETRY and "timeout" in (result.attempts[0].error or "")
    assert len(graph.apps) == 1 and len(graph.of_step("create")) == 1


def test_an_app_already_published_is_reported_existing(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.page_size = 1
    graph.add_app(displayName=DISPLAY_NAME, notes="someone else's app")
    graph.add_app(displayName=DISPLAY_NAME, notes=f"Published by Ringward. ringward-event:{EVENT_ID}0")
    app_id = graph.add_app(
        displayName=DISPLAY_NAME, notes=f"Published by Ringward. ringward-event:{EVENT_ID}", committedContentVersion="3"
    )
    result = only(run(destination(graph, tmp_path, target_group_ids=[]), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.EXISTS and result.external_ref == app_id
    # followed @odata.nextLink, read the one matching app by id, created nothing
    assert graph.steps() == ["token", "find", "find", "find", "get app"]
    assert all("$select=id,displayName,notes" in r.query for r in graph.of_step("find"))
    assert graph.of_step("get app")[0].query == ""


def test_a_run_that_failed_only_at_assignment_is_completed(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail("assign", 500)
    first = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert first.status is DeliveryStatus.FAILED and "assign: HTTP 500" in (first.error or "")
    before = len(graph.requests)
    second = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert second.status is DeliveryStatus.DELIVERED
    assert graph.steps()[before:] == ["find", "get app", "assignments", "assign"]
    (app_id,) = graph.apps
    assert [a["target"]["groupId"] for a in graph.assignments[app_id]] == list(GROUPS)
    third = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert third.status is DeliveryStatus.EXISTS and graph.steps()[-3:] == ["find", "get app", "assignments"]


def test_a_next_link_to_another_host_is_refused(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    body = json.dumps({"value": [], "@odata.nextLink": "https://attacker.example.com/v1.0/mobileApps?x=1"})
    graph.fail("find", Fault.of(200, body))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.REJECTED
    assert "expected @odata.nextLink on http://127.0.0.1" in (result.error or "")
    assert graph.steps() == ["token", "find"]


# -- artifacts -------------------------------------------------------------------------------------------


def test_an_artifact_whose_bytes_differ_from_the_event_fails_before_any_graph_call(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    event = publication_event(files)
    (tmp_path / "cavra-runtime.exe").write_bytes(b"X" + files["cavra-runtime.exe"][1:])
    result = only(run(destination(graph, tmp_path), [event], clock))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    expected = hashlib.sha256(files["cavra-runtime.exe"]).hexdigest()
    assert result.error is not None and "artifact cavra-runtime.exe: expected sha256 " + expected in result.error
    assert "found sha256 " in result.error and "nothing uploaded" in result.error
    assert result.error.startswith("verify artifact: artifact cavra-runtime.exe: ")
    assert result.status_code is None and result.request is None
    assert graph.steps() == ["token"]  # the engine fetched a token; nothing was sent to Graph


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/passwd", "sub/../../x", ".hidden"])
def test_a_path_escaping_artifact_name_is_refused(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock, name: str
) -> None:
    files = write_artifacts(tmp_path / "root")
    event = publication_event(files, content=[{"artifact": name, "sha256": "0" * 64, "bytes": 1}])
    result = only(run(destination(graph, tmp_path / "root"), [event], clock))
    assert result.status is DeliveryStatus.REJECTED
    assert "artifact path must be" in (result.error or "") and graph.steps() == ["token"]


def test_a_symlink_out_of_the_artifact_root_is_refused(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path / "root")
    outside = tmp_path / "outside.exe"
    outside.write_bytes(files["cavra-runtime.exe"])
    os.remove(tmp_path / "root" / "cavra-runtime.exe")
    os.symlink(outside, tmp_path / "root" / "cavra-runtime.exe")
    result = only(run(destination(graph, tmp_path / "root"), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.REJECTED
    assert "found a symlink or non-directory on its path (refused)" in (result.error or "")
    assert graph.steps() == ["token"]


# -- faults ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "fault", "status", "apps"),
    [
        ("create", 400, DeliveryStatus.REJECTED, 0),
        ("find", 403, DeliveryStatus.REJECTED, 0),
        ("token", 401, DeliveryStatus.REJECTED, 0),
        ("commit", 404, DeliveryStatus.REJECTED, 1),
        ("create", 500, DeliveryStatus.DELIVERED, 1),
        ("block", 503, DeliveryStatus.DELIVERED, 1),
        ("create version", 429, DeliveryStatus.DELIVERED, 1),
        ("get file", 502, DeliveryStatus.DELIVERED, 1),
    ],
)
def test_4xx_is_final_and_5xx_or_429_is_retried(
    graph: GraphEmulator,
    tmp_path: Path,
    secret_env: dict[str, str],
    clock: FakeClock,
    step: str,
    fault: int,
    status: DeliveryStatus,
    apps: int,
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail(step, fault)
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is status, result.error
    assert result.attempts[0].status_code == fault and len(graph.apps) == apps
    creates = {"create": 1 if fault < 500 else 2, "find": 0, "token": 0}.get(step, 1)
    assert len(graph.of_step("create")) == creates
    if status is DeliveryStatus.REJECTED:
        assert len(result.attempts) == 1 and not result.retryable and clock.sleeps == []
    else:
        assert len(result.attempts) == 2 and len(clock.sleeps) == 1
        # a fault after the content version was made leaves it uncommitted: the retry uses version 2
        (app,) = graph.apps.values()
        assert app["committedContentVersion"] == ("2" if step in ("block", "get file") else "1")


def test_429_retry_after_is_honoured(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail("find", Fault.of(429, '{"error":{"code":"TooManyRequests","message":"slow down"}}', Retry_After="9"))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED and clock.sleeps == [9.0]
    assert result.attempts[0].error == "find win32LobApp: HTTP 429 Too Many Requests: TooManyRequests: slow down"


def test_a_failed_upload_state_is_retried_and_a_failed_commit_is_final_after_two_retries(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_artifacts(tmp_path)
    failed_uri = json.dumps({"id": "x", "uploadState": "azureStorageUriRequestFailed"})
    graph.fail("get file", Fault.of(200, failed_uri))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert "found azureStorageUriRequestFailed" in (result.attempts[0].error or "")

    # a package the service cannot verify (here: a wrong digest) is a final failure
    real = intune_graph.encrypt_file

    def wrong_digest(path: str, **kwargs: Any) -> intune_graph.EncryptedPackage:
        content = real(path, **kwargs)
        info = {**content.encryption_info, "fileDigest": base64.b64encode(b"\0" * 32).decode()}
        return dataclasses.replace(content, encryption_info=info)

    monkeypatch.setattr(intune_graph, "encrypt_file", wrong_digest)
    event = publication_event(files, event_id="emp_second")
    second = only(run(destination(graph, tmp_path), [event], clock))
    # retried twice, each time with a fresh content version, then final
    assert second.status is DeliveryStatus.REJECTED and len(second.attempts) == 3
    assert [a.outcome for a in second.attempts] == [Outcome.RETRY, Outcome.RETRY, Outcome.REJECTED]
    assert "found commitFileFailed (failed commit 1 of at most 2 retried" in (second.attempts[0].error or "")
    assert second.error == (
        "wait for commit: HTTP 200 OK: expected uploadState commitFileSuccess, found commitFileFailed "
        "(failed commit 3, no more retries)"
    )
    (app_id,) = [a for a, v in graph.apps.items() if v["notes"].endswith("emp_second")]
    assert graph.versions[app_id] == ["1", "2", "3"] and graph.apps[app_id]["committedContentVersion"] is None
    assert [f.commit_error for v in "123" for f in graph.files[(app_id, v)]] == [
        "fileDigest is not the SHA-256 of the decrypted package"
    ] * 3

    # a later run of the same delivery does not upload a fourth time
    sent = len(graph.of_step("block"))
    third = only(run(destination(graph, tmp_path), [event], clock))
    assert third.status is DeliveryStatus.REJECTED and len(graph.of_step("block")) == sent
    assert "found 3 failed commits (no more retries)" in (third.error or "")


def test_endless_pending_state_gives_up_within_the_attempt(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock, _fast_polls: list[float]
) -> None:
    files = write_artifacts(tmp_path)
    graph.pending_polls = 10_000
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert result.status is DeliveryStatus.FAILED and result.retryable
    assert "expected uploadState azureStorageUriRequestSuccess within 60 polls" in (result.error or "")
    assert len(_fast_polls) == 60 and all(0 < w <= 1.0 for w in _fast_polls)


# -- pure parts ------------------------------------------------------------------------------------------


def test_encryption_round_trips_and_tampering_breaks_the_mac() -> None:
    package = build_zip([("b.txt", b"bee"), ("a.txt", b"ay" * 1000)])
    assert package == build_zip([("a.txt", b"ay" * 1000), ("b.txt", b"bee")])  # deterministic
    content = encrypt_content(package)
    assert decrypt_content(content.data, content.encryption_info) == package
    assert encrypt_content(package).data != content.data  # fresh keys every time
    tampered = bytearray(content.data)
    tampered[60] ^= 1
    with pytest.raises(ContentIntegrityError, match="HMAC-SHA256"):
        decrypt_content(bytes(tampered), content.encryption_info)
    with pytest.raises(ContentIntegrityError, match="expected fileDigest"):
        decrypt_content(content.data, {**content.encryption_info, "fileDigest": base64.b64encode(b"1" * 32).decode()})
    fixed = encrypt_content(b"x", key=b"k" * 32, mac_key=b"m" * 32, iv=b"i" * 16)
    assert fixed.data[32:48] == b"i" * 16 and len(fixed.data) == 64


def test_payload_parsing_and_translation() -> None:
    files = {"setup/install.ps1": b"a", "setup/app.exe": b"b"}
    event = make_event(
        attributes={"artifacts": artifacts_of(files)},
        provider_payloads={
            "intune": intune_payload(
                display_name="O'Brien's runtime",
                install_behavior="user",
                install_command="powershell.exe -File setup\\install.ps1",
                content=["setup/app.exe", "setup/install.ps1"],
            )
        },
    )
    publication = parse_intune_publication(event)
    body = publication.win32_lob_app()
    assert body["setupFilePath"] == "setup\\install.ps1" and body["fileName"] == "install.intunewin"
    assert body["installExperience"]["runAsAccount"] == "user"
    assert odata_string("O'Brien's runtime") == "'O''Brien''s runtime'"
    assert publication.has_marker("x ringward-event:evt-promotion-0001") and not publication.has_marker(
        "ringward-event:evt-promotion-00012"
    )
    bad = make_event(provider_payloads={"intune": intune_payload(install_behavior="admin", content=["nope.exe"])})
    with pytest.raises(ConnectorEventError, match=r"provider_payloads\.intune\.install_behavior"):
        parse_intune_publication(bad)
    unknown = make_event(provider_payloads={"intune": intune_payload(content=["nope.exe"])})
    with pytest.raises(ConnectorEventError, match=r"content\[0\]: expected sha256 and bytes of 'nope.exe'"):
        parse_intune_publication(unknown)


def test_connector_test_event_is_a_read_only_connectivity_check(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    """`ringward connectors test` on a native Intune destination: token + one read, nothing created."""
    from ringward.core.delivery.event import make_test_event

    event = make_test_event(destination="intune-prod", now=clock.now)
    result = only(run(destination(graph, tmp_path), [event], clock))
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "Graph mobileApps readable"
    assert graph.steps() == ["token", "find"] and not graph.apps
    graph.fail("find", 403)
    denied = only(run(destination(graph, tmp_path), [make_test_event(destination="x", now=clock.now)], clock))
    assert denied.status is DeliveryStatus.REJECTED and (denied.error or "").startswith("connectivity check: HTTP 403")


# -- security review fixes -------------------------------------------------------------------------------


def test_a_commit_that_completed_after_its_attempt_gave_up_is_reused_behind_newer_versions(
    graph: GraphEmulator,
    tmp_path: Path,
    secret_env: dict[str, str],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = write_artifacts(tmp_path)
    monkeypatch.setattr(intune_graph, "MAX_POLLS", 3)
    graph.commit_pending_polls = 10_000
    # attempt 1 commits version 1 and gives up waiting for the commit
    first = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert first.status is DeliveryStatus.FAILED and "commitFileSuccess within 3 polls" in (first.error or "")
    # attempt 2 (as an earlier release did) did not see it, made version 2 and failed mid-upload
    graph.fail("version files", Fault.of(200, '{"value": []}'))
    graph.fail("block", Fault.of(503))
    second = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert second.status is DeliveryStatus.FAILED and "upload block 0: HTTP 503" in (second.error or "")
    (app_id,) = graph.apps
    assert graph.versions[app_id] == ["1", "2"]
    graph.finish_commits()  # Intune completes version 1's commit after all
    assert graph.files[(app_id, "1")][0].upload_state == "commitFileSuccess"
    blocks = len(graph.of_step("block"))

    third = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert third.status is DeliveryStatus.DELIVERED and third.external_ref == app_id
    assert len(graph.of_step("block")) == blocks and graph.versions[app_id] == ["1", "2"]  # no new upload
    assert graph.apps[app_id]["committedContentVersion"] == "1"
    assert graph.decrypted(app_id, "1") == build_zip(sorted(files.items()))


def test_a_pending_commit_of_the_newest_version_is_polled_not_uploaded_again(
    graph: GraphEmulator,
    tmp_path: Path,
    secret_env: dict[str, str],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = write_artifacts(tmp_path)
    monkeypatch.setattr(intune_graph, "MAX_POLLS", 3)
    graph.commit_pending_polls = 10_000
    first = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert first.status is DeliveryStatus.FAILED and "commitFileSuccess within 3 polls" in (first.error or "")
    (app_id,) = graph.apps
    (state,) = graph.files[(app_id, "1")]
    assert state.upload_state == "commitFilePending"
    state.polls_left = 1  # the service is about to finish
    before = len(graph.requests)
    second = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert second.status is DeliveryStatus.DELIVERED
    assert graph.steps()[before:] == [
        "find",
        "get app",
        "versions",
        "version files",
        "get file",
        "get file",
        "patch",
        "assign",
    ]
    assert graph.versions[app_id] == ["1"] and graph.apps[app_id]["committedContentVersion"] == "1"


@pytest.mark.parametrize(
    "state",
    [
        "azureStorageUriRequestTimedOut",
        "commitFileTimedOut",
        "azureStorageUriRenewalFailed",
        "error",
        "unknown",
    ],
)
def test_a_stuck_upload_state_ends_the_attempt_at_once(
    graph: GraphEmulator,
    tmp_path: Path,
    secret_env: dict[str, str],
    clock: FakeClock,
    _fast_polls: list[float],
    state: str,
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail("get file", Fault.of(200, json.dumps({"id": "file0003", "uploadState": state})))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].outcome is Outcome.RETRY
    assert f"found {state} (a fresh content version next attempt)" in (result.attempts[0].error or "")
    (app_id,) = graph.apps
    assert graph.versions[app_id] == ["1", "2"] and graph.apps[app_id]["committedContentVersion"] == "2"
    assert len(_fast_polls) == 2  # no polling to MAX_POLLS: only the second attempt's pending answers


def test_many_releases_of_one_name_are_searched_by_id_name_and_notes_only(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    bulky = {"rules": [{"scriptContent": "A" * 4000}], "description": "d" * 2000}
    for n in range(1500):  # every earlier release, each a full win32LobApp of the same name
        graph.add_app(displayName=DISPLAY_NAME, notes=f"Published by Ringward. ringward-event:emp_{n:05d}", **bulky)
    graph.add_app(
        displayName=DISPLAY_NAME, notes=f"ringward-event:{EVENT_ID}", **{"@odata.type": "#microsoft.graph.iosLobApp"}
    )
    result = only(run(destination(graph, tmp_path, target_group_ids=[]), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED, result.error
    finds = graph.of_step("find")
    assert len(finds) == 15  # 100 per page ($top), only win32LobApps (isof), not the iOS app
    assert all("$select=id,displayName,notes" in f.query and "$top=100" in f.query for f in finds)
    assert len(graph.of_step("create")) == 1


def test_a_search_answer_beyond_the_read_cap_is_a_clear_final_error(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    huge = json.dumps({"value": [{"id": "x", "notes": "n" * 3 * 1024 * 1024}]})
    graph.fail("find", Fault.of(200, huge))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.REJECTED
    assert "expected a Graph answer (apps) within the 2 MiB read cap, found a longer one" in (result.error or "")
    assert "unexpected error" not in (result.error or "") and graph.steps() == ["token", "find"]


def test_a_malformed_next_link_is_refused_not_a_crash(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.fail("find", Fault.of(200, json.dumps({"value": [], "@odata.nextLink": "http://[::1/v1.0/x"})))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.REJECTED
    assert "find win32LobApp" in (result.error or "") and "expected a valid @odata.nextLink" in (result.error or "")
    assert "unexpected error" not in (result.error or "") and graph.steps() == ["token", "find"]


def _release(files: dict[str, bytes], n: int, version: str) -> ConnectorEvent:
    event = publication_event(files, event_id=f"emp_release_{n}")
    return event.model_copy(update={"release_version": version})


def test_each_release_retires_the_assignments_of_the_releases_it_supersedes(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    # not Ringward's (same name, no mark), and Ringward's app of another channel: never touched
    theirs = graph.add_app(displayName=DISPLAY_NAME, notes="packaged by hand")
    other = graph.add_app(displayName="CAVRA Go Runtime beta 1.5.0", notes="ringward-channel:0000 ringward-event:emp_b")
    for app_id in (theirs, other):
        graph.assignments[app_id] = [{"id": "a", "intent": "required", "target": {"groupId": GROUPS[0]}}]
    # an app of this channel made before the channel marker existed (named exactly the payload name)
    legacy = graph.add_app(displayName=DISPLAY_NAME, notes="Published by Ringward. ringward-event:emp_legacy")
    graph.assignments[legacy] = [{"id": "l", "intent": "required", "target": {"groupId": GROUPS[1]}}]

    def app_of(n: int) -> str:
        (app_id,) = [a for a, v in graph.apps.items() if f"ringward-event:emp_release_{n}" in v["notes"].split()]
        return app_id

    first = only(run(destination(graph, tmp_path), [_release(files, 1, "1.4.2")], clock))
    assert first.status is DeliveryStatus.DELIVERED
    assert graph.apps[app_of(1)]["displayName"] == f"{DISPLAY_NAME} 1.4.2"
    assert graph.assignments[legacy] == [] and len(graph.assignments[app_of(1)]) == 2

    second = only(run(destination(graph, tmp_path), [_release(files, 2, "1.4.3")], clock))
    assert second.status is DeliveryStatus.DELIVERED
    assert graph.assignments[app_of(1)] == [] and len(graph.assignments[app_of(2)]) == 2
    assert second.attempts[-1].calls is not None and "unassign superseded release" in second.attempts[-1].calls[-1]
    (retire,) = [r for r in graph.of_step("assign") if r.path.endswith(f"{app_of(1)}/assign")][1:]
    assert retire.json() == {"mobileAppAssignments": []}

    before = len(graph.requests)
    third = only(run(destination(graph, tmp_path), [_release(files, 3, "1.4.4")], clock))
    assert third.status is DeliveryStatus.DELIVERED
    assert graph.assignments[app_of(1)] == [] and graph.assignments[app_of(2)] == []
    assert [a["target"]["groupId"] for a in graph.assignments[app_of(3)]] == list(GROUPS)
    # already-empty releases are only looked at; the one with assignments is emptied
    retired = [
        r.path for r in graph.requests[before:] if r.step == "assign" and r.json() == {"mobileAppAssignments": []}
    ]
    assert retired == [f"/v1.0/deviceAppManagement/mobileApps/{app_of(2)}/assign"]
    assert len(graph.assignments[theirs]) == 1 and len(graph.assignments[other]) == 1
    assert all(
        not r.path.startswith(f"/v1.0/deviceAppManagement/mobileApps/{a}")
        for r in graph.requests
        for a in (theirs, other)
    )


def test_a_run_that_failed_while_retiring_is_completed_on_the_next_run(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    assert only(run(destination(graph, tmp_path), [_release(files, 1, "1.4.2")], clock)).status is (
        DeliveryStatus.DELIVERED
    )
    graph.fail("assign", Fault.ok(), 500)
    failed = only(run(destination(graph, tmp_path), [_release(files, 2, "1.4.3")], clock, max_attempts=1))
    assert failed.status is DeliveryStatus.FAILED and "unassign superseded release: HTTP 500" in (failed.error or "")
    again = only(run(destination(graph, tmp_path), [_release(files, 2, "1.4.3")], clock))
    assert again.status is DeliveryStatus.DELIVERED
    assert graph.steps()[-2:] == ["assignments", "assign"] and len(graph.of_step("create")) == 2
    assert all(len(v) == (0 if "emp_release_1" in graph.apps[k]["notes"] else 2) for k, v in graph.assignments.items())
    done = only(run(destination(graph, tmp_path), [_release(files, 2, "1.4.3")], clock))
    assert done.status is DeliveryStatus.EXISTS


def test_review_mode_leaves_every_release_unassigned_and_touches_no_other_app(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    review = destination(graph, tmp_path, target_group_ids=[])
    assert only(run(review, [_release(files, 1, "1.4.2")], clock)).status is DeliveryStatus.DELIVERED
    (first,) = graph.apps
    graph.assignments[first] = [{"id": "p", "intent": "required", "target": {"groupId": GROUPS[0]}}]  # by a person
    assert only(run(review, [_release(files, 2, "1.4.3")], clock)).status is DeliveryStatus.DELIVERED
    assert graph.of_step("assign") == [] and graph.of_step("assignments") == []
    assert len(graph.assignments[first]) == 1 and len(graph.apps) == 2


# -- detection script quoting ----------------------------------------------------------------------------

_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def _powershell_single_quoted(text: str, start: int) -> tuple[str, int]:
    """How PowerShell reads the single-quoted string opening at ``text[start]``: (value, index after it)."""
    assert text[start] in _PS_QUOTES
    value, i = [], start + 1
    while i < len(text):
        if text[i] in _PS_QUOTES:
            if i + 1 < len(text) and text[i + 1] in _PS_QUOTES:
                value.append(text[i + 1])
                i += 2
                continue
            return "".join(value), i + 1
        value.append(text[i])
        i += 1
    raise AssertionError("unterminated string")


@pytest.mark.parametrize("quote", list(_PS_QUOTES), ids=["apostrophe", "u2018", "u2019", "u201a", "u201b"])
def test_every_powershell_single_quote_in_the_detection_path_is_doubled(quote: str) -> None:
    path = f"%ProgramFiles%\\CAVRA{quote}); Start-Process calc.exe; ({quote}\\cavra.exe"
    event = make_event(
        attributes={"artifacts": artifacts_of({"a.exe": b"a"})},
        provider_payloads={
            "intune": intune_payload(detection_rule={"type": "file_sha256", "path": path, "sha256_values": ["0" * 64]})
        },
    )
    script = parse_intune_publication(event).detection_script()
    (line,) = [x for x in script.split("\r\n") if x.startswith("$path = ")]
    prefix = "$path = [Environment]::ExpandEnvironmentVariables("
    value, end = _powershell_single_quoted(line, len(prefix))
    assert value == path and line[end:] == ")"


# -- upload URL ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://attacker.example.com/blob/x?sv=1&sig=abc",
        "http://mmcswdb01.blob.core.windows.net/c/x?sv=1&sig=abc",
    ],
)
def test_an_upload_url_off_azure_blob_is_refused_before_any_upload(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock, uri: str
) -> None:
    files = write_artifacts(tmp_path)
    ready = json.dumps({"id": "file0003", "uploadState": "azureStorageUriRequestSuccess", "azureStorageUri": uri})
    graph.fail("get file", Fault.ok(), Fault.of(200, ready))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.REJECTED and "azureStorageUri" in (result.error or "")
    assert "abc" not in (result.error or "")
    assert graph.of_step("block") == [] and graph.steps()[-1] == "get file"


def test_upload_url_hosts() -> None:
    cloud = "https://graph.microsoft.com/v1.0"
    for host in (
        "mmcswdb01.blob.core.windows.net",
        "acct01.blob.core.usgovcloudapi.net",
        "acct01.blob.core.chinacloudapi.cn",
        "acct01.blob.core.cloudapi.de",
    ):
        uri = f"https://{host}/c/x.intunewin.bin?sv=1&sig=s"
        assert check_upload_url(uri, cloud) == uri
    for bad in (
        "https://blob.core.windows.net/c/x",  # no account
        "https://x.blob.core.windows.net.evil.com/c/x",
        "https://acct01.blob.core.windows.net:8443/c/x",
        "https://user:pw@acct01.blob.core.windows.net/c/x",
        "https://20.60.1.1/c/x",
        "https://[2603:1030::1]/c/x",
        "https://127.0.0.1/c/x",  # loopback only for a loopback Graph
        "http://localhost:9000/c/x",
        "https://[::1/c/x",
    ):
        with pytest.raises(intune_graph.RefusedAnswer):
            check_upload_url(bad, cloud)
    assert check_upload_url("http://127.0.0.1:9/blob/x?sig=s", "http://127.0.0.1:8/v1.0")


# -- naming and channels (pure) -------------------------------------------------------------------------


def test_the_app_name_carries_the_release_version_once() -> None:
    def name(display: str, version: str | None) -> str:
        event = make_event(
            attributes={"artifacts": artifacts_of({"a.exe": b"a"})},
            provider_payloads={"intune": intune_payload(display_name=display)},
        ).model_copy(update={"release_version": version})
        return str(parse_intune_publication(event).win32_lob_app()["displayName"])

    assert name("CAVRA Go Runtime stable", "1.4.2") == "CAVRA Go Runtime stable 1.4.2"
    assert name("CAVRA 1.4.2 runtime", "1.4.2") == "CAVRA 1.4.2 runtime"
    assert name("CAVRA 1.4.20", "1.4.2") == "CAVRA 1.4.20 1.4.2"
    assert name("CAVRA", None) == "CAVRA"


# -- the emulator is an independent judge ------------------------------------------------------------------


def test_the_emulator_verifies_uploads_with_its_own_decryptor() -> None:
    package = build_zip([("a.txt", b"ay" * 3000)])
    content = encrypt_content(package)
    info, size, enc = content.encryption_info, content.size, content.size_encrypted
    assert verify_intunewin(content.data, info, size=size, size_encrypted=enc) == package

    def refused(data: bytes, match: str, **changes: str) -> None:
        with pytest.raises(IntunewinError, match=match):
            verify_intunewin(data, {**info, **changes}, size=size, size_encrypted=len(data))

    tampered = bytearray(content.data)
    tampered[70] ^= 1
    refused(bytes(tampered), "HMAC-SHA256")
    refused(content.data, "initializationVector", initializationVector=base64.b64encode(b"\1" * 16).decode())
    refused(content.data, "fileDigest", fileDigest=base64.b64encode(b"\0" * 32).decode())
    with pytest.raises(IntunewinError, match="sizeEncrypted"):
        verify_intunewin(content.data, info, size=size, size_encrypted=enc + 16)
    with pytest.raises(IntunewinError, match="expected size"):
        verify_intunewin(content.data, info, size=size + 1, size_encrypted=enc)
    # a bad PKCS7 padding under a valid MAC: built by hand, not with the publisher's encryptor
    key, mac_key, iv = b"k" * 32, b"m" * 32, b"i" * 16
    enc_ = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = enc_.update(b"x" * 15 + b"\x05") + enc_.finalize()
    mac = hmac.new(mac_key, iv + ciphertext, hashlib.sha256).digest()
    padded_info = {
        "encryptionKey": base64.b64encode(key).decode(),
        "macKey": base64.b64encode(mac_key).decode(),
        "initializationVector": base64.b64encode(iv).decode(),
        "mac": base64.b64encode(mac).decode(),
        "profileIdentifier": "ProfileVersion1",
        "fileDigest": base64.b64encode(hashlib.sha256(b"x" * 11).digest()).decode(),
        "fileDigestAlgorithm": "SHA256",
    }
    with pytest.raises(IntunewinError, match="PKCS7"):
        verify_intunewin(mac + iv + ciphertext, padded_info, size=11, size_encrypted=64)


@pytest.mark.parametrize(
    ("extra", "status", "text"),
    [
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"client_secret": "env:RW_SENTINEL_SECRET"}, 401, "invalid_client"),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope"),
    ],
)
def test_the_emulator_token_endpoint_checks_client_secret_and_scope(
    graph: GraphEmulator,
    tmp_path: Path,
    secret_env: dict[str, str],
    clock: FakeClock,
    extra: dict[str, str],
    status: int,
    text: str,
) -> None:
    files = write_artifacts(tmp_path)
    result = only(run(destination(graph, tmp_path, **extra), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.REJECTED and result.status_code == status
    assert text in (result.error or "") and graph.steps() == ["token"]


def test_the_emulator_blob_endpoint_wants_equal_length_base64_block_ids(graph: GraphEmulator) -> None:
    url = f"{graph.origin}/blob/b1?sv=1&sig={SAS_SIG}&comp=block&blockid="
    with httpx.Client() as client:
        assert client.put(url + "AAAA", content=b"x").status_code == 201  # no x-ms-blob-type needed
        assert client.put(url + "AAAAAAAA", content=b"y").status_code == 400  # another length
        assert client.put(url + "not*base64", content=b"z").status_code == 400


def test_the_emulator_search_honours_isof_select_and_top(graph: GraphEmulator) -> None:
    graph.add_app(displayName="a", notes="n", rules=[1])
    graph.add_app(displayName="b", notes="n", **{"@odata.type": "#microsoft.graph.webApp"})
    graph.add_app(displayName="c", notes="n")
    auth = {"authorization": f"Bearer {TOKEN}"}
    isof = "$filter=isof('microsoft.graph.win32LobApp')"
    with httpx.Client(headers=auth) as client:
        page = client.get(f"{graph.base}/deviceAppManagement/mobileApps?{isof}&$select=id,notes&$top=1").json()
        assert [set(v) for v in page["value"]] == [{"@odata.type", "id", "notes"}]
        follow = client.get(page["@odata.nextLink"]).json()
        assert [v["notes"] for v in follow["value"]] == ["n"] and "@odata.nextLink" not in follow
        derived = client.get(f"{graph.base}/deviceAppManagement/mobileApps?{isof}&$select=committedContentVersion")
        assert derived.status_code == 400 and "microsoft.graph.mobileApp" in derived.text


def test_an_earlier_release_delivered_late_never_rolls_back_a_later_one(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    """Automation mode: 1.4.3 is live; the publication of 1.4.2 arrives late. Its app is published
    (unassigned, for review) but 1.4.3 keeps its assignments and nothing is assigned over it."""
    files = write_artifacts(tmp_path)
    newer = only(run(destination(graph, tmp_path), [_release(files, 2, "1.4.3")], clock))
    assert newer.status is DeliveryStatus.DELIVERED
    (live,) = graph.apps
    assert "ringward-release:1.4.3" in graph.apps[live]["notes"].split()
    late = only(run(destination(graph, tmp_path), [_release(files, 1, "1.4.2")], clock))
    assert late.status is DeliveryStatus.REJECTED
    assert "a later release of this channel is already in Intune" in (late.error or "")
    assert f"{DISPLAY_NAME} 1.4.3 ({live})" in (late.error or "")
    (old,) = [a for a in graph.apps if a != live]
    assert len(graph.assignments[live]) == len(GROUPS) and graph.assignments.get(old, []) == []
    assert all(not r.path.endswith(f"{live}/assign") for r in graph.of_step("assign")[1:])
    # the later release, re-delivered, still finishes (and retires nothing newer than itself)
    again = only(run(destination(graph, tmp_path), [_release(files, 2, "1.4.3")], clock))
    assert again.status is DeliveryStatus.EXISTS and len(graph.assignments[live]) == len(GROUPS)


def test_release_order_uses_semver_precedence() -> None:
    def publication(version: str | None) -> Any:
        event = make_event(
            "emp_x",
            attributes={"artifacts": artifacts_of({"a.exe": b"a"})},
            provider_payloads={"intune": intune_payload()},
        ).model_copy(update={"release_version": version})
        return parse_intune_publication(event)

    current = publication("1.10.0")
    channel = current.channel_marker

    def notes(version: str) -> str:
        return f"Published by Ringward. {channel} ringward-release:{version} ringward-event:emp_other"

    older, later = notes("1.9.9"), notes("1.10.1")
    assert current.supersedes(DISPLAY_NAME, older) and not current.same_channel_newer(DISPLAY_NAME, older)
    assert not current.supersedes(DISPLAY_NAME, later) and current.same_channel_newer(DISPLAY_NAME, later)
    assert current.supersedes(DISPLAY_NAME, notes("1.10.0-rc.1"))  # a pre-release precedes its release
    # no comparable version on either side: the earlier behaviour (retire) stands
    assert current.supersedes(DISPLAY_NAME, f"Published by Ringward. {channel} ringward-event:emp_other")
    assert publication(None).supersedes(DISPLAY_NAME, notes("9.9.9"))


# -- streamed content: private work directory, spilled uploads, upload URL renewal ----------------------------


def test_the_package_is_built_in_a_private_work_directory_removed_after_every_delivery(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_artifacts(tmp_path / "export")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(intune_graph, "WORK_DIR", str(work))
    seen: list[tuple[int, int, list[str]]] = []
    real = intune_graph.encrypt_file

    def watched(path: str, **kwargs: Any) -> intune_graph.EncryptedPackage:
        folder = os.path.dirname(path)
        seen.append((os.stat(folder).st_mode & 0o777, os.stat(path).st_mode & 0o777, os.listdir(folder)))
        return real(path, **kwargs)

    monkeypatch.setattr(intune_graph, "encrypt_file", watched)
    result = only(run(destination(graph, tmp_path / "export"), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert seen == [(0o700, 0o600, ["package.zip"])]
    assert os.listdir(work) == []  # removed once delivered

    # ... and when the conversation fails after the package was made
    graph.fail("create file", 400)
    failed = only(run(destination(graph, tmp_path / "export"), [publication_event(files, event_id="emp_two")], clock))
    assert failed.status is DeliveryStatus.REJECTED and len(seen) == 2 and os.listdir(work) == []

    # ... and when an artifact is refused half-way through the package
    (tmp_path / "export" / "rollback-cavra-runtime.ps1").write_bytes(b"changed")
    refused = only(run(destination(graph, tmp_path / "export"), [publication_event(files, event_id="emp_3")], clock))
    assert refused.status is DeliveryStatus.REJECTED and "verify artifact" in (refused.error or "")
    assert len(seen) == 2 and os.listdir(work) == []


def test_a_large_upload_spilled_to_disk_by_the_emulator_decrypts_to_the_same_package(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.spill_bytes = 1000  # every block, and the committed blob, go to the emulator's disk
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED, result.error
    (app_id,) = graph.apps
    (state,) = graph.files[(app_id, "1")]
    assert isinstance(graph.blobs[state.blob].committed, Path)  # judged by the streaming decryptor
    assert all(b.body == b"" and 0 < b.length <= BLOCK for b in graph.of_step("block"))
    assert graph.decrypted(app_id, "1") == build_zip(sorted(files.items()))


def test_an_expired_upload_url_is_renewed_and_the_upload_continues(
    graph: GraphEmulator,
    tmp_path: Path,
    sqlite_store: Store,
    hooks: DeliveryHooks,
    secret_env: dict[str, str],
) -> None:
    files = write_artifacts(tmp_path)
    graph.expire_sas_after_blocks = 2  # Azure refuses the third block, and the list after two more
    config = config_of(destination(graph, tmp_path))
    delivery = ops.deliver_event(publication_event(files), config, store=sqlite_store, hooks=hooks, run_id="renew")
    (result,) = delivery.results
    assert result.status is DeliveryStatus.DELIVERED, result.error
    assert len(result.attempts) == 1
    upload = graph.steps()[graph.steps().index("block") :]
    assert upload[: upload.index("commit")] == [
        "block",
        "block",
        "block",  # 403 AuthenticationFailed: expired
        "renew",
        "get file",
        "get file",
        "block",  # the same block again, under the renewed URL
        "block",
        "blocklist",  # 403 again (two blocks under this signature)
        "renew",
        "get file",
        "get file",
        "blocklist",
    ]
    refused = [r for r in graph.requests if r.status == 403]
    assert [r.step for r in refused] == ["block", "blocklist"]
    renewed = [r for r in graph.of_step("block") if r.status == 201]
    assert [parse_qs(r.query)["sig"][0] for r in renewed] == [SAS_SIG, SAS_SIG, f"{SAS_SIG}r1", f"{SAS_SIG}r1"]
    (app_id,) = graph.apps
    assert graph.decrypted(app_id, "1") == build_zip(sorted(files.items()))
    # the renewed signatures (which start with SAS_SIG) never reach the evidence either
    secrets = {"client-secret": SECRETS["RW_INTUNE_SECRET"], "graph-token": TOKEN, "sas-sig": SAS_SIG}
    assert scan_for_secrets(sqlite_store, secrets) == []


def test_an_upload_url_is_renewed_ahead_of_time_once_it_gets_old(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_artifacts(tmp_path)
    ticks = iter(range(0, 10_000, 100))
    monkeypatch.setattr(intune_graph, "MONOTONIC", lambda: float(next(ticks)))
    monkeypatch.setattr(intune_graph, "RENEW_AFTER_SECONDS", 150.0)  # every second block
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED, result.error
    upload = graph.steps()[graph.steps().index("block") : graph.steps().index("blocklist")]
    assert [s for s in upload if s in ("block", "renew")] == ["block", "block", "renew", "block", "block"]
    assert all(r.status == 201 for r in graph.of_step("block"))  # renewed before Azure refused anything


def test_a_failed_renewal_ends_the_attempt_and_the_next_one_uploads_a_fresh_version(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.expire_sas_after_blocks = 2
    renewal_failed = json.dumps({"id": "x", "uploadState": "azureStorageUriRenewalFailed"})
    # the first two polls wait for the upload URL, the third is the renewal's
    graph.fail("get file", Fault.ok(), Fault.ok(), Fault.of(200, renewal_failed))
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock))
    assert result.status is DeliveryStatus.DELIVERED and len(result.attempts) == 2
    assert "wait for upload URI renewal: HTTP 200 OK: expected uploadState azureStorageUriRenewalSuccess, " in (
        result.attempts[0].error or ""
    )
    assert "found azureStorageUriRenewalFailed" in (result.attempts[0].error or "")
    (app_id,) = graph.apps
    assert graph.versions[app_id] == ["1", "2"] and graph.apps[app_id]["committedContentVersion"] == "2"


def test_an_upload_url_refused_again_after_renewal_is_a_failure_not_a_loop(
    graph: GraphEmulator, tmp_path: Path, secret_env: dict[str, str], clock: FakeClock
) -> None:
    files = write_artifacts(tmp_path)
    graph.expire_sas_after_blocks = 0  # every signature is refused
    result = only(run(destination(graph, tmp_path), [publication_event(files)], clock, max_attempts=1))
    assert result.status is not DeliveryStatus.DELIVERED
    assert (result.error or "").startswith("upload block 0: HTTP 403 Forbidden: ")
    assert graph.steps().count("renew") == 1 and len(graph.of_step("block")) == 2
