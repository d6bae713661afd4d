"""Runs one ``Drainer`` per configured sink, and changes the set on reload.

Each drainer runs in its own cancel scope inside the fleet's task group, so a reload can stop a
removed sink, restart a changed one and merely ``reopen()`` an unchanged one, while records keep
flowing to the others. A removed sink's cursor stays in the state, and holds its backlog in the
outbox, for ``state.dedupe_ttl``: it resumes where it left off if it comes back within that.
A reload is all or nothing (``SinkFleet.reload``), and a sink stops between two batches, never
between a send and its ack (unless that takes over ``STOP_GRACE``), so one restarted from its
cursor sends nothing twice.

In cluster mode (a ``Membership``) each sink drains only while this instance holds its lease:
the drainer starts from the shared cursor when the lease is gained, sends nothing once the
lease's local deadline passed, and fences every ack on it (``cluster/leases.py``); a sink here
waits as a standby meanwhile. It is opened once, unused, when it starts here (at the start or a
reload), so that a sink that cannot open fails those as it does with one daemon; a reload keeps
the lease of a sink it replaces, and releases that of a sink it removes (docs/cluster.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from tcsms_poller.backoff import Backoff
from tcsms_poller.cluster.leases import Lease, Membership, sink_lease
from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import Sink, SinkContext, SinkSettings
from tcsms_poller.sinks.drainer import Drainer, LeaseExpiredHereError
from tcsms_poller.sinks.registry import LoadedSinkType, load_sink_type
from tcsms_poller.state import StateError, StateStore
from tcsms_poller.state.roles import LeaseLostError, SinkCursor

__all__ = ["SinkFleet", "SinkReloadError"]

log = structlog.get_logger("tcsms_poller.sinks")

STOP_GRACE = 10.0  # seconds a sink stopped by a reload gets to finish the batch in hand
# Cluster mode: how long a sink that could not be started with its lease waits to try again.
RESTART_BACKOFF = Backoff(initial=1.0, maximum=60.0)


class SinkReloadError(Exception):
    """A reload of the sinks failed; the sinks run as before it (see ``SinkFleet.reload``)."""

    def __init__(
        self,
        message: str,
        *,
        restored: Sequence[str] = (),
        unrestored: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.restored = list(restored)
        self.unrestored = list(unrestored)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass(slots=True)
class _Running:
    settings: SinkSettings
    drainer: Drainer | None  # None while a standby waits for the sink's lease
    scope: anyio.CancelScope
    done: anyio.Event
    stopping: bool = False  # cluster mode: take no new turn with the lease


class SinkFleet:
    """The set of running sinks; ``run`` hosts them, ``reload`` and ``drain`` change them."""

    def __init__(
        self,
        *,
        store: StateStore,
        metrics: Metrics,
        board: HealthBoard,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        membership: Membership | None = None,
    ) -> None:
        self._store = store
        self._membership = membership
        self._draining = anyio.Event()
        self._metrics = metrics
        self._board = board
        self._state_dir = state_dir
        self._clock = clock
        self._running: dict[str, _Running] = {}
        self._tg: TaskGroup | None = None
        self._finished = anyio.Event()

    @property
    def names(self) -> list[str]:
        """The names of the running sinks (what the outbox purge must wait for)."""
        return sorted(self._running)

    def depths(self) -> dict[str, int]:
        """Unacknowledged records per sink."""
        return {
            name: running.drainer.depth
            for name, running in self._running.items()
            if running.drainer is not None
        }

    async def run(
        self,
        settings: Sequence[SinkSettings],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open every sink (a failure surfaces here), report started, host them until drained."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for one in settings:
                self._running[one.sink_name] = await self._start(one)
            task_status.started()
            await self._finished.wait()
            tg.cancel_scope.cancel()

    async def _start(
        self,
        settings: SinkSettings,
        loaded: LoadedSinkType | None = None,
        begin: anyio.Event | None = None,
    ) -> _Running:
        """Open the sink from its cursor; with ``begin`` it delivers once that is set."""
        assert self._tg is not None
        name = settings.sink_name
        loaded = loaded or load_sink_type(settings.type)
        running = _Running(settings, None, anyio.CancelScope(), anyio.Event())
        membership = self._membership

        async def host(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                with running.scope:
                    if membership is None:
                        running.drainer = await self._drainer(settings, loaded, None)
                        await running.drainer.run(begin=begin, task_status=task_status)
                    else:
                        # The cursor exists before any worker commits (a new sink starts at
                        # the head), whichever instance drains it later. The sink is built and
                        # opened once, unused, so that one that cannot be fails here (the start,
                        # a reload) rather than whenever this instance gets its lease.
                        await self._try_open(settings, loaded)
                        task_status.started()
                        if begin is not None:
                            await begin.wait()
                        await self._drain_while_held(
                            running, loaded, membership.lease(sink_lease(name))
                        )
            finally:
                running.done.set()

        try:
            await self._tg.start(host)
        except BaseException:
            self._board.unregister(f"sink:{name}")  # it never ran
            raise
        return running

    async def _try_open(self, settings: SinkSettings, loaded: LoadedSinkType) -> None:
        """Cluster mode: build the sink from its cursor and open it, then close it unused
        (its holder builds it again from the cursor as it is then)."""
        sink = self._build(settings, loaded, await self._store.sink_cursor(settings.sink_name))
        await sink.open()
        with anyio.move_on_after(5, shield=True):
            await sink.aclose()

    def _build(self, settings: SinkSettings, loaded: LoadedSinkType, cursor: SinkCursor) -> Sink:
        """The sink, built from its cursor as committed now; not open yet."""
        context = SinkContext(
            name=settings.sink_name, state_dir=self._state_dir, position=cursor.position
        )
        return loaded.factory(settings, context)

    async def _drainer(
        self, settings: SinkSettings, loaded: LoadedSinkType, lease: Lease | None
    ) -> Drainer:
        """A drainer from the sink's cursor as committed now (by whichever instance)."""
        name = settings.sink_name
        cursor = await self._store.sink_cursor(name)
        drainer = Drainer(
            sink=self._build(settings, loaded, cursor),
            settings=settings,
            store=self._store,
            dead_letters=self._store.dead_letters(name),
            health=self._board.register(f"sink:{name}", "sink"),
            metrics=self._metrics,
            acked_seq=cursor.acked_seq,
            clock=self._clock,
            fence=None if lease is None else lease.fence,
            holds=(lambda: True) if lease is None else (lambda: lease.held),
        )
        log.info(
            "sink.started",
            sink=name,
            type=settings.type,
            distribution=loaded.distribution,
            version=loaded.version,
            acked_seq=cursor.acked_seq,
            lease_token=None if lease is None else lease.token,
        )
        return drainer

    async def _drain_while_held(
        self, running: _Running, loaded: LoadedSinkType, lease: Lease
    ) -> None:
        """Cluster mode: drain while this instance holds the sink's lease, wait while not.

        A sink that cannot be built or opened when the lease is gained (it could at the start
        or reload: its downstream is down now, say) is tried again with backoff, the lease
        kept, as a single daemon retries a send; it never takes the fleet down with it."""
        name = running.settings.sink_name
        failures = 0
        while not (self._draining.is_set() or running.stopping):
            async with anyio.create_task_group() as waiting:

                async def stop_waiting_at_drain() -> None:
                    await self._draining.wait()
                    waiting.cancel_scope.cancel()

                waiting.start_soon(stop_waiting_at_drain)
                await lease.wait_held()
                waiting.cancel_scope.cancel()
            if self._draining.is_set() or running.stopping:
                return
            try:
                running.drainer = await self._drainer(running.settings, loaded, lease)
                if self._draining.is_set():
                    running.drainer.drain_and_stop()
                await running.drainer.run()
            except LeaseLostError as error:
                log.warning("sink.lease_lost", sink=name, error=str(error))
                fence = None if running.drainer is None else running.drainer.fence
                if fence is not None and not isinstance(error, LeaseExpiredHereError):
                    # A write refused by the fence: wait for a claim to return the lease.
                    lease.refused(fence.token)
            except Exception as error:  # noqa: BLE001 - this sink's failure, not the fleet's
                wait = RESTART_BACKOFF.ceiling(failures)
                failures += 1
                self._board.register(f"sink:{name}", "sink").failed(_describe(error))
                log.error("sink.failed", sink=name, error=_describe(error), retry_in_s=wait)
                with anyio.move_on_after(wait):
                    await self._draining.wait()
            else:
                failures = 0
            finally:
                running.drainer = None

    async def _stop(self, running: _Running, *, release: bool = True) -> None:
        """Stop one sink; its cursor stays, so it resumes from there if started again.

        In cluster mode its lease is given up, unless ``release`` is False: a sink replaced
        by a reload keeps it for its new self (or its old self again, if the reload fails), so
        another instance cannot take the sink over between the two."""
        name = running.settings.sink_name
        running.stopping = True
        if running.drainer is not None and not await running.drainer.stop(STOP_GRACE):
            log.warning("sink.stop_timeout", sink=name, grace_s=STOP_GRACE)
        running.scope.cancel()
        await running.done.wait()
        self._board.unregister(f"sink:{name}")
        if self._membership is not None and release:
            await self._membership.give_up(sink_lease(name))
        log.info("sink.stopped", sink=name)

    async def reload(self, settings: Sequence[SinkSettings]) -> None:
        """Make the running sinks match ``settings``, all or nothing; unchanged ones reopen.

        Everything that can fail is tried before a running sink is touched: every new or
        changed sink's type is imported and the sink built, and the added ones are opened.
        A changed sink can only be opened once its old self stopped (both would write the same
        file); if that fails, the sinks opened so far are closed unused and the old ones
        started again from their cursors, so nothing is lost or sent twice.

        Raises:
            SinkReloadError: nothing changed (``restored`` names the sinks restarted as they
                were, ``unrestored`` any that could not be).
        """
        wanted = {one.sink_name: one for one in settings}
        removed = [name for name in self._running if name not in wanted]
        added = [one for name, one in wanted.items() if name not in self._running]
        changed = [
            one
            for name, one in wanted.items()
            if name in self._running and self._running[name].settings != one
        ]
        unchanged = [
            self._running[name]
            for name, one in wanted.items()
            if name in self._running and self._running[name].settings == one
        ]
        begin = anyio.Event()  # set once every new sink is open: then they deliver
        opened: list[_Running] = []
        created: dict[str, int] = {}  # cursors new to the state (at seq): gone again on failure
        # 1. Import and build every new or changed sink, open the added ones: nothing stops.
        try:
            loaded = {one.sink_name: load_sink_type(one.type) for one in (*added, *changed)}
            for one in (*added, *changed):
                cursor = await self._store.sink_cursor(one.sink_name)
                if cursor.created:  # an added sink's, new to the state
                    created[one.sink_name] = cursor.acked_seq
                self._build(one, loaded[one.sink_name], cursor)
            for one in added:  # each kept as it opens: a later failure closes it
                opened.append(await self._start(one, loaded[one.sink_name], begin))  # noqa: PERF401
        except Exception as error:
            await self._close_unused(opened, created)
            raise SinkReloadError(_describe(error)) from error
        # 2. Replace each changed sink: stop the old one, open the new one from its cursor.
        replaced: list[_Running] = []
        try:
            for one in changed:
                old = self._running[one.sink_name]
                replaced.append(old)
                await self._stop(old, release=False)
                opened.append(await self._start(one, loaded[one.sink_name], begin))
        except Exception as error:
            await self._close_unused(opened, created, kept=[one.sink_name for one in changed])
            restored, unrestored = await self._restore(replaced)
            raise SinkReloadError(
                _describe(error), restored=restored, unrestored=unrestored
            ) from error
        # 3. Switch: the new sinks deliver, the removed ones stop, the unchanged ones reopen.
        self._running.update((running.settings.sink_name, running) for running in opened)
        begin.set()
        for name in removed:
            await self._stop(self._running.pop(name))
        for running in unchanged:
            if running.drainer is not None:
                try:
                    await running.drainer.reopen()
                except Exception as error:  # noqa: BLE001 - switched: the sink reopens to write
                    name = running.settings.sink_name
                    log.error("sink.reopen_failed", sink=name, error=_describe(error))

    async def _close_unused(
        self, opened: Sequence[_Running], created: Mapping[str, int], kept: Sequence[str] = ()
    ) -> None:
        """Close the sinks a failed reload opened (they sent nothing) and forget the cursors
        it created, which would otherwise keep the outbox from being purged. The leases of
        the ``kept`` sinks (changed ones, whose old selves start again) stay wanted.

        In cluster mode the cursors stay: another instance, reloaded with the same sink, may
        drain from one already, and would lose its acks (and the outbox rows they hold) with
        it. One that no instance configures is dropped by the purge after ``dedupe_ttl``, as is
        one the state failed to forget: that failure must not keep the stopped sinks down."""
        for running in reversed(opened):
            await self._stop(running, release=running.settings.sink_name not in kept)
        if self._membership is None:
            for name, acked_seq in created.items():
                try:
                    await self._store.forget_sink(name, acked_seq=acked_seq)
                except StateError as error:  # the purge drops it after dedupe_ttl
                    log.warning("sink.forget_failed", sink=name, error=str(error))

    async def _restore(self, replaced: Sequence[_Running]) -> tuple[list[str], list[str]]:
        """Start the stopped sinks again as they were; the names restored and not restored."""
        restored: list[str] = []
        unrestored: list[str] = []
        for old in replaced:
            name = old.settings.sink_name
            try:
                self._running[name] = await self._start(old.settings)
            except Exception as error:  # noqa: BLE001 - the others are still restored
                log.error("sink.restore_failed", sink=name, error=_describe(error))
                self._running.pop(name, None)
                unrestored.append(name)
                if self._membership is not None:  # not drained here: another instance may
                    await self._membership.give_up(sink_lease(name))
            else:
                restored.append(name)
        return restored, unrestored

    async def drain(self, grace: float) -> bool:
        """Deliver what the sinks can take within ``grace`` seconds; True if all drained."""
        self._draining.set()
        for running in self._running.values():
            if running.drainer is not None:
                running.drainer.drain_and_stop()
        with anyio.move_on_after(grace) as scope:
            for running in list(self._running.values()):
                await running.done.wait()
        if scope.cancelled_caught:
            log.warning("sink.drain_timeout", grace_s=grace, depths=self.depths())
        self._finished.set()
        return not scope.cancelled_caught
