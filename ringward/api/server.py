"""Serving the API: uvicorn's h11 protocol with Nagle's algorithm off on every connection.

With ``--workers`` above 1, uvicorn binds the listening socket itself as ``socket.socket(AF_INET)``
(protocol number 0), and asyncio only sets ``TCP_NODELAY`` on accepted sockets whose protocol
number is ``IPPROTO_TCP``. Every response then went out as two segments (h11 writes the head and
the body separately) and the second waited for the client's delayed ACK: ~40 ms added to each
request (measured: 54 ms instead of 6 ms per request with two workers). Setting the option per
connection fixes it whatever socket uvicorn created.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

#: ``uvicorn.run(http=...)`` accepts an import string; workers import it themselves
PROTOCOL = "ringward.api.server:NoDelayH11Protocol"


class NoDelayH11Protocol(H11Protocol):
    """:class:`H11Protocol` that turns Nagle's algorithm off on its TCP connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # a socket already closed under us is h11's to report, not ours
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
