"""Claims on phone numbers: one poller at a time per number of an app, across the cluster.

Any worker that polls a phone number (the per-number worker, the message-tracking worker) claims
it through ``NumberClaimer`` before sending, sends only while ``Claimed.held`` (``keep`` before
each request), commits with ``Claimed.claim`` in its ``Change`` (the commit is fenced by it) and
releases it when done. ``NumberClaimer.run`` renews every claim held here in one statement every
``ttl / 3``, as leases are: a claim waiting in the limiter's queue does not run out. The database
grants claims on its own clock (``state/postgres/cluster.py``); a claim counts as held here until
a local monotonic deadline, ``ttl - safety`` after the claim (or its last renewal) was *sent*, so
a paused holder stops before the database can give the number to another instance. A holder
killed with ``kill -9`` leaves its claims to expire: the numbers are due for the others ``ttl``
later.

With SQLite (one daemon) every number is always held, and nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import structlog
from anyio.abc import TaskStatus

from tcsms_poller.state.roles import NumberClaim, NumberClaims, StateError

__all__ = ["Claimed", "NumberClaimer"]

log = structlog.get_logger("tcsms_poller.cluster")


@dataclass(slots=True)
class Claimed:
    """A number this instance may poll until ``deadline`` (monotonic); ``claim`` None: alone."""

    phone: str
    claim: NumberClaim | None
    deadline: float = math.inf

    @property
    def held(self) -> bool:
        """Whether requests for the number may still be sent."""
        return anyio.current_time() < self.deadline


class NumberClaimer:
    """This instance's claims on phone numbers; see the module docstring."""

    def __init__(
        self, store: NumberClaims | None = None, instance: str = "", *, ttl: float = 10.0
    ) -> None:
        self.instance = instance
        self._store = store
        self._ttl = ttl
        self._safety = max(1.0, ttl / 10)
        self._held: dict[tuple[str, str], Claimed] = {}  # granted and not released

    @property
    def hold_for(self) -> float:
        """How long a claim is held here after it was sent (``math.inf`` alone)."""
        return math.inf if self._store is None else self._ttl - self._safety

    @property
    def shared(self) -> bool:
        """Whether claims are taken in a shared database (cluster mode)."""
        return self._store is not None

    async def claim(self, app_id: str, phones: Sequence[str]) -> list[Claimed]:
        """Claim ``phones`` of ``app_id``: those this instance may poll now."""
        if self._store is None:
            return [Claimed(phone, None) for phone in phones]
        sent = anyio.current_time()
        claims = await self._store.claim_numbers(
            app_id, phones, holder=self.instance, ttl=self._ttl
        )
        deadline = sent + self._ttl - self._safety
        won = [Claimed(claim.phone, claim, deadline) for claim in claims]
        for one in won:
            self._held[(app_id, one.phone)] = one
        return won

    @property
    def held_count(self) -> int:
        """How many numbers this instance holds a claim on (polls in progress)."""
        return len(self._held)

    async def keep(self, claimed: Claimed) -> bool:
        """Before a request: whether the number is still held (``run`` renews the claims)."""
        return claimed.held

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew every claim held here every ``ttl / 3`` until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(self._ttl / 3)
            await self._renew()

    async def _renew(self) -> None:
        held = list(self._held.values())
        claims = [one.claim for one in held if one.claim is not None]
        if self._store is None or not claims:
            return
        sent = anyio.current_time()
        try:
            renewed = await self._store.renew_numbers(claims, ttl=self._ttl)
        except StateError as error:  # they run out at their local deadlines
            log.warning("cluster.claim_renewal_failed", error=str(error))
            return
        kept = {(claim.app_id, claim.phone, claim.token) for claim in renewed}
        deadline = sent + self._ttl - self._safety
        for one in held:
            claim = one.claim
            if claim is None:
                continue
            if (claim.app_id, claim.phone, claim.token) not in kept:
                one.deadline = -math.inf  # another instance has it now
            elif anyio.current_time() < deadline and one.deadline > -math.inf:
                one.deadline = deadline

    async def release(self, claimed: Sequence[Claimed]) -> None:
        """The polls are over: let the numbers go (a failure leaves them to expire)."""
        claims = [one.claim for one in claimed if one.claim is not None]
        if self._store is None or not claims:
            return
        for one in claimed:
            one.deadline = -math.inf
            if one.claim is not None:
                self._held.pop((one.claim.app_id, one.phone), None)
        try:
            await self._store.release_numbers(claims)
        except StateError as error:
            log.warning("cluster.claim_release_failed", error=str(error))
