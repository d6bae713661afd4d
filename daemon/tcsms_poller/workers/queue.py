"""Queue-mode workers: ``PullSmsReplyStatus`` and ``PullSmsSendStatus``.

Tencent hands each queued record out once only, so every page is committed (shielded from
cancellation, retried while the disk fails) before the next pull, and a full page is followed at
once by another pull until the queue is empty.

Both actions must be activated by Tencent for the account. A refusal that says so (see
``means_not_activated``) does not make the worker unhealthy: it logs one ``queue.not_activated``
warning saying what to do, shows a note on its health, sets ``tcsms_poller_worker_not_activated``
and asks again every ``not_activated_recheck`` (an hour) until the action works.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.tencent.api import PAGE_LIMIT, Action
from tcsms_poller.tencent.errors import PermanentError, means_not_activated
from tcsms_poller.tencent.models import Page
from tcsms_poller.workers.base import PollStats, WorkerBase, WorkerContext

__all__ = ["QueueWorker", "replies_worker", "send_status_worker"]

log = structlog.get_logger("tcsms_poller.workers")

Puller = Callable[[str], Awaitable[Page[Any]]]
Normalizer = Callable[..., Record]


class QueueWorker(WorkerBase):
    """Drains one queue-mode action for one app."""

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        kind: str,
        action: Action,
        app_id: str,
        interval: float,
        pull: Puller,
        normalize: Normalizer,
    ) -> None:
        super().__init__(
            ctx, name=f"{kind}:{app_id}", action=action, app_id=app_id, interval=interval
        )
        self._pull = pull
        self._normalize = normalize
        self._kind = kind

    @property
    def is_activated(self) -> bool:
        """False from a refusal saying the action is not activated until a pull succeeds."""
        return self.health.note is None

    async def poll(self) -> PollStats:
        """Pull and commit pages until a short one says the queue is empty."""
        stats = PollStats()
        while True:
            try:
                page = await self._pull(self.app_id)
            except PermanentError as error:
                if not means_not_activated(error):
                    raise
                return self._not_activated(error, stats)
            if not self.is_activated:
                self._activated()
            received_at = format_received_at(self._ctx.clock())
            records = [
                self._normalize(self.app_id, item, source=self.action, received_at=received_at)
                for item in page.items
            ]
            # No fence, though the queue is pulled under a lease: a page exists nowhere else
            # once pulled, so it is committed even if the lease passed on meanwhile.
            result = await self._ctx.intake.commit_until_durable(
                records, source=self.action, health=self.health, rejected=page.rejected
            )
            stats.add(result, page.size, len(page.rejected))
            if page.size < PAGE_LIMIT or self._ctx.stopping.is_set():
                return stats

    def _not_activated(self, error: PermanentError, stats: PollStats) -> PollStats:
        """Idle, healthy, until the next re-check; say what to do the first time only."""
        recheck = self._ctx.not_activated_recheck
        bound = log.bind(worker=self.name, action=self.action, app_id=self.app_id)
        if self.is_activated:
            self.health.note = (
                f"{self.action} is not activated for app {self.app_id} ({error.code}); "
                f"checking again every {recheck:g} s"
            )
            self._ctx.metrics.worker_not_activated.labels(self.name).set(1)
            bound.warning(
                "queue.not_activated",
                **error.log_fields,
                recheck_in_s=recheck,
                fix=f"ask Tencent's SMS Helper to activate {self.action} for this app, or set "
                f"{self._kind}.enabled: false for it",
            )
        else:
            bound.debug("queue.still_not_activated", code=error.code)
        stats.requests += 1
        stats.pause = recheck
        return stats

    def _activated(self) -> None:
        self.health.note = None
        self._ctx.metrics.worker_not_activated.labels(self.name).set(0)
        log.info("queue.activated", worker=self.name, action=self.action, app_id=self.app_id)


def replies_worker(ctx: WorkerContext, app_id: str, interval: float) -> QueueWorker:
    """Users' replies (MO) of one app."""
    return QueueWorker(
        ctx,
        kind="replies",
        action=Action.PULL_SMS_REPLY_STATUS,
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
        action=Action.PULL_SMS_SEND_STATUS,
        app_id=app_id,
        interval=interval,
        pull=ctx.client.pull_sms_send_status,
        normalize=send_status_record,
    )
