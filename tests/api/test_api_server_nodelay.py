"""`ringward api --workers N` serves through :class:`ringward.api.server.NoDelayH11Protocol`, which
turns Nagle's algorithm off on connections whose socket uvicorn created without the TCP protocol
number (its multi-worker path) -- otherwise every response waits for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from ringward.api.server import PROTOCOL, NoDelayH11Protocol


class _Transport(asyncio.Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def is_closing(self) -> bool:
        return False


def test_connections_get_tcp_nodelay_even_on_a_protocol_zero_socket() -> None:
    async def scenario() -> tuple[int, int]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:  # proto 0, as uvicorn binds
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            with socket.create_connection(listener.getsockname()):
                accepted, _ = listener.accept()
                with accepted:
                    before = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
                        pass

                    config = Config(app=app, http=PROTOCOL)
                    config.load()
                    assert config.http_protocol_class is NoDelayH11Protocol
                    protocol = NoDelayH11Protocol(config=config, server_state=ServerState(), app_state={})
                    protocol.connection_made(_Transport(accepted))
                    after = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    protocol.connections.discard(protocol)
                    if protocol.timeout_keep_alive_task is not None:
                        protocol.timeout_keep_alive_task.cancel()
                    return before, after

    before, after = asyncio.run(scenario())
    assert (before, after) == (0, 1)
