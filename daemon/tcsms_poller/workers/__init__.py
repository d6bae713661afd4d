"""The pull workers, one per (app, source), and the conversion reporter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.workers.base import (
    NextCycle,
    PollStats,
    Worker,
    WorkerContext,
    poll_cycle,
    run_worker,
)
from tcsms_poller.workers.by_number import ByNumberWorker
from tcsms_poller.workers.conversions import ConversionReporter
from tcsms_poller.workers.queue import replies_worker, send_status_worker
from tcsms_poller.workers.statistics import StatisticsWorker
from tcsms_poller.workers.tracking import TrackingWorker

if TYPE_CHECKING:
    from tcsms_poller.config import Config

__all__ = [
    "ByNumberWorker",
    "ConversionReporter",
    "NextCycle",
    "PollStats",
    "TrackingWorker",
    "Worker",
    "WorkerContext",
    "build_workers",
    "poll_cycle",
    "run_worker",
]


def build_workers(config: Config, ctx: WorkerContext) -> list[Worker]:
    """Every worker the configuration enables, in a stable order."""
    workers: list[Worker] = []
    messages = tracked_messages(ctx.store, clock=ctx.clock)
    for app in config.apps:
        app_id = app.sms_sdk_app_id
        if app.replies.enabled:
            workers.append(replies_worker(ctx, app_id, app.replies.interval))
        if app.send_status.enabled:
            workers.append(send_status_worker(ctx, app_id, app.send_status.interval))
        if app.by_number.enabled:
            workers.append(
                ByNumberWorker(
                    ctx,
                    app_id=app_id,
                    interval=app.by_number.interval,
                    lookback=app.by_number.lookback,
                    replies=app.by_number.replies,
                )
            )
        if app.tracking.enabled:
            workers.append(
                TrackingWorker(ctx, app_id=app_id, settings=app.tracking, messages=messages)
            )
        if app.statistics.enabled:
            workers.append(
                StatisticsWorker(
                    ctx,
                    app_id=app_id,
                    interval=app.statistics.interval,
                    lookback=app.statistics.lookback,
                )
            )
    if any(app.conversions.enabled for app in config.apps):
        workers.append(ConversionReporter(ctx))
    return workers
