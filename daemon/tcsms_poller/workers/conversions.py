"""Conversion reporter: drains the durable conversion queue under the ReportConversion limit.

Each outcome becomes a ``conversion`` record committed together with the removal of the queue
entry, so a conversion is reported and recorded once even across crashes. Transient failures
(after the client's own retries) are deferred with backoff; a permanent answer for the
conversion itself (an unknown SerialNo, a bad parameter) is recorded with its code and not retried
forever; an account-level failure (``AuthFailure``) leaves the queue untouched and makes the
reporter unhealthy.
"""

from __future__ import annotations

import anyio
import structlog

from tcsms_poller.backoff import Backoff
from tcsms_poller.records import conversion_record, format_received_at
from tcsms_poller.state.roles import ConversionReported, PendingConversion
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.errors import AuthError, PermanentError, TencentError
from tcsms_poller.workers.base import PollStats, WorkerBase, WorkerContext

__all__ = ["ACTION", "ConversionReporter"]

ACTION = Action.REPORT_CONVERSION
BATCH = 200
LEASE = 120.0
log = structlog.get_logger("tcsms_poller.workers")


class ConversionReporter(WorkerBase):
    """Reports queued conversions of every app, checking the queue every ``interval``."""

    def __init__(self, ctx: WorkerContext, *, interval: float = 1.0) -> None:
        super().__init__(ctx, name="conversions", action=ACTION, app_id="", interval=interval)
        self._backoff = Backoff(initial=2.0, maximum=600.0)
        self._in_flight = anyio.CapacityLimiter(max(1, min(200, ctx.client.rate_limit(ACTION))))

    async def poll(self) -> PollStats:
        """Report every due conversion of one lease."""
        pending = await self._ctx.store.lease_conversions(limit=BATCH, lease=LEASE)
        stats = PollStats()
        failures: list[TencentError] = []

        async def report(item: PendingConversion) -> None:
            async with self._in_flight:
                error = await self.report(item, stats)
            if error is not None:
                failures.append(error)

        async with anyio.create_task_group() as tg:
            for item in pending:
                tg.start_soon(report, item)
        auth = next((e for e in failures if isinstance(e, AuthError)), None)
        if auth is not None:
            raise auth
        if failures and len(failures) == len(pending):
            raise failures[-1]
        stats.more_due = len(pending) == BATCH
        return stats

    async def report(self, item: PendingConversion, stats: PollStats) -> TencentError | None:
        """Report one conversion and commit its outcome; return a failure that was deferred."""
        ctx = self._ctx
        try:
            status = await ctx.client.report_conversion(
                item.app_id, item.serial_no, conversion_time=item.conversion_time
            )
            code, message = status.code, status.message
        except AuthError as error:
            await ctx.store.defer_conversion(
                item.id, delay=ctx.unhealthy_retry, error=error.describe()
            )
            return error
        except PermanentError as error:
            code, message = error.code, error.message
        except TencentError as error:
            delay = self._backoff.delay(item.attempts, rng=ctx.rng)
            await ctx.store.defer_conversion(item.id, delay=delay, error=error.describe())
            log.warning(
                "conversion.deferred",
                serial_no=item.serial_no,
                app_id=item.app_id,
                **error.log_fields,
                retry_in_s=round(delay, 1),
            )
            return error
        record = conversion_record(
            item.app_id,
            serial_no=item.serial_no,
            conversion_time=item.conversion_time,
            code=code,
            message=message,
            received_at=format_received_at(ctx.clock()),
        )
        result = await ctx.intake.commit_until_durable(
            [record],
            source=ACTION,
            health=self.health,
            also=ConversionReported(item.id),
        )
        ctx.metrics.conversions.labels(code).inc()
        stats.add(result, 1)
        return None
