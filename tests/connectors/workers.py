"""Process bodies for the cross-process idempotency tests (importable by forkserver)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from multiprocessing.context import BaseContext
from typing import Any


def context() -> BaseContext:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(
        [
            "tests.connectors.workers",
            "ringward.operations.delivery.delivery_ops",
            "connectors.engine",
            "tests.connectors.conftest",
        ]
    )
    return ctx


def run_parallel(args_list: Sequence[tuple[Any, ...]], timeout: float = 240) -> list[Any]:
    ctx = context()
    queue = ctx.Queue()
    barrier = ctx.Barrier(len(args_list))
    procs = [ctx.Process(target=deliver_worker, args=(queue, barrier, *args)) for args in args_list]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=timeout)
        assert proc.exitcode == 0, f"worker exited with {proc.exitcode}"
    return results


def deliver_worker(queue: Any, barrier: Any, db_url: str, url: str, event_ids: list[str], tag: int) -> None:
    """Deliver the same events as every sibling process, to the same destination, at the same time."""
    try:
        from ringward.operations.delivery.delivery_ops import deliver_events
        from ringward.store import open_store
        from tests.connectors.conftest import config_of, make_event

        config = config_of({"name": "shared", "provider": "linux", "url": url}, max_in_flight=4)
        events = [make_event(e) for e in event_ids]
        with open_store(db_url) as store:
            barrier.wait()
            runs = deliver_events(events, config, store=store, run_id=f"proc-{tag}")
        queue.put(("ok", {r.event.event_id: r.results[0].status.value for r in runs}))
    except Exception as exc:  # report, never hang the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


#: delivery policy of the kill tests' destination: lease = 60 + 2 x (budget 10 + timeout 5) = 90 s
KILL_DEFAULTS: dict[str, Any] = {
    "timeout_seconds": 5.0,
    "budget_seconds": 10.0,
    "backoff_base_seconds": 0.01,
    "max_in_flight": 4,
}


def kill_point_worker(db_url: str, url: str, event_ids: list[str], point: str, reached: Any) -> None:
    """Deliver ``event_ids`` to a linux destination at ``url``; stop at ``point`` of every request
    (``before-request``, ``after-accepted``; ``after-recorded``: once the run has finished) and set
    ``reached``, so the parent can SIGKILL the process there."""
    import time

    import httpx

    from ringward.operations.delivery.delivery_ops import DeliveryHooks, deliver_events
    from ringward.store import open_store
    from tests.connectors.conftest import config_of, make_event

    class Pausing(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if point == "before-request":
                reached.set()
                time.sleep(600)
            response = super().handle_request(request)
            if point == "after-accepted":
                reached.set()
                time.sleep(600)
            return response

    config = config_of({"name": "fleet", "provider": "linux", "url": url}, **KILL_DEFAULTS)
    with open_store(db_url) as store:
        deliver_events(
            [make_event(i) for i in event_ids],
            config,
            store=store,
            run_id="doomed",
            hooks=DeliveryHooks(transport=Pausing()),
        )
    reached.set()
    time.sleep(600)
