"""The per-number worker when its pulls fail: when a number is tried again, and what health says.

Real parts: the emulator over loopback (its fault rules fail the pulls), our client, the SQLite
state in a temp dir. The state's clock is the test's, so "due again" is exact.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tcsms_poller.backoff import Backoff
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_RATE_LIMITS,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    Fault,
    FaultKind,
    RunningEmulator,
    run_emulator,
)
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.state import StateStore
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.ratelimit import RateLimiters
from tcsms_poller.workers import ByNumberWorker, WorkerContext, poll_cycle
from tcsms_poller.workers.by_number import LEASE, STATUS_ACTION

pytestmark = pytest.mark.anyio

NUMBER = "+8613711112222"
INTERVAL = 60.0
OUTAGE = Fault(action=STATUS_ACTION, kind=FaultKind.HTTP_ERROR)


class Clock:
    """Wall time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with run_emulator(EmulatorOptions(seed=3)) as running:
        yield running


@pytest.fixture
async def worker(
    tmp_path: Path, emulator: RunningEmulator
) -> AsyncIterator[tuple[ByNumberWorker, WorkerContext, Clock]]:
    """A per-number worker tracking ``NUMBER``, with one attempt per request (no retries)."""
    clock = Clock()
    metrics = Metrics()
    store = await StateStore.open(tmp_path / "state.db", dedupe_ttl=86_400.0, clock=clock)
    client = TencentClient(
        endpoint=emulator.url,
        region="ap-guangzhou",
        credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
        limiters=RateLimiters(DEFAULT_RATE_LIMITS),
        metrics=metrics,
        retry=RetryPolicy(max_attempts=1, backoff=Backoff(initial=0.01, maximum=0.01)),
    )
    async with client:
        await store.sync_numbers(DEFAULT_APP_ID, "config", [NUMBER])
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
            ctx, app_id=DEFAULT_APP_ID, interval=INTERVAL, lookback=3600.0, replies=False
        )
        yield by_number, ctx, clock
    await store.aclose()


async def next_due(store: StateStore) -> float:
    [number] = await store.list_numbers()
    return number.next_due


async def test_a_failed_number_is_due_again_after_its_interval_not_its_lease(
    worker: tuple[ByNumberWorker, WorkerContext, Clock], emulator: RunningEmulator
) -> None:
    """One failed pull must not leave the number's receipts waiting for the 300 s lease."""
    by_number, ctx, clock = worker
    emulator.state.faults.replace([OUTAGE])
    await poll_cycle(by_number, ctx)
    assert by_number.health.reason is not None
    assert "HTTP503" in by_number.health.reason
    assert await next_due(ctx.store) == clock.now + INTERVAL < clock.now + LEASE


async def test_rounds_with_nothing_due_keep_a_failing_worker_unhealthy(
    worker: tuple[ByNumberWorker, WorkerContext, Clock], emulator: RunningEmulator
) -> None:
    """Health stays failing through idle rounds and clears when the number's pull succeeds."""
    by_number, ctx, clock = worker
    emulator.state.faults.replace([OUTAGE])
    await poll_cycle(by_number, ctx)
    assert not by_number.health.is_healthy
    requests = emulator.state.stats_snapshot()["actions"][STATUS_ACTION]["requests"]
    await poll_cycle(by_number, ctx)  # nothing is due: no request, no verdict
    assert emulator.state.stats_snapshot()["actions"][STATUS_ACTION]["requests"] == requests
    assert not by_number.health.is_healthy
    emulator.state.faults.replace([])
    clock.now += INTERVAL
    await poll_cycle(by_number, ctx)
    assert by_number.health.is_healthy


async def test_a_failing_worker_with_no_numbers_left_is_healthy(
    worker: tuple[ByNumberWorker, WorkerContext, Clock], emulator: RunningEmulator
) -> None:
    """With nothing tracked nothing can fail: an old failure must not stick forever."""
    by_number, ctx, _clock = worker
    emulator.state.faults.replace([OUTAGE])
    await poll_cycle(by_number, ctx)
    assert not by_number.health.is_healthy
    await ctx.store.untrack_number(DEFAULT_APP_ID, NUMBER)
    await poll_cycle(by_number, ctx)
    assert by_number.health.is_healthy
