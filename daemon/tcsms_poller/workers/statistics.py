"""Statistics worker: Tencent's hourly receipt counters, as records and as metrics.

Each hour of the lookback is asked for separately (``BeginTime`` = the hour, ``EndTime`` = the
next), so each hour is one ``callback_statistics`` record whose id hashes its counters: an hour
whose counters changed since it was last emitted is emitted again, an unchanged one is a
duplicate. The metrics are the sums over the lookback.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import anyio

from tcsms_poller.records import BEIJING, Record, format_received_at, statistics_record
from tcsms_poller.tencent.errors import TencentError
from tcsms_poller.tencent.models import STATISTICS_FIELDS
from tcsms_poller.workers.base import PollStats, WorkerContext

__all__ = ["StatisticsWorker", "hours_back"]

ACTION = "CallbackStatusStatistics"


def hours_back(now: float, lookback: float) -> list[datetime]:
    """Every Beijing-time hour from ``lookback`` ago up to the current (partial) hour."""
    current = datetime.fromtimestamp(now, BEIJING).replace(minute=0, second=0, microsecond=0)
    count = max(1, int(lookback // 3600))
    return [current - timedelta(hours=back) for back in range(count - 1, -1, -1)]


def _hour(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H")


class StatisticsWorker:
    """Collects the receipt statistics of one app every ``interval``."""

    def __init__(self, ctx: WorkerContext, *, app_id: str, interval: float, lookback: float):
        self.name = f"statistics:{app_id}"
        self.action = ACTION
        self.app_id = app_id
        self.interval = interval
        self.health = ctx.board.register(self.name, "worker")
        self._ctx = ctx
        self._lookback = lookback
        self._in_flight = anyio.CapacityLimiter(max(1, ctx.client.rate_limit(ACTION)))

    async def poll(self) -> PollStats:
        """Ask for every hour of the lookback, then commit all hours in one transaction."""
        hours = hours_back(self._ctx.clock(), self._lookback)
        received_at = format_received_at(self._ctx.clock())
        records: dict[str, Record] = {}
        failures: list[TencentError] = []

        async def fetch(hour: datetime) -> None:
            begin, end = _hour(hour), _hour(hour + timedelta(hours=1))
            try:
                async with self._in_flight:
                    result = await self._ctx.client.callback_status_statistics(
                        self.app_id, begin_hour=begin, end_hour=end
                    )
            except TencentError as error:
                failures.append(error)
                return
            records[begin] = statistics_record(
                self.app_id,
                begin_time=begin,
                end_time=end,
                counters=result.counters,
                source=ACTION,
                received_at=received_at,
            )

        async with anyio.create_task_group() as tg:
            for hour in hours:
                tg.start_soon(fetch, hour)
        if failures:  # the next cycle asks for every hour again
            raise failures[0]
        ordered = [records[key] for key in sorted(records)]
        result = await self._ctx.intake.commit_until_durable(
            ordered, source=ACTION, health=self.health
        )
        self._publish(ordered)
        stats = PollStats()
        stats.add(result, len(ordered))
        stats.requests = len(hours)
        return stats

    def _publish(self, records: list[Record]) -> None:
        totals: Counter[str] = Counter()
        for record in records:
            totals.update({name: record.fields[name] for name, _ in STATISTICS_FIELDS})
        for name, _ in STATISTICS_FIELDS:
            self._ctx.metrics.callback_statistics.labels(self.app_id, name).set(totals[name])
