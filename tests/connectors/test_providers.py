"""Every provider against a real HTTP server on loopback (pytest-httpserver): exact method, path,
query, headers and body. Bodies are compared byte for byte with recorded files in ``recorded/``
(re-record with ``RINGWARD_RECORD_BODIES=1`` and review the diff), and the contract facts of each
provider (delivery-escalation-anchors §4) are asserted on top."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors import DeliveryEngine, MemoryLedger, SecretResolver, resolve_destinations
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from tests.connectors.conftest import SECRETS, FakeClock, config_of, make_event

RECORDED = Path(__file__).parent / "recorded"
RECORD = os.environ.get("RINGWARD_RECORD_BODIES") == "1"


def recorded(name: str, body: bytes | None = None) -> bytes:
    path = RECORDED / f"{name}.body"
    if RECORD and body is not None:
        RECORDED.mkdir(exist_ok=True)
        path.write_bytes(body)
    return path.read_bytes()


def deliver(
    provider: dict[str, Any], clock: FakeClock, event: ConnectorEvent | None = None
) -> DestinationResult:
    config = config_of(provider, max_attempts=1)
    resolver = SecretResolver()
    dests, errors = resolve_destinations(config, config.providers, resolver=resolver)
    assert not errors, errors
    engine = DeliveryEngine(
        MemoryLedger(), run_id="test", clock=clock, sleep=clock.sleep, rng=random.Random(1)
    )
    report = engine.deliver([event or make_event()], dests)
    (result,) = report.all_results()
    return result


def body_of(httpserver: HTTPServer, index: int = -1) -> bytes:
    request, _response = httpserver.log[index]
    return request.get_data()


class _Expect:
    """One expected request with the recorded body (when recording: capture whatever arrives)."""

    def __init__(self, server: HTTPServer, name: str, uri: str, kwargs: dict[str, Any]) -> None:
        self.server, self.name, self.uri, self.kwargs = server, name, uri, kwargs

    def respond_with_json(self, value: Any, status: int = 200) -> None:
        self._register(Response(json.dumps(value), status=status, content_type="application/json"))

    def respond_with_data(self, data: str = "", status: int = 200) -> None:
        self._register(Response(data, status=status))

    def _register(self, response: Response) -> None:
        if RECORD:

            def capture(request: Request) -> Response:
                recorded(self.name, request.get_data())
                return response

            self.server.expect_oneshot_request(self.uri, method="POST").respond_with_handler(capture)
            return
        self.server.expect_oneshot_request(
            self.uri, method="POST", data=recorded(self.name), **self.kwargs
        ).respond_with_response(response)


def expect_body(httpserver: HTTPServer, name: str, uri: str, **kwargs: Any) -> _Expect:
    return _Expect(httpserver, name, uri, kwargs)


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    return httpserver


def test_splunk_hec(server: HTTPServer, secret_env: dict[str, str], clock: FakeClock) -> None:
    expect_body(
        server,
        "splunk",
        "/services/collector/event",
        headers={
            "Authorization": f"Splunk {SECRETS['RW_SPLUNK_TOKEN']}",
            "Content-Type": "application/json",
            "X-Splunk-Request-Channel": "0e9f7c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        },
    ).respond_with_json({"text": "Success", "code": 0})
    result = deliver(
        {
            "name": "soc-splunk",
            "provider": "splunk",
            "url": server.url_for("/services/collector/event"),
            "token": "env:RW_SPLUNK_TOKEN",
            "index": "release_audit",
            "sourcetype": "ringward:event",
            "request_channel": "0e9f7c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        },
        clock,
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.DELIVERED and result.status_code == 200
    (line,) = body_of(server).splitlines()
    record = json.loads(line)
    assert record["time"] == 1795348800.0 and record["index"] == "release_audit"
    assert record["sourcetype"] == "ringward:event" and record["event"]["event_id"] == "evt-promotion-0001"
    assert record["fields"] == {"event_id": "evt-promotion-0001", "event_type": "ringward.promotion.executed"}
    assert result.request is not None and result.request.headers["authorization"] == "REDACTED"


def test_splunk_batches_are_concatenated_objects_not_arrays(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    server.expect_oneshot_request("/services/collector/event").respond_with_json(
        {"text": "Success", "code": 0}
    )
    config = config_of(
        {
            "name": "s",
            "provider": "splunk",
            "url": server.url_for("/services/collector/event"),
            "token": "env:RW_SPLUNK_TOKEN",
        }
    )
    dests, _ = resolve_destinations(config, config.providers, resolver=SecretResolver())
    events = [make_event(f"evt-{n}") for n in range(3)]
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep)
    report = engine.deliver(events, dests)
    assert all(r.status is DeliveryStatus.DELIVERED for r in report.all_results())
    lines = body_of(server).splitlines()
    assert [json.loads(x)["event"]["event_id"] for x in lines] == ["evt-0", "evt-1", "evt-2"]
    assert not body_of(server).startswith(b"[")
    assert all(r.attempts[0].batch_size == 3 for r in report.all_results())


def test_splunk_200_with_error_code_is_not_success(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    server.expect_oneshot_request("/hec").respond_with_json({"text": "Incorrect index", "code": 7})
    result = deliver(
        {"name": "s", "provider": "splunk", "url": server.url_for("/hec"), "token": "env:RW_SPLUNK_TOKEN"},
        clock,
    )
    assert result.status is DeliveryStatus.REJECTED and "HEC code 7" in (result.error or "")


def test_sentinel_logs_ingestion_with_entra_client_credentials(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    dcr = "dcr-00112233445566778899aabbccddeeff"
    server.expect_oneshot_request(
        "/tenant-1/oauth2/v2.0/token",
        method="POST",
        data=(
            "grant_type=client_credentials&client_id=app-1234"
            f"&client_secret={SECRETS['RW_SENTINEL_SECRET']}"
            "&scope=https%3A%2F%2Fmonitor.azure.com%2F.default"
        ),
    ).respond_with_json(
        {"access_token": SECRETS["RW_SENTINEL_TOKEN"], "expires_in": 3599, "token_type": "Bearer"}
    )
    expect_body(
        server,
        "sentinel",
        f"/dataCollectionRules/{dcr}/streams/Custom-RingwardAudit_CL",
        query_string="api-version=2023-01-01",
        headers={
            "Authorization": f"Bearer {SECRETS['RW_SENTINEL_TOKEN']}",
            "Content-Type": "application/json",
            "x-ms-client-request-id": "evt-promotion-0001",
        },
    ).respond_with_data("", status=204)
    result = deliver(
        {
            "name": "sentinel",
            "provider": "sentinel",
            "url": server.url_for("/"),
            "dcr_immutable_id": dcr,
            "stream_name": "Custom-RingwardAudit_CL",
            "tenant_id": "tenant-1",
            "client_id": "app-1234",
            "client_secret": "env:RW_SENTINEL_SECRET",
            "token_url": server.url_for("/tenant-1/oauth2/v2.0/token"),
        },
        clock,
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.DELIVERED and result.status_code == 204
    records = json.loads(body_of(server))
    assert isinstance(records, list) and records[0]["TimeGenerated"] == "2026-11-22T12:00:00Z"
    assert records[0]["EventId"] == "evt-promotion-0001"
    assert result.request is not None and "api-version" not in result.request.url


def test_datadog_logs_v2_is_queued(server: HTTPServer, secret_env: dict[str, str], clock: FakeClock) -> None:
    expect_body(
        server,
        "datadog",
        "/api/v2/logs",
        headers={"DD-API-KEY": SECRETS["RW_DD_API_KEY"], "Content-Type": "application/json"},
    ).respond_with_json({}, status=202)
    result = deliver(
        {
            "name": "dd",
            "provider": "datadog",
            "url": server.url_for("/api/v2/logs"),
            "api_key": "env:RW_DD_API_KEY",
            "service": "ringward",
            "ddtags": "env:prod,team:release",
        },
        clock,
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.QUEUED and result.success
    (entry,) = json.loads(body_of(server))
    assert (
        entry["ddsource"] == "ringward"
        and entry["status"] == "warn"
        and entry["event_id"] == "evt-promotion-0001"
    )
    assert entry["ddtags"].endswith("env:prod,team:release")


def _standard_webhooks_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks reference verification, written independently of the sender."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1)[1] == expected for sig in headers["webhook-signature"].split(" "))


def test_generic_webhook_is_signed_with_standard_webhooks(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    expect_body(
        server,
        "webhook",
        "/ringward/events",
        headers={
            "webhook-id": "evt-promotion-0001",
            "webhook-timestamp": "1795348800",
            "Content-Type": "application/json",
        },
    ).respond_with_data("", status=204)
    result = deliver(
        {
            "name": "hook",
            "provider": "webhook",
            "url": server.url_for("/ringward/events"),
            "signing_secret": "env:RW_WEBHOOK_SECRET",
        },
        clock,
    )
    server.check_assertions()
    request, _ = server.log[-1]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert _standard_webhooks_verify(SECRETS["RW_WEBHOOK_SECRET"], headers, request.get_data())
    payload = json.loads(request.get_data())
    assert (
        payload["type"] == "ringward.promotion.executed"
        and payload["data"]["event_id"] == "evt-promotion-0001"
    )
    assert result.status is DeliveryStatus.DELIVERED


def test_slack_incoming_webhook_block_kit(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_SLACK_URL", server.url_for(SECRETS["RW_SLACK_URL_PATH"]))
    expect_body(
        server, "slack", SECRETS["RW_SLACK_URL_PATH"], headers={"Content-Type": "application/json"}
    ).respond_with_data("ok")
    result = deliver(
        {"name": "slack", "provider": "slack", "url": "env:RW_SLACK_URL"},
        clock,
        make_event(title="Release <1.4.2> & ring broad"),
    )
    server.check_assertions()
    payload = json.loads(body_of(server))
    assert payload["text"] == ":warning: [WARNING] Release &lt;1.4.2&gt; &amp; ring broad"
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "section", "context"]
    assert len(payload["blocks"][2]["fields"]) <= 10
    assert result.request is not None
    assert result.request.url == f"http://localhost:{server.port}/REDACTED"


def test_teams_workflows_adaptive_card(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "/workflows/0a1b2c3d4e5f/triggers/manual/paths/invoke"
    query = f"api-version=1&sp=%2Ftriggers&sig={SECRETS['RW_TEAMS_SIG']}"
    monkeypatch.setenv("RW_TEAMS_URL", server.url_for(path) + "?" + query)
    expect_body(
        server, "teams", path, query_string=query, headers={"Content-Type": "application/json"}
    ).respond_with_data("", status=202)
    result = deliver({"name": "teams", "provider": "teams", "url": "env:RW_TEAMS_URL"}, clock)
    server.check_assertions()
    payload = json.loads(body_of(server))
    (attachment,) = payload["attachments"]
    assert (
        payload["type"] == "message"
        and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    )
    card = attachment["content"]
    assert (card["type"], card["version"], card["msteams"]) == ("AdaptiveCard", "1.2", {"width": "Full"})
    assert card["actions"][0]["type"] == "Action.OpenUrl"
    assert result.status is DeliveryStatus.QUEUED
    assert result.request is not None and SECRETS["RW_TEAMS_SIG"] not in result.request.url


def test_jira_searches_then_creates_an_adf_issue(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    basic = base64.b64encode(f"bot@example.com:{SECRETS['RW_JIRA_TOKEN']}".encode()).decode()
    auth = {"Authorization": f"Basic {basic}"}
    label = "ringward-evt-" + hashlib.sha256(b"evt-promotion-0001").hexdigest()[:16]
    server.expect_ordered_request(
        "/rest/api/3/search/jql",
        method="POST",
        headers=auth,
        json={"jql": f'project = "OPS" AND labels = "{label}"', "fields": ["key"], "maxResults": 1},
    ).respond_with_json({"issues": []})
    expect_body(server, "jira", "/rest/api/3/issue", headers=auth).respond_with_json(
        {"id": "10042", "key": "OPS-42", "self": "https://acme.atlassian.net/rest/api/3/issue/10042"},
        status=201,
    )
    result = deliver(
        {
            "name": "jira",
            "provider": "jira",
            "url": server.url_for("/"),
            "email": "bot@example.com",
            "api_token": "env:RW_JIRA_TOKEN",
            "project_key": "OPS",
            "priority": "High",
            "labels": ["release-gov"],
        },
        clock,
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "OPS-42"
    fields = json.loads(body_of(server))["fields"]
    assert fields["description"]["type"] == "doc" and fields["description"]["version"] == 1
    assert fields["labels"] == ["ringward", "release-gov", label]
    assert fields["issuetype"] == {"name": "Task"} and fields["priority"] == {"name": "High"}


def test_jira_finds_an_existing_issue_and_creates_nothing(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    server.expect_oneshot_request("/rest/api/3/search/jql", method="POST").respond_with_json(
        {"issues": [{"id": "1", "key": "OPS-7"}]}
    )
    result = deliver(
        {
            "name": "jira",
            "provider": "jira",
            "url": server.url_for("/"),
            "email": "bot@example.com",
            "api_token": "env:RW_JIRA_TOKEN",
            "project_key": "OPS",
        },
        clock,
    )
    assert result.status is DeliveryStatus.EXISTS and result.external_ref == "OPS-7"
    assert len(server.log) == 1


def test_servicenow_table_api_with_correlation_search(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    basic = base64.b64encode(f"ringward.integration:{SECRETS['RW_SN_PASSWORD']}".encode()).decode()
    auth = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
    server.expect_ordered_request(
        "/api/now/table/incident",
        method="GET",
        headers=auth,
        query_string={
            "sysparm_query": "correlation_id=evt-promotion-0001",
            "sysparm_fields": "sys_id,number",
            "sysparm_limit": "1",
        },
    ).respond_with_json({"result": []})
    expect_body(server, "servicenow", "/api/now/table/incident", headers=auth).respond_with_json(
        {"result": {"sys_id": "9d3c", "number": "INC0010042"}}, status=201
    )
    result = deliver(
        {
            "name": "snow",
            "provider": "servicenow",
            "url": server.url_for("/"),
            "username": "ringward.integration",
            "password": "env:RW_SN_PASSWORD",
            "assignment_group": "Release Engineering",
        },
        clock,
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "INC0010042"
    record = json.loads(body_of(server))
    assert (record["impact"], record["urgency"], record["correlation_id"]) == ("2", "2", "evt-promotion-0001")
    assert result.request is not None and result.request.headers["authorization"] == "REDACTED"


def test_pagerduty_events_v2_dedup_key(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    expect_body(
        server, "pagerduty", "/v2/enqueue", headers={"Content-Type": "application/json"}
    ).respond_with_json(
        {"status": "success", "message": "Event processed", "dedup_key": "evt-promotion-0001"}, status=202
    )
    result = deliver(
        {
            "name": "pd",
            "provider": "pagerduty",
            "url": server.url_for("/v2/enqueue"),
            "routing_key": "env:RW_PD_ROUTING",
        },
        clock,
        make_event(severity="critical"),
    )
    server.check_assertions()
    payload = json.loads(body_of(server))
    assert payload["event_action"] == "trigger" and payload["dedup_key"] == "evt-promotion-0001"
    assert payload["payload"]["severity"] == "critical" and payload["routing_key"] == SECRETS["RW_PD_ROUTING"]
    assert result.status is DeliveryStatus.QUEUED and result.external_ref == "evt-promotion-0001"


@pytest.mark.parametrize(
    ("kind", "extra", "token_path", "scope"),
    [
        (
            "jamf",
            {"mode": "relay", "client_id": "jamf-api-client", "client_secret": "env:RW_JAMF_SECRET"},
            "/api/oauth/token",
            None,
        ),
        (
            "intune",
            {"mode": "relay", "client_id": "intune-app", "client_secret": "env:RW_INTUNE_SECRET", "tenant_id": "t1"},
            "/t1/oauth2/v2.0/token",
            "https://graph.microsoft.com/.default",
        ),
        ("linux", {"token": "env:RW_LINUX_TOKEN"}, None, None),
    ],
)
def test_fleet_publication(
    server: HTTPServer,
    secret_env: dict[str, str],
    clock: FakeClock,
    kind: str,
    extra: dict[str, Any],
    token_path: str | None,
    scope: str | None,
) -> None:
    bearer = f"fleet-access-token-{kind}" if token_path else SECRETS["RW_LINUX_TOKEN"]
    if token_path:
        expected_form = f"grant_type=client_credentials&client_id={extra['client_id']}"
        server.expect_oneshot_request(token_path, method="POST").respond_with_json(
            {"access_token": bearer, "expires_in": 1200}
        )
        if kind == "intune":
            extra = {**extra, "token_url": server.url_for(token_path)}
    expect_body(
        server,
        kind,
        "/publish",
        headers={"Authorization": f"Bearer {bearer}", "Idempotency-Key": "evt-export-9"},
    ).respond_with_data("", 202)
    event = make_event(
        "evt-export-9",
        event_type="ringward.endpoint_export.published",
        provider_payloads={kind: {"policy": {"name": "cavra-runtime 1.4.2"}}},
    )
    result = deliver(
        {"name": f"{kind}-prod", "provider": kind, "url": server.url_for("/publish"), **extra}, clock, event
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.QUEUED
    payload = json.loads(body_of(server))
    assert payload["provider"] == kind and payload["payload"] == {"policy": {"name": "cavra-runtime 1.4.2"}}
    if token_path:
        form = server.log[0][0].get_data().decode()
        assert form.startswith(expected_form)
        assert ("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default" in form) == bool(scope)


def test_private_queue_http_and_directory(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock, tmp_path: Path
) -> None:
    expect_body(
        server,
        "private_queue",
        "/queue",
        headers={
            "Authorization": f"Bearer {SECRETS['RW_QUEUE_TOKEN']}",
            "Idempotency-Key": "evt-promotion-0001",
        },
    ).respond_with_data("", 201)
    result = deliver(
        {
            "name": "queue",
            "provider": "private_queue",
            "url": server.url_for("/queue"),
            "token": "env:RW_QUEUE_TOKEN",
        },
        clock,
    )
    server.check_assertions()
    assert result.status is DeliveryStatus.DELIVERED
    folder = tmp_path / "queue"
    first = deliver({"name": "dir", "provider": "private_queue", "directory": str(folder)}, clock)
    again = deliver({"name": "dir", "provider": "private_queue", "directory": str(folder)}, clock)
    assert (first.status, again.status) == (DeliveryStatus.DELIVERED, DeliveryStatus.EXISTS)
    written = folder / "evt-promotion-0001.json"
    assert written.read_bytes() == recorded("private_queue") + b"\n"
    assert [p.name for p in folder.iterdir()] == ["evt-promotion-0001.json"]


def test_verbatim_provider_payloads_are_sent_unchanged(
    server: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    verbatim = {"fields": {"project": {"key": "SEC"}, "summary": "from the reference builder"}}
    server.expect_oneshot_request("/rest/api/3/search/jql").respond_with_json({"issues": []})
    server.expect_oneshot_request("/rest/api/3/issue", json=verbatim).respond_with_json(
        {"key": "SEC-1"}, status=201
    )
    result = deliver(
        {
            "name": "jira",
            "provider": "jira",
            "url": server.url_for("/"),
            "email": "bot@example.com",
            "api_token": "env:RW_JIRA_TOKEN",
            "project_key": "OPS",
        },
        clock,
        make_event(provider_payloads={"jira": verbatim}),
    )
    server.check_assertions()
    assert result.external_ref == "SEC-1"
