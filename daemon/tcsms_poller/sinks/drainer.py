"""One drainer task per sink: from the sink's cursor, in order, in batches, until acknowledged.

The drainer is what makes the ``Sink`` contract (``base.py``) true: one call at a time, retries
with capped exponential backoff and jitter (honouring ``retry_after``), the sink's dead letters
(``DeadLetters``: files, or the shared database) for batches refused for good or retried past
``max_retry_duration``, and the cursor committed only on an ack. It wakes on commits, never on a
timer, and a slow sink delays only itself: its backlog stays in the outbox on disk.

Records queued for replay (``dead-letter replay``) go before the outbox: at start, on SIGHUP
(``reopen``), and whenever the dead letters report a replay queued by another process (a
PostgreSQL state, which any instance of a cluster replays into).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import anyio
import structlog
from anyio.abc import TaskStatus

from tcsms_poller.backoff import Backoff
from tcsms_poller.health import Health
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import (
    Ack,
    OutboxRecord,
    RejectedBatchError,
    RetryableSinkError,
    Sink,
    SinkSettings,
)
from tcsms_poller.state import StateError, StateStore
from tcsms_poller.state.roles import DeadLetters, Fence, LeaseLostError

__all__ = ["Drainer", "LeaseExpiredHereError"]

DEAD_LETTERED = Ack()  # what _deliver returns for a batch it dead-lettered (compared by identity)

log = structlog.get_logger("tcsms_poller.sinks")


class LeaseExpiredHereError(LeaseLostError):
    """The sink's lease is no longer held here (its local deadline passed): nothing was sent,
    and no write was refused."""


class _StopRequestedError(Exception):
    """stop() was called while the drainer waited to try again."""


async def _first_of(*waits: Callable[[], Awaitable[None]]) -> None:
    """Return as soon as any of ``waits`` returns or fails, cancelling the others; the first
    failure comes out as it is, not in an exception group (``SinkFleet`` catches
    ``LeaseLostError``, ``run`` the stop)."""
    failure: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def wait(one: Callable[[], Awaitable[None]]) -> None:
            try:
                await one()
            except Exception as error:  # noqa: BLE001 (raised again below, unwrapped)
                failure.append(error)
            tg.cancel_scope.cancel()

        for one in waits:
            tg.start_soon(wait, one)
    if failure:
        raise failure[0]


class Drainer:
    """Delivers the outbox to one sink; see the module docstring."""

    def __init__(
        self,
        *,
        sink: Sink,
        settings: SinkSettings,
        store: StateStore,
        dead_letters: DeadLetters,
        health: Health,
        metrics: Metrics,
        acked_seq: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        fence: Fence | None = None,
        holds: Callable[[], bool] = lambda: True,
    ) -> None:
        self.name = settings.sink_name
        self._sink = sink
        self._settings = settings
        self._store = store
        self._dead_letters = dead_letters
        self._replay_due = True  # look at the replay queue at start, and when asked to
        self._replay_added = anyio.Event()
        self._replay_pass = anyio.Event()  # set when the next look at the queue is over
        self._health = health
        self._metrics = metrics
        self._acked = acked_seq
        self._fence = fence  # cluster mode: the sink's lease, checked with every ack
        self._holds = holds  # cluster mode: whether the lease is still ours, before each send
        self._clock = clock
        self._sleep = sleep
        self._backoff = Backoff(initial=0.5, maximum=settings.max_backoff)
        self._draining = anyio.Event()
        self._stopping = anyio.Event()  # stop()
        self._stopped = anyio.Event()  # run() returned
        self._lock = anyio.Lock()  # never two calls into the sink at once (send vs reopen)

    @property
    def fence(self) -> Fence | None:
        """The lease every ack is fenced on (cluster mode), as it was when this drainer started."""
        return self._fence

    @property
    def depth(self) -> int:
        """Committed records this sink has not acknowledged yet."""
        return max(0, self._store.head - self._acked)

    def drain_and_stop(self) -> None:
        """Finish what is in the outbox, then return from ``run`` (shutdown)."""
        self._draining.set()

    async def stop(self, grace: float) -> bool:
        """Stop at the next safe point, within ``grace`` seconds; False if that passed.

        A safe point is any moment but between a send and the commit of its ack: a batch in
        hand is acknowledged first, a retry's wait is abandoned (nothing counts as delivered).
        A sink started again from its cursor then sends nothing twice. After ``grace`` the
        caller can only cancel ``run``: a batch sent then may come again (at-least-once)."""
        self._stopping.set()
        with anyio.move_on_after(grace):
            await self._stopped.wait()
        return self._stopped.is_set()

    async def reopen(self) -> None:
        """Reopen the sink's files or connections between two sends (SIGHUP)."""
        try:
            async with self._lock:
                await self._sink.reopen()
        finally:  # ``dead-letter replay`` tells a running daemon about its queue (SIGHUP)
            self._request_replays()

    def _request_replays(self) -> anyio.Event:
        """Look at the replay queue before the next batch; the event is set once that is over."""
        self._replay_due = True
        self._replay_added.set()
        return self._replay_pass

    async def _watch_replays(self) -> None:
        """Deliver what another process queues for replay (the dead letters say when)."""
        while True:
            await self._dead_letters.wait_for_replay()
            await self._request_replays().wait()

    async def run(
        self,
        *,
        begin: anyio.Event | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the sink, report started, and deliver until drained after ``drain_and_stop``.

        With ``begin`` the open sink sends nothing until it is set (a reload opens every new
        sink before it switches to them, and may drop them unused)."""
        try:
            await self._sink.open()
            task_status.started()
            try:
                if begin is not None:
                    await _first_of(begin.wait, self._stopping.wait)
                await _first_of(self._deliver_forever, self._watch_replays)  # the watch never ends
            except _StopRequestedError:
                pass
            finally:
                with anyio.move_on_after(5, shield=True):
                    await self._sink.aclose()
        finally:
            self._stopped.set()

    async def _wait(self, seconds: float) -> None:
        """Sleep between two tries; a stop() ends it (nothing is in flight then)."""
        await _first_of(partial(self._sleep, seconds), self._stopping.wait)
        if self._stopping.is_set():
            raise _StopRequestedError

    async def _deliver_forever(self) -> None:
        while not self._stopping.is_set():
            if self._replay_due:
                self._replay_due = False
                self._replay_added = anyio.Event()
                looked, self._replay_pass = self._replay_pass, anyio.Event()
                await self._deliver_replays()
                looked.set()
            self._metrics.outbox_depth.labels(self.name).set(self.depth)
            batch = await self._read()
            if not batch:
                if self._draining.is_set():
                    return
                await _first_of(
                    lambda: self._store.wait_for_commit(self._acked),
                    self._draining.wait,
                    self._stopping.wait,
                    self._replay_added.wait,
                )
                continue
            if self._stopping.is_set():
                return
            self._check_lease()
            ack = await self._deliver(batch)
            await self._commit_ack(batch[-1].seq, ack)

    def _check_lease(self) -> None:
        """Cluster mode: send nothing once the sink's lease may have passed to another
        instance. (An ack still pending is fenced instead: it commits if the lease stayed ours,
        so a batch delivered during a database outage is not sent again.)"""
        if not self._holds():
            raise LeaseExpiredHereError(f"the lease of sink {self.name} expired here: not sending")

    async def _deliver_replays(self) -> None:
        """Deliver what ``dead-letter replay`` queued, batch by batch, before the outbox; a
        stop() ends it between two batches, as it does the outbox."""
        limit = self._settings.batch_size
        try:
            while not self._stopping.is_set() and (
                batch := await self._dead_letters.queued(limit=limit)
            ):
                self._check_lease()
                ack = await self._deliver(batch)
                acknowledged = ack is not DEAD_LETTERED
                await self._dead_letters.finish(batch, acknowledged=acknowledged, fence=self._fence)
                if ack.position is not None:  # the file sink's offset moved: keep it
                    await self._commit_ack(self._acked, ack)
                log.info(
                    "sink.replayed", sink=self.name, records=len(batch), acknowledged=acknowledged
                )
        except LeaseLostError:
            raise  # another instance drains this sink now, replays included
        except (OSError, StateError) as error:
            # The queue stays as it is, for the next start, SIGHUP or look (wait_for_replay).
            log.error("sink.replay_failed", sink=self.name, error=str(error))

    async def _read(self) -> list[OutboxRecord]:
        """The next batch; a database that fails (a shared one restarting) is waited out."""
        attempt = 0
        while True:
            try:
                batch = await self._store.read_outbox(
                    after=self._acked, limit=self._settings.batch_size
                )
            except StateError as error:
                self._health.failed(str(error))
                log.error("sink.outbox_read_failed", sink=self.name, error=str(error))
                await self._wait(self._backoff.delay(attempt))
                attempt += 1
            else:
                if attempt:
                    self._health.succeeded()
                return batch

    async def _deliver(self, batch: Sequence[OutboxRecord]) -> Ack:
        """Send until acknowledged, or dead-letter; returns the ack to commit."""
        attempt = 0
        first_failure: float | None = None
        while True:
            if attempt:  # the wait may have outlasted the lease: the next holder sends it
                self._check_lease()
            try:
                async with self._lock:
                    ack = await self._sink.send(batch)
            except RejectedBatchError as error:
                return await self._dead_letter(batch, f"rejected: {error}")
            except Exception as error:  # noqa: BLE001 (a plugin may raise anything; all retry)
                now = self._clock()
                first_failure = first_failure if first_failure is not None else now
                self._metrics.sink_failures.labels(self.name).inc()
                # Our own error says what happened; anything else is named by its type.
                reason = (
                    str(error)
                    if isinstance(error, RetryableSinkError)
                    else f"{type(error).__name__}: {error}"
                )
                elapsed = now - first_failure
                if elapsed >= self._settings.max_retry_duration:
                    return await self._dead_letter(batch, f"gave up after {elapsed:.0f}s: {reason}")
                self._health.failed(reason, grace=self._settings.unhealthy_after)
                retry_after = error.retry_after if isinstance(error, RetryableSinkError) else None
                delay = max(self._backoff.delay(attempt), retry_after or 0.0)
                delay = min(delay, self._settings.max_retry_duration - elapsed)
                attempt += 1
                log.warning(
                    "sink.retry_scheduled",
                    sink=self.name,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=reason,
                    records=len(batch),
                )
                await self._wait(delay)
            else:
                self._health.succeeded()
                self._metrics.sink_delivered.labels(self.name).inc(len(batch))
                return ack

    async def _dead_letter(self, batch: Sequence[OutboxRecord], reason: str) -> Ack:
        """Write the batch to the dead letters, retrying until the disk (or database) takes it."""
        attempt = 0
        while True:
            try:
                await self._dead_letters.write(
                    batch, reason=reason, now=self._clock(), fence=self._fence
                )
                break
            except LeaseLostError:
                raise  # the new holder meets the batch itself, from the cursor
            except (OSError, StateError) as error:
                failed = f"dead-letter file: {error}" if isinstance(error, OSError) else str(error)
                self._health.failed(failed)
                log.error("sink.dead_letter_failed", sink=self.name, error=str(error))
                await self._wait(self._backoff.delay(attempt))
                attempt += 1
        self._metrics.dead_lettered.labels(self.name).inc(len(batch))
        log.error(
            "sink.dead_lettered",
            sink=self.name,
            records=len(batch),
            reason=reason,
            **self._dead_letters.log_fields,
        )
        self._health.succeeded()
        return DEAD_LETTERED

    async def _commit_ack(self, seq: int, ack: Ack) -> None:
        """Commit the cursor; a database failure is retried (the batch is already delivered)."""
        attempt = 0
        while True:
            try:
                await self._store.ack(self.name, seq=seq, position=ack.position, fence=self._fence)
                break
            except LeaseLostError:
                raise  # another instance drains this sink now: retrying cannot help
            except StateError as error:
                self._health.failed(str(error))
                log.error("sink.ack_commit_failed", sink=self.name, error=str(error))
                await self._sleep(self._backoff.delay(attempt))
                attempt += 1
        self._acked = seq
