"""`ringward api --workers N` serves through :class:`ringward.api.server.BoundedHttpToolsProtocol`
(or :class:`~ringward.api.server.NoDelayH11Protocol`), which turn Nagle's algorithm off on
connections whose socket uvicorn created without the TCP protocol number (its multi-worker path) --
otherwise every response waits for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from ringward.api.server import H11_PROTOCOL, PROTOCOL, BoundedHttpToolsProtocol, NoDelayH11Protocol


class _Transport(asyncio.Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("spec, cls", [(PROTOCOL, BoundedHttpToolsProtocol), (H11_PROTOCOL, NoDelayH11Protocol)])
def test_connections_get_tcp_nodelay_even_on_a_protocol_zero_socket(spec: str, cls: Any) -> None:
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

                    config = Config(app=app, http=spec)
                    config.load()
                    assert config.http_protocol_class is cls
                    protocol = cls(config=config, server_state=ServerState(), app_state={})
                    protocol.connection_made(_Transport(accepted))
                    after = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    protocol.connections.discard(protocol)
                    if protocol.timeout_keep_alive_task is not None:
                        protocol.timeout_keep_alive_task.cancel()
                    return before, after

    before, after = asyncio.run(scenario())
    assert (before, after) == (0, 1)
