"""Serving the API: uvicorn with httptools (its C HTTP parser) on uvloop, Nagle's algorithm off on
every connection and the request head bounded.

- **TCP_NODELAY.** With ``--workers`` above 1, uvicorn binds the listening socket itself as
  ``socket.socket(AF_INET)`` (protocol number 0), and asyncio only sets ``TCP_NODELAY`` on accepted
  sockets whose protocol number is ``IPPROTO_TCP``. Every response then went out as two segments
  (the head and the body separately) and the second waited for the client's delayed ACK: ~40 ms
  added to each request (measured: 54 ms instead of 6 ms per request with two workers). Setting
  the option per connection fixes it whatever socket uvicorn created.
- **httptools.** h11 parses in pure Python; at 8 concurrent clients the parser was a large share of
  a request's CPU. httptools (llhttp) sets no bound on a head that is still arriving, which h11 did
  (``h11_max_incomplete_event_size``), so :class:`BoundedHttpToolsProtocol` counts the bytes
  received while a request head is open and answers 400 and closes the connection past
  :data:`ringward.api.middleware.H11_MAX_INCOMPLETE_EVENT_BYTES` (at most one read beyond it is
  buffered). Complete heads up to that size reach the app, whose 16 KiB cap answers 431.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ringward.api.middleware import H11_MAX_INCOMPLETE_EVENT_BYTES

#: ``uvicorn.run(http=...)`` accepts an import string; workers import it themselves
PROTOCOL = "ringward.api.server:BoundedHttpToolsProtocol"
#: the pure-Python protocol, kept for ``--http h11``
H11_PROTOCOL = "ringward.api.server:NoDelayH11Protocol"
#: bytes of an unfinished request head after which the connection is refused
MAX_INCOMPLETE_HEAD_BYTES = H11_MAX_INCOMPLETE_EVENT_BYTES


def _no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # a socket already closed under us is the protocol's to report, not ours
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """:class:`H11Protocol` that turns Nagle's algorithm off on its TCP connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(transport)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with TCP_NODELAY and a bound on an unfinished request head."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        self._head_open = True
        self._head_bytes = 0
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_open and self._head_bytes > MAX_INCOMPLETE_HEAD_BYTES and not self.transport.is_closing():
            self.send_400_response(f"request head over {MAX_INCOMPLETE_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_open = True
        super().on_message_complete()
