"""API9: bounded reads (token lookups, a search page with a budgeted count, one record) run on the
event loop; exact counts and deep offsets go to the thread pool, so a slow one never holds up the
other requests of the same server process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from ringward.api.app import INLINE_MAX_OFFSET, bounded_read, create_app
from ringward.core.common.roles import Role
from ringward.core.evidence.query import EvidenceQuery
from ringward.store import Store
from tests.api.conftest import T0


@pytest.mark.parametrize(
    "query, inline",
    [
        (EvidenceQuery(), True),
        (EvidenceQuery(with_total=False), True),
        (EvidenceQuery(total_limit=None), False),  # total=exact
        (EvidenceQuery(with_total=False, total_limit=None), True),  # total=none: nothing to count
        (EvidenceQuery(offset=INLINE_MAX_OFFSET), True),
        (EvidenceQuery(offset=INLINE_MAX_OFFSET + 1), False),
    ],
)
def test_which_searches_run_on_the_event_loop(query: EvidenceQuery, inline: bool) -> None:
    assert bounded_read(query) is inline


def test_a_slow_exact_search_does_not_hold_up_other_requests(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _, secret = store.tokens.create(name="viewer", role=Role.VIEWER, created_by="t", now=T0)
    loop_thread: list[int] = []
    where: dict[str, int] = {}
    original = store.search_evidence_json

    def slow_search(query: EvidenceQuery) -> bytes:
        where["exact" if query.total_limit is None else "bounded"] = threading.get_ident()
        if query.total_limit is None:
            time.sleep(1.5)  # a count over a very large store
        return original(query)

    monkeypatch.setattr(store, "search_evidence_json", slow_search)
    app = create_app(store=store)
    headers = {"Authorization": f"Bearer {secret}"}

    async def scenario() -> tuple[list[Any], float]:
        loop_thread.append(threading.get_ident())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            slow = asyncio.create_task(client.get("/evidence?total=exact", headers=headers))
            await asyncio.sleep(0.2)  # the exact search is running
            t0 = time.perf_counter()
            fast = await asyncio.gather(client.get("/healthz"), client.get("/evidence", headers=headers))
            elapsed = time.perf_counter() - t0
            return [await slow, *fast], elapsed

    responses, elapsed = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert elapsed < 1.0, f"other requests waited {elapsed:.2f} s for the exact count"
    assert where["bounded"] == loop_thread[0]  # the bounded page ran on the event loop
    assert where["exact"] != loop_thread[0]  # the exact count in a worker thread
