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
page also reschedules the number (or drops it once nothing is pending), as does a failed poll.
Each round then gives up on messages still pending ``give_up_after`` their send: their
``receipt_missing`` records commit in the same transaction that marks them missing, exactly
once. In a cluster every one of these writes is fenced by the claim on the number
(``cluster/claims.py``): the poll's, or for a give-up the claims it takes (``_give_up``).
"""

from __future__ import annotations

import structlog

from tcsms_poller.config.model import TrackingSettings
from tcsms_poller.state import CommitResult
from tcsms_poller.state.message_store import GIVE_UP_BATCH
from tcsms_poller.state.messages import Schedule, TrackedMessage
from tcsms_poller.state.roles import LeaseLostError, NumberClaim, TrackedMessages, TrackedNumber
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
            expired = await self._messages.expired(
                self.app_id, give_up_after=self._settings.give_up_after
            )
            result = await self._give_up(expired)
            if result is None:
                break
            self._ctx.metrics.tracking.resolved.labels("missing").inc(len(result.new))
            stats.new += len(result.new)
            if len(expired) < GIVE_UP_BATCH:
                break
        pending = await self._messages.pending_counts()
        self._ctx.metrics.tracking.pending.labels(self.app_id).set(pending.get(self.app_id, 0))
        return stats

    async def _give_up(self, expired: list[TrackedMessage]) -> CommitResult | None:
        """Give up on the ``expired`` messages whose numbers this instance claims; None when
        it gave up on none.

        A give-up covers many numbers, so it claims them as a poll does (``NumberClaimer``),
        gives up only the messages of the numbers it won, with the commit fenced by those
        claims, and releases them. A claim is what says who works on a number now: while
        another instance polls one (its page may hold the receipt), this one cannot claim it,
        and leaves its messages to a later round (by then resolved, or given up then); an
        instance paused between the read and the commit finds its claims gone and commits
        nothing (``LeaseLostError``). A lease of the app's give-up would keep two give-ups
        apart but not a give-up and a poll of another instance. Whatever the claims, the
        messages' rows keep the give-up exactly once (``MessageRacedError``): one resolved
        meanwhile, by any path, fails the commit whole, and never gets a ``receipt_missing``.
        Alone (SQLite) every number is held and nothing is claimed.
        """
        if not expired:
            return None
        claimer = self._ctx.claimer
        won = await claimer.claim(self.app_id, sorted({m.phone for m in expired}))
        try:
            held = {one.phone for one in won}
            claims = [one.claim for one in won if one.claim is not None]
            return await self._messages.give_up(
                [m for m in expired if m.phone in held], schedule=self._schedule, claims=claims
            )
        except LeaseLostError as error:  # paused past a claim: that number is another's now
            log.info("by_number.claim_lost", worker=self.name, error=str(error))
            return None
        finally:
            await claimer.release(won)

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

    async def _retry_later(self, number: TrackedNumber, claim: NumberClaim | None) -> None:
        await self._messages.reschedule(
            self.app_id, number.phone, schedule=self._schedule, claim=claim
        )

    async def _fetch(self, phone: str, window: Window, replies: bool) -> _Fetched:
        self._requests.inc()
        return await super()._fetch(phone, window, replies)
