"""The delivery engine: concurrent, budgeted, idempotent delivery of events to destinations.

How one run goes:

1. Per destination (all destinations concurrently, each with its own worker threads and its own
   connection pool): drop events its routing filter rejects, then claim every
   (event, provider, destination) key in the ledger. Keys already delivered, held by another run,
   or whose destination is disabled are reported and not sent.
2. Claimed events are sent one per request, or in batches for providers that take batches, with
   at most ``max_in_flight`` requests in flight per destination, so a slow or failing destination
   never holds up another.
3. Each attempt has a deadline covering the whole exchange (a slow body is a timeout); the
   classifier in ``ringward.core.delivery.policy`` decides success, retry (exponential backoff with
   jitter, ``Retry-After`` as a floor, within the delivery's time budget), split (413 on a batch),
   disable (410) or final failure.
4. Outcomes are written to the ledger as they happen (batched every few milliseconds by a flusher
   thread), so a finished destination is recorded even while another is still retrying.

Threads with synchronous httpx clients, not asyncio: on the 2-core machines this runs on, a
synchronous httpx request costs about half the CPU of an asynchronous one (measured in
``docs/benchmarks.md``), and every blocking step (claims, flushes) stays simple.

The clock, the sleep function and the random source are injectable so tests never sleep for real.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from connectors.auth import TOKENS, TokenError
from connectors.interface import (
    RESPONSE_CAP_BYTES,
    DeadlineExceeded,
    PreparedRequest,
    Provider,
    Publication,
    Reply,
    TimeLeft,
    exchange,
)
from connectors.ledger import Completion, DeliveryLedger
from connectors.providers.webhook import PrivateQueue
from connectors.registry import provider_for
from connectors.secrets import ResolvedDestination
from ringward.core.common.redaction import SecretScrubber, redact_headers, redact_url
from ringward.core.delivery.config import ProviderKind
from ringward.core.delivery.event import ConnectorEvent
from ringward.core.delivery.policy import (
    SUCCESS_OUTCOMES,
    Outcome,
    backoff_delay,
    classify_status,
    next_step,
    parse_retry_after,
)
from ringward.core.delivery.results import (
    AttemptRecord,
    ClaimStatus,
    DeliveryKey,
    DeliveryStatus,
    DestinationResult,
    RequestSummary,
    status_for_outcome,
)

Clock = Callable[[], datetime]
#: characters of a response body quoted in an error, and of a provider's reading of one
_BODY_LIMIT = 200
_DETAIL_LIMIT = 400
_REASON_LIMIT = 80
Sleep = Callable[[float], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EngineReport:
    """Everything one run did: results per event id, and destinations filtered out per event."""

    results: dict[str, list[DestinationResult]] = field(default_factory=dict)
    filtered: dict[str, list[str]] = field(default_factory=dict)

    def all_results(self) -> list[DestinationResult]:
        return [r for results in self.results.values() for r in results]

    @property
    def success(self) -> bool:
        everything = self.all_results()
        return bool(everything) and all(r.success for r in everything)


@dataclass
class _Try:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after: str | None = None
    external_ref: str | None = None
    request: PreparedRequest | RequestSummary | None = None
    #: redacted calls of a multi-call publication
    calls: tuple[str, ...] | None = None


@dataclass
class _DestinationRun:
    dest: ResolvedDestination
    provider: Provider
    client: httpx.Client
    pool: ThreadPoolExecutor
    disabled_reason: str | None = None
    results: list[DestinationResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: batch records serialised once per run (batching providers)
    items: dict[str, bytes] = field(default_factory=dict)


class DeliveryEngine:
    """Delivers events; one instance per run (its ``run_id`` owns the claims it makes)."""

    def __init__(
        self,
        ledger: DeliveryLedger,
        *,
        run_id: str,
        clock: Clock = utc_now,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        flush_interval: float = 0.05,
        flush_size: int = 500,
    ) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._rng_lock = threading.Lock()
        self.transport = transport
        self.flush_interval = flush_interval
        self.flush_size = flush_size
        self._pending: list[Completion] = []
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()

    # -- public ------------------------------------------------------------------------------------

    def deliver(
        self,
        events: Sequence[ConnectorEvent],
        destinations: Sequence[ResolvedDestination],
        *,
        config_errors: Mapping[str, tuple[ProviderKind, str]] | None = None,
    ) -> EngineReport:
        """Deliver ``events`` to ``destinations``; see the module docstring.

        Args:
            events: events to deliver (distinct ids).
            destinations: resolved destinations.
            config_errors: destinations that could not be resolved: name -> (kind, error); their
                keys are recorded as ``config-error`` without sending.
        """
        report = EngineReport()
        for event in events:
            report.results[event.event_id] = []
            report.filtered[event.event_id] = []
        if not events:
            return report
        self.ledger.record_events(events, now=self.clock())
        stop = threading.Event()
        flusher = threading.Thread(target=self._flush_loop, args=(stop,), name="ringward-flush", daemon=True)
        flusher.start()
        outcomes: list[list[DestinationResult]] = []
        try:
            with contextlib.ExitStack() as stack:
                runs = []
                for dest in destinations:
                    connections = dest.policy.max_in_flight
                    # one connection pool and one set of workers per destination: a slow
                    # destination cannot starve another of connections or threads
                    client = stack.enter_context(self._new_client(dest, connections + 2))
                    pool = stack.enter_context(
                        ThreadPoolExecutor(
                            max_workers=connections, thread_name_prefix=f"ringward-{dest.name}"
                        )
                    )
                    provider = provider_for(dest.kind, dest.config.publish_mode)
                    runs.append(_DestinationRun(dest, provider, client, pool))
                with ThreadPoolExecutor(max_workers=max(1, len(runs) + len(config_errors or {}))) as leads:
                    jobs: list[Future[list[DestinationResult]]] = [
                        leads.submit(self._deliver_destination, run, events) for run in runs
                    ]
                    for name, (kind, error) in (config_errors or {}).items():
                        jobs.append(leads.submit(self._record_config_error, name, kind, error, events))
                    outcomes = [job.result() for job in jobs]
        finally:
            stop.set()
            self._wake.set()
            flusher.join()
            self._flush()
        for results in outcomes:
            for result in results:
                report.results[result.event_id].append(result)
        for event in events:
            accepted = {r.destination for r in report.results[event.event_id]}
            report.filtered[event.event_id] = sorted(
                d.name
                for d in destinations
                if d.name not in accepted
                and not (
                    d.config.accepts(event) and provider_for(d.kind, d.config.publish_mode).accepts(event, d)
                )
            )
            report.results[event.event_id].sort(key=lambda r: (r.provider, r.destination))
        return report

    def _new_client(self, dest: ResolvedDestination, connections: int) -> httpx.Client:
        return httpx.Client(
            transport=self.transport,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=httpx.Timeout(dest.policy.timeout_seconds),
        )

    # -- ledger flushing ---------------------------------------------------------------------------

    def _flush_loop(self, stop: threading.Event) -> None:
        # only this thread writes completions while sending goes on: workers never wait for the database
        while not stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        with self._flush_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            if batch:
                self.ledger.complete(batch, owner=self.run_id, now=self.clock())

    def _queue(self, completion: Completion) -> None:
        with self._pending_lock:
            self._pending.append(completion)
            full = len(self._pending) >= self.flush_size
        if full:
            self._wake.set()

    # -- per destination ---------------------------------------------------------------------------

    def _record_config_error(
        self, name: str, kind: ProviderKind, error: str, events: Sequence[ConnectorEvent]
    ) -> list[DestinationResult]:
        keys = [DeliveryKey(e.event_id, kind.value, name) for e in events]
        now = self.clock()
        claims = self.ledger.claim(
            keys,
            event_types={e.event_id: e.event_type for e in events},
            owner=self.run_id,
            now=now,
            lease_seconds=60,
        )
        results = []
        for key in keys:
            status = _skip_status(claims[key]) or DeliveryStatus.CONFIG_ERROR
            result = DestinationResult(
                event_id=key.event_id,
                provider=key.provider,
                destination=name,
                status=status,
                started_at=now,
                completed_at=now,
                error=error if status is DeliveryStatus.CONFIG_ERROR else None,
            )
            if claims[key] is ClaimStatus.CLAIMED:
                self._queue(Completion(result))
            results.append(result)
        return results

    def _deliver_destination(
        self, run: _DestinationRun, events: Sequence[ConnectorEvent]
    ) -> list[DestinationResult]:
        dest, provider = run.dest, run.provider
        accepted = [e for e in events if dest.config.accepts(e) and provider.accepts(e, dest)]
        if not accepted:
            return []
        keys = {e.event_id: DeliveryKey(e.event_id, dest.kind.value, dest.name) for e in accepted}
        max_events, max_bytes = provider.batch_limits(dest)
        units = math.ceil(len(accepted) / max_events)
        waves = math.ceil(units / dest.policy.max_in_flight) + 1
        lease = min(waves * (dest.policy.budget_seconds + dest.policy.timeout_seconds) + 60, 6 * 3600)
        now = self.clock()
        claims = self.ledger.claim(
            list(keys.values()),
            event_types={e.event_id: e.event_type for e in accepted},
            owner=self.run_id,
            now=now,
            lease_seconds=lease,
        )
        claimed: list[ConnectorEvent] = []
        for event in accepted:
            skip = _skip_status(claims[keys[event.event_id]])
            if skip is None:
                claimed.append(event)
                continue
            run.results.append(
                DestinationResult(
                    event_id=event.event_id,
                    provider=dest.kind.value,
                    destination=dest.name,
                    status=skip,
                    started_at=now,
                    completed_at=now,
                    error=_skip_error(skip, dest.name),
                )
            )
        history: dict[str, list[AttemptRecord]] = {e.event_id: [] for e in claimed}
        if provider.batching:
            run.items = {e.event_id: provider.item_bytes(e, dest) for e in claimed}
            batches = _batches(claimed, run.items, max_events=max_events, max_bytes=max_bytes)
        else:
            batches = [[e] for e in claimed]
        futures = [run.pool.submit(self._run_unit, run, batch, history, None, 0) for batch in batches]
        for future in futures:
            future.result()
        return run.results

    # -- one unit (an event, or a batch of events) -------------------------------------------------

    def _run_unit(
        self,
        run: _DestinationRun,
        events: list[ConnectorEvent],
        history: dict[str, list[AttemptRecord]],
        start: datetime | None,
        attempts: int,
    ) -> None:
        policy = run.dest.policy
        request: PreparedRequest | RequestSummary | None = None
        last = _Try(Outcome.BUDGET_EXHAUSTED, error="time budget exhausted before the first attempt")
        next_after: datetime | None = None
        while True:
            # the destination may have been disabled (410) by another unit meanwhile
            if run.disabled_reason is not None:
                disabled = _Try(
                    Outcome.DISABLED, error=f"destination disabled during this run ({run.disabled_reason})"
                )
                self._finish(
                    run, events, history, disabled, request, None, status=DeliveryStatus.DESTINATION_DISABLED
                )
                return
            now = self.clock()
            start = start or now
            remaining = policy.budget_seconds - (now - start).total_seconds()
            if remaining <= 0:
                self._finish(run, events, history, last, request, now, budget_exhausted=True)
                return
            started = self.clock()
            try:
                last = self._attempt(
                    run, events, timeout=min(policy.timeout_seconds, remaining), budget=remaining, now=started
                )
            except Exception as exc:  # a provider bug ends this delivery, never the whole run
                last = _Try(
                    Outcome.RETRY if isinstance(exc, OSError) else Outcome.REJECTED,
                    error=run.dest.scrubber.scrub(
                        f"unexpected error in the {run.dest.kind.value} provider: "
                        f"{type(exc).__name__}: {_short(exc, run.dest.scrubber)}"
                    ),
                )
            completed = self.clock()
            attempts += 1
            request = last.request or request
            retry_after = parse_retry_after(last.retry_after, now=completed)
            wait: float | None = None
            if last.outcome is Outcome.RETRY:
                with self._rng_lock:
                    delay = backoff_delay(attempts, policy=policy, rng=self.rng, retry_after=retry_after)
                elapsed = (completed - start).total_seconds()
                if next_step(
                    outcome=last.outcome, attempt=attempts, elapsed=elapsed, policy=policy, delay=delay
                ):
                    wait = delay
                else:
                    next_after = completed + timedelta(seconds=delay)
            for event in events:
                trail = history[event.event_id]
                trail.append(
                    AttemptRecord.model_construct(  # built from trusted values: skip validation
                        number=len(trail) + 1,
                        started_at=started,
                        completed_at=completed,
                        outcome=last.outcome,
                        status_code=last.status_code,
                        error=last.error,
                        retry_after_seconds=retry_after,
                        wait_seconds=wait,
                        batch_size=len(events),
                        calls=last.calls,
                    )
                )
            if last.outcome is Outcome.SPLIT:
                middle = len(events) // 2
                self._run_unit(run, events[:middle], history, start, attempts)
                self._run_unit(run, events[middle:], history, start, attempts)
                return
            if last.outcome is Outcome.DISABLED:
                with run.lock:
                    first = run.disabled_reason is None
                    if first:
                        run.disabled_reason = f"HTTP 410 Gone at {completed.isoformat()}"
                if first:
                    self.ledger.disable_destination(
                        run.dest.name,
                        provider=run.dest.kind.value,
                        reason=run.disabled_reason or "",
                        now=completed,
                    )
            if wait is not None:
                self.sleep(wait)
                continue
            self._finish(run, events, history, last, request, next_after)
            return

    def _finish(
        self,
        run: _DestinationRun,
        events: list[ConnectorEvent],
        history: dict[str, list[AttemptRecord]],
        last: _Try,
        request: PreparedRequest | RequestSummary | None,
        next_after: datetime | None,
        *,
        status: DeliveryStatus | None = None,
        budget_exhausted: bool = False,
    ) -> None:
        dest = run.dest
        now = self.clock()
        summary = self._summary(request, dest) if isinstance(request, PreparedRequest) else request
        final = status or status_for_outcome(last.outcome)
        if budget_exhausted and final not in (DeliveryStatus.REJECTED, DeliveryStatus.DISABLED):
            final = DeliveryStatus.FAILED
        for event in events:
            attempts = tuple(history[event.event_id])
            error: str | None = None
            if final is DeliveryStatus.FAILED:
                why = (
                    f"time budget of {dest.policy.budget_seconds:g}s"
                    if budget_exhausted or len(attempts) < dest.policy.max_attempts
                    else f"{dest.policy.max_attempts} attempts"
                )
                error = f"gave up after {len(attempts)} attempt(s) ({why}): {last.error or 'no response'}"
            elif final not in (DeliveryStatus.DELIVERED, DeliveryStatus.QUEUED, DeliveryStatus.EXISTS):
                error = last.error
            result = DestinationResult.model_construct(  # built from trusted values: skip validation
                event_id=event.event_id,
                provider=dest.kind.value,
                destination=dest.name,
                status=final,
                status_code=attempts[-1].status_code if attempts else None,
                attempts=attempts,
                started_at=attempts[0].started_at if attempts else now,
                completed_at=attempts[-1].completed_at if attempts else now,
                error=dest.scrubber.scrub(error) if error else None,
                request=summary,
                external_ref=dest.scrubber.scrub(last.external_ref)
                if last.external_ref and last.outcome in SUCCESS_OUTCOMES
                else None,
            )
            with run.lock:
                run.results.append(result)
            self._queue(
                Completion(
                    result,
                    next_attempt_after=next_after if final is DeliveryStatus.FAILED else None,
                    redeliver_window_seconds=dest.policy.redeliver_window_seconds,
                )
            )

    def _attempt(
        self, run: _DestinationRun, events: list[ConnectorEvent], *, timeout: float, budget: float, now: datetime
    ) -> _Try:
        dest, provider, client = run.dest, run.provider, run.client
        if isinstance(provider, PrivateQueue) and provider.is_local(dest):
            try:
                reply = provider.write_local(events[0], dest)
            except OSError as exc:
                return _Try(Outcome.RETRY, error=dest.scrubber.scrub(f"cannot write queue file: {exc}"))
            return _Try(
                reply.outcome or Outcome.DELIVERED,
                external_ref=reply.external_ref,
                request=RequestSummary(method="WRITE", url=dest.redacted_url),
            )
        left = _time_left(time.monotonic() + timeout)

        request: PreparedRequest | None = None
        try:
            auth = provider.auth_headers(dest, client, left())
            if len(events) == 1:
                # a conversation (upload included) is bounded by the delivery's remaining budget;
                # each call in it by timeout_seconds
                call_left = _time_left(time.monotonic() + budget, per_call=dest.policy.timeout_seconds)
                try:
                    publication = provider.publish(events[0], dest, client, auth, left=call_left, now=now)
                except (DeadlineExceeded, httpx.TransportError, TokenError):
                    raise
                except Exception as exc:  # a publisher bug must not abandon the run's claims
                    return _Try(
                        Outcome.RETRY if isinstance(exc, OSError) else Outcome.REJECTED,
                        error=dest.scrubber.scrub(
                            f"unexpected error in the {dest.kind.value} publisher: "
                            f"{type(exc).__name__}: {_short(exc, dest.scrubber)}"
                        ),
                    )
                if publication is not None:
                    return self._publication_try(publication, dest, auth)
                lookup = provider.find_existing(events[0], dest, client, auth, left())
                if lookup is not None and lookup.external_ref:
                    return _Try(Outcome.EXISTS, status_code=200, external_ref=lookup.external_ref)
                if lookup is not None and lookup.status_code is not None:
                    outcome = classify_status(lookup.status_code)
                    if outcome not in SUCCESS_OUTCOMES:
                        return _Try(
                            outcome,
                            status_code=lookup.status_code,
                            error=dest.scrubber.excerpt(lookup.error or "", limit=_DETAIL_LIMIT),
                            retry_after=lookup.retry_after,
                        )
            body = provider.batch_body([run.items[e.event_id] for e in events]) if run.items else None
            prepared = provider.prepare(events, dest, now=now, auth=auth, body=body)
            request = prepared
            answer = exchange(client, prepared, left, cap=RESPONSE_CAP_BYTES)
        except TokenError as exc:
            outcome = Outcome.RETRY if exc.status_code is None else classify_status(exc.status_code)
            return _Try(
                outcome,
                status_code=exc.status_code,
                error=dest.scrubber.excerpt(str(exc), limit=_DETAIL_LIMIT),
                retry_after=exc.retry_after,
                request=request,
            )
        except (DeadlineExceeded, httpx.TimeoutException) as exc:
            kind = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else "deadline"
            return _Try(Outcome.RETRY, error=f"timeout after {timeout:.3g}s ({kind})", request=request)
        except httpx.ConnectError as exc:
            return _Try(
                Outcome.RETRY,
                error=dest.scrubber.scrub(f"connection failed: {_short(exc, dest.scrubber)}"),
                request=request,
            )
        except httpx.TransportError as exc:
            return _Try(
                Outcome.RETRY,
                error=dest.scrubber.scrub(f"{type(exc).__name__}: {_short(exc, dest.scrubber)}"),
                request=request,
            )
        status, text = answer.status_code, answer.text
        reply = provider.interpret(status, text)
        outcome = reply.outcome or classify_status(
            status, batch_size=len(events), splittable=provider.batching
        )
        if status == 401 and TOKENS.drop_refused(auth.get("authorization")):
            outcome = Outcome.RETRY  # a cached token revoked before its expiry: the next attempt gets a new one
        error: str | None = None
        if outcome in SUCCESS_OUTCOMES:
            # a confirmation (Splunk indexer ack) waits longer than one request may take: each poll
            # has timeout_seconds, the whole wait the delivery's remaining budget
            confirm_left = _time_left(time.monotonic() + budget, per_call=dest.policy.timeout_seconds)
            try:
                confirmed = provider.confirm(dest, client, auth, reply, left=confirm_left, sleep=self.sleep)
            except (DeadlineExceeded, httpx.TransportError) as exc:
                confirmed = Reply(
                    outcome=Outcome.RETRY,
                    error=f"confirmation failed: {type(exc).__name__} "
                    f"{_short(exc, dest.scrubber) if str(exc) else ''}".rstrip(),
                )
            if confirmed is not None:
                if confirmed.outcome not in SUCCESS_OUTCOMES:
                    return _Try(
                        confirmed.outcome or Outcome.RETRY,
                        status_code=status,
                        error=dest.scrubber.excerpt(confirmed.error or "not confirmed", limit=_DETAIL_LIMIT),
                        request=request,
                    )
                outcome = confirmed.outcome or outcome
                reply = Reply(outcome, confirmed.external_ref or reply.external_ref)
        if outcome not in SUCCESS_OUTCOMES:
            error = _http_error(status, answer.reason, reply.error, text, dest.scrubber)
        return _Try(
            outcome,
            status_code=status,
            error=error,
            retry_after=answer.headers.get("retry-after"),
            external_ref=reply.external_ref,
            request=request,
        )

    @staticmethod
    def _publication_try(publication: Publication, dest: ResolvedDestination, auth: Mapping[str, str]) -> _Try:
        """A multi-call provider's result, classified like a single request's (never split)."""
        last = publication.last
        scrub = dest.scrubber.scrub
        calls = tuple(scrub(f"{step}: {verb} {url} -> {code}") for step, verb, url, code in publication.calls) or None
        if last is None:  # nothing was sent: the provider's own verdict and reason stand
            return _Try(
                publication.outcome or Outcome.REJECTED,
                error=dest.scrubber.scrub(f"{publication.step}: {publication.error or 'not sent'}"),
                calls=calls,
            )
        status = last.status_code
        outcome = publication.outcome or classify_status(status)
        if status == 401 and publication.outcome is None and TOKENS.drop_refused(auth.get("authorization")):
            outcome = Outcome.RETRY
        error: str | None = None
        if outcome not in SUCCESS_OUTCOMES:
            error = dest.scrubber.scrub(
                f"{publication.step}: {_http_error(status, last.reason, publication.error, last.text, dest.scrubber)}"
            )
        return _Try(
            outcome,
            status_code=status,
            error=error,
            retry_after=last.headers.get("retry-after"),
            external_ref=publication.external_ref,
            request=last.request,
            calls=calls,
        )

    @staticmethod
    def _summary(prepared: PreparedRequest, dest: ResolvedDestination) -> RequestSummary:
        headers = {k: dest.scrubber.scrub(v) for k, v in redact_headers(prepared.headers).items()}
        return RequestSummary(
            method=prepared.method,
            url=dest.scrubber.scrub(redact_url(prepared.url, whole_path_secret=dest.url_is_secret)),
            headers=dict(sorted(headers.items())),
            body_sha256=prepared.body_sha256,
            body_bytes=prepared.body_bytes,
        )


def _time_left(end: float, *, per_call: float = math.inf) -> TimeLeft:
    """Seconds the next request may take: up to ``per_call``, never past ``end`` (monotonic);
    raises :class:`DeadlineExceeded` once ``end`` has passed."""

    def left() -> float:
        remaining = min(per_call, end - time.monotonic())
        if remaining <= 0:
            raise DeadlineExceeded
        return remaining

    return left


def _http_error(status: int, reason: str, detail: str | None, text: str, scrubber: SecretScrubber) -> str:
    """One line for a refused request: status, reason, and the provider's reading or a body excerpt.

    Both the provider's reading (which may quote the whole answer) and the body are scrubbed whole
    before they are cut, so a secret echoed across the cut cannot survive as a fragment.
    """
    if 300 <= status < 400:
        detail = "redirect not followed"
    shown = scrubber.excerpt(detail, limit=_DETAIL_LIMIT) if detail else scrubber.excerpt(text, limit=_BODY_LIMIT)
    return f"HTTP {status} {scrubber.excerpt(reason, limit=_REASON_LIMIT)}: {shown}".rstrip(": ")


def _skip_status(claim: ClaimStatus) -> DeliveryStatus | None:
    return {
        ClaimStatus.CLAIMED: None,
        ClaimStatus.ALREADY_DELIVERED: DeliveryStatus.ALREADY_DELIVERED,
        ClaimStatus.IN_FLIGHT: DeliveryStatus.IN_FLIGHT,
        ClaimStatus.DESTINATION_DISABLED: DeliveryStatus.DESTINATION_DISABLED,
    }[claim]


def _skip_error(status: DeliveryStatus, destination: str) -> str | None:
    if status is DeliveryStatus.IN_FLIGHT:
        return "another run is delivering this event to this destination; nothing sent"
    if status is DeliveryStatus.DESTINATION_DISABLED:
        return (
            f"destination {destination} is disabled (HTTP 410 earlier); "
            "re-enable it with `ringward connectors enable`"
        )
    return None


def _short(exc: BaseException, scrubber: SecretScrubber) -> str:
    """An exception's message, scrubbed whole, then cut to one line (it may quote a URL or an answer)."""
    text = str(exc) or type(exc).__name__
    return scrubber.excerpt(text, limit=160)


def _batches(
    events: list[ConnectorEvent], items: Mapping[str, bytes], *, max_events: int, max_bytes: int
) -> list[list[ConnectorEvent]]:
    """Greedy batches within the provider's count and size limits (an oversized event goes alone)."""
    batches: list[list[ConnectorEvent]] = []
    current: list[ConnectorEvent] = []
    size = 0
    for event in events:
        item = len(items[event.event_id]) + 1
        if current and (len(current) >= max_events or size + item > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += item
    if current:
        batches.append(current)
    return batches
