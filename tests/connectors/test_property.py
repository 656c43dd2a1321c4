"""Property: for any sequence of injected faults, a destination that ends up accepting the event
receives it exactly once (one completed 2xx exchange), across retries, runs and redeliveries, and
nothing is sent after it; and the evidence tells the truth about every attempt (one recorded
attempt per request the server saw, with the status it answered, in order).

An exchange whose answer never completes (timeout, dropped connection) is retried: the receiver may
have processed it, which is why every request carries the event id for de-duplication."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import DeliveryEngine, SecretResolver, resolve_destinations
from ringward.core.delivery.policy import Outcome
from ringward.core.delivery.results import DeliveryStatus
from ringward.store import Store
from ringward.store.delivery.delivery_log import DeliveryLog
from tests.connectors.conftest import FakeClock, config_of, make_event
from tests.connectors.fault_server import Fault, FaultServer

_COUNTER = itertools.count()

FAULTS = st.one_of(
    st.sampled_from([500, 502, 503, 504, 429, 408]).map(lambda s: Fault(status=s)),
    st.integers(min_value=0, max_value=5).map(lambda ra: Fault.of(503, "busy", Retry_After=str(ra))),
    st.sampled_from([400, 401, 403, 404, 410, 413]).map(lambda s: Fault(status=s)),
    st.sampled_from([200, 201, 202, 204]).map(lambda s: Fault(status=s)),
    st.just(Fault(status=200, truncate=True, body=b"0123456789")),
    st.just(Fault(status=500, delay=1.0)),  # a timeout (the client gives up after 0.5 s)
)


def expected(script: list[Fault], max_attempts: int) -> tuple[DeliveryStatus, int]:
    """The model: what one run must conclude from the script, and how many requests it makes."""
    for n, fault in enumerate(script[:max_attempts], start=1):
        if fault.delay or fault.truncate or fault.status in (408, 429) or fault.status >= 500:
            continue
        if 200 <= fault.status < 300:
            return (DeliveryStatus.QUEUED if fault.status == 202 else DeliveryStatus.DELIVERED), n
        return {410: DeliveryStatus.DISABLED, 413: DeliveryStatus.TOO_LARGE}.get(
            fault.status, DeliveryStatus.REJECTED
        ), n
    if len(script) < max_attempts:  # the server's default answer is 200
        return DeliveryStatus.DELIVERED, len(script) + 1
    return DeliveryStatus.FAILED, max_attempts


@settings(
    max_examples=45,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(FAULTS, max_size=6), max_attempts=st.integers(min_value=1, max_value=4))
def test_exactly_once_and_truthful_evidence(
    fault_server: FaultServer, sqlite_store: Store, secret_env: Any, script: list[Fault], max_attempts: int
) -> None:
    route = fault_server.route().script(*script)
    event = make_event(f"prop-{next(_COUNTER)}")
    config = config_of(
        {"name": f"dest-{event.event_id}", "provider": "linux", "url": route.url},
        max_attempts=max_attempts,
        timeout_seconds=0.5,  # generous: a loaded CI host must not turn a prompt 503 into a timeout
        backoff_base_seconds=0.2,
    )
    dests, _ = resolve_destinations(config, config.providers, resolver=SecretResolver())
    log = DeliveryLog(sqlite_store)
    clock = FakeClock()

    def one_run(run_id: str) -> Any:
        engine = DeliveryEngine(log, run_id=run_id, clock=clock, sleep=clock.sleep, rng=random.Random(0))
        (result,) = engine.deliver([event], dests).all_results()
        return result

    first = one_run("run-1")
    status, requests = expected(script, max_attempts)
    assert first.status is status
    assert len(route.requests) == requests

    # the evidence tells the truth about every attempt, in order
    assert len(first.attempts) == len(route.requests)
    for attempt, seen in zip(first.attempts, route.requests, strict=True):
        if seen.fault.delay or seen.fault.truncate:
            assert attempt.status_code is None and attempt.outcome is Outcome.RETRY and attempt.error
        else:
            assert attempt.status_code == seen.status
    assert [a.number for a in first.attempts] == list(range(1, len(first.attempts) + 1))
    entry = log.get(first.key)
    assert entry is not None and entry.attempt_count == len(route.requests)
    assert [a.model_dump(exclude={"number"}) for a in entry.attempts] == [
        a.model_dump(exclude={"number"}) for a in first.attempts
    ]

    # redeliveries and repeated runs continue until the destination accepts or refuses for good
    runs = 1
    while runs < 12:
        current = log.get(first.key)
        assert current is not None
        if current.success or current.state.value in ("rejected",):
            break
        if current.state.value == "disabled":
            log.enable_destination(first.destination, now=clock.now)
        clock.advance(3600)
        runs += 1
        one_run(f"run-{runs}")
    final = log.get(first.key)
    assert final is not None
    assert final.attempt_count == len(route.requests) == len(final.attempts)

    # exactly once: one accepted exchange if the delivery succeeded, none otherwise; nothing after it
    if final.success:
        assert len(route.successes) == 1
        assert route.requests[-1].accepted
        again = one_run("run-again")
        assert again.status is DeliveryStatus.ALREADY_DELIVERED and again.attempt_count == 0
        assert len(route.successes) == 1 and final.attempt_count == len(route.requests)
    else:
        assert route.successes == []
        assert final.state.value == "rejected"
