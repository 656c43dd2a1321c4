"""`ringward demo --prefect` sends its flow runs to a running `ringward up` of the same home (its
up.json names a live process and a Prefect API that answers), and ignores a stale or unhealthy one."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ringward.cli.demo_cmd import _running_up_prefect_api


@pytest.fixture
def prefect_api() -> Iterator[str]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/api/health" else 404
            self.send_response(code)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def _up_json(home: Path, pid: int, api: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "up.json").write_text(json.dumps({"pid": pid, "prefect_api_url": api}))


def test_a_running_up_is_found(tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    assert _running_up_prefect_api() is None  # no up.json
    _up_json(tmp_path / "home", os.getpid(), prefect_api)
    assert _running_up_prefect_api() == prefect_api


def test_a_stale_or_unhealthy_up_is_ignored(tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWARD_HOME", str(tmp_path / "home"))
    _up_json(tmp_path / "home", 2**22 + 12345, prefect_api)  # no such process
    assert _running_up_prefect_api() is None
    _up_json(tmp_path / "home", os.getpid(), prefect_api.replace("/api", "/nope"))  # not answering its health
    assert _running_up_prefect_api() is None
    (tmp_path / "home" / "up.json").write_text("{not json")
    assert _running_up_prefect_api() is None
