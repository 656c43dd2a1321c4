"""What a front door needs before and while it runs a flow in-process (`--prefect`, `ringward run`):
fail fast, in one line, when no Prefect server answers; keep Prefect's console logging (engine
tracebacks of a refused or invalid run) off the terminal, where the command prints its own one-line
result or error. The run's logs still reach the Prefect API (the UI shows them).

No Prefect import here: the caller passes the configured API URL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ringward.core.errors import InputError
from ringward.operations.common.prefect_rest import api_health

#: health-check budget: an unreachable server must cost seconds, not Prefect's ~40 s of retries
PREFLIGHT_TIMEOUT_S = 3.0
_CONSOLE_HANDLER = "PrefectConsoleHandler"


def require_prefect_api(api_url: str | None) -> None:
    """Raise one InputError line (exit 2) naming PREFECT_API_URL when flows cannot reach a server."""
    if not api_url:
        raise InputError("--prefect: PREFECT_API_URL is not set; start a server (`ringward up` prints the URL) "
                         "and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    if not api_url.startswith(("http://", "https://")):
        return  # an in-process test API (Prefect's ephemeral ASGI app) answers without a socket
    problem = api_health(api_url, timeout=PREFLIGHT_TIMEOUT_S)
    if problem is not None:
        raise InputError(f"--prefect: PREFECT_API_URL={api_url}: no Prefect server answers ({problem})")


class _FinalStateOnly(logging.Filter):
    """Let through only a flow run's final state when it did not complete (the refusal or error it
    ended with, one line), never a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "prefect.flow_runs":
            return False
        message = record.getMessage()
        if not message.startswith("Finished in state") or message.startswith("Finished in state Completed"):
            return False
        record.exc_info = None
        record.exc_text = None
        return True


@contextmanager
def quiet_prefect_console() -> Iterator[None]:
    """For the duration, Prefect's console handlers show one line per run that did not complete (its
    final state, which names the refusal or the error) and nothing else: no engine tracebacks, no
    per-task chatter. Shipping logs to the API (the UI) is untouched."""
    handlers = [h for logger in (logging.getLogger(), logging.getLogger("prefect"))
                for h in logger.handlers if type(h).__name__ == _CONSOLE_HANDLER]
    only_final = _FinalStateOnly()
    for handler in handlers:
        handler.addFilter(only_final)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(only_final)
