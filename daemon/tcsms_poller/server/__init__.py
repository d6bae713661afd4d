"""The HTTP listener (SPEC §7): Tencent's push callbacks, the local ``/v1`` API, health, metrics.

It runs inside the daemon's task group on uvicorn (see ``tcsms_poller.asgi``), starts after the
workers and stops before the sinks drain, so every push it answered ``OK`` is in the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from tcsms_poller.asgi import serve_asgi
from tcsms_poller.rlimits import connection_cap, raise_open_files_limit
from tcsms_poller.server.app import build_app
from tcsms_poller.server.context import ListenerContext

__all__ = ["ListenerContext", "build_app", "serving"]

log = structlog.get_logger("tcsms_poller.server")


@asynccontextmanager
async def serving(ctx: ListenerContext) -> AsyncIterator[tuple[str, int]]:
    """Serve while the block runs, then finish requests in progress; yields the bound address."""
    settings = ctx.settings
    async with serve_asgi(
        build_app(ctx),
        settings.host,
        settings.port,
        max_connections=connection_cap(settings.max_connections, raise_open_files_limit()),
        header_timeout=settings.header_timeout,
    ) as (host, port):
        log.info("listener.started", url=f"http://{host}:{port}")
        yield host, port
    log.info("listener.stopped")
