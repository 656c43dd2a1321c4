"""A real HTTP server on loopback (a small ASGI app under uvicorn) that records every request and
answers from a per-route script of faults: any status with headers and body, a delay before the
response (timeouts), a slow body (trickled bytes), or a truncated response (connection dropped)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Fault:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    #: seconds before the response starts (longer than the client's timeout: a timeout)
    delay: float = 0.0
    #: seconds between body bytes (a slow body)
    slow_body: float = 0.0
    #: send headers and half the body, then drop the connection
    truncate: bool = False
    #: answer only once this event is set (or ``hold_seconds`` passed): orders destinations
    #: against each other without wall-clock assumptions
    hold_until: threading.Event | None = None
    hold_seconds: float = 15.0

    @classmethod
    def of(cls, status: int, body: str | bytes = b"", **headers: str) -> Fault:
        data = body.encode() if isinstance(body, str) else body
        return cls(
            status=status, body=data, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items())
        )


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float
    #: the status the server decided to answer with
    status: int
    #: the fault it answered with
    fault: Fault = field(default_factory=Fault)

    @property
    def accepted(self) -> bool:
        """The server completed a 2xx answer (the receiver took the event)."""
        return 200 <= self.status < 300 and not self.fault.truncate and not self.fault.delay


@dataclass
class Route:
    path: str
    server: FaultServer
    faults: deque[Fault] = field(default_factory=deque)
    default: Fault = field(default_factory=Fault)
    requests: list[Recorded] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def script(self, *faults: Fault | int, default: Fault | int | None = None) -> Route:
        for fault in faults:
            self.faults.append(Fault(status=fault) if isinstance(fault, int) else fault)
        if default is not None:
            self.default = Fault(status=default) if isinstance(default, int) else default
        return self

    def next_fault(self) -> Fault:
        return self.faults.popleft() if self.faults else self.default

    @property
    def successes(self) -> list[Recorded]:
        return [r for r in self.requests if r.accepted]


class FaultServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="error",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> FaultServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fault server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, suffix: str = "") -> Route:
        path = f"/r/{uuid.uuid4().hex[:12]}{suffix}"
        route = Route(path=path, server=self)
        with self._lock:
            self.routes[path] = route
        return route

    def _find(self, path: str) -> Route | None:
        with self._lock:
            if path in self.routes:
                return self.routes[path]
            for prefix, route in self.routes.items():
                if path.startswith(prefix + "/"):
                    return route
        return None

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        route = self._find(scope["path"])
        fault = route.next_fault() if route else Fault(status=404, body=b"no such route")
        if route is not None:
            route.requests.append(
                Recorded(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode(),
                    headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
                    body=b"".join(chunks),
                    at=time.monotonic(),
                    status=fault.status,
                    fault=fault,
                )
            )
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.hold_until is not None:
            await asyncio.to_thread(fault.hold_until.wait, fault.hold_seconds)
        headers = [(k.lower().encode(), v.encode()) for k, v in fault.headers]
        headers.append((b"content-length", str(len(fault.body)).encode()))
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        if fault.truncate:
            await send(
                {"type": "http.response.body", "body": fault.body[: len(fault.body) // 2], "more_body": True}
            )
            return
        if fault.slow_body and fault.body:
            for i in range(len(fault.body)):
                await send({"type": "http.response.body", "body": fault.body[i : i + 1], "more_body": True})
                await asyncio.sleep(fault.slow_body)
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": fault.body})


def closed_port_url(path: str = "/") -> str:
    """A loopback URL nothing listens on (connection refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}{path}"
