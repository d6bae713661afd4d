"""The account's limits, shared by the instances of a cluster: each action's rate is granted by
the database in shares, and a ``RequestLimitExceeded`` pauses the action everywhere.

Every ``ttl / 3`` (and at once when a limiter waits without a share, when another instance waits
for a share of an action this one holds, and right after a decrease, to report it applied)
``SharedLimits`` tells the database which actions this instance calls (those asked for a slot in
the last ``ttl``, or waiting) and which rate each limiter applies now; the database splits each
action's limit between the instances that call it and returns this one's share
(``state/postgres/cluster.py`` says how the shares in force never add up to more than the limit,
on the database's clock). A share holds
until a local monotonic deadline, ``ttl - safety`` after the request was *sent*: an instance that
is paused or cut off from the database stops sending before its share can pass to another.

Pauses: a limiter's ``pause`` after a ``RequestLimitExceeded`` is written to the database, and
every instance reads the pauses every ``PAUSE_POLL`` seconds and holds the action for the time
left (by the database's clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskStatus
from prometheus_client import Gauge

from tcsms_poller.state.roles import StateError
from tcsms_poller.tencent.ratelimit import MARGIN, ActionLimiter, RateLimiters

__all__ = ["PAUSE_POLL", "RateCoordinator", "SharedLimits"]

log = structlog.get_logger("tcsms_poller.cluster")

PAUSE_POLL = 0.5  # seconds between two reads of the cluster's pauses


class RateCoordinator(Protocol):
    """What the shared limits need of the state (``PostgresStore``)."""

    async def share_rates(
        self,
        instance: str,
        wanted: Mapping[str, int],
        applied: Mapping[str, int],
        *,
        ttl: float,
        window: float,
    ) -> dict[str, int]: ...

    async def pause_action(self, action: str, seconds: float) -> None: ...

    async def paused_actions(self) -> dict[str, float]: ...

    async def starved_actions(self, instance: str) -> set[str]: ...


class SharedLimits:
    """This instance's shares of the account's limits; see the module docstring."""

    def __init__(
        self,
        store: RateCoordinator,
        instance: str,
        limiters: RateLimiters,
        *,
        ttl: float,
        safety: float,
    ) -> None:
        self.instance = instance
        self._store = store
        self._limiters = limiters
        self._ttl = ttl
        self._safety = safety
        self._announced: dict[str, float] = {}
        self._wake = anyio.Event()
        self._gauge: Gauge | None = None
        self._confirm = False  # a decrease was applied: report it at once (frees it sooner)
        self._starved: set[str] = set()  # actions another instance waits for a share of
        limiters.announce = self._announce
        limiters.starving = self._wake.set

    def export(self, gauge: Gauge) -> None:
        """Publish each action's share as ``gauge{instance, action}`` (read at scrape time)."""
        self._gauge = gauge

    def _announce(self, action: str, seconds: float) -> None:
        self._announced[action] = max(seconds, self._announced.get(action, 0.0))
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Share and pause until cancelled.

        The first share is asked for one window after the start. A previous life under the same
        instance id (a container restarted in its pod keeps its hostname and pid 1; a fixed
        ``instance_id``) may have sent its whole share until it died, and the database counts
        that row as this instance's own: granted at once, both lives' requests could meet in
        one of Tencent's windows."""
        task_status.started()
        await anyio.sleep(1.0 + MARGIN)
        shared_at = -self._ttl
        while True:
            await self._spread_pauses()
            now = anyio.current_time()
            if (
                now - shared_at >= self._ttl / 3
                or self._starving()
                or self._confirm
                or (self._starved & self._holding() and now - shared_at >= PAUSE_POLL)
            ):
                shared_at = now
                await self._share()
            with anyio.move_on_after(PAUSE_POLL):
                await self._wake.wait()
            self._wake = anyio.Event()
            self._limiters.starving = self._wake.set

    def _starving(self) -> bool:
        """A caller waits for a slot of an action this instance has no share of."""
        return any(limiter.waiting and limiter.rate == 0 for limiter in self._used().values())

    def _holding(self) -> set[str]:
        """The actions this instance has a share of now."""
        return {action for action, limiter in self._used().items() if limiter.rate > 0}

    def _used(self) -> dict[str, ActionLimiter]:
        return self._limiters.created()

    async def _share(self) -> None:
        sent = anyio.current_time()
        used = self._used()
        wanted = {
            action: limiter.limit
            for action, limiter in used.items()
            if limiter.waiting or limiter.wanted_at > sent - self._ttl
        }
        applied = {action: limiter.rate for action, limiter in used.items()}
        self._confirm = False
        window = max((limiter.window for limiter in used.values()), default=1.0)
        try:
            granted = await self._store.share_rates(
                self.instance, wanted, applied, ttl=self._ttl, window=window
            )
        except StateError as error:  # the shares run out at their local deadlines
            log.warning("cluster.share_failed", error=str(error))
            return
        deadline = sent + self._ttl - self._safety
        if anyio.current_time() >= deadline:
            return  # answered too late to act on: the next round asks again
        for action, rate in granted.items():
            limiter = self._limiters.for_action(action)
            if rate != limiter.rate:
                log.info("cluster.rate_shared", action=action, rate=rate, limit=limiter.limit)
            self._confirm |= rate < applied.get(action, 0)
            limiter.share(rate, deadline)
            if self._gauge is not None:
                self._gauge.labels(self.instance, action).set_function(
                    lambda limiter=limiter: limiter.rate  # type: ignore[misc]
                )

    async def _spread_pauses(self) -> None:
        announced, self._announced = self._announced, {}
        try:
            for action, seconds in announced.items():
                await self._store.pause_action(action, seconds)
                log.info("cluster.action_paused", action=action, seconds=round(seconds, 3))
            paused = await self._store.paused_actions()
            self._starved = await self._store.starved_actions(self.instance)
        except StateError as error:
            log.warning("cluster.pause_failed", error=str(error))
            return
        for action, left in paused.items():
            if action in self._used():
                self._limiters.for_action(action).pause(left, announce=False)
