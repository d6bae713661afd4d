"""The one door every record enters by, pulled or pushed (SPEC §9).

``Intake.commit`` dedupes records into the outbox in one transaction and counts them. Nothing
upstream may acknowledge a record (pull the next queue page, answer a push ``OK``) before this
returned; nothing downstream can lose one after it did.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter

import anyio
import structlog

from tcsms_poller.backoff import Backoff
from tcsms_poller.health import Health
from tcsms_poller.metrics import Metrics
from tcsms_poller.records import Record
from tcsms_poller.state import CommitResult, StateError, StateStore
from tcsms_poller.state.roles import Change
from tcsms_poller.tencent.models import RejectedItem

__all__ = ["Intake"]

log = structlog.get_logger("tcsms_poller.intake")
_kind = attrgetter("kind")


class Intake:
    """Commits records (with any extra step of the caller) and counts new and duplicate ones."""

    def __init__(self, store: StateStore, metrics: Metrics, *, rng: random.Random | None = None):
        self._store = store
        self._metrics = metrics
        self._rng = rng or random.Random()

    async def commit(
        self,
        records: Sequence[Record],
        *,
        source: str,
        rejected: Sequence[RejectedItem] = (),
        also: Change | None = None,
    ) -> CommitResult:
        """One attempt; raises ``StateError`` having changed nothing."""
        result = await self._store.commit(records, rejected=rejected, source=source, also=also)
        self._count(records, result, source, len(rejected))
        return result

    async def commit_until_durable(
        self,
        records: Sequence[Record],
        *,
        source: str,
        health: Health,
        rejected: Sequence[RejectedItem] = (),
        also: Change | None = None,
    ) -> CommitResult:
        """Commit, retrying a failing database forever, shielded from cancellation.

        What a queue pull returned exists nowhere else: if the disk fails we hold the page and
        retry (reporting unhealthy) rather than pull again, and a shutdown waits for the commit.
        """
        with anyio.CancelScope(shield=True):
            return await self._retry_commit(records, source, health, rejected, also)
        raise AssertionError("a shielded scope never swallows the return")  # for type checkers

    async def _retry_commit(
        self,
        records: Sequence[Record],
        source: str,
        health: Health,
        rejected: Sequence[RejectedItem],
        also: Change | None,
    ) -> CommitResult:
        backoff = Backoff(initial=0.5, maximum=30.0)
        attempt = 0
        while True:
            try:
                return await self.commit(records, source=source, rejected=rejected, also=also)
            except StateError as error:
                health.failed(str(error))  # it names the state database
                log.error(
                    "state.commit_failed",
                    worker=health.name,
                    records=len(records),
                    error=str(error),
                    attempt=attempt,
                )
                await anyio.sleep(backoff.delay(attempt, rng=self._rng))
                attempt += 1

    def _count(
        self, records: Sequence[Record], result: CommitResult, source: str, rejected: int
    ) -> None:
        new = Counter(map(_kind, result.new))
        seen = Counter(map(_kind, records))
        for kind, total in seen.items():
            if new[kind]:
                self._metrics.records.labels(kind, source, "new").inc(new[kind])
            if total > new[kind]:
                self._metrics.records.labels(kind, source, "duplicate").inc(total - new[kind])
        if rejected:
            self._metrics.rejected_items.labels(source).inc(rejected)
