"""Serving an ASGI app with uvicorn inside the caller's task group, not as the process's owner.

``uvicorn.run`` wants the whole process: it installs signal handlers and owns the event loop.
The daemon's listener and the emulator are parts of a larger program, so here uvicorn only gets
a socket we bound ourselves (port 0 works, and the real port is known before anyone connects),
runs its accept loop as one task, and shuts down gracefully when the block exits: requests in
progress finish (within ``graceful_timeout``), new connections are refused.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve_asgi"]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    limit_concurrency: int | None = None,
    timeout_keep_alive: float = 5.0,
    graceful_timeout: float = 10.0,
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` on ``host:port`` while the block runs; yields the bound (host, port).

    ``limit_concurrency`` caps connections and tasks at once; beyond it uvicorn answers 503.

    Raises:
        OSError: the address cannot be bound (in use, not local, no permission).
    """
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        lifespan="off",
        # No log_config and no log_level: uvicorn then leaves the process's logging alone (its
        # loggers propagate into ours, masked like everything else); access_log=False would
        # detach the access logger for the whole process.
        log_config=None,
        log_level=None,
        server_header=False,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=int(timeout_keep_alive),
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
