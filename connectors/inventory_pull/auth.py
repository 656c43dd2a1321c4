"""Bearer tokens for inventory pulls.

- :class:`ClientCredentials`: OAuth 2.0 client credentials -- a Jamf Pro API client at
  ``<server>/api/oauth/token`` or Microsoft Entra at ``login.microsoftonline.com/<tenant>/oauth2/v2.0/token``
  for ``https://graph.microsoft.com/.default`` (``token_url`` overrides either) -- through the
  process-wide token cache the delivery connectors use (:data:`connectors.auth.TOKENS`).
- :class:`JamfBasicToken`: the Jamf Pro ``POST /api/v1/auth/token`` exchange of a user name and
  password (HTTP Basic) for a bearer token (``{"token", "expires"}``).
- :class:`StaticToken`: a fixed API token (Fleet API-only users): ``Authorization: Bearer <token>``.

A token endpoint refusing the credentials (400/401/403) is a one-line configuration error; network
errors, 429 and 5xx from it are retried like any call. Every token is registered with the run's
scrubber the moment it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from connectors.auth import FRESH_TOKEN_S, TOKENS, TokenError
from connectors.inventory_pull.http import PullHttp, retry_after_seconds
from connectors.providers._common import basic, bearer_or_authorization
from connectors.secrets import ResolvedDestination
from ringward.core.common.jsonio import loads_strict
from ringward.core.errors import ConfigError, MalformedDocumentError, TransportError


class Auth(Protocol):
    def headers(self) -> Mapping[str, str]:
        """The Authorization header for the next request (may fetch a token)."""

    def unauthorized(self, authorization: str | None) -> bool:
        """A request carrying ``authorization`` got 401: True when a new token is worth one retry."""


class StaticToken:
    def __init__(self, dest: ResolvedDestination) -> None:
        self._headers = bearer_or_authorization(dest, scheme="Bearer")

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def unauthorized(self, authorization: str | None) -> bool:
        return False


class ClientCredentials:
    def __init__(self, http: PullHttp, dest: ResolvedDestination, *, token_url: str, scope: str | None,
                 hint: str) -> None:
        self.http, self.dest, self.token_url, self.scope, self.hint = http, dest, token_url, scope, hint

    def headers(self) -> Mapping[str, str]:
        http = self.http
        shown = http.shown(self.token_url)
        attempt = 0
        while True:
            attempt += 1
            try:
                token = TOKENS.get(http.client, self.dest, token_url=self.token_url, scope=self.scope,
                                   timeout=http.policy.timeout_seconds)
            except TokenError as exc:
                message = http.scrubber.scrub(str(exc))
                status = exc.status_code
                if status is not None and status not in (408, 429) and not 500 <= status <= 599:
                    http.calls.append({"step": "token", "method": "POST", "url": shown, "status": status,
                                       "attempts": attempt})
                    raise ConfigError(
                        f"{http.label}: token request refused ({shown}): {message}; {self.hint}") from None
                if attempt >= http.policy.max_attempts:
                    http.calls.append({"step": "token", "method": "POST", "url": shown, "status": status,
                                       "attempts": attempt})
                    raise TransportError(f"{http.label}: token request failed after {attempt} attempts ({shown}): "
                                         f"{message}; the next run retries") from None
                delay = http.policy.backoff(attempt, http.rng)
                wait = retry_after_seconds(exc.retry_after, _now())
                if wait is not None:
                    if wait > http.policy.retry_after_cap_seconds:
                        raise TransportError(f"{http.label}: token request asks to retry after {wait:g} s "
                                             f"({shown}); the next run retries") from None
                    delay = max(delay, wait)
                http.wait(delay)
                continue
            return {"authorization": f"Bearer {token}"}

    def unauthorized(self, authorization: str | None) -> bool:
        return TOKENS.drop_refused(authorization)


class JamfBasicToken:
    """``POST <server>/api/v1/auth/token`` with HTTP Basic -> ``{"token": ..., "expires": ...}``."""

    def __init__(self, http: PullHttp, dest: ResolvedDestination, *, base_url: str) -> None:
        self.http, self.dest, self.url = http, dest, base_url + "/api/v1/auth/token"
        self._token: str | None = None
        self._fetched = 0.0

    def headers(self) -> Mapping[str, str]:
        if self._token is None:
            username = self.dest.config.username or ""
            credentials = basic(username, self.dest.secrets.get("password", ""))
            self.http.scrubber.add(credentials["authorization"].removeprefix("Basic "))
            answer = self.http.send("POST", self.url, step="auth token", headers=lambda: credentials,
                                    hint="check username and password")
            try:
                document = loads_strict(answer.body, source=f"{self.http.label}: auth token answer",
                                        max_bytes=64 * 1024)
            except MalformedDocumentError as exc:
                raise TransportError(self.http.scrubber.scrub(exc.message)) from None
            token = document.get("token") if isinstance(document, dict) else None
            if not isinstance(token, str) or not token:
                raise TransportError(f"{self.http.label}: auth token answer has no token ({answer.url})")
            self.http.scrubber.add(token)
            self._token, self._fetched = token, time.monotonic()
        return {"authorization": f"Bearer {self._token}"}

    def unauthorized(self, authorization: str | None) -> bool:
        stale = self._token is not None and time.monotonic() - self._fetched > FRESH_TOKEN_S
        self._token = None
        return stale


def _now() -> datetime:
    return datetime.now(UTC)
