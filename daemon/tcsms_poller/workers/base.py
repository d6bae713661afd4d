"""What every worker shares: its context, a drift-free ticker, the durable commit, the run loop.

A worker is one source for one app (``replies:1400006666``). Its ``poll()`` does one cycle
(several requests when pages are full); ``run_worker`` repeats it on the worker's schedule, turns
failures into health, and stops between cycles when the daemon stops, so a queue page that was
pulled is always committed before the worker returns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from tcsms_poller.cluster.claims import NumberClaimer
from tcsms_poller.cluster.leases import Lease, pull_lease
from tcsms_poller.health import Health, HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.state import CommitResult, StateError, StateStore
from tcsms_poller.state.roles import LeaseLostError
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.client import TencentClient
from tcsms_poller.tencent.errors import PermanentError, TencentError
from tcsms_poller.tencent.ratelimit import REQUEST_GATE

__all__ = [
    "NextCycle",
    "PollStats",
    "Ticker",
    "Worker",
    "WorkerContext",
    "poll_cycle",
    "run_worker",
]

log = structlog.get_logger("tcsms_poller.workers")


@dataclass(slots=True)
class WorkerContext:
    """The shared parts every worker uses; the scheduler and client know nothing of sinks."""

    client: TencentClient
    store: StateStore
    intake: Intake
    metrics: Metrics
    board: HealthBoard
    stopping: anyio.Event
    unhealthy_retry: float = 60.0
    not_activated_recheck: float = 3600.0  # how often an API not activated for an app is retried
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    rng: random.Random = field(default_factory=random.Random)
    # Cluster mode: a queue or statistics worker polls only while this instance holds the lease
    # of its (app, action) (cluster/leases.py); a number is polled under a claim (claims.py).
    leases: Callable[[str], Lease] = Lease.solo
    claimer: NumberClaimer = field(default_factory=NumberClaimer)

    def lease_of(self, worker: Worker) -> Lease | None:
        """The lease ``worker`` polls under, or None."""
        name = pull_lease(worker.app_id, worker.action)
        return None if name is None else self.leases(name)


@dataclass(slots=True)
class PollStats:
    """What one poll cycle did, for the ``poll.completed`` line."""

    requests: int = 0
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    more_due: bool = False  # more work is waiting: start the next cycle at once
    nothing_tracked: bool = False  # no work exists at all (no number): nothing can be failing
    pause: float | None = None  # wait this long before the next cycle instead of the interval

    def add(self, result: CommitResult, fetched: int, rejected: int = 0) -> None:
        """Count one committed page."""
        self.requests += 1
        self.fetched += fetched
        self.new += len(result.new)
        self.duplicates += result.duplicates
        self.rejected += rejected


@dataclass(frozen=True, slots=True)
class NextCycle:
    """When a worker's next poll cycle starts: on its ticker's schedule unless told otherwise."""

    more_due: bool = False  # more work is waiting (full pages, overdue numbers): at once
    wait: float | None = None  # after this many seconds instead (unhealthy, not activated)

    def pause(self, scheduled: float) -> float:
        """Seconds to wait, given ``scheduled``, the ticker's remaining time."""
        if self.more_due:
            return 0.0
        return scheduled if self.wait is None else self.wait


ON_SCHEDULE = NextCycle()
AT_ONCE = NextCycle(more_due=True)


class Worker(Protocol):
    """One source of records for one app (or the process)."""

    name: str
    action: Action
    app_id: str
    interval: float
    health: Health

    async def poll(self) -> PollStats:
        """One cycle; raises ``TencentError`` or ``StateError`` on failure."""
        ...


class WorkerBase:
    """What every worker holds: its name, action, app, interval, health part and context."""

    def __init__(
        self, ctx: WorkerContext, *, name: str, action: Action, app_id: str, interval: float
    ) -> None:
        self.name = name
        self.action = action
        self.app_id = app_id
        self.interval = interval
        self.health = ctx.board.register(name, "worker")
        self._ctx = ctx


class Ticker:
    """Waits until the next tick of a fixed schedule: every ``interval``, jittered, no drift.

    Ticks are anchored to the first start (``first + k * interval``), so neither the time spent
    working nor a late wake-up moves later ticks; the jitter (±10 %, so many workers do not fire
    in lockstep) is drawn afresh for each wait and never accumulates. A cycle that overran a
    whole interval starts the next one at once and re-anchors the schedule there, rather than
    firing a burst of missed ticks.
    """

    def __init__(
        self,
        interval: float,
        *,
        jitter: float = 0.1,
        clock: Callable[[], float] = anyio.current_time,
        rng: random.Random | None = None,
    ) -> None:
        self.interval = interval
        self._jitter = jitter
        self._clock = clock
        self._rng = rng or random.Random()
        self._next: float | None = None  # the scheduled tick after the current cycle's

    def start(self) -> None:
        """Mark the start of a cycle."""
        now = self._clock()
        missed = self._next is None or now - self._next >= self.interval
        tick = now if missed or self._next is None else self._next
        self._next = tick + self.interval

    def remaining(self) -> float:
        """Seconds until the next cycle should start (0 if already late)."""
        if self._next is None:
            return 0.0
        spread = self.interval * self._jitter
        return max(0.0, self._next + self._rng.uniform(-spread, spread) - self._clock())


async def _wait_or_stop(ctx: WorkerContext, seconds: float) -> None:
    """Sleep ``seconds``, returning early when the daemon stops."""
    with anyio.move_on_after(seconds):
        await ctx.stopping.wait()


async def run_worker(
    worker: Worker,
    ctx: WorkerContext,
    *,
    begin: anyio.Event | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Poll on the worker's schedule until the daemon stops; never dies of an API error.

    The worker counts as started before its first poll; with ``begin`` that poll waits for the
    event, so the daemon can tell systemd READY=1 before anything is pulled.
    """
    ticker = Ticker(worker.interval, rng=ctx.rng)
    # Read at scrape time, so /metrics never lags /healthz (a cycle's end awaits a state write).
    ctx.metrics.worker_healthy.labels(worker.name).set_function(
        lambda: int(worker.health.is_healthy)
    )
    task_status.started()
    if begin is not None:
        await begin.wait()
    lease = ctx.lease_of(worker)
    if lease is not None:  # no request leaves once the lease is not ours (a pause, a cut)
        REQUEST_GATE.set(lambda: lease.held)
    while not ctx.stopping.is_set():
        if lease is not None and not lease.held:
            await _standby(ctx, lease)
            continue
        ticker.start()
        next_cycle = await poll_cycle(worker, ctx)
        await _wait_or_stop(ctx, next_cycle.pause(ticker.remaining()))


async def _standby(ctx: WorkerContext, lease: Lease) -> None:
    """Another instance holds the worker's lease: wait for it (or for the daemon to stop)."""
    async with anyio.create_task_group() as tg:

        async def until_stopping() -> None:
            await ctx.stopping.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(until_stopping)
        await lease.wait_held()
        tg.cancel_scope.cancel()


async def poll_cycle(worker: Worker, ctx: WorkerContext) -> NextCycle:
    """One poll with its logging and health; returns when the next one starts."""
    health = worker.health
    bound = log.bind(worker=worker.name, action=worker.action, app_id=worker.app_id or None)
    lease = ctx.lease_of(worker)
    if lease is not None and not lease.held:  # ``once`` while another instance holds it
        bound.info("poll.skipped", reason="another instance holds the lease", lease=lease.name)
        return ON_SCHEDULE
    was_healthy = health.failing_since is None
    started = anyio.current_time()
    next_cycle = ON_SCHEDULE
    try:
        stats = await worker.poll()
    except LeaseLostError as error:  # another instance pulls now; whatever was pulled is committed
        bound.info("poll.lease_lost", error=str(error))
        return ON_SCHEDULE
    except TencentError as error:
        health.failed(error.describe())
        permanent = isinstance(error, PermanentError)
        if permanent:  # retrying fast cannot help: try again slowly
            next_cycle = NextCycle(wait=ctx.unhealthy_retry)
        (bound.error if permanent else bound.warning)(
            "poll.failed",
            **error.log_fields,
            error=error.describe(),
            retry_in_s=next_cycle.wait,
        )
    except StateError as error:
        health.failed(str(error))  # it names the state database
        bound.error("poll.failed", error=str(error))
    except Exception as error:  # noqa: BLE001 (a bug in one worker must not stop the others)
        health.failed(f"internal error: {type(error).__name__}: {error}")
        bound.exception("poll.crashed")
        next_cycle = NextCycle(wait=ctx.unhealthy_retry)
    else:
        # A round that sent nothing (no number was due yet) says nothing about the API: a worker
        # whose last requests failed stays unhealthy until a request succeeds.
        recovered = bool(stats.requests) or stats.nothing_tracked
        if was_healthy or recovered:
            health.succeeded()
            ctx.metrics.last_success.labels(worker.name).set(ctx.clock())
        # An idle round (nothing was due) is not worth an info line every second.
        (bound.info if stats.requests else bound.debug)(
            "poll.completed",
            requests=stats.requests,
            fetched=stats.fetched,
            new=stats.new,
            duplicates=stats.duplicates,
            rejected=stats.rejected,
            duration_s=round(anyio.current_time() - started, 3),
        )
        if stats.more_due:
            next_cycle = AT_ONCE
        elif stats.pause is not None:
            next_cycle = NextCycle(wait=stats.pause)
        if not stats.requests and (was_healthy or not recovered):
            return next_cycle  # health unchanged: nothing to save
    await _save_health(ctx, worker.name, health)
    return next_cycle


async def _save_health(ctx: WorkerContext, name: str, health: Health) -> None:
    """Persist health for ``status``; a database failure here must not stop the worker."""
    try:
        await ctx.store.save_worker_state(
            name,
            healthy=health.is_healthy,
            error=health.reason,
            last_success_at=health.last_success_at,
        )
    except StateError as error:
        log.error("state.write_failed", worker=name, error=str(error))
