"""Tracked messages: per-number pulls only while a number has a message without its receipt.

The per-number worker of ``by_number.py`` with another schedule (its ``_span`` and ``_step``
seams): the numbers come from ``message_numbers`` (``state/messages.py``), each due at the
nearest poll time of its pending messages (``first_poll`` after the send, then doubling gaps
up to ``max_gap``). A poll sweeps ``[oldest pending sent_at - margin, now]`` with the same
windows and splits as any per-number poll, so it is correct under every reading of the window:
read as receive time, a receipt's receive time is at or after its send; read as send time, its
send time is the tracked ``sent_at`` (the margin absorbs the difference between the caller's
clock and Tencent's).

A message resolves in the commit of its receipt, whichever path brought it; the commit of each
page also reschedules the number (or drops it once nothing is pending). Each round then gives
up on messages still pending ``give_up_after`` their send: their ``receipt_missing`` records
commit in the same transaction that marks them missing, exactly once.
"""

from __future__ import annotations

import structlog

from tcsms_poller.config.model import TrackingSettings
from tcsms_poller.state import StateError
from tcsms_poller.state.message_store import GIVE_UP_BATCH
from tcsms_poller.state.messages import Schedule
from tcsms_poller.state.roles import TrackedMessages, TrackedNumber
from tcsms_poller.workers.base import PollStats, WorkerContext
from tcsms_poller.workers.by_number import CHECK_PERIOD, ByNumberWorker, NumberStep, _Fetched
from tcsms_poller.workers.windows import Window, oldest_allowed

__all__ = ["TrackingWorker", "schedule_of"]

log = structlog.get_logger("tcsms_poller.workers")


def schedule_of(settings: TrackingSettings) -> Schedule:
    """The poll schedule the settings describe."""
    return Schedule(first_poll=settings.first_poll, max_gap=settings.max_gap)


class TrackingWorker(ByNumberWorker):
    """Polls the numbers of one app's pending messages; see the module docstring."""

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        app_id: str,
        settings: TrackingSettings,
        messages: TrackedMessages,
    ) -> None:
        super().__init__(
            ctx,
            app_id=app_id,
            interval=settings.max_gap,
            lookback=0.0,
            replies=False,
            name=f"tracking:{app_id}",
        )
        # Numbers fall due first_poll after a send: notice them well within that (a second
        # at the default 15 s, as the per-number worker; less for a shorter first_poll).
        self.interval = min(CHECK_PERIOD, settings.first_poll / 15)
        self._settings = settings
        self._schedule = schedule_of(settings)
        self._messages = messages
        self._oldest: dict[str, int] = {}  # phone -> oldest pending sent_at, as of its due read
        self._lag = ctx.metrics.tracking.lag
        self._requests = ctx.metrics.tracking.requests.labels(app_id)

    async def poll(self) -> PollStats:
        """Poll the due numbers, then give up on messages whose time is over."""
        stats = await super().poll()
        while True:
            result = await self._messages.give_up(
                self.app_id, give_up_after=self._settings.give_up_after, schedule=self._schedule
            )
            if result is None:
                break
            self._ctx.metrics.tracking.resolved.labels("missing").inc(len(result.new))
            stats.new += len(result.new)
            if len(result.new) + result.duplicates < GIVE_UP_BATCH:
                break
        pending = await self._messages.pending_counts()
        self._ctx.metrics.tracking.pending.labels(self.app_id).set(pending.get(self.app_id, 0))
        return stats

    async def _due(self) -> tuple[float | None, list[TrackedNumber]]:
        oldest, due = await self._messages.due(
            self.app_id, limit=self._round_size, skip=frozenset(self._polling)
        )
        numbers = []
        for phone, next_due, sent_at in due:
            self._oldest[phone] = sent_at
            numbers.append(
                TrackedNumber(self.app_id, phone, "messages", None, None, None, next_due, None)
            )
        return oldest, numbers

    def _span(self, number: TrackedNumber, now: float) -> Window:
        sent_at = self._oldest.pop(number.phone, int(now))
        begin = min(int(now), sent_at - int(self._settings.margin))
        return Window(begin=max(begin, oldest_allowed(now)), end=int(now))

    def _step(
        self, number: TrackedNumber, started: float, newest: int | None, *, replies: bool
    ) -> NumberStep:
        return self._messages.polled(self.app_id, number.phone, schedule=self._schedule)

    async def _retry_later(self, number: TrackedNumber) -> None:
        try:
            await self._messages.reschedule(self.app_id, number.phone, schedule=self._schedule)
        except StateError as error:  # still due: the next round tries it again
            log.error("state.write_failed", worker=self.name, error=str(error))

    async def _fetch(self, phone: str, window: Window, replies: bool) -> _Fetched:
        self._requests.inc()
        return await super()._fetch(phone, window, replies)
