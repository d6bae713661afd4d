"""The one door every record enters by, pulled or pushed (SPEC §9).

``Intake.commit`` dedupes records into the outbox in one transaction and counts them. Nothing
upstream may acknowledge a record (pull the next queue page, answer a push ``OK``) before this
returned; nothing downstream can lose one after it did.
"""

from __future__ import annotations

import random
import time
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
from tcsms_poller.state.roles import Change, Fence, LeaseLostError
from tcsms_poller.tencent.models import RejectedItem

__all__ = ["Intake"]

log = structlog.get_logger("tcsms_poller.intake")
_kind = attrgetter("kind")


def _number(item: RejectedItem) -> str | None:
    """The phone number of a rejected item, as far as it names one (the logs mask it)."""
    raw = item.raw
    if not isinstance(raw, dict):
        return None
    number = raw.get("PhoneNumber")
    if isinstance(number, str):
        return number
    mobile, nationcode = raw.get("mobile"), raw.get("nationcode")  # a pushed item
    if isinstance(mobile, str | int) and not isinstance(mobile, bool):
        prefix = str(nationcode).lstrip("+") if isinstance(nationcode, str | int) else ""
        return str(mobile) if str(mobile).startswith("+") else f"+{prefix}{mobile}"
    return None


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
        fence: Fence | None = None,
    ) -> CommitResult:
        """One attempt; raises ``StateError`` having changed nothing (``LeaseLostError`` once
        ``fence``, a lease, or the claim in ``also`` passed to another instance)."""
        result = await self._store.commit(
            records, rejected=rejected, source=source, also=also, fence=fence
        )
        self._count(records, result, source, len(rejected))
        for item in rejected:  # kept in the state's quarantine: say so, the number masked
            log.warning(
                "intake.item_quarantined", source=source, reason=item.reason, number=_number(item)
            )
        return result

    async def commit_until_durable(
        self,
        records: Sequence[Record],
        *,
        source: str,
        health: Health,
        rejected: Sequence[RejectedItem] = (),
        also: Change | None = None,
        fence: Fence | None = None,
    ) -> CommitResult:
        """Commit, retrying whatever fails forever, shielded from cancellation.

        What a queue pull returned exists nowhere else: if the disk fails, or anything else in
        the commit path does (an overflow, a bug), we hold the page and retry (reporting the
        worker unhealthy with the cause) rather than pull again, and a shutdown waits for the
        commit. A fenced commit (``fence``, or a claim in ``also``) that finds its lease or
        claim gone raises ``LeaseLostError`` at once, nothing of it written: the records can
        be read again, by the new holder. A queue page carries no fence.
        """
        with anyio.CancelScope(shield=True):
            return await self._retry_commit(records, source, health, rejected, also, fence)
        raise AssertionError("a shielded scope never swallows the return")  # for type checkers

    async def _retry_commit(
        self,
        records: Sequence[Record],
        source: str,
        health: Health,
        rejected: Sequence[RejectedItem],
        also: Change | None,
        fence: Fence | None,
    ) -> CommitResult:
        backoff = Backoff(initial=0.5, maximum=30.0)
        attempt = 0
        while True:
            try:
                return await self.commit(
                    records, source=source, rejected=rejected, also=also, fence=fence
                )
            except LeaseLostError:  # fenced: another instance holds the work now; retrying
                raise  # cannot help (a queue page carries no fence: it is always committed)
            except Exception as error:  # whatever it is, the page exists nowhere else: keep it
                database = isinstance(error, StateError)  # it names the state database
                cause = str(error) if database else f"internal error in commit: {error!r}"
                health.failed(cause)
                log.error(
                    "state.commit_failed",
                    worker=health.name,
                    records=len(records),
                    error=cause,
                    attempt=attempt,
                    exc_info=not database and attempt == 0,  # a bug's traceback, once
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
        if result.resolved:
            tracking, now = self._metrics.tracking, time.time()
            for message in result.resolved:
                tracking.resolved.labels(message.state).inc()
                tracking.latency.labels("receipt").observe(
                    max(0, message.user_receive_time - message.sent_at)
                )
                tracking.latency.labels("committed").observe(max(0.0, now - message.sent_at))
