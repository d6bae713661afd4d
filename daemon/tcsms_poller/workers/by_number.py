"""Per-number worker: delivery receipts (and optionally replies) of every tracked number.

Scheduling without a task per number and without scans: a round reads the most overdue numbers
through the ``(app_id, next_due)`` index (skipping those it is polling, which it keeps in
memory), polls them concurrently under the shared per-action limiter, and commits each page
together with the number's cursor (the newest record time seen, shown by ``status``) and next
due time. While numbers stay due, the round takes the next batch as soon as the work in hand
drops below about a second's worth, so the limiter never idles waiting for a batch's slowest
answer; a busy round ends after ``ROUND_BUDGET`` (for its ``poll.completed`` line) and the next
starts at once.
When more numbers are due than the rate allows, numbers are simply polled less often than
``interval``; that lag is measured and reported.

Each poll of a number sweeps its whole span, splitting full windows: ``windows.py`` says why
that is correct whatever time the API's window reads and whatever order it answers in. The
windows a sweep ended with are kept in memory, so the next poll of a busy number asks those
directly (after a restart, its first poll finds them again).

In a cluster each number is polled under a claim (``cluster/claims.py``): taken right before its
first request, kept through a long sweep, carried by every commit of its pages and by the
reschedule of a failed poll (a write under a claim that passed to another instance is refused
and changes nothing), released at the end. The rounds are sized to this instance's share of the
action's limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import structlog

from tcsms_poller.cluster.claims import Claimed
from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.state import StateError
from tcsms_poller.state.roles import (
    LeaseLostError,
    MessagesPolled,
    NumberClaim,
    NumberPolled,
    TrackedNumber,
)
from tcsms_poller.tencent.api import PAGE_LIMIT, Action
from tcsms_poller.tencent.errors import AuthError, TencentError
from tcsms_poller.tencent.models import Page, RejectedItem
from tcsms_poller.tencent.ratelimit import REQUEST_GATE
from tcsms_poller.workers.base import PollStats, WorkerBase, WorkerContext
from tcsms_poller.workers.windows import Plan, Sweep, Window, span_of

__all__ = ["ByNumberWorker"]

log = structlog.get_logger("tcsms_poller.workers")

STATUS_ACTION = Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER
REPLY_ACTION = Action.PULL_SMS_REPLY_STATUS_BY_PHONE_NUMBER
CHECK_PERIOD = 1.0  # how soon a newly tracked or newly due number is noticed
LAG_WARNING_EVERY = 60.0
ROUND_BUDGET = 30.0  # a round that keeps finding due numbers takes no more after this long
MAX_PLANS = 10_000  # busy numbers whose windows are remembered (a few hundred bytes each)

NumberStep = NumberPolled | MessagesPolled  # what a page's commit does to its number's schedule


@dataclass(frozen=True, slots=True)
class _Fetched:
    """One page of one number, normalized."""

    action: Action
    records: list[Record]
    times: list[int]
    rejected: tuple[RejectedItem, ...]
    size: int  # every item the answer held, rejected and pending ones included: 100 is full


def _fetched(
    app_id: str,
    action: Action,
    page: Page[Any],
    normalize: Callable[..., Record],
    times: list[int],
    received_at: str,
) -> _Fetched:
    """A page of ``action`` normalized into records, each received at ``received_at``."""
    records = [
        normalize(app_id, item, source=action, received_at=received_at) for item in page.items
    ]
    return _Fetched(action, records, times, page.rejected, page.size)


@dataclass(slots=True)
class _Round:
    """One round's tally, and how many of its numbers are still waiting or being polled."""

    stats: PollStats = field(default_factory=PollStats)
    errors: list[TencentError] = field(default_factory=list)
    polled: int = 0
    pending: int = 0
    _drained: anyio.Event = field(default_factory=anyio.Event)
    _low_water: int = 0

    def started(self, count: int) -> None:
        self.polled += count
        self.pending += count

    def finished(self) -> None:
        self.pending -= 1
        if self.pending <= self._low_water:
            self._drained.set()

    async def wait_until_at_most(self, pending: int) -> None:
        """Return once no more than ``pending`` numbers of the round are left to poll."""
        if self.pending > pending:
            self._drained, self._low_water = anyio.Event(), pending
            await self._drained.wait()

    @property
    def auth_failed(self) -> AuthError | None:
        return next((e for e in self.errors if isinstance(e, AuthError)), None)


class ByNumberWorker(WorkerBase):
    """Polls the tracked numbers of one app; see the module docstring."""

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        app_id: str,
        interval: float,
        lookback: float,
        replies: bool,
        name: str | None = None,
    ) -> None:
        super().__init__(
            ctx,
            name=name or f"by_number:{app_id}",
            action=STATUS_ACTION,
            app_id=app_id,
            interval=CHECK_PERIOD,
        )
        self._number_interval = interval
        self._lookback = lookback
        self._replies = replies
        self._round_size = 1
        self._in_flight = anyio.CapacityLimiter(1)
        self._size_rounds()
        self._polling: set[str] = set()  # numbers handed to a task and not finished yet
        self._lag_logged_at = float("-inf")
        self._plans: dict[tuple[str, bool], Plan] = {}  # (phone, replies): the last sweep's plan
        self._lag = ctx.metrics.by_number_lag  # labelled at the first poll (tracking has its own)

    def _size_rounds(self) -> None:
        """About two seconds of work at the rate this instance may use (all of it alone, its
        share in a cluster). In a cluster a number is claimed once it is in flight; the claims
        of the numbers waiting for the limiter are renewed with the others (``NumberClaimer``)."""
        rate = max(1, self._ctx.client.current_rate(STATUS_ACTION))
        self._round_size = 2 * rate
        self._in_flight.total_tokens = 2 * rate

    async def poll(self) -> PollStats:
        """One round: poll the most overdue numbers; more rounds follow while any are due."""
        ctx = self._ctx
        self._size_rounds()
        oldest, numbers = await self._due()
        now = ctx.clock()
        lag = max(0.0, now - oldest) if oldest is not None else 0.0
        self._lag.labels(self.app_id).set(lag)
        self._report_lag(lag, now)
        if oldest is None:  # nothing tracked, so nothing failing: a past failure is over
            return PollStats(nothing_tracked=True)
        current = _Round()
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            while True:
                current.started(len(numbers))
                for number in numbers:
                    self._polling.add(number.phone)
                    tg.start_soon(self._poll_one, number, current)
                current.stats.more_due = len(numbers) == self._round_size
                if (
                    not current.stats.more_due
                    or anyio.current_time() - started >= ROUND_BUDGET
                    or ctx.stopping.is_set()
                ):
                    break
                await current.wait_until_at_most(self._round_size // 2)
                if current.auth_failed or ctx.stopping.is_set():
                    break
                self._size_rounds()  # a share granted or changed meanwhile (cluster mode)
                _, numbers = await self._due()
        auth = current.auth_failed
        if auth is not None:
            raise auth  # the account is at fault, not one number: stop the worker
        if current.errors and len(current.errors) == current.polled:
            raise current.errors[-1]
        return current.stats

    async def _due(self) -> tuple[float | None, list[TrackedNumber]]:
        return await self._ctx.store.due_numbers(
            self.app_id, limit=self._round_size, skip=frozenset(self._polling)
        )

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
        try:
            async with self._in_flight:
                if self._ctx.stopping.is_set():
                    return  # not polled: still due, at the next start
                await self._poll_claimed(number, current)
        finally:
            self._polling.discard(number.phone)
            current.finished()

    async def _poll_claimed(self, number: TrackedNumber, current: _Round) -> None:
        """Poll ``number`` under its claim (cluster mode), if this instance gets it."""
        claimer = self._ctx.claimer
        try:
            won = await claimer.claim(self.app_id, [number.phone])
        except StateError as error:  # still due: the next round tries it again
            log.error("state.write_failed", worker=self.name, error=str(error))
            return
        if not won:
            return  # another instance polls it
        (claimed,) = won
        REQUEST_GATE.set(lambda: claimed.held)  # this task's requests only
        try:
            await self._poll_number(number, current, claimed)
        except LeaseLostError as error:  # paused or cut off past the claim: the next holder's
            log.info("by_number.claim_lost", worker=self.name, error=str(error))
        finally:
            await claimer.release([claimed])

    async def _poll_number(self, number: TrackedNumber, current: _Round, claimed: Claimed) -> None:
        try:
            await self._poll_kind(number, current.stats, claimed, replies=False)
            if self._replies:
                await self._poll_kind(number, current.stats, claimed, replies=True)
        except TencentError as error:
            current.errors.append(error)
            if not isinstance(error, AuthError):  # the worker reports that one, once
                log.warning(
                    "by_number.number_failed",
                    worker=self.name,
                    number=number.phone,
                    **error.log_fields,
                    error=error.message,
                )
            try:
                await self._retry_later(number, claimed.claim)
            except LeaseLostError:
                raise  # the claim passed on: the new holder schedules the number
            except StateError as error:  # still due: the next round tries it again
                log.error("state.write_failed", worker=self.name, error=str(error))

    async def _retry_later(self, number: TrackedNumber, claim: NumberClaim | None) -> None:
        """A failed number is due again after its interval, not at once (which would spin);
        the write is fenced by the poll's claim."""
        await self._ctx.store.reschedule_number(
            self.app_id, number.phone, delay=self._number_interval, claim=claim
        )

    async def _poll_kind(
        self, number: TrackedNumber, stats: PollStats, claimed: Claimed, *, replies: bool
    ) -> None:
        """Sweep the number's span (see ``windows.py``): every window until none is full."""
        ctx = self._ctx
        started = ctx.clock()
        key = (number.phone, replies)
        span = self._span(number, started)
        sweep = Sweep.start(span, self._plans.pop(key, ()))  # a failed sweep starts afresh
        while (window := sweep.next(ctx.clock())) is not None:
            if not await ctx.claimer.keep(claimed):
                raise LeaseLostError("the number's claim passed to another instance")
            page = await self._fetch(number.phone, window, replies)
            newest = max(page.times, default=None)
            step = self._step(number, started, newest, replies=replies)
            step = replace(step, claim=claimed.claim)  # fenced by the number's claim
            result = await ctx.intake.commit_until_durable(
                page.records,
                source=page.action,
                health=self.health,
                rejected=page.rejected,
                also=step,
            )
            stats.add(result, page.size, len(page.rejected))
            sweep.record(window, page.size)
            if sweep.overfull and sweep.overfull[-1] == window:
                self._report_overfull(number.phone, window, page.action)
        self._remember(key, sweep.finished_plan())

    # The seams a worker with another schedule (``tracking.py``) changes: which window a poll
    # covers, and what the commit of a page does to the number's schedule.

    def _span(self, number: TrackedNumber, now: float) -> Window:
        """The span a poll of ``number`` sweeps: its whole lookback."""
        return span_of(now=now, lookback=self._lookback)

    def _step(
        self, number: TrackedNumber, started: float, newest: int | None, *, replies: bool
    ) -> NumberStep:
        """What the commit of a page of ``number`` also does: its cursors and next due time
        (the poll fences it by the number's claim)."""
        return NumberPolled(
            app_id=self.app_id,
            phone=number.phone,
            next_due=started + self._number_interval,
            polled_at=started,
            status_cursor=None if replies else newest,
            reply_cursor=newest if replies else None,
        )

    def _remember(self, key: tuple[str, bool], plan: Plan) -> None:
        """Keep a number's plan for its next poll; the least recently polled go first."""
        if plan:
            self._plans[key] = plan
            while len(self._plans) > MAX_PLANS:
                del self._plans[next(iter(self._plans))]

    def _report_overfull(self, phone: str, window: Window, action: Action) -> None:
        self._ctx.metrics.by_number_overfull.labels(self.app_id, action).inc()
        log.warning(
            "by_number.window_overfull",
            worker=self.name,
            action=action,
            number=phone,
            second=window.begin,
            hint=f"{PAGE_LIMIT} or more records in one second; Offset is fixed at 0, "
            "so any beyond this page cannot be pulled",
        )

    async def _fetch(self, phone: str, window: Window, replies: bool) -> _Fetched:
        client = self._ctx.client
        received_at = format_received_at(self._ctx.clock())
        if replies:
            reply_page = await client.pull_sms_reply_status_by_phone_number(
                self.app_id, phone, begin=window.begin, end=window.end
            )
            times = [r.reply_time for r in reply_page.items]
            return _fetched(self.app_id, REPLY_ACTION, reply_page, reply_record, times, received_at)
        page = await client.pull_sms_send_status_by_phone_number(
            self.app_id, phone, begin=window.begin, end=window.end
        )
        times = [s.user_receive_time for s in page.items]
        return _fetched(self.app_id, STATUS_ACTION, page, send_status_record, times, received_at)
