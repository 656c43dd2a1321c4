"""Delivery policy: the one outcome classifier, backoff with jitter and ``Retry-After``, budgets.

The rules (delivery-escalation-anchors §0.6, §4.9; fixing cavra-spec §11.15):

1. 2xx is success; 202 is recorded as ``queued`` (the receiver accepted it for later processing).
2. 408, 429 and 5xx are retried with exponential backoff plus jitter; a ``Retry-After`` header is a
   floor on the wait. Transport failures (timeout, refused, reset) are retried the same way.
3. 413 splits a batch in halves when the provider takes batches and the batch has more than one
   event; a single event that is too large is final.
4. 410 disables the destination (Standard Webhooks; Slack ``channel_is_archived``).
5. Every other status (other 4xx, 3xx: redirects are never followed) is final and not retried.
6. A delivery stops when its time budget would be exceeded by the next wait; what is left is a
   retryable failure for the scheduled redelivery.

Nothing here sleeps or reads the clock: ``now`` and random draws are parameters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum


class Outcome(StrEnum):
    """What one attempt (or a whole delivery) came to."""

    DELIVERED = "delivered"  # 2xx
    QUEUED = "queued"  # 202: accepted for asynchronous processing
    EXISTS = "exists"  # search-before-create found the record made by an earlier send
    RETRY = "retry"  # 408 / 429 / 5xx / transport failure: try again later
    SPLIT = "split"  # 413 on a batch: halve and resend
    TOO_LARGE = "too-large"  # 413 on a single event: final
    DISABLED = "disabled"  # 410: destination gone, stop sending to it
    REJECTED = "rejected"  # other 4xx / 3xx: final
    BUDGET_EXHAUSTED = "budget-exhausted"  # stopped before the next retry: out of time


#: outcomes that mean the receiver has the event
SUCCESS_OUTCOMES = frozenset({Outcome.DELIVERED, Outcome.QUEUED, Outcome.EXISTS})
#: outcomes a later redelivery may fix
RETRYABLE_OUTCOMES = frozenset({Outcome.RETRY, Outcome.BUDGET_EXHAUSTED})

RETRYABLE_STATUS = frozenset({408, 429})

#: never wait longer than this for one Retry-After (a hostile or broken server could say a year)
MAX_RETRY_AFTER_SECONDS = 3600.0


def classify_status(status: int, *, batch_size: int = 1, splittable: bool = False) -> Outcome:
    """Classify one HTTP response status.

    Args:
        status: the HTTP status code.
        batch_size: how many events the request carried.
        splittable: whether the provider takes batches (413 can then be split).
    """
    if status == 202:
        return Outcome.QUEUED
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in RETRYABLE_STATUS or 500 <= status < 600:
        return Outcome.RETRY
    if status == 413:
        return Outcome.SPLIT if splittable and batch_size > 1 else Outcome.TOO_LARGE
    if status == 410:
        return Outcome.DISABLED
    return Outcome.REJECTED


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), capped.

    Unparseable values are ignored (``None``); dates in the past mean 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    else:
        if seconds >= 0 and seconds == seconds:  # not NaN
            return min(seconds, MAX_RETRY_AFTER_SECONDS)
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Limits for one destination. Every field has a default a SOC would accept."""

    #: per-request timeout (connect, read, write, pool) in seconds
    timeout_seconds: float = 10.0
    #: total time one delivery may take in one run, waits included
    budget_seconds: float = 60.0
    #: attempts in one run (first send included)
    max_attempts: int = 5
    #: first backoff delay; doubles each attempt
    backoff_base_seconds: float = 1.0
    #: cap on one backoff delay (Retry-After may exceed it, up to the budget)
    backoff_cap_seconds: float = 30.0
    #: jitter fraction: the delay is drawn from [d * (1 - jitter), d]
    jitter: float = 0.5
    #: requests in flight to this destination at once
    max_in_flight: int = 8
    #: how long after the first attempt the scheduled redelivery keeps trying a failed delivery
    redeliver_window_seconds: float = 86400.0


def backoff_delay(
    attempt: int,
    *,
    policy: DeliveryPolicy,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

    Exponential ``base * 2**(attempt-1)`` capped at ``backoff_cap_seconds``, scaled by a jitter draw
    in ``[1 - jitter, 1]``; a ``Retry-After`` value is a floor.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    raw = min(policy.backoff_cap_seconds, policy.backoff_base_seconds * (2 ** (attempt - 1)))
    jitter = min(max(policy.jitter, 0.0), 1.0)
    delay: float = raw * (1.0 - jitter * rng.random())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def next_step(
    *,
    outcome: Outcome,
    attempt: int,
    elapsed: float,
    policy: DeliveryPolicy,
    delay: float,
) -> bool:
    """Whether to try again after an attempt that ended in ``outcome``.

    Args:
        outcome: the attempt's outcome.
        attempt: attempts made so far (from 1).
        elapsed: seconds since the delivery started.
        policy: the destination's limits.
        delay: the wait before the next attempt (from :func:`backoff_delay`).
    """
    if outcome is not Outcome.RETRY:
        return False
    if attempt >= policy.max_attempts:
        return False
    return elapsed + delay < policy.budget_seconds
