"""Per-destination concurrency and rate limits are Prefect global concurrency limits: shared by every
flow run and worker, created from the connector configuration, enforced around each delivery."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ringward.core.delivery.config import DestinationConfig
from tests.connectors.conftest import make_event, write_config

pytestmark = pytest.mark.prefect


class _Slow:
    """A loopback receiver that takes ``delay`` seconds per request and records how many overlapped."""

    def __init__(self, delay: float) -> None:
        self.delay, self.active, self.peak, self.starts = delay, 0, 0, []  # type: ignore[var-annotated]
        self.lock = threading.Lock()


@pytest.fixture
def slow() -> Iterator[tuple[str, _Slow]]:
    state = _Slow(0.4)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.active += 1
                state.peak = max(state.peak, state.active)
                state.starts.append(time.monotonic())
            time.sleep(state.delay)
            with state.lock:
                state.active -= 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", state
    finally:
        server.shutdown()
        server.server_close()


def _deliver_concurrently(config: Path, tmp_path: Path, count: int) -> list[dict[str, Any]]:
    from flows.deliver_event import deliver_event_flow

    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def one(index: int) -> None:
        event_file = tmp_path / f"event-{index}.json"
        event_file.write_text(json.dumps(make_event(f"evt-limits-{index:04d}").to_document()))
        try:
            results.append(deliver_event_flow(config_path=str(config), event_path=str(event_file)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    return results


def test_a_concurrency_limit_of_one_serialises_deliveries_across_flow_runs(
    prefect_server: None, ringward_home: Path, tmp_path: Path, slow: tuple[str, _Slow]
) -> None:
    from prefect.client.orchestration import get_client

    url, receiver = slow
    config = write_config(tmp_path / "connectors.yaml",
                          {"name": "itsm-serial", "provider": "linux", "url": url, "concurrency_limit": 1})
    results = _deliver_concurrently(config, tmp_path, 3)
    assert [d["status"] for r in results for d in r["deliveries"]] == ["delivered"] * 3
    assert len(receiver.starts) == 3 and receiver.peak == 1
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("ringward-destination-itsm-serial")
    assert limit.limit == 1 and limit.active_slots == 0  # every slot given back


def test_a_rate_limit_spaces_deliveries(
    prefect_server: None, ringward_home: Path, tmp_path: Path, slow: tuple[str, _Slow]
) -> None:
    from prefect.client.orchestration import get_client

    url, receiver = slow
    receiver.delay = 0.0
    config = write_config(tmp_path / "connectors.yaml",
                          {"name": "itsm-quota", "provider": "linux", "url": url, "rate_limit_per_minute": 60})
    _deliver_concurrently(config, tmp_path, 3)
    starts = sorted(receiver.starts)
    assert len(starts) == 3
    # one slot per second: the third delivery cannot start before ~2 s after the first
    assert starts[2] - starts[0] >= 1.5, starts
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("ringward-destination-itsm-quota-rate")
    assert limit.limit == 1 and limit.slot_decay_per_second == pytest.approx(1.0)


@pytest.mark.parametrize("field, value", [("concurrency_limit", 0), ("concurrency_limit", 257),
                                          ("rate_limit_per_minute", 0), ("rate_limit_per_minute", -1)])
def test_limits_out_of_range_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        DestinationConfig.model_validate({"name": "x", "provider": "linux", "url": "https://x.example", field: value})


def test_flow_runs_creating_the_same_limit_at_once_all_succeed(prefect_server: None) -> None:
    """Prefect's upsert reads then creates; the losers of that race must read and carry on (the
    failure of an earlier CI run: a 500 on the unique limit name failed one delivery)."""
    from prefect.client.orchestration import get_client

    from tasks.delivery import ensure_destination_limits

    destination = DestinationConfig.model_validate(
        {"name": f"race-{time.monotonic_ns()}", "provider": "linux", "url": "https://x.example",
         "concurrency_limit": 2, "rate_limit_per_minute": 120})
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def one() -> None:
        barrier.wait()
        try:
            ensure_destination_limits(destination)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(f"ringward-destination-{destination.name}")
        rate = client.read_global_concurrency_limit_by_name(f"ringward-destination-{destination.name}-rate")
    assert limit.limit == 2 and rate.limit == 2 and rate.slot_decay_per_second == pytest.approx(2.0)
