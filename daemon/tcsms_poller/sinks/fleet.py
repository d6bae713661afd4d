"""Runs one ``Drainer`` per configured sink, and changes the set on reload.

Each drainer runs in its own cancel scope inside the fleet's task group, so a reload can stop a
removed sink, restart a changed one and merely ``reopen()`` an unchanged one, while records keep
flowing to the others. A removed sink's cursor stays in the state, and holds its backlog in the
outbox, for ``state.dedupe_ttl``: it resumes where it left off if it comes back within that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import SinkContext, SinkSettings
from tcsms_poller.sinks.deadletter import DeadLetterFile
from tcsms_poller.sinks.drainer import Drainer
from tcsms_poller.sinks.registry import load_sink_type
from tcsms_poller.state import StateStore

__all__ = ["SinkFleet"]

log = structlog.get_logger("tcsms_poller.sinks")


@dataclass(slots=True)
class _Running:
    settings: SinkSettings
    drainer: Drainer
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
    ) -> None:
        self._store = store
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
        return {name: running.drainer.depth for name, running in self._running.items()}

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
        cursor = await self._store.sink_cursor(name)
        context = SinkContext(name=name, state_dir=self._state_dir, position=cursor.position)
        drainer = Drainer(
            sink=loaded.factory(settings, context),
            settings=settings,
            store=self._store,
            dead_letters=DeadLetterFile(self._state_dir / "dead-letter" / f"{name}.jsonl"),
            health=self._board.register(f"sink:{name}", "sink"),
            metrics=self._metrics,
            acked_seq=cursor.acked_seq,
            clock=self._clock,
        )
        running = _Running(settings, drainer, anyio.CancelScope(), anyio.Event())

        async def host(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                with running.scope:
                    await drainer.run(task_status=task_status)
            finally:
                running.done.set()

        await self._tg.start(host)
        self._running[name] = running
        log.info(
            "sink.started",
            sink=name,
            type=settings.type,
            distribution=loaded.distribution,
            version=loaded.version,
            acked_seq=cursor.acked_seq,
        )

    async def _stop(self, name: str) -> None:
        running = self._running.pop(name)
        running.scope.cancel()
        await running.done.wait()
        self._board.unregister(f"sink:{name}")
        log.info("sink.stopped", sink=name)

    async def reload(self, settings: Sequence[SinkSettings]) -> None:
        """Make the running sinks match ``settings``; unchanged ones reopen their files."""
        wanted = {one.sink_name: one for one in settings}
        for name in [n for n in self._running if n not in wanted]:
            await self._stop(name)
        for name, one in wanted.items():
            running = self._running.get(name)
            if running is not None and running.settings == one:
                await running.drainer.reopen()
                continue
            if running is not None:
                await self._stop(name)
            await self._start(one)

    async def drain(self, grace: float) -> bool:
        """Deliver what the sinks can take within ``grace`` seconds; True if all drained."""
        for running in self._running.values():
            running.drainer.drain_and_stop()
        with anyio.move_on_after(grace) as scope:
            for running in list(self._running.values()):
                await running.done.wait()
        if scope.cancelled_caught:
            log.warning("sink.drain_timeout", grace_s=grace, depths=self.depths())
        self._finished.set()
        return not scope.cancelled_caught
