"""The leases this instance wants, kept renewed; each one held until a local deadline.

In cluster mode (``state.url``) every piece of work that must run on one instance at a time has
a lease: each sink (``sink:NAME``, one drainer cluster-wide) and each (app, action) pulled from a
queue or asked for statistics (``pull:APP:ACTION``). The per-number work is shared under number
claims (``claims.py``) and the account's limits under rate shares (``rates.py``). The database
grants leases (``state/postgres/leases.py``) with an expiry on its own clock.

``Membership.run`` claims every wanted lease at once every ``ttl / 3``: renewing those it holds,
taking those that are free or expired. A lease counts as held here until a local monotonic
deadline, ``ttl - safety`` after the claim was *sent*: the database computed its expiry later
than that, so this instance stops acting on a lease (its drainer sends no further batch, its
pulls are refused before they are sent) before another instance can take it over, whatever
the clocks say. A paused or cut-off instance thus stops on its own; a write it still attempts is
fenced by the token (``Fence``) in the write's transaction. After ``kill -9`` the lease expires
``ttl`` after the last renewal and another instance takes it at its next claim: within
``ttl * 4 / 3``.

With SQLite (one daemon per file) every lease is ``Lease.solo``: held forever, no fence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus
from prometheus_client import Gauge

from tcsms_poller import __version__
from tcsms_poller.state.roles import Fence, StateError
from tcsms_poller.tencent.api import Action

__all__ = ["Coordinator", "Lease", "Membership", "pull_lease", "sink_lease"]

log = structlog.get_logger("tcsms_poller.cluster")

# The actions pulled under a lease per (app, action): a queue hands each record out once, and
# one hourly statistics poller per app is enough. The per-number actions run under number claims.
LEASED_ACTIONS = frozenset(
    {Action.PULL_SMS_REPLY_STATUS, Action.PULL_SMS_SEND_STATUS, Action.CALLBACK_STATUS_STATISTICS}
)


def sink_lease(name: str) -> str:
    """The lease of one sink."""
    return f"sink:{name}"


def pull_lease(app_id: str, action: str) -> str | None:
    """The lease a worker of ``action`` for ``app_id`` runs under (None: it needs none)."""
    if action not in LEASED_ACTIONS:
        return None
    return f"pull:{app_id}:{action}"


class Coordinator(Protocol):
    """What the membership needs of the state (``PostgresStore``)."""

    async def heartbeat(
        self, instance: str, *, version: str, healthy: bool, detail: str | None
    ) -> None: ...

    async def claim_leases(
        self, instance: str, names: Sequence[str], *, ttl: float
    ) -> dict[str, int]: ...

    async def release_leases(self, instance: str, names: Sequence[str]) -> None: ...

    async def leave_cluster(self, instance: str) -> None: ...

    async def cluster_snapshot(self) -> dict[str, Any]: ...


class Lease:
    """One lease as this instance sees it: held (with a token) until a local deadline."""

    def __init__(self, name: str, holder: str, *, solo: bool = False) -> None:
        self.name = name
        self.holder = holder
        self.token: int | None = None
        self._solo = solo
        self._deadline = math.inf if solo else -math.inf
        self._changed = anyio.Event()

    @classmethod
    def solo(cls, name: str) -> Lease:
        """A lease that is always held: the single daemon of a SQLite state."""
        return cls(name, "", solo=True)

    @property
    def held(self) -> bool:
        """Whether this instance may act on the lease now."""
        return anyio.current_time() < self._deadline

    @property
    def fence(self) -> Fence | None:
        """What a write guarded by this lease must check (None with SQLite)."""
        if self._solo or self.token is None:
            return None
        return Fence(self.name, self.holder, self.token)

    def granted(self, token: int, deadline: float) -> None:
        """A claim returned the lease: held until ``deadline`` (monotonic)."""
        gained = self.token != token
        self.token = token
        self._deadline = deadline
        if gained:
            log.info("cluster.lease_acquired", lease=self.name, token=token)
        self._notify()

    def dropped(self) -> None:
        """The lease is not ours (a claim did not return it, or we released it)."""
        if self._solo:
            return
        if self.token is not None:  # held, or its local deadline passed (a pause, a cut)
            log.warning("cluster.lease_lost", lease=self.name, token=self.token)
        self.token = None
        self._deadline = -math.inf
        self._notify()

    def refused(self, token: int | None) -> None:
        """A write fenced on ``token`` was refused: the database gave the lease to another
        instance. Held here still (its local deadline not passed, no claim returned it since
        under another token), it is dropped now, so nothing more is attempted under a token
        known to be dead; the next claim that returns the lease grants it again."""
        if self.held and token is not None and token == self.token:
            self.dropped()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_held(self) -> None:
        """Return once this instance holds the lease."""
        while not self.held:
            await self._changed.wait()

    async def wait_lost(self) -> None:
        """Return once this instance may no longer act on the lease (deadline or a claim)."""
        while self.held:
            changed = self._changed
            with anyio.move_on_after(self._deadline - anyio.current_time()):
                await changed.wait()


class Membership:
    """This instance in the cluster: its heartbeat and the leases it wants."""

    def __init__(
        self,
        store: Coordinator,
        instance: str,
        *,
        ttl: float,
        healthy: Callable[[], tuple[bool, str | None]] = lambda: (True, None),
    ) -> None:
        self.instance = instance
        self.ttl = ttl
        self._store = store
        self._healthy = healthy
        self._leases: dict[str, Lease] = {}
        # The deadline ends this much before the database's expiry could (a clock that runs
        # a little fast here, a claim answered late); at least a second, so the last request
        # of an old holder and the first of the new one never share a sliding second.
        self._safety = max(1.0, ttl / 10)
        self._claim_now = anyio.Event()
        self._left = False
        self._gauge: Gauge | None = None

    def lease(self, name: str) -> Lease:
        """The lease ``name``, wanted from now on (claimed at the next round)."""
        lease = self._leases.get(name)
        if lease is None:
            lease = self._leases[name] = Lease(name, self.instance)
            self._export(lease)
            self._claim_now.set()
        return lease

    async def give_up(self, name: str) -> None:
        """Stop wanting ``name`` and release it (a sink removed on reload)."""
        lease = self._leases.pop(name, None)
        if lease is None:
            return
        lease.dropped()
        if self._gauge is not None:
            self._gauge.remove(self.instance, name)
        try:
            await self._store.release_leases(self.instance, [name])
        except StateError as error:  # it expires on its own
            log.warning("cluster.release_failed", lease=name, error=str(error))

    def held(self) -> list[str]:
        """The names of the leases this instance holds now."""
        return sorted(name for name, lease in self._leases.items() if lease.held)

    def export(self, gauge: Gauge) -> None:
        """Publish each wanted lease as ``gauge{instance, lease}`` (read at scrape time)."""
        self._gauge = gauge
        for lease in self._leases.values():
            self._export(lease)

    def _export(self, lease: Lease) -> None:
        if self._gauge is not None:
            self._gauge.labels(self.instance, lease.name).set_function(lambda: int(lease.held))

    @property
    def safety(self) -> float:
        """How long before the database's expiry a lease (or share, or claim) stops here."""
        return self._safety

    def describe(self) -> dict[str, Any]:
        """This instance and the leases it holds, for ``/healthz``."""
        return {"instance": self.instance, "lease_ttl_s": self.ttl, "holds": self.held()}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat and claim every ``ttl / 3``; started after the first round."""
        self._claim_now = anyio.Event()
        await self._round()
        log.info("cluster.joined", instance=self.instance, ttl_s=self.ttl, holds=self.held())
        task_status.started()
        while True:
            with anyio.move_on_after(self.ttl / 3):
                await self._claim_now.wait()
            self._claim_now = anyio.Event()
            await self._round()

    async def _round(self) -> None:
        if self._left:
            return
        sent = anyio.current_time()
        names = sorted(self._leases)
        try:
            healthy, detail = self._healthy()
            await self._store.heartbeat(
                self.instance, version=__version__, healthy=healthy, detail=detail
            )
            granted = await self._store.claim_leases(self.instance, names, ttl=self.ttl)
        except StateError as error:
            # The leases stay held until their local deadlines, and no longer.
            log.warning("cluster.claim_failed", error=str(error))
            return
        deadline = sent + self.ttl - self._safety
        for name in names:
            lease = self._leases.get(name)
            if lease is None:
                continue
            token = granted.get(name)
            if token is None:
                lease.dropped()
            elif anyio.current_time() < deadline and not self._left:
                lease.granted(token, deadline)

    async def leave(self) -> None:
        """At shutdown: hand every lease over after one limit window (not the TTL)."""
        self._left = True
        for lease in self._leases.values():
            lease.dropped()
        try:
            with anyio.fail_after(5):
                await self._store.leave_cluster(self.instance)
        except (StateError, TimeoutError) as error:
            log.warning("cluster.leave_failed", error=str(error) or "timed out")
        else:
            log.info("cluster.left", instance=self.instance)
