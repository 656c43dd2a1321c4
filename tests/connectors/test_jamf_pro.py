"""Native Jamf Pro publication through the real engine against a stateful Jamf emulator on loopback
(``jamf_emulator.py``): exact requests (package create body and policy XML compared byte for byte
with ``recorded/``; re-record with ``RINGWARD_RECORD_BODIES=1`` and review the diff), uploaded bytes,
idempotency across runs, resumption after a failure mid-way, retry vs final classification,
artifact confinement and verification, hardened XML reading and secret-free evidence."""

from __future__ import annotations

import hashlib
import json
import os
import random
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import DeliveryEngine, EngineReport, MemoryLedger, SecretResolver, resolve_destinations
from connectors import artifacts as artifact_reader
from connectors.providers import jamf_pro
from connectors.providers.jamf_pro import JamfPro, multipart_file
from connectors.registry import provider_for
from ringward.core.delivery.config import ProviderKind, PublishMode
from ringward.core.delivery.event import ConnectorEvent, parse_event
from ringward.core.delivery.jamf_publication import parse_jamf_publication
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from ringward.core.errors import ConnectorEventError
from ringward.operations.delivery import delivery_ops as ops
from ringward.operations.delivery.delivery_ops import DeliveryHooks
from ringward.store import Store
from tests.connectors.conftest import SECRETS, T0, FakeClock, config_of, make_event, scan_for_secrets
from tests.connectors.jamf_emulator import JamfEmulator, JamfFault, UploadedFile

RECORDED = Path(__file__).parent / "recorded"
RECORD = os.environ.get("RINGWARD_RECORD_BODIES") == "1"

CLIENT_ID = "ringward-api-client"
TOKEN = "jamf-bearer-token-0f1e2d3c4b5a69788796a5b4"
PACKAGE = "cavra-runtime-1.4.2.pkg"
CONTENT = b"xar!" + bytes(range(256)) * 64 + b"\r\n--not-a-boundary--\r\n"
POLICY = "CAVRA Go Runtime stable"
INSTALL_SCRIPT = [
    "#!/bin/bash",
    "set -euo pipefail",
    "install -m 0755 cavra-runtime /usr/local/bin/cavra-runtime",
    "sha256sum -c checksums.txt",
]


def recorded(name: str, body: bytes) -> bytes:
    path = RECORDED / name
    if RECORD:
        path.write_bytes(body)
    return path.read_bytes()


def jamf_payload(**overrides: Any) -> dict[str, Any]:
    """``jamf-policy.json`` as the reference export writes it, with the publication context."""
    payload: dict[str, Any] = {
        "schema_version": "cavra.endpoint-management.jamf.v1",
        "policy_name": POLICY,
        "trigger": "cavra-runtime-stable",
        "approval_required": True,
        "rollback_required": True,
        "soak_hours": 24,
        "targets": [
            {
                "id": "macos-arm64",
                "platform": "darwin",
                "os": "macos",
                "arch": "arm64",
                "installer_target": "pkg",
                "binary": "cavra-runtime",
                "binary_sha256": "ab" * 32,
                "deployment_channel": "jamf",
                "management_tool": "jamf",
            }
        ],
        "install_script": INSTALL_SCRIPT,
        "publication_context": {"provider": "jamf", "channel": "stable"},
    }
    payload.update(overrides)
    return payload


def artifacts(content: bytes = CONTENT, name: str = PACKAGE) -> list[dict[str, Any]]:
    return [
        {"artifact": "jamf-policy.json", "sha256": "cd" * 32, "bytes": 812},
        {"artifact": name, "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)},
    ]


def publication_event(
    event_id: str = "emp_0a1b2c3d4e5f",
    *,
    release: str = "1.4.2",
    content: bytes = CONTENT,
    package_name: str = PACKAGE,
    **payload: Any,
) -> ConnectorEvent:
    """The reference publication event (``cavra.endpoint-management-publication.v1``), normalised."""
    document = {
        "schema_version": "cavra.endpoint-management-publication.v1",
        "event_type": "cavra.endpoint_management_export_publication",
        "publication_id": event_id,
        "export_id": "eme_112233445566",
        "created_at": "2026-11-22T12:00:00Z",
        "requested_by": "release-manager@example.com",
        "channel": "stable",
        "provider": "jamf",
        "providers": ["jamf"],
        "release": {"version": release, "commit": "0123abcd", "repository": "acme/cavra"},
        "approval": {"required": True, "approval_id": "apr_7f3c", "request_id": "req_1"},
        "artifacts": artifacts(content, package_name),
        "provider_payloads": {"jamf": jamf_payload(**payload)},
    }
    return parse_event(json.dumps(document).encode(), source="publication.json", now=T0)


@pytest.fixture
def jamf(secret_env: dict[str, str]) -> Iterator[JamfEmulator]:
    emulator = JamfEmulator(client_id=CLIENT_ID, client_secret=SECRETS["RW_JAMF_SECRET"], token=TOKEN).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / PACKAGE).write_bytes(CONTENT)
    return folder


NEXT_CONTENT = b"xar!" + bytes(range(255, -1, -1)) * 64
NEXT_PACKAGE = "cavra-runtime-1.4.3.pkg"


def next_release(root: Path, event_id: str = "emp_next", **payload: Any) -> ConnectorEvent:
    """The channel's next release (1.4.3): another package under the same policy name."""
    (root / NEXT_PACKAGE).write_bytes(NEXT_CONTENT)
    return publication_event(event_id, release="1.4.3", content=NEXT_CONTENT, package_name=NEXT_PACKAGE, **payload)


def destination(jamf: JamfEmulator, root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "jamf-prod",
        "provider": "jamf",
        "url": jamf.url,
        "client_id": CLIENT_ID,
        "client_secret": "env:RW_JAMF_SECRET",
        "artifact_root": str(root),
        "target_group_ids": ["12", "31"],
        **extra,
    }


def run(
    dest: dict[str, Any],
    clock: FakeClock,
    *events: ConnectorEvent,
    ledger: MemoryLedger | None = None,
    **defaults: Any,
) -> EngineReport:
    config = config_of(dest, **({"max_attempts": 1} | defaults))
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors, errors
    engine = DeliveryEngine(
        ledger if ledger is not None else MemoryLedger(),
        run_id="test",
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
    )
    return engine.deliver(list(events) or [publication_event()], dests)


def only(report: EngineReport) -> DestinationResult:
    (result,) = report.all_results()
    return result


FULL_CONVERSATION = [
    "token",
    "find package",
    "create package",
    "upload package",
    "record package hash",
    "find script",
    "create script",
    "find policy",
    "create policy",
]


# --- the conversation -----------------------------------------------------------------------------


def test_registry_returns_the_native_publisher_unless_relay() -> None:
    assert isinstance(provider_for(ProviderKind.JAMF), JamfPro)
    assert not isinstance(provider_for(ProviderKind.JAMF, PublishMode.RELAY), JamfPro)


def test_publishes_package_upload_script_and_policy(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    result = only(run(destination(jamf, root), clock))
    assert result.status is DeliveryStatus.DELIVERED and result.status_code == 201, result.error
    assert result.external_ref == "policy:3"
    assert jamf.steps() == FULL_CONVERSATION
    bearer = f"Bearer {TOKEN}"

    (token,) = jamf.of("token")
    assert token.method == "POST" and token.path == "/api/oauth/token"
    assert token.body.decode().startswith(f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=")

    (find,) = jamf.of("find package")
    assert (find.method, find.path) == ("GET", "/api/v1/packages")
    assert find.query == f"page=0&page-size=100&filter=packageName%3D%3D%22{PACKAGE}%22"
    assert find.headers["authorization"] == bearer and find.headers["accept"] == "application/json"

    (create,) = jamf.of("create package")
    assert (create.method, create.path, create.query) == ("POST", "/api/v1/packages", "")
    assert create.headers["authorization"] == bearer
    assert create.headers["content-type"] == "application/json" and create.headers["accept"] == "application/json"
    assert create.body == recorded("jamf_pro_package.body", create.body)
    record = json.loads(create.body)
    assert (
        "ringward-event:emp_0a1b2c3d4e5f" in record["notes"] and hashlib.sha256(CONTENT).hexdigest() in record["notes"]
    )
    assert "hashValue" not in record  # the hash is recorded only once the content is uploaded

    (upload,) = jamf.of("upload package")
    assert (upload.method, upload.path) == ("POST", "/api/v1/packages/1/upload")
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert jamf.state.uploads["1"] == [(PACKAGE, CONTENT)]

    (hashed,) = jamf.of("record package hash")
    assert (hashed.method, hashed.path) == ("PUT", "/api/v1/packages/1")
    assert jamf.state.packages["1"]["hashType"] == "SHA_512"
    assert jamf.state.packages["1"]["hashValue"] == hashlib.sha512(CONTENT).hexdigest()

    (find_script,) = jamf.of("find script")
    assert find_script.query == (
        "page=0&page-size=100&filter=name%3D%3D%22CAVRA%20Go%20Runtime%20stable%20install%201.4.2%22"
    )
    (script,) = jamf.state.scripts.values()
    assert script["name"] == f"{POLICY} install 1.4.2"
    assert script["priority"] == "AFTER" and script["categoryId"] == "-1"
    assert script["notes"].startswith("Published by Ringward. ringward-event:emp_0a1b2c3d4e5f")
    assert script["scriptContents"] == "\n".join(INSTALL_SCRIPT) + "\n"

    (lookup,) = jamf.of("find policy")
    assert (lookup.method, lookup.path) == (
        "GET",
        "/JSSResource/policies/name/CAVRA%20Go%20Runtime%20stable/subset/General&Scripts",
    )
    assert lookup.status == 404 and lookup.headers["accept"] == "application/xml"

    (policy,) = jamf.of("create policy")
    assert (policy.method, policy.path) == ("POST", "/JSSResource/policies/id/0")
    assert policy.headers["content-type"] == "application/xml" and policy.headers["authorization"] == bearer
    assert policy.body == recorded("jamf_pro_policy.xml", policy.body)
    stored = jamf.state.policies["3"]
    assert stored.findtext("general/name") == POLICY and stored.findtext("general/trigger_other") == (
        "cavra-runtime-stable"
    )
    assert [g.text for g in stored.findall("scope/computer_groups/computer_group/id")] == ["12", "31"]
    assert stored.findtext("package_configuration/packages/package/id") == "1"
    assert stored.findtext("package_configuration/packages/package/action") == "Install"
    assert stored.findtext("scripts/script/id") == "2" and stored.findtext("scripts/script/priority") == "After"

    # evidence records the deciding request (the policy create), redacted
    assert result.request is not None and result.request.method == "POST"
    assert result.request.url.endswith("/JSSResource/policies/id/0")
    assert result.request.headers["authorization"] == "REDACTED"
    assert result.request.body_sha256 == hashlib.sha256(policy.body).hexdigest()


def test_a_second_delivery_sends_nothing_and_a_republication_duplicates_nothing(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    ledger = MemoryLedger()
    event = publication_event()
    assert only(run(destination(jamf, root), clock, event, ledger=ledger)).status is DeliveryStatus.DELIVERED
    sent = len(jamf.requests)
    again = only(run(destination(jamf, root), clock, event, ledger=ledger))
    assert again.status is DeliveryStatus.ALREADY_DELIVERED and len(jamf.requests) == sent

    # without the ledger (another installation, lost state): only look-ups and the policy update
    fresh = only(run(destination(jamf, root), clock, event))
    assert fresh.status is DeliveryStatus.DELIVERED and fresh.external_ref == "policy:3"
    assert jamf.steps()[sent:] == ["find package", "find script", "find policy", "update policy"]
    assert len(jamf.state.packages) == len(jamf.state.scripts) == len(jamf.state.policies) == 1
    assert jamf.state.uploads["1"] == [(PACKAGE, CONTENT)]


def test_a_fresh_run_after_a_failure_midway_resumes_without_duplicates(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    jamf.fail("create policy", JamfFault.of(500, '{"httpStatus":500,"errors":[{"code":"INTERNAL","description":"x"}]}'))
    failed = only(run(destination(jamf, root), clock))
    assert failed.status is DeliveryStatus.FAILED
    assert "create policy: HTTP 500" in (failed.error or "") and "INTERNAL: x" in (failed.error or "")
    assert jamf.steps() == FULL_CONVERSATION
    made = len(jamf.requests)

    resumed = only(run(destination(jamf, root), clock))
    assert resumed.status is DeliveryStatus.DELIVERED and resumed.external_ref == "policy:3"
    # the cached token is reused; the package (hash recorded) and the script (same contents) are found
    assert jamf.steps()[made:] == ["find package", "find script", "find policy", "create policy"]
    assert (len(jamf.state.packages), len(jamf.state.scripts), len(jamf.state.policies)) == (1, 1, 1)
    assert jamf.state.uploads["1"] == [(PACKAGE, CONTENT)]


def test_a_failed_upload_is_retried_on_the_same_record(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.fail("upload package", 502)
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.DELIVERED
    assert [a.outcome for a in result.attempts] == [Outcome.RETRY, Outcome.DELIVERED]
    assert "upload package: HTTP 502" in (result.attempts[0].error or "")
    assert jamf.steps() == [
        *["token", "find package", "create package", "upload package"],
        *["find package", "upload package", "record package hash", "find script", "create script"],
        *["find policy", "create policy"],
    ]
    assert list(jamf.state.packages) == ["1"] and jamf.state.uploads["1"] == [(PACKAGE, CONTENT)]


def test_a_lost_policy_create_answer_updates_instead_of_duplicating(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    jamf.fail("create policy", JamfFault.of(504, apply=True))
    result = only(run(destination(jamf, root), clock, max_attempts=2))
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "policy:3"
    assert jamf.steps()[-2:] == ["find policy", "update policy"]
    assert len(jamf.state.policies) == 1


def test_503_retry_after_is_honoured_within_the_delivery(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.fail("create policy", JamfFault.of(503, "busy", retry_after="7", content_type="text/plain"))
    result = only(run(destination(jamf, root), clock, max_attempts=3, backoff_base_seconds=0.01))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].retry_after_seconds == 7.0 and clock.sleeps[0] >= 7.0
    assert len(jamf.state.policies) == 1 and len(jamf.state.packages) == 1


@pytest.mark.parametrize(
    ("step", "fault"),
    [
        ("find package", JamfFault.of(429, retry_after="1")),
        ("create package", 500),
        ("record package hash", 503),
        ("find script", 500),
        ("find policy", JamfFault.of(503, content_type="text/html")),
        ("read script", None),
    ],
)
def test_retryable_answers_at_every_step(
    jamf: JamfEmulator, root: Path, clock: FakeClock, step: str, fault: JamfFault | int | None
) -> None:
    event, made = publication_event(), 1
    if fault is None:  # make "read script" happen: the policy runs an older release's script
        run(destination(jamf, root), clock)
        event, made, fault = next_release(root), 2, 500
    jamf.fail(step, fault)
    result = only(run(destination(jamf, root), clock, event, max_attempts=2))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].outcome is Outcome.RETRY and step in (result.attempts[0].error or "")
    assert (len(jamf.state.packages), len(jamf.state.scripts), len(jamf.state.policies)) == (made, made, 1)


@pytest.mark.parametrize(
    ("step", "fault", "message"),
    [
        (
            "create package",
            JamfFault.of(
                400,
                json.dumps(
                    {
                        "httpStatus": 400,
                        "errors": [{"code": "INVALID_FIELD", "field": "fileName", "description": "bad", "id": "0"}],
                    }
                ),
            ),
            "create package: HTTP 400 Bad Request: INVALID_FIELD: bad (fileName)",
        ),
        (
            "create policy",
            JamfFault.of(
                409,
                "<html><head><title>Status page</title></head><body><p>Conflict</p>"
                "<p>Error: Problem with category</p></body></html>",
                content_type="text/html",
            ),
            "create policy: HTTP 409 Conflict: Conflict Error: Problem with category",
        ),
        ("find script", 401, "find script: HTTP 401 Unauthorized"),
        ("upload package", 413, "upload package: HTTP 413"),
    ],
)
def test_other_4xx_are_final(
    jamf: JamfEmulator, root: Path, clock: FakeClock, step: str, fault: JamfFault | int, message: str
) -> None:
    jamf.fail(step, fault)
    result = only(run(destination(jamf, root), clock, max_attempts=5))
    assert result.status in (DeliveryStatus.REJECTED, DeliveryStatus.TOO_LARGE)
    assert len(result.attempts) == 1 and (result.error or "").startswith(message), result.error
    assert jamf.steps()[-1] == step  # nothing after the refused call


def test_a_timeout_is_retried(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.fail("create script", JamfFault(delay=2.0))
    result = only(run(destination(jamf, root), clock, max_attempts=2, timeout_seconds=0.8))
    assert result.status is DeliveryStatus.DELIVERED
    assert result.attempts[0].outcome is Outcome.RETRY and "timeout" in (result.attempts[0].error or "")
    assert len(jamf.state.scripts) == 1


def test_refused_client_credentials_are_final(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.client_secret = "rotated"
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert "token request failed: HTTP 401" in (result.error or "")
    assert jamf.steps() == ["token"]


# --- the artifact ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "found"),
    [
        (b"X" + CONTENT[1:], f"found sha256 {hashlib.sha256(b'X' + CONTENT[1:]).hexdigest()} ({len(CONTENT)} bytes)"),
        (CONTENT + b"!", f"found {len(CONTENT) + 1} bytes"),
    ],
)
def test_mismatched_artifact_bytes_fail_before_any_upload(
    jamf: JamfEmulator, root: Path, clock: FakeClock, written: bytes, found: str
) -> None:
    (root / PACKAGE).write_bytes(written)
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    error = result.error or ""
    assert error.startswith(f"verify artifact: artifact {PACKAGE}: expected ")
    assert result.status_code is None and result.request is None  # nothing was sent
    assert found in error and "nothing uploaded" in error
    assert jamf.steps() == ["token"] and not jamf.state.packages and not jamf.state.uploads


def test_path_escaping_artifacts_are_refused(jamf: JamfEmulator, root: Path, tmp_path: Path, clock: FakeClock) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / PACKAGE).write_bytes(CONTENT)
    (root / "link.pkg").symlink_to(outside / PACKAGE)
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    digest = hashlib.sha256(CONTENT).hexdigest()
    cases = {
        "../outside/" + PACKAGE: "artifact path must be plain segments",
        str(outside / PACKAGE): "artifact path must be relative inside the artifact root",
        "link.pkg": "found a symlink or non-directory on its path (refused)",
        f"linked-dir/{PACKAGE}": "found a symlink or non-directory on its path (refused)",
        "missing.pkg": "found no such file",
    }
    for n, (name, message) in enumerate(cases.items()):
        event = publication_event(
            f"emp_escape_{n}", package={"artifact": name, "sha256": digest, "bytes": len(CONTENT)}
        )
        result = only(run(destination(jamf, root), clock, event))
        assert result.status is DeliveryStatus.REJECTED and message in (result.error or ""), (name, result.error)
    assert set(jamf.steps()) == {"token"} and not jamf.state.packages


def test_artifact_root_is_required(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    dest = destination(jamf, root)
    del dest["artifact_root"]
    result = only(run(dest, clock))
    assert result.status is DeliveryStatus.REJECTED and "artifact_root is required" in (result.error or "")


# --- hardened XML -----------------------------------------------------------------------------------

_BOMB = (
    '<?xml version="1.0"?><!DOCTYPE policy [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
    "<policy><general><id>&b;</id></general></policy>"
)


@pytest.mark.parametrize("step", ["find policy", "create policy"])
def test_xml_answers_with_a_doctype_are_refused(jamf: JamfEmulator, root: Path, clock: FakeClock, step: str) -> None:
    jamf.fail(step, JamfFault.of(200 if step == "find policy" else 201, _BOMB, content_type="application/xml"))
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert f"{step}: HTTP" in (result.error or "") and "declares a DTD or entities (refused" in (result.error or "")
    assert jamf.steps()[-1] == step


# --- scope, updates, filtering, payload ------------------------------------------------------------------


def _policy_runs(jamf: JamfEmulator, policy_id: str = "3") -> tuple[str | None, str | None]:
    policy = jamf.state.policies[policy_id]
    return policy.findtext("package_configuration/packages/package/id"), policy.findtext("scripts/script/id")


def test_unscoped_policy_is_published_for_review_and_every_release_waits_for_review(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    """Review mode: a new release switches package and script in one update and disables the policy
    again (the reviewer's scope stays), so nothing new runs before a reviewer enables it."""
    dest = destination(jamf, root, target_group_ids=[])
    assert only(run(dest, clock)).status is DeliveryStatus.DELIVERED
    policy = jamf.state.policies["3"]
    assert policy.findtext("general/enabled") == "false" and policy.find("scope/computer_groups") is not None
    assert policy.findall("scope/computer_groups/computer_group") == []
    # a reviewer scopes and enables it in Jamf
    groups = policy.find("scope/computer_groups")
    assert groups is not None
    ET.SubElement(ET.SubElement(groups, "computer_group"), "id").text = "77"
    general = policy.find("general/enabled")
    assert general is not None
    general.text = "true"

    result = only(run(dest, clock, next_release(root)))
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "policy:3"
    (update,) = jamf.of("update policy")
    assert b"<scope>" not in update.body and b"<enabled>false</enabled>" in update.body
    assert [g.text for g in policy.findall("scope/computer_groups/computer_group/id")] == ["77"]
    assert policy.findtext("general/enabled") == "false"  # waits for the reviewer again
    assert _policy_runs(jamf) == ("4", "5")
    assert jamf.state.scripts["5"]["name"] == f"{POLICY} install 1.4.3"
    assert jamf.state.scripts["2"]["name"] == f"{POLICY} install 1.4.2"  # the reviewed release's script is kept


def test_automation_mode_owns_scope_and_enables_each_release(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    run(destination(jamf, root), clock)
    policy = jamf.state.policies["3"]
    assert policy.findtext("general/enabled") == "true"
    assert only(run(destination(jamf, root, target_group_ids=["12"]), clock, next_release(root))).status is (
        DeliveryStatus.DELIVERED
    )
    assert policy.findtext("general/enabled") == "true" and _policy_runs(jamf) == ("4", "5")
    assert [g.text for g in policy.findall("scope/computer_groups/computer_group/id")] == ["12"]


def test_a_failed_policy_update_leaves_the_live_policy_untouched(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    """Each release has its own script: nothing the live policy runs changes before the one policy PUT."""
    run(destination(jamf, root), clock)
    jamf.fail("update policy", 500)
    lines = [*INSTALL_SCRIPT, "/usr/local/bin/cavra-runtime --version"]
    failed = only(run(destination(jamf, root), clock, next_release(root, install_script=lines)))
    assert failed.status is DeliveryStatus.FAILED and "update policy: HTTP 500" in (failed.error or "")
    assert _policy_runs(jamf) == ("1", "2")
    assert jamf.state.scripts["2"]["scriptContents"] == "\n".join(INSTALL_SCRIPT) + "\n"
    assert jamf.of("update script") == []  # no script is ever rewritten
    resumed = only(run(destination(jamf, root), clock, next_release(root, install_script=lines)))
    assert resumed.status is DeliveryStatus.DELIVERED and _policy_runs(jamf) == ("4", "5")
    assert jamf.state.scripts["5"]["scriptContents"].endswith("--version\n")


def test_a_changed_install_script_of_a_published_release_is_refused(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    run(destination(jamf, root), clock)
    lines = [*INSTALL_SCRIPT, "/usr/local/bin/cavra-runtime --version"]
    result = only(run(destination(jamf, root), clock, publication_event("emp_v2", install_script=lines)))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert f"script {POLICY} install 1.4.2 already in Jamf with other contents" in (result.error or "")
    assert jamf.steps()[-1] == "find script" and jamf.state.scripts["2"]["scriptContents"].endswith("checksums.txt\n")


def test_a_package_record_is_immutable_once_uploaded(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    """The same package name with other bytes (a rebuilt installer): never replaced in Jamf."""
    run(destination(jamf, root), clock)
    rebuilt = CONTENT + b"rebuilt"
    (root / PACKAGE).write_bytes(rebuilt)
    result = only(run(destination(jamf, root), clock, publication_event("emp_rebuilt", content=rebuilt)))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    error = result.error or ""
    theirs = hashlib.sha512(CONTENT).hexdigest()[:16]
    assert f"package {PACKAGE} already in Jamf with different content (sha512 {theirs}" in error
    assert "refusing to replace a published installer" in error
    assert jamf.state.uploads["1"] == [(PACKAGE, CONTENT)] and jamf.steps()[-1] == "find package"


def test_a_ringward_package_without_a_hash_is_uploaded_again(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.fail("record package hash", 500)
    assert only(run(destination(jamf, root), clock)).status is DeliveryStatus.FAILED
    rebuilt = CONTENT + b"fixed"
    (root / PACKAGE).write_bytes(rebuilt)
    result = only(run(destination(jamf, root), clock, publication_event("emp_fixed", content=rebuilt)))
    assert result.status is DeliveryStatus.DELIVERED
    assert jamf.state.uploads["1"] == [(PACKAGE, CONTENT), (PACKAGE, rebuilt)]
    assert jamf.state.packages["1"]["hashValue"] == hashlib.sha512(rebuilt).hexdigest()


# --- ownership -------------------------------------------------------------------------------------


def _foreign_package(jamf: JamfEmulator, name: str) -> None:
    jamf.state.packages["90"] = {"id": "90", "packageName": name, "fileName": name, "notes": "uploaded by hand"}


@pytest.mark.parametrize("name", [PACKAGE, PACKAGE.upper()])
def test_a_foreign_package_of_the_same_name_is_refused(
    jamf: JamfEmulator, root: Path, clock: FakeClock, name: str
) -> None:
    _foreign_package(jamf, name)
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert f"package {name} exists in Jamf but was not published by Ringward" in (result.error or "")
    assert "rename or remove it" in (result.error or "")
    assert jamf.steps() == ["token", "find package"] and not jamf.state.uploads


def test_a_foreign_script_of_the_same_name_is_refused(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    name = f"{POLICY} INSTALL 1.4.2"
    jamf.state.scripts["90"] = {"id": "90", "name": name, "scriptContents": "#!/bin/sh\nrm -rf /\n", "notes": ""}
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    error = result.error or ""
    assert f"script {name} exists in Jamf but was not published by Ringward (Jamf names are case-insensitive" in error
    assert jamf.steps()[-1] == "find script" and not jamf.state.policies


def _foreign_policy(jamf: JamfEmulator, name: str, script_ids: tuple[str, ...]) -> ET.Element:
    policy = ET.fromstring(
        f"<policy><general><id>80</id><name>{name}</name><enabled>true</enabled></general>"
        "<scope><all_computers>true</all_computers></scope><scripts><size>0</size></scripts></policy>"
    )
    scripts = policy.find("scripts")
    assert scripts is not None
    for script_id in script_ids:
        ET.SubElement(ET.SubElement(scripts, "script"), "id").text = script_id
    jamf.state.policies["80"] = policy
    return policy


@pytest.mark.parametrize("scripts", [(), ("81",), ("404",)])
def test_a_foreign_policy_of_the_same_name_is_refused(
    jamf: JamfEmulator, root: Path, clock: FakeClock, scripts: tuple[str, ...]
) -> None:
    """A same-named policy running no Ringward script (none, a hand-made one, a deleted one) is not ours."""
    jamf.state.scripts["81"] = {"id": "81", "name": "Hand made", "scriptContents": "#!/bin/sh\n", "notes": "IT"}
    before = ET.tostring(_foreign_policy(jamf, POLICY.lower(), scripts))
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    error = result.error or ""
    assert f"policy {POLICY.lower()} exists in Jamf but was not published by Ringward" in error, error
    assert jamf.of("update policy") == [] and jamf.of("create policy") == []
    assert ET.tostring(jamf.state.policies["80"]) == before
    assert [r.path for r in jamf.of("read script")] == [f"/api/v1/scripts/{s}" for s in scripts]


def test_a_policy_running_an_earlier_ringward_script_is_ours(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    run(destination(jamf, root), clock)
    result = only(run(destination(jamf, root), clock, next_release(root)))
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "policy:3"
    (read,) = jamf.of("read script")
    assert read.path == "/api/v1/scripts/2"


# --- duplicates, large answers, names -----------------------------------------------------------------


def test_a_duplicate_the_search_cannot_find_is_final_not_a_loop(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    duplicate = {"httpStatus": 400, "errors": [{"code": "DUPLICATE_FIELD", "field": "name", "description": "taken"}]}
    jamf.fail("create script", JamfFault.of(400, json.dumps(duplicate)))
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert f"Jamf says script {POLICY} install 1.4.2 exists but the search does not find it" in (result.error or "")
    assert jamf.steps()[-3:] == ["find script", "create script", "find script"]


def test_a_duplicate_policy_the_lookup_cannot_find_is_final(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    jamf.fail("create policy", JamfFault.of(409, "<html><p>Conflict</p><p>Error: Duplicate name</p></html>"))
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert f"Jamf says policy {POLICY} exists but the search does not find it" in (result.error or "")
    assert jamf.steps()[-3:] == ["find policy", "create policy", "find policy"]


def test_a_record_made_concurrently_is_found_again_and_reused(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    """A create that loses a race (the record now exists) searches once more and continues with it."""
    duplicate = {"httpStatus": 400, "errors": [{"code": "DUPLICATE_FIELD", "field": "packageName"}]}
    jamf.fail("create package", JamfFault.of(400, json.dumps(duplicate), apply=True))
    jamf.fail("create policy", JamfFault.of(409, "<html><p>Error: Duplicate name</p></html>", apply=True))
    result = only(run(destination(jamf, root), clock, max_attempts=1))
    assert result.status is DeliveryStatus.DELIVERED, result.error
    assert jamf.steps()[1:5] == ["find package", "create package", "find package", "upload package"]
    assert jamf.steps()[-4:] == ["find policy", "create policy", "find policy", "update policy"]
    assert (len(jamf.state.packages), len(jamf.state.scripts), len(jamf.state.policies)) == (1, 1, 1)


def test_concurrent_events_for_one_package_share_the_records(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    """Two events naming the same package and policy, delivered side by side, share one set of records."""
    events = [publication_event(f"emp_pair_{n}") for n in range(2)]
    report = run(destination(jamf, root), clock, *events, max_attempts=4, max_in_flight=2, backoff_base_seconds=0.01)
    assert all(r.status is DeliveryStatus.DELIVERED for r in report.all_results()), report.all_results()
    assert (len(jamf.state.packages), len(jamf.state.scripts), len(jamf.state.policies)) == (1, 1, 1)


def test_searches_are_read_page_by_page(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    run(destination(jamf, root), clock)
    ours = jamf.state.packages["1"]
    other = {"id": "50", "packageName": "other.pkg", "notes": ""}
    jamf.fail(
        "find package",
        JamfFault.of(200, json.dumps({"totalCount": 2, "results": [other]})),
        JamfFault.of(200, json.dumps({"totalCount": 2, "results": [ours]})),
    )
    sent = len(jamf.requests)
    result = only(run(destination(jamf, root), clock))
    assert result.status is DeliveryStatus.DELIVERED
    assert jamf.steps()[sent:] == ["find package", "find package", "find script", "find policy", "update policy"]
    assert [r.query.split("&")[:2] for r in jamf.of("find package")[-2:]] == [
        ["page=0", "page-size=100"],
        ["page=1", "page-size=100"],
    ]
    assert len(jamf.of("upload package")) == 1


@pytest.mark.parametrize(
    ("step", "content_type"), [("find package", "application/json"), ("find policy", "application/xml")]
)
def test_an_answer_cut_at_the_read_cap_is_a_clear_final_error(
    jamf: JamfEmulator, root: Path, clock: FakeClock, step: str, content_type: str
) -> None:
    huge = '{"totalCount":1,"results":[{"notes":"' + "x" * (2 * 1024 * 1024) + '"}]}'
    if content_type == "application/xml":
        huge = "<policy><general><name>" + "x" * (2 * 1024 * 1024) + "</name></general></policy>"
    jamf.fail(step, JamfFault.of(200, huge, content_type=content_type))
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert f"{step}: HTTP 200" in (result.error or "")
    assert "answer larger than the 2 MiB read cap (cut, not read)" in (result.error or ""), result.error
    assert jamf.steps()[-1] == step


@pytest.mark.parametrize(
    ("payload", "release", "message"),
    [
        ({"policy_name": "CAVRA * stable"}, "1.4.2", "provider_payloads.jamf.policy_name: must not contain '*'"),
        ({"policy_name": 'CAVRA "Go"'}, "1.4.2", "provider_payloads.jamf.policy_name: must not contain '\"'"),
        ({}, "1.*", "release: must not contain '*'"),
        ({}, '1.4"', "release: must not contain '\"'"),
    ],
)
def test_wildcards_and_quotes_in_names_are_refused(
    jamf: JamfEmulator, root: Path, clock: FakeClock, payload: dict[str, Any], release: str, message: str
) -> None:
    event = publication_event(release=release, **payload)
    with pytest.raises(ConnectorEventError) as raised:
        parse_jamf_publication(event)
    assert message in str(raised.value) and "wildcard" in str(raised.value)
    result = only(run(destination(jamf, root), clock, event))
    assert result.status is DeliveryStatus.REJECTED and message in (result.error or "")
    assert jamf.steps() == ["token"]


def test_the_release_names_the_script_or_else_the_package_file() -> None:
    assert parse_jamf_publication(publication_event()).script_name == f"{POLICY} install 1.4.2"
    event = make_event(
        provider_payloads={"jamf": jamf_payload(package=PACKAGE)},
        attributes={"artifacts": artifacts()},
        release_version=None,
    )
    assert event.release_version is None
    assert parse_jamf_publication(event).script_name == f"{POLICY} install {PACKAGE}"


@pytest.mark.parametrize(
    "page",
    [
        "<head" * 13_000,
        "<script>" + "<script" * 9_000,
        "<style " + "</styl" * 10_000,
        "<" + " " * 65_000 + ">",
        "<p " + "<" * 65_000,
        "&" * 65_536,
        "<html>" + "a>" * 40_000,
    ],
)
def test_hostile_html_error_pages_are_read_in_linear_time(page: str) -> None:
    import time

    import httpx

    from connectors.interface import Exchange, PreparedRequest
    from connectors.providers.jamf_pro import html_text, jamf_error

    answer = Exchange(PreparedRequest("GET", "http://jamf", {}, b""), 400, "Bad Request", page, httpx.Headers())
    start = time.perf_counter()
    text = jamf_error(answer)
    html_text(page * 4)  # longer pages are cut at 64 KiB
    assert time.perf_counter() - start < 0.5
    assert len(text) <= 203
    assert html_text(
        "<html><head><title>t</title><style>p{}</style></head><body><p>Conflict</p>"
        "<script>x()</script><p>Error: a &amp; b</p></body></html>"
    ).split() == ["Conflict", "Error:", "a", "&", "b"]


def test_events_without_a_jamf_payload_are_filtered(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    event = make_event()
    report = run(destination(jamf, root), clock, event)
    assert report.all_results() == [] and report.filtered[event.event_id] == ["jamf-prod"]
    assert jamf.requests == []


def test_an_invalid_payload_is_final_and_names_the_field(jamf: JamfEmulator, root: Path, clock: FakeClock) -> None:
    result = only(run(destination(jamf, root), clock, publication_event(trigger="has space", install_script=[])))
    assert result.status is DeliveryStatus.REJECTED
    error = result.error or ""
    assert error.startswith("read jamf payload: event emp_0a1b2c3d4e5f: ")
    assert "provider_payloads.jamf.trigger: expected a Jamf custom event name" in error
    assert "provider_payloads.jamf.install_script" in error
    assert jamf.steps() == ["token"]


def test_package_comes_from_the_payload_or_the_event_artifacts() -> None:
    digest = hashlib.sha256(CONTENT).hexdigest()
    from_artifacts = parse_jamf_publication(publication_event())
    by_name = parse_jamf_publication(publication_event(package=PACKAGE))
    explicit = make_event(
        "evt-jamf-1",
        provider_payloads={"jamf": jamf_payload(package={"file_name": f"mac/{PACKAGE}", "sha256": digest, "bytes": 9})},
    )
    assert from_artifacts.package == by_name.package
    assert (from_artifacts.package.artifact, from_artifacts.package.sha256) == (PACKAGE, digest)
    assert parse_jamf_publication(explicit).package.file_name == PACKAGE
    with pytest.raises(ConnectorEventError, match=r"payload says 1, attributes\.artifacts says"):
        parse_jamf_publication(publication_event(package={"artifact": PACKAGE, "bytes": 1}))
    with pytest.raises(ConnectorEventError, match="expected one installer"):
        parse_jamf_publication(make_event(provider_payloads={"jamf": jamf_payload()}))


# --- secrets ----------------------------------------------------------------------------------------


def test_no_secret_reaches_any_stored_evidence(
    jamf: JamfEmulator, root: Path, sqlite_store: Store, hooks: DeliveryHooks
) -> None:
    """Hostile answers echo the client secret and the bearer token back; every stored record is scanned."""
    echo = f"{SECRETS['RW_JAMF_SECRET']} Bearer {TOKEN}"
    jamf.fail(
        "find package",
        JamfFault.of(503, json.dumps({"httpStatus": 503, "errors": [{"code": "BUSY", "description": echo}]})),
    )
    jamf.fail("create policy", JamfFault.of(400, f"<html><body><p>Bad Request</p><p>{echo}</p></body></html>"))
    config = config_of(destination(jamf, root), max_attempts=2, max_in_flight=1)
    runs = ops.deliver_events(
        [publication_event("emp_secret_1"), publication_event("emp_secret_2")], config, store=sqlite_store, hooks=hooks
    )
    statuses = sorted(r.status.value for run in runs for r in run.results)
    assert statuses == ["delivered", "rejected"] or statuses == ["rejected", "delivered"]
    errors = " ".join(r.error or "" for run in runs for r in run.results)
    assert "REDACTED" in errors
    assert scan_for_secrets(sqlite_store, {"RW_JAMF_SECRET": SECRETS["RW_JAMF_SECRET"], "jamf-token": TOKEN}) == []


def test_connector_test_event_is_a_read_only_connectivity_check(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    """`ringward connectors test` on a native Jamf destination: token + one read, nothing created."""
    from ringward.core.delivery.event import make_test_event

    result = only(run(destination(jamf, root), clock, make_test_event(destination="jamf-prod", now=T0)))
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "Jamf Pro 11.12.1-t1731333333"
    assert jamf.steps() == ["token", "version"]
    assert not jamf.state.packages and not jamf.state.policies
    jamf.fail("version", 403)
    denied = only(run(destination(jamf, root), clock, make_test_event(destination="jamf-prod", now=T0)))
    assert denied.status is DeliveryStatus.REJECTED and (denied.error or "").startswith("connectivity check: HTTP 403")


def test_hard_linked_artifact_is_refused_without_reading_it(
    jamf: JamfEmulator, root: Path, tmp_path: Path, clock: FakeClock
) -> None:
    outside = tmp_path / "outside-secret.bin"
    outside.write_bytes(b"private bytes outside the artifact root")
    (root / PACKAGE).unlink()
    os.link(outside, root / PACKAGE)
    result = only(run(destination(jamf, root), clock))
    assert result.status is DeliveryStatus.REJECTED
    assert "found 2 hard links; nothing uploaded" in (result.error or "")
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in (result.error or "")
    assert jamf.steps() == ["token"]


@pytest.mark.parametrize("groups", [["12"], []], ids=["automation", "review"])
def test_an_earlier_release_delivered_late_never_switches_the_policy_back(
    jamf: JamfEmulator, root: Path, clock: FakeClock, groups: list[str]
) -> None:
    """1.4.3 is published; the publication of 1.4.2 arrives late. The policy keeps running 1.4.3."""
    newer = only(run(destination(jamf, root, target_group_ids=groups), clock, next_release(root)))
    assert newer.status is DeliveryStatus.DELIVERED
    runs = _policy_runs(jamf)
    late = only(run(destination(jamf, root, target_group_ids=groups), clock, publication_event("emp_late")))
    assert late.status is DeliveryStatus.REJECTED
    assert "already runs release 1.4.3, later than 1.4.2" in (late.error or "")
    assert _policy_runs(jamf) == runs and jamf.of("update policy") == []


# --- the installer is streamed ----------------------------------------------------------------------


def test_the_upload_is_streamed_with_a_declared_length_and_recorded_with_its_digest(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    jamf.fail("upload package", 400)
    result = only(run(destination(jamf, root), clock))
    assert result.status is DeliveryStatus.REJECTED and (result.error or "").startswith("upload package: HTTP 400")
    body, content_type = multipart_file(PACKAGE, CONTENT)
    (upload,) = jamf.of("upload package")
    assert upload.body == body and upload.headers["content-type"] == content_type
    assert upload.headers["content-length"] == str(len(body)) and "transfer-encoding" not in upload.headers
    # the evidence names the streamed body exactly as it would an in-memory one
    assert result.request is not None and result.request.method == "POST"
    assert (result.request.body_sha256, result.request.body_bytes) == (hashlib.sha256(body).hexdigest(), len(body))


def test_a_large_upload_spilled_to_disk_by_the_emulator_is_the_installer(
    jamf: JamfEmulator, root: Path, clock: FakeClock
) -> None:
    jamf.spill_bytes = 100  # parsed by streaming over the body on disk
    result = only(run(destination(jamf, root), clock))
    assert result.status is DeliveryStatus.DELIVERED, result.error
    ((name, upload),) = jamf.state.uploads["1"]
    assert isinstance(upload, UploadedFile) and name == PACKAGE
    assert (upload.size, upload.sha256) == (len(CONTENT), hashlib.sha256(CONTENT).hexdigest())
    assert upload.path.read_bytes() == CONTENT
    (request,) = jamf.of("upload package")
    assert request.body == b"" and request.length == len(multipart_file(PACKAGE, CONTENT)[0])


@pytest.mark.parametrize("chunk", [1 << 20, 1000])
def test_an_installer_changed_after_it_was_checked_is_never_uploaded_whole(
    jamf: JamfEmulator, root: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The second pass (the upload) checks the digest again and stops before the last chunk."""
    monkeypatch.setattr(artifact_reader, "CHUNK_BYTES", chunk)
    real = jamf_pro.prepare_upload

    def then_changed(reader: Any, file_name: str) -> Any:
        prepared = real(reader, file_name)
        with (root / PACKAGE).open("r+b") as handle:  # in place: the same open file sees it
            handle.seek(len(CONTENT) - 1)
            handle.write(b"!")
        return prepared

    monkeypatch.setattr(jamf_pro, "prepare_upload", then_changed)
    result = only(run(destination(jamf, root), clock, max_attempts=3))
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    error = result.error or ""
    assert error.startswith(
        f"upload package: artifact {PACKAGE}: expected sha256 {hashlib.sha256(CONTENT).hexdigest()}"
    )
    assert error.endswith("(the file changed while it was uploaded; upload abandoned)")
    assert not any(jamf.state.uploads.values())  # Jamf never got a whole body
    ((method, path, received, declared),) = jamf.aborted
    assert (method, path) == ("POST", "/api/v1/packages/1/upload") and received < declared
    head = multipart_file(PACKAGE, CONTENT)[0].index(CONTENT)
    last = len(CONTENT) - (len(CONTENT) - 1) // chunk * chunk
    assert received <= head + len(CONTENT) - last  # the last chunk never left
    assert "hashValue" not in jamf.state.packages["1"]  # so the next attempt uploads again
    assert "record package hash" not in jamf.steps()
