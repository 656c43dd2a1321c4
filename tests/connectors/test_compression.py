"""`compression: gzip` for the SIEM providers: the receiver gets a gzip body it can decode to exactly
the uncompressed batch, the evidence digests what was sent, and other providers refuse the option."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors import DeliveryEngine, MemoryLedger, SecretResolver, provider_for, resolve_destinations
from ringward.core.delivery.config import ProviderKind, validate_connector_config
from ringward.core.delivery.results import DeliveryStatus
from ringward.core.errors import ConnectorConfigError
from tests.connectors.conftest import FakeClock, config_of, make_event

CASES: dict[str, tuple[dict[str, Any], str, int]] = {
    "splunk": ({"token": "env:RW_SPLUNK_TOKEN"}, "/services/collector/event", 200),
    "sentinel": (
        {
            "token": "env:RW_SENTINEL_TOKEN",
            "dcr_immutable_id": "dcr-00112233445566778899aabbccddeeff",
            "stream_name": "Custom-Ringward_CL",
        },
        "/dataCollectionRules/dcr-00112233445566778899aabbccddeeff/streams/Custom-Ringward_CL",
        204,
    ),
    "datadog": ({"api_key": "env:RW_DD_API_KEY"}, "/api/v2/logs", 202),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_gzip_bodies_decode_to_the_uncompressed_batch(
    kind: str, httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    extra, path, status = CASES[kind]
    received: list[Request] = []

    def answer(request: Request) -> Response:
        received.append(request)
        body = '{"text":"Success","code":0}' if kind == "splunk" else ""
        return Response(body, status=status, content_type="application/json")

    httpserver.expect_request(path, method="POST").respond_with_handler(answer)
    url = httpserver.url_for(path if kind != "sentinel" else "/")  # sentinel: the DCE base
    provider = {"name": f"{kind}-gz", "provider": kind, "url": url, "compression": "gzip", **extra}
    config = config_of(provider, max_attempts=1)
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors, errors
    events = [make_event(f"evt-gz-{n}") for n in range(3)]
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(1))
    results = engine.deliver(events, dests).all_results()
    assert {r.status for r in results} <= {DeliveryStatus.DELIVERED, DeliveryStatus.QUEUED}

    (request,) = received
    raw = request.get_data()
    assert request.headers["Content-Encoding"] == "gzip"
    plain = gzip.decompress(raw)
    impl = provider_for(ProviderKind(kind))
    (dest,) = dests
    assert plain == impl.batch_body([impl.item_bytes(e, dest) for e in events])  # exactly the batch
    assert len(raw) < len(plain)
    summary = results[0].request
    assert summary is not None and summary.body_bytes == len(raw)
    assert summary.body_sha256 == hashlib.sha256(raw).hexdigest()
    ids = [json.loads(line)["event"]["event_id"] for line in plain.splitlines()] if kind == "splunk" else None
    assert ids is None or ids == [e.event_id for e in events]


def test_compression_is_refused_where_the_receiver_cannot_take_it() -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        validate_connector_config(
            {
                "providers": [
                    {"name": "w", "provider": "webhook", "url": "https://h.example", "signing_secret": "env:S",
                     "compression": "gzip"},
                    {"name": "s", "provider": "splunk", "url": "https://s.example", "token": "env:T",
                     "compression": "br"},
                ]
            },
            source="connectors.yaml",
        )
    problems = caught.value.problems
    assert "providers[0].compression: only splunk, sentinel and datadog destinations take it" in problems
    assert any(p.startswith("providers[1].compression:") and "gzip" in p for p in problems)
