"""A worker's context against a real emulator: our client, the SQLite state in a temp dir."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

from tcsms_poller.backoff import Backoff
from tcsms_poller.emulator import (
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
from tcsms_poller.workers import WorkerContext

__all__ = ["Clock", "committed", "control", "worker_context"]


class Clock:
    """Wall time that moves only when the test says so."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def worker_context(
    directory: Path,
    emulator: RunningEmulator,
    *,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    queue_timeout: float = 60.0,
    **settings: Any,
) -> AsyncIterator[WorkerContext]:
    """A worker context talking to ``emulator``; ``settings`` are further WorkerContext fields."""
    clock = clock or Clock()
    metrics = Metrics()
    store = await StateStore.open(directory / "state.db", dedupe_ttl=86_400.0, clock=clock)
    client = TencentClient(
        endpoint=emulator.url,
        region="ap-guangzhou",
        credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
        limiters=RateLimiters(dict(DEFAULT_RATE_LIMITS)),
        metrics=metrics,
        retry=retry or RetryPolicy(max_attempts=1, backoff=Backoff(initial=0.01, maximum=0.01)),
        queue_timeout=queue_timeout,
    )
    try:
        async with client:
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
    finally:
        await store.aclose()


async def committed(ctx: WorkerContext) -> list[dict[str, Any]]:
    """Every record committed to the outbox so far, oldest first."""
    rows = await ctx.store.read_outbox(after=0, limit=100_000)
    return [orjson.loads(row.data) for row in rows]


async def control(
    emulator: RunningEmulator, path: str, body: Mapping[str, Any] | None = None
) -> Any:
    """POST (with ``body``) or GET a control endpoint of the emulator."""
    async with httpx.AsyncClient() as http:
        url = f"{emulator.url}/_emulator/{path}"
        response = await (http.get(url) if body is None else http.post(url, json=body))
        response.raise_for_status()
        return response.json()
