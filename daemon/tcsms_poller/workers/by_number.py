"""Per-number worker: delivery receipts (and optionally replies) of every tracked number.

Scheduling without a task per number and without scans: each round leases the most overdue
numbers through the ``(app_id, next_due)`` index, polls them concurrently under the shared
per-action limiter, and commits each page together with the number's cursor and next due time.
When more numbers are due than the rate allows, the round is followed at once by another and
numbers are simply polled less often than ``interval``; that lag is measured and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import anyio
import structlog

from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.state import StateError
from tcsms_poller.state.numbers import TrackedNumber, advance_number
from tcsms_poller.tencent.errors import AuthError, PermanentError, TencentError
from tcsms_poller.tencent.models import RejectedItem
from tcsms_poller.workers.base import PollStats, WorkerContext
from tcsms_poller.workers.windows import PAGE_LIMIT, Window, first_window, next_window

__all__ = ["ByNumberWorker"]

log = structlog.get_logger("tcsms_poller.workers")

STATUS_ACTION = "PullSmsSendStatusByPhoneNumber"
REPLY_ACTION = "PullSmsReplyStatusByPhoneNumber"
CHECK_PERIOD = 1.0  # how soon a newly tracked or newly due number is noticed
LEASE = 300.0  # a leased number is due again after this if its poll never finished
LAG_WARNING_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class _Fetched:
    """One page of one number, normalized."""

    action: str
    records: list[Record]
    times: list[int]
    rejected: tuple[RejectedItem, ...]


@dataclass(slots=True)
class _Round:
    stats: PollStats
    errors: list[TencentError]


class ByNumberWorker:
    """Polls the tracked numbers of one app; see the module docstring."""

    def __init__(
        self, ctx: WorkerContext, *, app_id: str, interval: float, lookback: float, replies: bool
    ) -> None:
        self.name = f"by_number:{app_id}"
        self.action = STATUS_ACTION
        self.app_id = app_id
        self.interval = CHECK_PERIOD
        self.health = ctx.board.register(self.name, "worker")
        self._ctx = ctx
        self._number_interval = interval
        self._lookback = lookback
        self._replies = replies
        rate = ctx.client.rate_limit(STATUS_ACTION)
        self._round_size = max(1, 2 * rate)  # about two seconds of work at the full rate
        self._in_flight = anyio.CapacityLimiter(max(1, 2 * rate))
        self._lag_logged_at = float("-inf")

    async def poll(self) -> PollStats:
        """One round: poll the most overdue numbers; more rounds follow while any are due."""
        ctx = self._ctx
        oldest = await ctx.store.oldest_due(self.app_id)
        now = ctx.clock()
        lag = max(0.0, now - oldest) if oldest is not None else 0.0
        ctx.metrics.by_number_lag.labels(self.app_id).set(lag)
        self._report_lag(lag, now)
        if oldest is None:  # nothing tracked, so nothing failing: a past failure is over
            return PollStats(nothing_tracked=True)
        numbers = await ctx.store.lease_due_numbers(
            self.app_id, limit=self._round_size, lease=LEASE
        )
        current = _Round(PollStats(), [])
        async with anyio.create_task_group() as tg:
            for number in numbers:
                tg.start_soon(self._poll_one, number, current)
        auth = next((e for e in current.errors if isinstance(e, AuthError)), None)
        if auth is not None:
            raise auth  # the account is at fault, not one number: stop the worker
        if current.errors and len(current.errors) == len(numbers):
            raise current.errors[-1]
        current.stats.more_due = len(numbers) == self._round_size
        return current.stats

    def _report_lag(self, lag: float, now: float) -> None:
        if lag > self._number_interval and now - self._lag_logged_at >= LAG_WARNING_EVERY:
            self._lag_logged_at = now
            log.warning(
                "by_number.lagging",
                worker=self.name,
                app_id=self.app_id,
                lag_s=round(lag, 1),
                interval_s=self._number_interval,
                hint="more numbers are tracked than the rate limit can poll every interval",
            )

    async def _poll_one(self, number: TrackedNumber, current: _Round) -> None:
        async with self._in_flight:
            try:
                await self._poll_kind(number, current.stats, replies=False)
                if self._replies:
                    await self._poll_kind(number, current.stats, replies=True)
            except PermanentError as error:
                await self._retry_later(number)
                if not isinstance(error, AuthError):
                    log.warning(
                        "by_number.number_failed",
                        worker=self.name,
                        number=number.phone,
                        code=error.code,
                        request_id=error.request_id or None,
                        error=error.message,
                    )
                current.errors.append(error)
            except TencentError as error:
                await self._retry_later(number)
                current.errors.append(error)
                log.warning(
                    "by_number.number_failed",
                    worker=self.name,
                    number=number.phone,
                    code=error.code,
                    request_id=error.request_id or None,
                    error=error.message,
                )

    async def _retry_later(self, number: TrackedNumber) -> None:
        """A failed number is due again after its interval, not only when its lease runs out."""
        try:
            await self._ctx.store.reschedule_number(
                self.app_id, number.phone, delay=self._number_interval
            )
        except StateError as error:  # the lease still brings the number back, later
            log.error("state.write_failed", worker=self.name, error=str(error))

    async def _poll_kind(self, number: TrackedNumber, stats: PollStats, *, replies: bool) -> None:
        ctx = self._ctx
        started = ctx.clock()
        cursor = number.reply_cursor if replies else number.status_cursor
        window: Window | None = first_window(cursor=cursor, now=started, lookback=self._lookback)
        while window is not None:
            page = await self._fetch(number.phone, window, replies)
            newest = max(page.times, default=None)
            step = partial(
                advance_number,
                app_id=self.app_id,
                phone=number.phone,
                next_due=started + self._number_interval,
                polled_at=started,
                status_cursor=None if replies else newest,
                reply_cursor=newest if replies else None,
            )
            result = await ctx.intake.commit_until_durable(
                page.records,
                source=page.action,
                health=self.health,
                rejected=page.rejected,
                also=step,
            )
            stats.add(result, len(page.times) + len(page.rejected), len(page.rejected))
            if len(page.times) == PAGE_LIMIT and min(page.times) == max(page.times):
                log.warning(
                    "by_number.page_all_one_second",
                    worker=self.name,
                    number=number.phone,
                    second=page.times[0],
                    hint="100 records share one second; Offset is fixed at 0, some may be skipped",
                )
            window = next_window(window, page.times)

    async def _fetch(self, phone: str, window: Window, replies: bool) -> _Fetched:
        client = self._ctx.client
        received_at = format_received_at(self._ctx.clock())
        if replies:
            reply_page = await client.pull_sms_reply_status_by_phone_number(
                self.app_id, phone, begin=window.begin, end=window.end
            )
            return _Fetched(
                action=REPLY_ACTION,
                records=[
                    reply_record(self.app_id, r, source=REPLY_ACTION, received_at=received_at)
                    for r in reply_page.items
                ],
                times=[r.reply_time for r in reply_page.items],
                rejected=reply_page.rejected,
            )
        page = await client.pull_sms_send_status_by_phone_number(
            self.app_id, phone, begin=window.begin, end=window.end
        )
        return _Fetched(
            action=STATUS_ACTION,
            records=[
                send_status_record(self.app_id, s, source=STATUS_ACTION, received_at=received_at)
                for s in page.items
            ],
            times=[s.user_receive_time for s in page.items],
            rejected=page.rejected,
        )
