"""Queue-mode workers: ``PullSmsReplyStatus`` and ``PullSmsSendStatus``.

Tencent hands each queued record out once only, so every page is committed (shielded from
cancellation, retried while the disk fails) before the next pull, and a full page is followed at
once by another pull until the queue is empty.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.tencent.models import Page
from tcsms_poller.workers.base import PollStats, WorkerContext
from tcsms_poller.workers.windows import PAGE_LIMIT

__all__ = ["QueueWorker", "replies_worker", "send_status_worker"]

Puller = Callable[[str], Awaitable[Page[Any]]]
Normalizer = Callable[..., Record]


class QueueWorker:
    """Drains one queue-mode action for one app."""

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        kind: str,
        action: str,
        app_id: str,
        interval: float,
        pull: Puller,
        normalize: Normalizer,
    ) -> None:
        self.name = f"{kind}:{app_id}"
        self.action = action
        self.app_id = app_id
        self.interval = interval
        self.health = ctx.board.register(self.name, "worker")
        self._ctx = ctx
        self._pull = pull
        self._normalize = normalize

    async def poll(self) -> PollStats:
        """Pull and commit pages until a short one says the queue is empty."""
        stats = PollStats()
        while True:
            page = await self._pull(self.app_id)
            received_at = format_received_at(self._ctx.clock())
            records = [
                self._normalize(self.app_id, item, source=self.action, received_at=received_at)
                for item in page.items
            ]
            result = await self._ctx.intake.commit_until_durable(
                records, source=self.action, health=self.health, rejected=page.rejected
            )
            fetched = len(page.items) + len(page.rejected)
            stats.add(result, fetched, len(page.rejected))
            if fetched < PAGE_LIMIT or self._ctx.stopping.is_set():
                return stats


def replies_worker(ctx: WorkerContext, app_id: str, interval: float) -> QueueWorker:
    """Users' replies (MO) of one app."""
    return QueueWorker(
        ctx,
        kind="replies",
        action="PullSmsReplyStatus",
        app_id=app_id,
        interval=interval,
        pull=ctx.client.pull_sms_reply_status,
        normalize=reply_record,
    )


def send_status_worker(ctx: WorkerContext, app_id: str, interval: float) -> QueueWorker:
    """Every delivery receipt of one app."""
    return QueueWorker(
        ctx,
        kind="send_status",
        action="PullSmsSendStatus",
        app_id=app_id,
        interval=interval,
        pull=ctx.client.pull_sms_send_status,
        normalize=send_status_record,
    )
