"""Serving an ASGI app with uvicorn inside the caller's task group, not as the process's owner.

``uvicorn.run`` wants the whole process: it installs signal handlers and owns the event loop.
The daemon's listener and the emulator are parts of a larger program, so here uvicorn only gets
a socket we bound ourselves (port 0 works, and the real port is known before anyone connects),
runs its accept loop as one task, and shuts down gracefully when the block exits: requests in
progress finish (within ``graceful_timeout``), new connections are refused.

uvicorn times out nothing before a connection's first request: a socket that sends nothing, or a
header a byte at a time, would stay open for ever. So every connection here runs
``_GuardedH11``: between requests (from the accept, and after each response) it must complete a
request's headers within ``header_timeout`` or it is closed; and beyond ``max_connections`` open
at once, the oldest connection with no request in progress is closed to make room (the newcomer
itself when every one is busy). Requests in progress are the application's to limit.

With ``stamp_arrivals`` (the emulator, whose rate limits count arrivals), each request's scope
carries ``extensions[RECEIVED] = {"at": t}``: when the kernel received the request's latest
bytes, in ``time.monotonic`` seconds. The application only sees a request once its event loop
gets to it, which on a busy machine can be tens of milliseconds after it arrived; Linux keeps
the time of a TCP connection's last received data (``TCP_INFO``), to one kernel tick (1 to 10
ms, 4 ms at the common 250 Hz) either side. Where
the platform does not tell, there is no extension and the application times the request itself.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio
import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["RECEIVED", "serve_asgi"]

RECEIVED = "tcsms.received"  # the scope extension of ``stamp_arrivals``

# Linux's ``struct tcp_info``: ``tcpi_last_data_recv`` (u32, milliseconds since the connection
# last received data) and its offset in the struct.
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 52

log = structlog.get_logger("tcsms_poller.asgi")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    # Send each write at once. asyncio turns Nagle's algorithm off only for sockets made with
    # proto IPPROTO_TCP, and create_server's has proto 0; without this, a response's body waits
    # behind its headers for the client's delayed ACK: about 40 ms a request on a kept-alive
    # connection. Accepted connections inherit the option.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class _GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 connection with a header deadline and a share of a connection cap."""

    header_timeout: ClassVar[float]
    max_connections: ClassVar[int | None]
    stamp_arrivals: ClassVar[bool]
    open_connections: ClassVar[dict[_GuardedH11, None]]  # oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def configured(
        cls, header_timeout: float, max_connections: int | None, stamp_arrivals: bool
    ) -> type[_GuardedH11]:
        """A subclass for one server: its settings and its own set of open connections."""
        attributes: dict[str, object] = {
            "header_timeout": header_timeout,
            "max_connections": max_connections,
            "stamp_arrivals": stamp_arrivals,
            "open_connections": {},
        }
        return type("GuardedH11", (cls,), attributes)

    @property
    def is_idle(self) -> bool:
        """No request in progress: between requests, or still receiving a request's headers."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.open_connections[self] = None
        if self.max_connections is not None and len(self.open_connections) > self.max_connections:
            self._make_room()
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open_connections.pop(self, None)
        self._disarm_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        received = _kernel_received(self.transport) if self.stamp_arrivals else None
        completing = self.cycle
        super().data_received(data)
        if received is not None:
            for cycle in (completing, self.cycle):  # the request these bytes continued, or began
                if cycle is not None and not cycle.response_complete:
                    cycle.scope.setdefault("extensions", {})[RECEIVED] = {"at": received}

    def handle_events(self) -> None:
        super().handle_events()
        if not self.is_idle:  # a request's headers are complete: the app's deadline rules now
            self._disarm_deadline()

    def on_response_complete(self) -> None:
        self._arm_deadline()  # before uvicorn starts a pipelined request (which disarms it)
        super().on_response_complete()

    def _make_room(self) -> None:
        victim = next((c for c in self.open_connections if c.is_idle and c is not self), self)
        log.warning("listener.connections_full", limit=self.max_connections)
        victim.close_idle()

    def close_idle(self) -> None:
        """Close the connection unless a request is in progress on it."""
        self._disarm_deadline()
        if self.is_idle and not self.transport.is_closing():
            self.open_connections.pop(self, None)
            self.transport.close()

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._deadline = self.loop.call_later(self.header_timeout, self.close_idle)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def _kernel_received(transport: asyncio.Transport) -> float | None:
    """When the kernel last received data on ``transport``'s TCP connection (monotonic), or
    None where the platform does not tell."""
    sock = transport.get_extra_info("socket")
    if sock is None or not sys.platform.startswith("linux"):  # the layout below is Linux's
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < _LAST_DATA_RECV_OFFSET + _LAST_DATA_RECV.size:
        return None
    ago_ms: int = _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)[0]
    return time.monotonic() - ago_ms / 1000


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    max_connections: int | None = None,
    header_timeout: float = 10.0,
    timeout_keep_alive: float = 5.0,
    graceful_timeout: float = 10.0,
    stamp_arrivals: bool = False,
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` on ``host:port`` while the block runs; yields the bound (host, port).

    A connection must complete each request's headers within ``header_timeout`` seconds; at most
    ``max_connections`` stay open (the oldest idle one makes room for a newcomer).
    ``stamp_arrivals``: see the module's docstring.

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        http=_GuardedH11.configured(header_timeout, max_connections, stamp_arrivals),
        lifespan="off",
        # No log_config and no log_level: uvicorn then leaves the process's logging alone (its
        # loggers propagate into ours, masked like everything else); access_log=False would
        # detach the access logger for the whole process.
        log_config=None,
        log_level=None,
        server_header=False,
        timeout_keep_alive=max(1, int(timeout_keep_alive)),
        timeout_graceful_shutdown=int(graceful_timeout),
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[sock])
        if server.should_exit:  # startup failed and uvicorn logged why
            raise OSError(f"cannot serve on {host}:{port}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.main_loop)
            try:
                yield bound_host, bound_port
            finally:
                server.should_exit = True
        with anyio.CancelScope(shield=True):
            await server.shutdown(sockets=[sock])
    finally:
        sock.close()
