"""Splunk HEC indexer acknowledgement (useACK): a delivery counts once the indexer acknowledged it.

A real HTTP server on loopback plays HEC: ``/services/collector/event`` answers with an ``ackId``
and ``/services/collector/ack?channel=...`` answers ``{"acks": {"<id>": bool}}`` as scripted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors import DeliveryEngine, MemoryLedger, SecretResolver, resolve_destinations
from ringward.core.delivery.config import validate_connector_config
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from ringward.core.errors import ConnectorConfigError
from tests.connectors.conftest import SECRETS, FakeClock, config_of, make_event

CHANNEL = "0e9f7c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b"


class Hec:
    """Scripted HEC: each send gets the next ackId; each ack poll pops the next answer for it."""

    def __init__(self, server: HTTPServer, polls: list[Any]) -> None:
        self.next_ack = 0
        self.polls = polls
        self.sends: list[Request] = []
        self.ack_requests: list[Request] = []
        server.expect_request("/services/collector/event", method="POST").respond_with_handler(self.send)
        server.expect_request("/services/collector/ack", method="POST").respond_with_handler(self.ack)

    def send(self, request: Request) -> Response:
        self.sends.append(request)
        ack_id, self.next_ack = self.next_ack, self.next_ack + 1
        return Response(json.dumps({"text": "Success", "code": 0, "ackId": ack_id}), content_type="application/json")

    def ack(self, request: Request) -> Response:
        self.ack_requests.append(request)
        (ack_id,) = json.loads(request.get_data())["acks"]
        answer = self.polls.pop(0) if self.polls else True
        if isinstance(answer, Response):
            return answer
        return Response(json.dumps({"acks": {str(ack_id): answer}}), content_type="application/json")


@pytest.fixture
def deliver(
    httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> Iterator[Callable[..., DestinationResult]]:
    def run(**extra: Any) -> DestinationResult:
        provider = {
            "name": "soc-splunk",
            "provider": "splunk",
            "url": httpserver.url_for("/services/collector/event"),
            "token": "env:RW_SPLUNK_TOKEN",
            "request_channel": CHANNEL,
            "indexer_ack": True,
            "ack_timeout_seconds": 3,
            **extra,
        }
        config = config_of(provider, max_attempts=3, backoff_base_seconds=0.5)
        dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
        assert not errors, errors
        engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(1))
        (result,) = engine.deliver([make_event()], dests).all_results()
        return result

    yield run


def test_delivered_only_after_the_indexer_acknowledges(
    httpserver: HTTPServer, deliver: Callable[..., DestinationResult], clock: FakeClock
) -> None:
    hec = Hec(httpserver, [False, False, True])
    result = deliver()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "ackId=0 indexed"
    assert len(hec.sends) == 1 and len(hec.ack_requests) == 3
    poll = hec.ack_requests[0]
    assert poll.args["channel"] == CHANNEL and poll.headers["X-Splunk-Request-Channel"] == CHANNEL
    assert poll.headers["Authorization"] == f"Splunk {SECRETS['RW_SPLUNK_TOKEN']}"
    assert json.loads(poll.get_data()) == {"acks": [0]}
    assert clock.sleeps == [0.5, 1.0]  # polls back off; the fake clock means no real waiting


def test_unacknowledged_batch_is_resent_and_counted_truthfully(
    httpserver: HTTPServer, deliver: Callable[..., DestinationResult]
) -> None:
    # first send: never acknowledged within 3 s (0.5 + 1 + 1.5 of waiting); the resend is
    hec = Hec(httpserver, [False, False, False, False, True])
    result = deliver()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "ackId=1 indexed"
    assert len(hec.sends) == 2
    first, second = result.attempts
    assert first.outcome is Outcome.RETRY and "did not acknowledge ackId 0 within 3s" in (first.error or "")
    assert second.outcome is Outcome.DELIVERED and second.status_code == 200


def test_a_failed_ack_poll_is_polled_again_not_resent(
    httpserver: HTTPServer, deliver: Callable[..., DestinationResult]
) -> None:
    """HEC already accepted the batch: a 503 from the ack endpoint is a reason to ask again, not to
    send the events a second time."""
    hec = Hec(httpserver, [Response("busy", status=503), False, True])
    result = deliver()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "ackId=0 indexed"
    assert len(hec.sends) == 1 and len(hec.ack_requests) == 3


def test_an_unexpected_ack_answer_is_not_trusted_and_does_not_crash(
    httpserver: HTTPServer, deliver: Callable[..., DestinationResult]
) -> None:
    hec = Hec(httpserver, [Response('{"acks":[true]}', content_type="application/json"), True])
    result = deliver()
    assert result.status is DeliveryStatus.DELIVERED and len(hec.sends) == 1 and len(hec.ack_requests) == 2


def test_the_ack_wait_outlasts_one_request_timeout(
    httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real time: requests time out after 1 s, the indexer acknowledges after 1.5 s; the ack window
    (5 s) decides, so the batch is sent once and delivered."""
    import time

    from connectors.providers import siem

    monkeypatch.setattr(siem, "ACK_POLL_INTERVAL_S", 0.1)
    sent_at: list[float] = []
    hec = Hec(httpserver, [])
    original_send, original_ack = hec.send, hec.ack

    def send(request: Request) -> Response:
        sent_at.append(time.monotonic())
        return original_send(request)

    def ack(request: Request) -> Response:
        indexed = time.monotonic() - sent_at[-1] >= 1.5
        hec.polls.append(indexed)
        return original_ack(request)

    httpserver.clear()
    httpserver.expect_request("/services/collector/event", method="POST").respond_with_handler(send)
    httpserver.expect_request("/services/collector/ack", method="POST").respond_with_handler(ack)
    config = config_of(
        {
            "name": "soc-splunk",
            "provider": "splunk",
            "url": httpserver.url_for("/services/collector/event"),
            "token": "env:RW_SPLUNK_TOKEN",
            "request_channel": CHANNEL,
            "indexer_ack": True,
            "ack_timeout_seconds": 5,
        },
        max_attempts=3,
        timeout_seconds=1,
        budget_seconds=30,
    )
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=time.sleep, rng=random.Random(1))
    (result,) = engine.deliver([make_event()], dests).all_results()
    assert result.status is DeliveryStatus.DELIVERED, result.error
    assert len(sent_at) == 1 and len(result.attempts) == 1


def test_the_ack_endpoint_keeps_a_proxy_path_prefix(
    httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    httpserver.expect_request("/splunk/services/collector/event").respond_with_json(
        {"text": "Success", "code": 0, "ackId": 4}
    )
    httpserver.expect_request("/splunk/services/collector/ack").respond_with_json({"acks": {"4": True}})
    config = config_of(
        {
            "name": "soc-splunk",
            "provider": "splunk",
            "url": httpserver.url_for("/splunk/services/collector/event"),
            "token": "env:RW_SPLUNK_TOKEN",
            "request_channel": CHANNEL,
            "indexer_ack": True,
        },
        max_attempts=1,
    )
    dests, _ = resolve_destinations(config, config.providers, resolver=SecretResolver())
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(1))
    (result,) = engine.deliver([make_event()], dests).all_results()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "ackId=4 indexed"


def test_ack_disabled_on_the_token_keeps_the_send_outcome(
    httpserver: HTTPServer, deliver: Callable[..., DestinationResult]
) -> None:
    disabled = Response(json.dumps({"text": "ACK is disabled", "code": 14}), status=400)
    hec = Hec(httpserver, [disabled])
    result = deliver()
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "ackId=0"
    assert len(hec.sends) == 1


def test_without_indexer_ack_no_poll_is_made(
    httpserver: HTTPServer, deliver: Callable[..., DestinationResult]
) -> None:
    hec = Hec(httpserver, [False])
    result = deliver(indexer_ack=False)
    assert result.status is DeliveryStatus.DELIVERED and result.external_ref == "ackId=0"
    assert hec.ack_requests == []


def test_indexer_ack_config_is_validated() -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        validate_connector_config(
            {
                "providers": [
                    {"name": "s", "provider": "splunk", "url": "https://s.example", "token": "env:T",
                     "indexer_ack": True},
                    {"name": "d", "provider": "datadog", "url": "https://d.example", "api_key": "env:K",
                     "indexer_ack": True},
                ]
            },
            source="connectors.yaml",
        )
    message = str(caught.value)
    assert "providers[0].request_channel: required with indexer_ack" in message
    assert "providers[1].indexer_ack: only splunk destinations take it" in message
