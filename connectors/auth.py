"""OAuth 2.0 client-credentials tokens (Microsoft Entra for Sentinel / Intune, Jamf Pro API clients).

Tokens are cached per (token URL, client id, scope) until 60 s before they expire, and every token
is registered with the destination's scrubber the moment it arrives.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx

from connectors.secrets import ResolvedDestination
from ringward.core.common.redaction import excerpt

_EXPIRY_MARGIN_S = 60.0


class TokenError(Exception):
    """The token endpoint refused or failed; ``status_code`` None for transport failures."""

    def __init__(self, message: str, *, status_code: int | None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


#: a token refused this soon after it was issued is a permission problem, not a stale token
FRESH_TOKEN_S = 5.0
#: after one 401-driven refresh for a client, further 401s within this window are final
REFRESH_WINDOW_S = 600.0
#: refused tokens remembered (each concurrent request that carried one gets the same verdict)
_DROPPED_KEPT = 256


@dataclass
class _Cached:
    token: str
    expires_at: float
    fetched_at: float


class TokenCache:
    """Process-wide cache of client-credentials tokens."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Cached] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._dropped: dict[str, bool] = {}
        self._refreshed_at: dict[tuple[str, str, str], float] = {}

    def clear(self) -> None:
        self._tokens.clear()
        self._locks.clear()
        self._dropped.clear()
        self._refreshed_at.clear()

    def drop_refused(self, authorization: str | None) -> bool:
        """Forget the cached token behind a refused ``Authorization: Bearer`` value.

        Returns True when a cached token older than FRESH_TOKEN_S was dropped: it may have been
        revoked or rotated before its stated expiry, so one more attempt with a new token can
        succeed. Every concurrent request that carried the same token gets the same answer. A
        fresh token that is refused, a second refusal for the same client within REFRESH_WINDOW_S,
        or a static credential mean wrong permissions: False, and the refusal stays final.
        """
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization.removeprefix("Bearer ")
        with self._guard:
            if token in self._dropped:  # another request that carried it was refused first
                return self._dropped[token]
            for key, cached in list(self._tokens.items()):
                if cached.token == token:
                    del self._tokens[key]
                    now = time.monotonic()
                    stale = (
                        now - cached.fetched_at > FRESH_TOKEN_S
                        and now - self._refreshed_at.get(key, -REFRESH_WINDOW_S - 1.0) > REFRESH_WINDOW_S
                    )
                    if stale:
                        self._refreshed_at[key] = now
                    self._dropped[token] = stale
                    while len(self._dropped) > _DROPPED_KEPT:
                        del self._dropped[next(iter(self._dropped))]
                    return stale
        return False

    def get(
        self,
        client: httpx.Client,
        dest: ResolvedDestination,
        *,
        token_url: str,
        scope: str | None,
        timeout: float,
    ) -> str:
        """A bearer token for ``dest`` (fetched when missing or about to expire).

        Raises:
            TokenError: the token endpoint failed or answered without ``access_token``.
        """
        client_id = dest.config.client_id or ""
        key = (token_url, client_id, scope or "")
        cached = self._tokens.get(key)
        if cached and cached.expires_at > time.monotonic():
            return cached.token
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached and cached.expires_at > time.monotonic():
                return cached.token
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": dest.secrets.get("client_secret", ""),
            }
            if scope:
                form["scope"] = scope
            try:
                response = client.post(
                    token_url,
                    data=form,
                    headers={"accept": "application/json"},
                    timeout=timeout,
                )
            except httpx.TimeoutException as exc:
                raise TokenError(f"token request timed out ({type(exc).__name__})", status_code=None) from exc
            except httpx.TransportError as exc:
                raise TokenError(f"token request failed ({type(exc).__name__})", status_code=None) from exc
            if response.status_code != 200:
                raise TokenError(
                    f"token request failed: HTTP {response.status_code} "
                    f"{excerpt(response.text, limit=200, scrubber=dest.scrubber)}",
                    status_code=response.status_code,
                    retry_after=response.headers.get("retry-after"),
                )
            try:
                payload = response.json()
                token = payload["access_token"]
                expires_in = float(payload.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError) as exc:
                raise TokenError("token response has no access_token", status_code=502) from exc
            if not isinstance(token, str) or not token:
                raise TokenError("token response has an empty access_token", status_code=502)
            dest.scrubber.add(token)
            fetched = time.monotonic()
            self._tokens[key] = _Cached(token, fetched + max(expires_in - _EXPIRY_MARGIN_S, 1.0), fetched)
            return token


#: shared by every engine in the process
TOKENS = TokenCache()


def entra_token_url(dest: ResolvedDestination) -> str:
    if dest.config.token_url:
        return dest.config.token_url
    return f"https://login.microsoftonline.com/{dest.config.tenant_id}/oauth2/v2.0/token"
