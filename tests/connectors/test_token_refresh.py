"""A cached client-credentials token refused with 401 (revoked or rotated before its stated expiry)
is dropped and the delivery is retried with a new token; a token refused right after it was issued
means wrong permissions, and that refusal stays final."""

from __future__ import annotations

import json
import random

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors import DeliveryEngine, MemoryLedger, SecretResolver, auth, resolve_destinations
from connectors.auth import TOKENS
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import DeliveryStatus, DestinationResult
from tests.connectors.conftest import FakeClock, config_of, make_event


class Tenant:
    """Token endpoint issuing token-1, token-2, ...; an API accepting only tokens not revoked."""

    def __init__(self, server: HTTPServer) -> None:
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.api_calls: list[str] = []
        server.expect_request("/oauth/token", method="POST").respond_with_handler(self.token)
        server.expect_request("/publish", method="POST").respond_with_handler(self.api)

    def token(self, request: Request) -> Response:
        self.issued.append(f"token-{len(self.issued) + 1}-0123456789abcdef")
        answer = {"access_token": self.issued[-1], "expires_in": 3600}
        return Response(json.dumps(answer), content_type="application/json")

    def api(self, request: Request) -> Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.api_calls.append(bearer)
        if bearer not in self.issued or bearer in self.revoked:
            return Response('{"error":"invalid_token"}', status=401, content_type="application/json")
        return Response("", status=202)


def deliver(server: HTTPServer, clock: FakeClock, event_id: str) -> DestinationResult:
    config = config_of(
        {
            "name": "fleet",
            "provider": "linux",
            "url": server.url_for("/publish"),
            "client_id": "ringward",
            "client_secret": "env:RW_LINUX_TOKEN",
            "token_url": server.url_for("/oauth/token"),
        },
        max_attempts=3,
        backoff_base_seconds=0.5,
    )
    dests, errors = resolve_destinations(config, config.providers, resolver=SecretResolver())
    assert not errors, errors
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(3))
    (result,) = engine.deliver([make_event(event_id)], dests).all_results()
    return result


def test_revoked_cached_token_is_replaced_and_the_delivery_retried(
    httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = Tenant(httpserver)
    assert deliver(httpserver, clock, "e1").status is DeliveryStatus.QUEUED
    tenant.revoked.add(tenant.issued[0])  # revoked by the identity provider long before it expires
    monkeypatch.setattr(auth, "FRESH_TOKEN_S", -1.0)  # the cached token counts as old
    result = deliver(httpserver, clock, "e2")
    assert result.status is DeliveryStatus.QUEUED
    assert [a.outcome for a in result.attempts] == [Outcome.RETRY, Outcome.QUEUED]
    assert result.attempts[0].status_code == 401
    assert len(tenant.issued) == 2 and tenant.api_calls[-2:] == tenant.issued
    assert result.error is None


def test_a_fresh_token_refused_is_a_final_permission_failure(
    httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    tenant = Tenant(httpserver)
    tenant.revoked.add("token-1-0123456789abcdef")  # refused from the start: no permission
    result = deliver(httpserver, clock, "e1")
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1
    assert result.attempts[0].status_code == 401 and len(tenant.issued) == 1
    assert not TOKENS.drop_refused("Bearer token-1-0123456789abcdef")  # already forgotten


def test_static_credentials_are_never_retried_on_401(
    httpserver: HTTPServer, secret_env: dict[str, str], clock: FakeClock
) -> None:
    httpserver.expect_request("/publish").respond_with_data("no", status=401)
    config = config_of(
        {"name": "fleet", "provider": "linux", "url": httpserver.url_for("/publish"), "token": "env:RW_LINUX_TOKEN"},
        max_attempts=3,
    )
    dests, _ = resolve_destinations(config, config.providers, resolver=SecretResolver())
    engine = DeliveryEngine(MemoryLedger(), run_id="t", clock=clock, sleep=clock.sleep, rng=random.Random(3))
    (result,) = engine.deliver([make_event("e1")], dests).all_results()
    assert result.status is DeliveryStatus.REJECTED and len(result.attempts) == 1


def test_every_request_that_carried_a_revoked_token_gets_the_same_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from connectors.auth import TokenCache, _Cached

    cache = TokenCache()
    key = ("https://login.example/token", "client", "scope")
    cache._tokens[key] = _Cached("tok-a-0123456789", time.monotonic() + 3000, time.monotonic() - 60)
    # two requests in flight with the same token are both refused: both may retry
    assert cache.drop_refused("Bearer tok-a-0123456789") is True
    assert cache.drop_refused("Bearer tok-a-0123456789") is True
    # the new token for the same client is refused again later: a permission problem, final
    cache._tokens[key] = _Cached("tok-b-0123456789", time.monotonic() + 3000, time.monotonic() - 60)
    assert cache.drop_refused("Bearer tok-b-0123456789") is False
    assert cache.drop_refused("Bearer tok-b-0123456789") is False
    # after the window another early revocation may be refreshed once more
    monkeypatch.setattr(auth, "REFRESH_WINDOW_S", 0.0)
    cache._tokens[key] = _Cached("tok-c-0123456789", time.monotonic() + 3000, time.monotonic() - 60)
    assert cache.drop_refused("Bearer tok-c-0123456789") is True
    assert cache.drop_refused("Basic dXNlcjpwYXNz") is False and cache.drop_refused(None) is False
