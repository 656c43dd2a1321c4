"""The Prefect REST client asks again when the server is busy (503 while its SQLite database is locked,
429) and sends one idempotency key per run it starts, so a retried start makes one run, not two."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ringward.operations.common.prefect_rest import PrefectRest


class _Busy:
    def __init__(self, busy: int, status: int = 503) -> None:
        self.busy = busy
        self.status = status
        self.bodies: list[dict[str, Any]] = []


@pytest.fixture()
def server() -> Iterator[tuple[str, _Busy]]:
    state = _Busy(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.bodies.append(body)
            if state.busy > 0:
                state.busy -= 1
                self.send_response(state.status)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = json.dumps({"id": "run-1", "idempotency_key": body.get("idempotency_key")}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api", state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("status", [503, 429])
def test_a_busy_server_is_asked_again_with_the_same_idempotency_key(server: tuple[str, _Busy], status: int) -> None:
    url, state = server
    state.busy, state.status = 2, status
    with PrefectRest(url) as client:
        run = client.create_flow_run("dep-1", {"x": 1})
    assert run["id"] == "run-1"
    assert len(state.bodies) == 3
    keys = {body["idempotency_key"] for body in state.bodies}
    assert len(keys) == 1 and next(iter(keys)).startswith("ringward-")


def test_a_server_busy_for_every_attempt_is_reported(server: tuple[str, _Busy]) -> None:
    url, state = server
    state.busy = 100
    with PrefectRest(url) as client, pytest.raises(httpx.HTTPStatusError, match="503"):
        client._send("POST", "/deployments/filter", {}, attempts=3)
    assert len(state.bodies) == 3


def test_two_starts_get_two_keys(server: tuple[str, _Busy]) -> None:
    url, state = server
    with PrefectRest(url) as client:
        client.create_flow_run("dep-1", {})
        client.create_flow_run("dep-1", {})
    assert state.bodies[0]["idempotency_key"] != state.bodies[1]["idempotency_key"]
