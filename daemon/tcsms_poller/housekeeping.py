"""Background chores: purging the state, refreshing gauges, and the one-line systemd STATUS."""

from __future__ import annotations

import anyio
import structlog

from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sdnotify import Notifier
from tcsms_poller.sinks.fleet import SinkFleet
from tcsms_poller.state import StateError, StateStore
from tcsms_poller.state.store import PURGE_BATCH  # the same batch in every backend

__all__ = ["Housekeeper"]

log = structlog.get_logger("tcsms_poller.housekeeping")


class Housekeeper:
    """Runs every ``period`` seconds; each chore failing is logged and retried next time.

    Its chores are the state's only regular transactions when no record arrives, so it also
    reports the state database's health (the ``state`` part): a broken file shows in
    ``/healthz`` even on a quiet day, not only when a page fails to commit.
    """

    def __init__(
        self,
        *,
        store: StateStore,
        fleet: SinkFleet,
        metrics: Metrics,
        board: HealthBoard,
        notifier: Notifier,
        period: float = 30.0,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._metrics = metrics
        self._board = board
        self._health = board.register("state", "state")
        self._notifier = notifier
        self._period = period
        self._last_head = store.head
        self._last_at = anyio.current_time()

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            await self.once()
            await anyio.sleep(self._period)

    async def once(self) -> None:
        """One round of every chore."""
        try:
            await self._purge()
            counts = await self._store.number_counts()
        except StateError as error:
            log.error("housekeeping.failed", error=str(error))
            self._health.failed(str(error))
            counts = {}
        else:
            self._health.succeeded()
        for app_id, (tracked, _lag) in counts.items():
            self._metrics.tracked_numbers.labels(app_id).set(tracked)
        depths = self._fleet.depths()
        for sink, depth in depths.items():
            self._metrics.outbox_depth.labels(sink).set(depth)
        self._notifier.status(self.status_line(depths))

    async def _purge(self) -> None:
        for name in await self._store.forget_removed_sinks(self._fleet.names):
            log.warning(
                "sink.cursor_forgotten",
                sink=name,
                reason="removed from the configuration for longer than state.dedupe_ttl",
            )
        ids = rows = numbers = 0
        while True:
            expired, acked, gone = await self._store.purge(self._fleet.names)
            ids, rows, numbers = ids + expired, rows + acked, numbers + gone
            if expired < PURGE_BATCH and acked < PURGE_BATCH:
                break
            await anyio.lowlevel.checkpoint()  # let the pipeline in between batches
        if ids or rows or numbers:
            log.debug("state.purged", seen_ids=ids, outbox_rows=rows, numbers=numbers)

    def status_line(self, depths: dict[str, int]) -> str:
        """``42 records/min, outbox 3, all healthy`` (or the unhealthy parts)."""
        now = anyio.current_time()
        elapsed = max(now - self._last_at, 1e-9)
        per_minute = (self._store.head - self._last_head) * 60 / elapsed
        self._last_head, self._last_at = self._store.head, now
        unhealthy = [part.name for part in self._board.unhealthy()]
        health = f"unhealthy: {', '.join(unhealthy)}" if unhealthy else "all healthy"
        return f"{per_minute:.0f} records/min, outbox {max(depths.values(), default=0)}, {health}"
