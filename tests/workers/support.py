"""A per-number worker wired to real parts: the emulator over loopback, our client, SQLite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from tcsms_poller.backoff import Backoff
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_RATE_LIMITS,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    RunningEmulator,
)
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.state import StateStore
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.ratelimit import RateLimiters
from tcsms_poller.workers import ByNumberWorker, WorkerContext
from tcsms_poller.workers.by_number import STATUS_ACTION

__all__ = ["INTERVAL", "Clock", "by_number_worker"]

INTERVAL = 60.0


class Clock:
    """Wall time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def by_number_worker(
    directory: Path,
    emulator: RunningEmulator,
    numbers: list[str],
    *,
    rate: int = DEFAULT_RATE_LIMITS[STATUS_ACTION],
    lookback: float = 3600.0,
    replies: bool = False,
) -> AsyncIterator[tuple[ByNumberWorker, WorkerContext, Clock]]:
    """A per-number worker tracking ``numbers`` at ``rate`` requests/s, one attempt a request."""
    clock = Clock()
    metrics = Metrics()
    store = await StateStore.open(directory / "state.db", dedupe_ttl=86_400.0, clock=clock)
    client = TencentClient(
        endpoint=emulator.url,
        region="ap-guangzhou",
        credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
        limiters=RateLimiters({**DEFAULT_RATE_LIMITS, STATUS_ACTION: rate}),
        metrics=metrics,
        retry=RetryPolicy(max_attempts=1, backoff=Backoff(initial=0.01, maximum=0.01)),
    )
    async with client:
        await store.sync_numbers(DEFAULT_APP_ID, "config", numbers)
        ctx = WorkerContext(
            client=client,
            store=store,
            intake=Intake(store, metrics),
            metrics=metrics,
            board=HealthBoard(clock=clock),
            stopping=anyio.Event(),
            clock=clock,
        )
        by_number = ByNumberWorker(
            ctx, app_id=DEFAULT_APP_ID, interval=INTERVAL, lookback=lookback, replies=replies
        )
        yield by_number, ctx, clock
    await store.aclose()
