"""Structured logs for the long-running parts (API, `ringward up`, workers): one JSON object per line
when the stream is not a terminal (or ``RINGWARD_LOG_FORMAT=json``), a short text line on a terminal.

Every line carries the request id of the API request it belongs to (:data:`REQUEST_ID`, set by
``ringward.api.middleware.RequestIdMiddleware``; the same id is answered in ``X-Request-ID`` and rides
on the Prefect events the request emits, so a triggered flow run can be traced back to it). Messages
are scrubbed before they are written: bearer tokens, ``Authorization``/signature header values and
secret-looking query parameters never reach a log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

#: the API request being served in this context (None outside a request)
REQUEST_ID: ContextVar[str | None] = ContextVar("ringward_request_id", default=None)
REQUEST_ID_HEADER: Final = "x-request-id"
LOG_FORMAT_ENV: Final = "RINGWARD_LOG_FORMAT"

#: an incoming X-Request-ID is kept only when it is short and plain (it is echoed and logged)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_SECRET_PATTERNS = (
    # bearer credentials anywhere in a message
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 REDACTED"),
    # header-style "authorization: ..." / "webhook-signature: ..." / "x-api-key=..."
    (re.compile(r"(?i)\b(authorization|proxy-authorization|cookie|webhook-signature|x-api-key|api-key)"
                r"(\s*[:=]\s*)\S+(?:\s+\S+)?"), r"\1\2REDACTED"),
    # secret-looking query parameters and key=value pairs
    (re.compile(r"(?i)\b([a-z0-9_-]*(?:token|secret|password|passwd|signature|sig|api_key|apikey))"
                r"=([^\s&,;\"']+)"), r"\1=REDACTED"),
)
#: attributes every LogRecord has: anything else was passed in ``extra`` and becomes a field
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is plain and bounded, else a new one."""
    if header and _VALID_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def scrub(text: str) -> str:
    """``text`` without credentials (see the module docstring)."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_") or key == "color_message":
            continue
        fields[key] = scrub(value) if isinstance(value, str) else value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, the ``extra`` fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            document["request_id"] = request_id
        document.update(_fields(record))
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            document["error"] = scrub(f"{type(error).__name__}: {error}")[:500]
            document["traceback"] = scrub(self.formatException(record.exc_info))
        return json.dumps(document, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A terminal line: time, level, logger, [request id], message, key=value fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        request_id = REQUEST_ID.get()
        parts = [when, f"{record.levelname.lower():<7}", record.name]
        if request_id is not None:
            parts.append(f"[{request_id[:12]}]")
        parts.append(scrub(record.getMessage()))
        parts.extend(f"{k}={v}" for k, v in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info and record.exc_info[1] is not None:
            line += f" ({type(record.exc_info[1]).__name__}: {scrub(str(record.exc_info[1]))[:300]})"
        return line


def log_format(stream: IO[str] | None = None) -> str:
    """``json`` or ``text``: ``$RINGWARD_LOG_FORMAT`` when set, else text on a terminal, JSON otherwise."""
    chosen = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    target = stream if stream is not None else sys.stderr
    return "text" if hasattr(target, "isatty") and target.isatty() else "json"


def logging_config(level: str = "info", fmt: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document (also given to uvicorn, which applies it in every
    worker process): Ringward's and uvicorn's loggers through one formatter; uvicorn's own access log
    is off because the request-id middleware writes one line per request with the id."""
    formatter = JsonFormatter if (fmt or log_format()) == "json" else TextFormatter
    level_name = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ringward": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "ringward",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "ringward": {"handlers": ["stderr"], "level": level_name, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level_name, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level_name, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Apply :func:`logging_config` to this process."""
    import logging.config

    logging.config.dictConfig(logging_config(level, fmt))
