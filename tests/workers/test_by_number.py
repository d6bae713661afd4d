"""The per-number worker when its pulls fail: when a number is tried again, and what health says.

Real parts: the emulator over loopback (its fault rules fail the pulls), our client, the SQLite
state in a temp dir (PostgreSQL for the cluster's fenced reschedule). The state's clock is the
test's, so "due again" is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psycopg
import pytest

from tcsms_poller.cluster.claims import NumberClaimer
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_RATE_LIMITS,
    EmulatorOptions,
    Fault,
    FaultKind,
    RunningEmulator,
)
from tcsms_poller.state import StateStore
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.workers import ByNumberWorker, WorkerContext, poll_cycle, run_worker
from tcsms_poller.workers.by_number import STATUS_ACTION
from tests.support.backends import Backend
from tests.support.log_capture import captured_logs, json_lines
from tests.support.waiting import wait_until
from tests.workers.support import INTERVAL, Clock, by_number_worker, requests_of, worker_context

pytestmark = pytest.mark.anyio

NUMBER = "+8613711112222"
OUTAGE = Fault(action=STATUS_ACTION, kind=FaultKind.HTTP_ERROR)


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """The emulator's options: no traffic."""
    return EmulatorOptions(seed=3)


@pytest.fixture
async def worker(
    tmp_path: Path, emulator: RunningEmulator
) -> AsyncIterator[tuple[ByNumberWorker, WorkerContext, Clock]]:
    """A per-number worker tracking ``NUMBER`` under the default limit."""
    rate = DEFAULT_RATE_LIMITS[STATUS_ACTION]
    async with by_number_worker(tmp_path, emulator, [NUMBER], rate=rate) as running:
        yield running


async def a_failed_round(
    by_number: ByNumberWorker, ctx: WorkerContext, emulator: RunningEmulator
) -> None:
    """One poll cycle while every pull of the number fails (HTTP 503): the worker is unhealthy."""
    emulator.state.faults.replace([OUTAGE])
    await poll_cycle(by_number, ctx)
    assert not by_number.health.is_healthy


async def next_due(store: StateStore) -> float:
    [number] = await store.list_numbers()
    return number.next_due


async def test_a_failed_number_is_due_again_after_its_interval_not_its_lease(
    worker: tuple[ByNumberWorker, WorkerContext, Clock], emulator: RunningEmulator
) -> None:
    """A failed pull is tried again after the number's interval: not at once, not never."""
    by_number, ctx, clock = worker
    await a_failed_round(by_number, ctx, emulator)
    assert by_number.health.reason is not None
    assert "HTTP503" in by_number.health.reason
    assert await next_due(ctx.store) == clock.now + INTERVAL


async def test_rounds_with_nothing_due_keep_a_failing_worker_unhealthy(
    worker: tuple[ByNumberWorker, WorkerContext, Clock], emulator: RunningEmulator
) -> None:
    """Health stays failing through idle rounds and clears when the number's pull succeeds."""
    by_number, ctx, clock = worker
    await a_failed_round(by_number, ctx, emulator)
    requests = requests_of(emulator)
    await poll_cycle(by_number, ctx)  # nothing is due: no request, no verdict
    assert requests_of(emulator) == requests
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
    await a_failed_round(by_number, ctx, emulator)
    await ctx.store.untrack_number(DEFAULT_APP_ID, NUMBER)
    await poll_cycle(by_number, ctx)
    assert by_number.health.is_healthy


async def test_the_health_gauge_reads_the_worker_health_when_scraped(
    worker: tuple[ByNumberWorker, WorkerContext, Clock],
) -> None:
    """/metrics agrees with /healthz at every moment, not only once a cycle's state write ends."""
    by_number, ctx, _clock = worker
    healthy = ctx.metrics.registry.get_sample_value
    labels = {"worker": by_number.name}
    never = anyio.Event()  # the worker starts but never polls: only the test moves its health
    async with anyio.create_task_group() as tasks:
        await tasks.start(
            lambda task_status: run_worker(by_number, ctx, begin=never, task_status=task_status)
        )
        assert healthy("tcsms_poller_worker_healthy", labels) == 1.0
        by_number.health.failed("HTTP503")
        assert healthy("tcsms_poller_worker_healthy", labels) == 0.0
        by_number.health.succeeded()
        assert healthy("tcsms_poller_worker_healthy", labels) == 1.0
        tasks.cancel_scope.cancel()


# -- rounds larger than one batch ---------------------------------------------------------------

RATE = 4  # requests/s: a batch is 2 * RATE numbers, the next follows at RATE left
MANY = [f"+86137000000{index:02d}" for index in range(3 * 2 * RATE - 3)]


async def test_a_round_keeps_taking_numbers_while_any_are_due(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """More numbers due than one lease holds: one round polls them all, each once."""
    async with by_number_worker(tmp_path, emulator, MANY, rate=RATE) as (by_number, ctx, clock):
        stats = await by_number.poll()
        assert stats.requests == requests_of(emulator) == len(MANY)
        assert not stats.more_due
        assert {number.next_due for number in await ctx.store.list_numbers()} == {
            clock.now + INTERVAL
        }


async def test_a_stopping_daemon_polls_no_more_numbers(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Once the daemon stops, numbers waiting their turn are skipped and stay due."""
    async with by_number_worker(tmp_path, emulator, MANY, rate=RATE) as (by_number, ctx, _):
        ctx.stopping.set()
        stats = await by_number.poll()
        assert stats.requests == requests_of(emulator) == 0
        _, due = await ctx.store.due_numbers(DEFAULT_APP_ID, limit=len(MANY))
        assert len(due) == len(MANY)


async def test_a_number_overdue_by_more_than_its_interval_is_reported_as_lag(
    worker: tuple[ByNumberWorker, WorkerContext, Clock],
) -> None:
    """The gauge always shows how overdue the stalest number is; past an interval, a warning."""
    by_number, ctx, clock = worker
    await poll_cycle(by_number, ctx)  # polled now: due again in one interval
    lag = ctx.metrics.registry.get_sample_value
    assert lag("tcsms_poller_by_number_lag_seconds", {"app_id": DEFAULT_APP_ID}) == 0.0
    clock.now += 3 * INTERVAL
    with captured_logs() as out:
        await poll_cycle(by_number, ctx)
    assert lag("tcsms_poller_by_number_lag_seconds", {"app_id": DEFAULT_APP_ID}) == 2 * INTERVAL
    [warning] = [event for event in json_lines(out) if event["event"] == "by_number.lagging"]
    assert (warning["lag_s"], warning["interval_s"]) == (2 * INTERVAL, INTERVAL)


# -- cluster mode: the reschedule of a failed number is fenced by its claim ----------------------

HUNG = 3.0  # seconds the failing pull hangs: the claim passes on meanwhile (wide margin)


async def test_a_failed_number_whose_claim_passed_on_keeps_the_new_holders_schedule(
    tmp_path: Path, emulator: RunningEmulator, postgres_url: str
) -> None:
    """Instance a's pull of a number hangs and fails (HTTP 503); meanwhile a's claim ran out (a
    pause) and instance b claimed the number and scheduled it. a's reschedule is refused by the
    claim's fence: b's due time stands, b's claim stays, a logs the lost claim and polls on."""
    clock = Clock()
    backend = Backend("postgresql", postgres_url)
    async with worker_context(tmp_path, emulator, clock=clock, backend=backend) as ctx:
        store = ctx.store
        assert isinstance(store, PostgresStore)
        ctx.claimer = NumberClaimer(store, "a", ttl=30.0)  # renewed by no one: the test decides
        await store.sync_numbers(DEFAULT_APP_ID, "config", [NUMBER])
        by_number = ByNumberWorker(
            ctx, app_id=DEFAULT_APP_ID, interval=INTERVAL, lookback=3600.0, replies=False
        )
        emulator.state.faults.replace(
            [
                Fault(action=STATUS_ACTION, kind=FaultKind.LATENCY, seconds=HUNG),
                Fault(action=STATUS_ACTION, kind=FaultKind.HTTP_ERROR),
            ]
        )
        with captured_logs() as out, anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll_cycle, by_number, ctx)
                await wait_until(lambda: requests_of(emulator) == 1, what="a's pull", timeout=10)
                # a's claim runs out in the database (a paused past its TTL); b takes over.
                async with await psycopg.AsyncConnection.connect(postgres_url) as db:
                    await db.execute(
                        "UPDATE number_claims SET expires_at = clock_timestamp() WHERE holder = 'a'"
                    )
                    await db.commit()
                (b,) = await store.claim_numbers(DEFAULT_APP_ID, [NUMBER], holder="b", ttl=30.0)
                await store.reschedule_number(DEFAULT_APP_ID, NUMBER, delay=600.0, claim=b)
                assert requests_of(emulator) == 1  # a's pull still hangs: its error is to come
        [number] = await store.list_numbers()
        assert number.next_due == clock.now + 600.0  # b's schedule, not a's (now + INTERVAL)
        events = json_lines(out)
        assert [e["event"] for e in events if e["event"] == "by_number.number_failed"] == [
            "by_number.number_failed"
        ]
        [lost] = [e for e in events if e["event"] == "by_number.claim_lost"]
        assert "passed to b" in lost["error"]
        assert await store.claim_numbers(DEFAULT_APP_ID, [NUMBER], holder="c", ttl=30.0) == []
        assert ctx.claimer.held_count == 0

        # b is done with the number; a polls it again when it is due, and is healthy then.
        await store.release_numbers([b])
        emulator.state.faults.replace([])
        clock.now += 600.0
        await poll_cycle(by_number, ctx)
        assert by_number.health.is_healthy
        assert requests_of(emulator) == 2
        [number] = await store.list_numbers()
        assert number.next_due == clock.now + INTERVAL
