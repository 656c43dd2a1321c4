"""Request ids and structured logs: every request (refused ones too) gets an id, answers it in
X-Request-ID, logs one JSON access line carrying it, and the Prefect events it emits name it as a
related resource; no credential reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ringward.operations.common import logs
from tests.api.conftest import Api


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("ringward")
    previous = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])


def _access(stream: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "ringward.api.access"]


def test_a_request_gets_an_id_answered_and_logged_without_its_credentials(api: Api, log_lines: io.StringIO) -> None:
    answer = api.get("/evidence?limit=1&token=hunter2-query-secret")
    assert answer.status_code in (200, 422)
    request_id = answer.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    (line,) = _access(log_lines)
    assert line["request_id"] == request_id
    assert line["method"] == "GET" and line["path"] == "/evidence" and line["status"] == answer.status_code
    assert isinstance(line["duration_ms"], float)
    text = log_lines.getvalue()
    assert api.tokens["viewer"] not in text and "hunter2-query-secret" not in text


def test_a_plain_caller_id_is_kept_and_a_hostile_one_replaced(api: Api, log_lines: io.StringIO) -> None:
    kept = api.client.get("/healthz", headers={"X-Request-ID": "ci-run-42.step-7"})
    assert kept.headers["x-request-id"] == "ci-run-42.step-7"
    for hostile in (b"short", b"x" * 129, b"a b c d e f g h", "id\u202ewith-bidi".encode(), b'{"x":1}\\n'):
        answer = api.client.get("/healthz", headers={"X-Request-ID": hostile})
        assert answer.headers["x-request-id"].encode() != hostile and len(answer.headers["x-request-id"]) == 32
    assert next(line["request_id"] for line in _access(log_lines)) == "ci-run-42.step-7"


def test_refused_requests_have_ids_too(api: Api, log_lines: io.StringIO) -> None:
    unauthenticated = api.client.get("/evidence")
    oversized = api.client.get("/healthz", headers={"X-Padding": "p" * 20_000})
    assert unauthenticated.status_code == 401 and oversized.status_code == 431
    assert unauthenticated.headers["x-request-id"] and oversized.headers["x-request-id"]
    assert [line["status"] for line in _access(log_lines)] == [401, 431]


def test_two_requests_get_two_ids(api: Api) -> None:
    assert api.client.get("/healthz").headers["x-request-id"] != api.client.get("/healthz").headers["x-request-id"]


def test_events_emitted_inside_a_request_name_it_as_a_related_resource() -> None:
    from flows.events import related_resources

    assert related_resources() == []
    token = logs.REQUEST_ID.set("0123456789abcdef")
    try:
        assert related_resources() == [{"prefect.resource.id": "ringward.api-request.0123456789abcdef",
                                        "prefect.resource.role": "api-request"}]
    finally:
        logs.REQUEST_ID.reset(token)


@pytest.mark.parametrize("message", [
    "calling https://jamf.example/api?token=s3cr3t-value&page=1",
    "header Authorization: Bearer eyJhbGciOi.s3cr3t-value.sig",
    "sent webhook-signature: v1,s3cr3t-value",
    "client_secret=s3cr3t-value password=s3cr3t-value",
])
def test_messages_are_scrubbed_in_both_formats(message: str) -> None:
    record = logging.LogRecord("ringward.test", logging.WARNING, __file__, 1, message, None, None)
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        assert "s3cr3t-value" not in formatter.format(record)
    assert "REDACTED" in logs.scrub(message)


def test_exceptions_are_one_json_line_with_error_and_scrubbed_traceback() -> None:
    try:
        raise ValueError("bad token=s3cr3t-value")
    except ValueError:
        record = logging.LogRecord("ringward.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    document = json.loads(line)
    assert document["error"] == "ValueError: bad token=REDACTED" and "s3cr3t-value" not in line


def test_format_is_json_off_a_terminal_and_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logs.LOG_FORMAT_ENV, raising=False)
    assert logs.log_format(io.StringIO()) == "json"
    monkeypatch.setenv(logs.LOG_FORMAT_ENV, "text")
    assert logs.log_format(io.StringIO()) == "text"
    config = logs.logging_config("info", "json")
    assert config["formatters"]["ringward"]["()"] == "ringward.operations.common.logs.JsonFormatter"
    assert config["loggers"]["uvicorn.access"]["handlers"] == []


def test_the_logging_config_is_accepted_by_uvicorn_in_a_fresh_process() -> None:
    probe = ("import logging, uvicorn.config as c; from ringward.operations.common.logs import logging_config;"
             "cfg = c.Config(app=lambda *a: None, log_config=logging_config('info', 'json'));"
             "logging.getLogger('ringward.api.access').info('probe', extra={'status': 200})")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert line["message"] == "probe" and line["status"] == 200 and line["level"] == "info"
