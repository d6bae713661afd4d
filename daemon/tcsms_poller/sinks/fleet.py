"""Runs one ``Drainer`` per configured sink, and changes the set on reload.

Each drainer runs in its own cancel scope inside the fleet's task group, so a reload can stop a
removed sink, restart a changed one and merely ``reopen()`` an unchanged one, while records keep
flowing to the others. A removed sink's cursor stays in the state, and holds its backlog in the
outbox, for ``state.dedupe_ttl``: it resumes where it left off if it comes back within that.

In cluster mode (a ``Membership``) each sink drains only while this instance holds its lease:
the drainer starts from the shared cursor when the lease is gained, sends nothing once the
lease's local deadline passed, and fences every ack on it (``cluster/leases.py``); a sink here
waits as a standby meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from tcsms_poller.cluster.leases import Lease, Membership, sink_lease
from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import SinkContext, SinkSettings
from tcsms_poller.sinks.drainer import Drainer
from tcsms_poller.sinks.registry import LoadedSinkType, load_sink_type
from tcsms_poller.state import StateStore
from tcsms_poller.state.roles import LeaseLostError

__all__ = ["SinkFleet"]

log = structlog.get_logger("tcsms_poller.sinks")


@dataclass(slots=True)
class _Running:
    settings: SinkSettings
    drainer: Drainer | None  # None while a standby waits for the sink's lease
    scope: anyio.CancelScope
    done: anyio.Event


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
                await self._start(one)
            task_status.started()
            await self._finished.wait()
            tg.cancel_scope.cancel()

    async def _start(self, settings: SinkSettings) -> None:
        assert self._tg is not None
        name = settings.sink_name
        loaded = load_sink_type(settings.type)
        running = _Running(settings, None, anyio.CancelScope(), anyio.Event())
        membership = self._membership

        async def host(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                with running.scope:
                    if membership is None:
                        running.drainer = await self._drainer(settings, loaded, None)
                        await running.drainer.run(task_status=task_status)
                    else:
                        # The cursor exists before any worker commits (a new sink starts at
                        # the head), whichever instance drains it later.
                        await self._store.sink_cursor(name)
                        task_status.started()
                        await self._drain_while_held(
                            running, loaded, membership.lease(sink_lease(name))
                        )
            finally:
                running.done.set()

        await self._tg.start(host)
        self._running[name] = running

    async def _drainer(
        self, settings: SinkSettings, loaded: LoadedSinkType, lease: Lease | None
    ) -> Drainer:
        """A drainer from the sink's cursor as committed now (by whichever instance)."""
        name = settings.sink_name
        cursor = await self._store.sink_cursor(name)
        context = SinkContext(name=name, state_dir=self._state_dir, position=cursor.position)
        drainer = Drainer(
            sink=loaded.factory(settings, context),
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
        """Cluster mode: drain while this instance holds the sink's lease, wait while not."""
        name = running.settings.sink_name
        while not self._draining.is_set():
            async with anyio.create_task_group() as waiting:

                async def stop_waiting_at_drain() -> None:
                    await self._draining.wait()
                    waiting.cancel_scope.cancel()

                waiting.start_soon(stop_waiting_at_drain)
                await lease.wait_held()
                waiting.cancel_scope.cancel()
            if self._draining.is_set():
                return
            try:
                running.drainer = await self._drainer(running.settings, loaded, lease)
                if self._draining.is_set():
                    running.drainer.drain_and_stop()
                await running.drainer.run()
            except LeaseLostError as error:
                log.warning("sink.lease_lost", sink=name, error=str(error))
            finally:
                running.drainer = None

    async def _stop(self, name: str) -> None:
        running = self._running.pop(name)
        running.scope.cancel()
        await running.done.wait()
        self._board.unregister(f"sink:{name}")
        if self._membership is not None:
            await self._membership.give_up(sink_lease(name))
        log.info("sink.stopped", sink=name)

    async def reload(self, settings: Sequence[SinkSettings]) -> None:
        """Make the running sinks match ``settings``; unchanged ones reopen their files."""
        wanted = {one.sink_name: one for one in settings}
        for name in [n for n in self._running if n not in wanted]:
            await self._stop(name)
        for name, one in wanted.items():
            running = self._running.get(name)
            if running is not None and running.settings == one:
                if running.drainer is not None:
                    await running.drainer.reopen()
                continue
            if running is not None:
                await self._stop(name)
            await self._start(one)

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
