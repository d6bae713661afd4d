"""Running the emulator: the HTTP server, the traffic generator and the pusher in one task group.

Usable in-process from tests (``async with run_emulator(options) as emulator``) and by the
``emulator`` command. History (``backfill``) is generated before the server accepts requests,
so the first request already sees it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from tcsms_poller.asgi import serve_asgi
from tcsms_poller.emulator.app import build_app
from tcsms_poller.emulator.options import EmulatorOptions
from tcsms_poller.emulator.state import EmulatorState
from tcsms_poller.emulator.traffic import TrafficGenerator

__all__ = ["RunningEmulator", "run_emulator"]


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    """A serving emulator: its base URL and, for tests, its in-process state."""

    url: str
    host: str
    port: int
    state: EmulatorState
    traffic: TrafficGenerator | None


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def run_emulator(
    options: EmulatorOptions | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator while the block runs; ``clock`` is its wall clock (skew it in tests)."""
    options = options or EmulatorOptions()
    state = EmulatorState(options, clock=clock)
    traffic = None
    if options.traffic is not None:
        traffic = TrafficGenerator(
            options.traffic, app_ids=options.app_ids, sink=state, seed=state.seed, clock=clock
        )
        traffic.backfill()
    # The server is the outer block so that a bind failure surfaces as a plain OSError.
    serving = serve_asgi(build_app(state), options.host, options.port, stamp_arrivals=True)
    async with serving as (host, port), anyio.create_task_group() as tg:
        if state.pusher is not None:
            tg.start_soon(state.pusher.run)
        tg.start_soon(state.outbound.run)
        if traffic is not None:
            tg.start_soon(traffic.run)
        try:
            yield RunningEmulator(_url(host, port), host, port, state, traffic)
        finally:
            state.closing.set()  # held connections let go, so the server can stop promptly
            tg.cancel_scope.cancel()
