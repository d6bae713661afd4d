"""Statistics worker: Tencent's hourly receipt counters, as records and as metrics.

Each hour of the lookback is asked for separately and becomes one ``callback_statistics``
record whose ``begin_time`` and ``end_time`` are both that hour: the record names the first and
the last hour it counts, so records never overlap and their sums are the account's. Its id
hashes the counters: an hour whose counters changed since it was last emitted is emitted again,
an unchanged one is a duplicate.

``EndTime`` includes its hour (the SDK's models: "the range includes this hour", ``EndTime >=
BeginTime``), so one hour is asked as ``[h, h]``. An API that still follows the older page
("EndTime must be after BeginTime") refuses that with ``InvalidParameterValue.EndTimeVerifyFail``;
the worker then asks that app for ``[h, h+1]`` from then on, read as hour ``h`` alone, and says
so once in a ``statistics.end_hour_exclusive`` warning. The record is the same either way. Until
one answer has shown which reading the API takes, hours are asked one at a time, so learning it
costs one refused request, not one an hour.

The metrics are the sums over the lookback.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import anyio
import structlog

from tcsms_poller.records import Record, format_received_at, statistics_record
from tcsms_poller.tencent.api import BEIJING, Action
from tcsms_poller.tencent.errors import RequestError, TencentError
from tcsms_poller.tencent.models import STATISTICS_FIELDS
from tcsms_poller.workers.base import PollStats, WorkerBase, WorkerContext

__all__ = ["StatisticsWorker", "hours_back"]

log = structlog.get_logger("tcsms_poller.workers")

ACTION = Action.CALLBACK_STATUS_STATISTICS
EQUAL_HOURS_REFUSED = "InvalidParameterValue.EndTimeVerifyFail"
HOUR = timedelta(hours=1)


def hours_back(now: float, lookback: float) -> list[datetime]:
    """Every Beijing-time hour from ``lookback`` ago up to the current (partial) hour."""
    current = datetime.fromtimestamp(now, BEIJING).replace(minute=0, second=0, microsecond=0)
    count = max(1, int(lookback // 3600))
    return [current - back * HOUR for back in range(count - 1, -1, -1)]


def _hour(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H")


class StatisticsWorker(WorkerBase):
    """Collects the receipt statistics of one app every ``interval``."""

    def __init__(self, ctx: WorkerContext, *, app_id: str, interval: float, lookback: float):
        super().__init__(
            ctx, name=f"statistics:{app_id}", action=ACTION, app_id=app_id, interval=interval
        )
        self._lookback = lookback
        self._in_flight = anyio.CapacityLimiter(max(1, ctx.client.rate_limit(ACTION)))
        self._end_exclusive = False  # this app's API refused [h, h]: ask [h, h+1]
        self._reading_known = False  # an answer has shown which of the two this app's API takes

    async def poll(self) -> PollStats:
        """Ask for every hour of the lookback, then commit all hours in one transaction.

        In a cluster the commit is fenced by the worker's lease as it was held when the poll
        began: statistics can be asked for again, so an instance that lost the lease meanwhile
        (paused past it) commits none of them (``LeaseLostError``); the new holder asks.
        """
        lease = self._ctx.lease_of(self)
        fence = None if lease is None else lease.fence
        hours = hours_back(self._ctx.clock(), self._lookback)
        received_at = format_received_at(self._ctx.clock())
        records: dict[str, Record] = {}
        failures: list[TencentError] = []
        stats = PollStats()

        async def fetch(hour: datetime) -> None:
            try:
                counters = await self._counters_of(hour, stats)
            except TencentError as error:
                failures.append(error)
                return
            name = _hour(hour)
            records[name] = statistics_record(
                self.app_id,
                begin_time=name,
                end_time=name,
                counters=counters,
                source=ACTION,
                received_at=received_at,
            )

        async with anyio.create_task_group() as tg:
            for hour in hours:
                if self._reading_known:
                    tg.start_soon(fetch, hour)
                else:  # one request learns how this app's API reads EndTime
                    await fetch(hour)
        if failures:  # the next cycle asks for every hour again
            raise failures[0]
        ordered = [records[key] for key in sorted(records)]
        result = await self._ctx.intake.commit_until_durable(
            ordered, source=ACTION, health=self.health, fence=fence
        )
        self._publish(ordered)
        requests = stats.requests
        stats.add(result, len(ordered))
        stats.requests = requests
        return stats

    async def _counters_of(self, hour: datetime, stats: PollStats) -> dict[str, int]:
        """The counters of one hour, asked the way this app's API reads ``EndTime``."""
        if not self._end_exclusive:
            try:
                counters = await self._ask(hour, hour, stats)
            except RequestError as error:
                if error.code != EQUAL_HOURS_REFUSED:
                    raise
                self._fall_back(error)
            else:
                self._reading_known = True
                return counters
        counters = await self._ask(hour, hour + HOUR, stats)
        self._reading_known = True
        return counters

    async def _ask(self, begin: datetime, end: datetime, stats: PollStats) -> dict[str, int]:
        async with self._in_flight:
            stats.requests += 1
            result = await self._ctx.client.callback_status_statistics(
                self.app_id, begin_hour=_hour(begin), end_hour=_hour(end)
            )
        return dict(result.counters)

    def _fall_back(self, error: RequestError) -> None:
        if self._end_exclusive:  # another hour of this cycle was refused first
            return
        self._end_exclusive = True
        log.warning(
            "statistics.end_hour_exclusive",
            worker=self.name,
            app_id=self.app_id,
            **error.log_fields,
            note="the API refused EndTime equal to BeginTime: asking each hour as [h, h+1], "
            "read as hour h alone",
        )

    def _publish(self, records: list[Record]) -> None:
        totals: Counter[str] = Counter()
        for record in records:
            totals.update({name: record.fields[name] for name, _ in STATISTICS_FIELDS})
        for name, _ in STATISTICS_FIELDS:
            self._ctx.metrics.callback_statistics.labels(self.app_id, name).set(totals[name])
