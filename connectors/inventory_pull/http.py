"""One retrying HTTP client for inventory pulls.

What is retried is what retrying fixes: refused or dropped connections, timeouts, 408, 429 and 5xx,
with exponential backoff (jitter, capped) and ``Retry-After`` (seconds or an HTTP date) as a floor; a
``Retry-After`` longer than :attr:`RetryPolicy.retry_after_cap_seconds` ends the pull at once (the
next scheduled run picks it up). What retrying cannot fix is one line naming the source and the
call: 401 (the credentials were refused; one retry with a fresh token when a cached one may have
been revoked), 403 (a missing privilege), a redirect (the configured URL is not the API) and every
other 4xx -- a :class:`~ringward.core.errors.ConfigError` (exit 2). Retries exhausted is a
:class:`~ringward.core.errors.TransportError` (exit 1).

Answers are read up to :attr:`RetryPolicy.max_answer_bytes` (a larger page is refused: lower the page
size). Every message is scrubbed of every secret the run resolved or received, and bodies are quoted
only as short scrubbed excerpts. Each call is recorded (step, method, URL with its query -- a pull's
queries carry no credentials -- status, attempts) for the pull's evidence.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ringward.core.common.redaction import SecretScrubber
from ringward.core.errors import ConfigError, TransportError

USER_AGENT = "Ringward-InventoryPull/1"
#: largest answer read by default (a page of a few thousand hosts with their applications)
MAX_ANSWER_BYTES = 64 * 1024 * 1024

Headers = Callable[[], Mapping[str, str]]
#: given the Authorization value a refused request carried: True when a new token is worth one retry
Unauthorized = Callable[[str | None], bool]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits of one call (every call of a pull has its own attempts)."""

    max_attempts: int = 5
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    #: the longest ``Retry-After`` waited for; a longer one ends the pull (the next run retries)
    retry_after_cap_seconds: float = 300.0
    timeout_seconds: float = 30.0
    max_answer_bytes: int = MAX_ANSWER_BYTES

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed attempt ``attempt`` (1-based): base * 2^(n-1), capped, 50-100 % jitter."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * float(2 ** (attempt - 1)))
        return float(ceiling * (0.5 + rng.random() / 2))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return seconds if seconds >= 0 and seconds == seconds else None


@dataclass(frozen=True)
class Answer:
    """A successful (or explicitly allowed) answer."""

    status: int
    body: bytes
    headers: httpx.Headers
    #: the URL asked, query included, scrubbed
    url: str
    attempts: int


class _TooLarge(Exception):
    pass


@dataclass
class PullHttp:
    """The HTTP client of one pull step; ``label`` names the source in every message."""

    label: str
    scrubber: SecretScrubber
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    transport: httpx.BaseTransport | None = None
    #: every call made: {"step", "method", "url", "status", "attempts"}
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: every wait between attempts, in seconds
    waits: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = httpx.Client(transport=self.transport, follow_redirects=False,
                                   timeout=self.policy.timeout_seconds,
                                   headers={"user-agent": USER_AGENT, "accept": "application/json"})

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PullHttp:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.sleep(seconds)

    def shown(self, url: str, params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None) -> str:
        """The URL as records and messages show it (query kept, secrets scrubbed)."""
        full = str(httpx.URL(url, params=params)) if params else url
        return self.scrubber.scrub(full)

    def _once(self, method: str, url: str, params: Any, headers: Mapping[str, str],
              data: Mapping[str, str] | None) -> tuple[int, bytes, httpx.Headers]:
        cap = self.policy.max_answer_bytes
        with self.client.stream(method, url, params=params, headers=dict(headers), data=data) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    raise _TooLarge
            return response.status_code, b"".join(chunks), response.headers

    def send(self, method: str, url: str, *, step: str, headers: Headers,
             params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
             data: Mapping[str, str] | None = None, unauthorized: Unauthorized | None = None,
             hint: str = "check the source's credentials", allow: frozenset[int] = frozenset()) -> Answer:
        """Make one call with retries (see the module docstring); ``allow`` lists non-2xx statuses
        answered as data (a device that vanished between two calls: 404).

        Raises:
            ConfigError: 401, 403, a redirect, another 4xx, an answer over the size cap.
            TransportError: retries exhausted, or a ``Retry-After`` beyond the cap.
        """
        shown = self.shown(url, params)
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            sent = dict(headers())
            retry_after: float | None = None
            try:
                status, body, answer_headers = self._once(method, url, params, sent, data)
            except _TooLarge:
                self._record(step, method, shown, None, attempt)
                raise ConfigError(f"{self.label}: {step}: the answer is larger than {self.policy.max_answer_bytes} "
                                  f"bytes ({shown}); lower the page size") from None
            except httpx.TimeoutException as exc:
                failure = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                failure = f"connection failed ({type(exc).__name__})"
            else:
                if 200 <= status < 300 or status in allow:
                    self._record(step, method, shown, status, attempt)
                    return Answer(status, body, answer_headers, shown, attempt)
                if status == 401 and not refreshed and unauthorized is not None and unauthorized(
                        sent.get("authorization")):
                    refreshed = True  # a cached token revoked before its expiry: once more with a new one
                    attempt -= 1
                    continue
                if not (status in (408, 429) or 500 <= status <= 599):
                    self._record(step, method, shown, status, attempt)
                    raise ConfigError(self._refusal(step, shown, status, body, answer_headers, hint))
                failure = f"HTTP {status}"
                retry_after = retry_after_seconds(answer_headers.get("retry-after"), datetime.now(UTC))
            if attempt >= self.policy.max_attempts:
                self._record(step, method, shown, None, attempt)
                raise TransportError(f"{self.label}: {step}: {failure} after {attempt} attempts ({shown}); "
                                     "the next run retries")
            delay = self.policy.backoff(attempt, self.rng)
            if retry_after is not None:
                if retry_after > self.policy.retry_after_cap_seconds:
                    self._record(step, method, shown, None, attempt)
                    raise TransportError(f"{self.label}: {step}: {failure} asks to retry after {retry_after:g} s, "
                                         f"more than {self.policy.retry_after_cap_seconds:g} s ({shown}); "
                                         "the next run retries")
                delay = max(delay, retry_after)
            self.wait(delay)

    def _record(self, step: str, method: str, url: str, status: int | None, attempts: int) -> None:
        self.calls.append({"step": step, "method": method, "url": url, "status": status, "attempts": attempts})

    def _refusal(self, step: str, shown: str, status: int, body: bytes, headers: httpx.Headers, hint: str) -> str:
        quoted = self.scrubber.excerpt(" ".join(body.decode("utf-8", "replace").split()), limit=160)
        said = f": {quoted}" if quoted else ""
        if status == 401:
            return f"{self.label}: {step}: HTTP 401 Unauthorized ({shown}): the credentials were refused; {hint}"
        if status == 403:
            return (f"{self.label}: {step}: HTTP 403 Forbidden ({shown}): the API client lacks the privilege to read "
                    f"inventory{said}")
        if 300 <= status < 400:
            location = self.scrubber.scrub(headers.get("location", "?"))
            return (f"{self.label}: {step}: HTTP {status} redirect to {location} ({shown}); the source url must be "
                    "the API's base URL")
        return f"{self.label}: {step}: HTTP {status} ({shown}){said}"
