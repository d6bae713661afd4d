"""Workers wired to real parts: the emulator over loopback, our client, SQLite in a temp dir (or
another state backend, ``tests/support/backends.py``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson

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
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.ratelimit import RateLimiters
from tcsms_poller.workers import ByNumberWorker, WorkerContext
from tcsms_poller.workers.by_number import STATUS_ACTION
from tests.support.backends import Backend
from tests.support.emulator import request_counts
from tests.support.records import FakeClock

__all__ = ["INTERVAL", "Clock", "by_number_worker", "committed", "requests_of", "worker_context"]

INTERVAL = 60.0


class Clock(FakeClock):
    """Wall time that moves only when the test says so, starting now unless told otherwise."""

    def __init__(self, now: float | None = None) -> None:
        super().__init__(time.time() if now is None else now)


@asynccontextmanager
async def worker_context(
    directory: Path,
    emulator: RunningEmulator,
    *,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    queue_timeout: float = 60.0,
    rate_limits: Mapping[str, int] | None = None,
    backend: Backend | None = None,
    **settings: Any,
) -> AsyncIterator[WorkerContext]:
    """A worker context talking to ``emulator``, its state on ``backend`` (default: SQLite in
    ``directory``); ``settings`` are further WorkerContext fields."""
    clock = clock or Clock()
    metrics = Metrics()
    backend = backend or Backend("sqlite", directory / "state.db")
    client = TencentClient(
        endpoint=emulator.url,
        region="ap-guangzhou",
        credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
        limiters=RateLimiters({**DEFAULT_RATE_LIMITS, **(rate_limits or {})}),
        metrics=metrics,
        retry=retry or RetryPolicy(max_attempts=1, backoff=Backoff(initial=0.01, maximum=0.01)),
        queue_timeout=queue_timeout,
    )
    async with backend.open(clock, dedupe_ttl=86_400.0) as store, client:
        yield WorkerContext(
            client=client,
            store=store,
            intake=Intake(store, metrics),
            metrics=metrics,
            board=HealthBoard(clock=clock),
            stopping=anyio.Event(),
            clock=clock,
            **settings,
        )


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
    async with worker_context(
        directory, emulator, clock=clock, rate_limits={STATUS_ACTION: rate}
    ) as ctx:
        await ctx.store.sync_numbers(DEFAULT_APP_ID, "config", numbers)
        by_number = ByNumberWorker(
            ctx, app_id=DEFAULT_APP_ID, interval=INTERVAL, lookback=lookback, replies=replies
        )
        yield by_number, ctx, clock


async def committed(ctx: WorkerContext) -> list[dict[str, Any]]:
    """Every record committed to the outbox so far, oldest first."""
    rows = await ctx.store.read_outbox(after=0, limit=100_000)
    return [orjson.loads(row.data) for row in rows]


def requests_of(emulator: RunningEmulator, action: str = STATUS_ACTION) -> int:
    """How many requests of ``action`` the emulator has seen so far."""
    return request_counts(emulator, action)[0]
