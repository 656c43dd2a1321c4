"""Front-door events: off without a Prefect API, one quick warning when the API is unreachable."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from flows import events


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_events_are_off_without_a_prefect_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("RINGWARD_EMIT_EVENTS", raising=False)
    assert not events.events_enabled()
    assert events.emit_if_configured(events.APPROVAL_DECIDED, "ringward.approval.x", {}) is None
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("RINGWARD_EMIT_EVENTS", "0")
    assert not events.events_enabled()


def test_no_prefect_import_when_events_are_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys; from flows import events; "
        "events.emit_if_configured('ringward.approval.decided', 'ringward.approval.x', {}); "
        "print('prefect' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == "False"


def test_an_unreachable_api_is_one_quick_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    events._unreachable.cache_clear()
    started = time.monotonic()
    warning = events.emit_if_configured(events.PROMOTION_EXECUTED, "ringward.rollout.r1", {"a": 1})
    assert warning is not None and "unreachable" in warning and url in warning
    assert "\n" not in warning
    assert time.monotonic() - started < 5
