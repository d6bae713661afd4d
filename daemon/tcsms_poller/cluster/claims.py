"""Claims on phone numbers: one poller at a time per number of an app, across the cluster.

Any worker that polls a phone number (the per-number worker, the message-tracking worker) claims
it through ``NumberClaimer`` before sending, sends only while ``Claimed.held``, keeps a long poll's
claim with ``keep`` before each further request, commits with ``Claimed.claim`` in its ``Change``
(the commit is fenced by it) and releases it when done. The database grants claims on its own
clock (``state/postgres/cluster.py``); a claim counts as held here until a local monotonic
deadline, ``ttl - safety`` after the claim was *sent*, so a paused holder stops before the
database can give the number to another instance. A holder killed with ``kill -9`` leaves its
claims to expire: the numbers are due for the others ``ttl`` later.

With SQLite (one daemon) every number is always held, and nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import structlog

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
        self.held_count = 0  # claims granted and not released (some may have expired)

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
        self.held_count += len(claims)
        deadline = sent + self._ttl - self._safety
        return [Claimed(claim.phone, claim, deadline) for claim in claims]

    async def keep(self, claimed: Claimed) -> bool:
        """Before a further request: renew the claim once half its time is gone; whether the
        number is still held."""
        if claimed.claim is None or self._store is None:
            return True
        if claimed.deadline - anyio.current_time() > (self._ttl - self._safety) / 2:
            return claimed.held
        sent = anyio.current_time()
        try:
            renewed = await self._store.renew_numbers([claimed.claim], ttl=self._ttl)
        except StateError as error:
            log.warning("cluster.claim_renewal_failed", error=str(error))
            return claimed.held
        if not renewed:
            claimed.deadline = -math.inf
            return False
        claimed.deadline = sent + self._ttl - self._safety
        return True

    async def release(self, claimed: Sequence[Claimed]) -> None:
        """The polls are over: let the numbers go (a failure leaves them to expire)."""
        claims = [one.claim for one in claimed if one.claim is not None]
        if self._store is None or not claims:
            return
        self.held_count -= len(claims)
        for one in claimed:
            one.deadline = -math.inf
        try:
            await self._store.release_numbers(claims)
        except StateError as error:
            log.warning("cluster.claim_release_failed", error=str(error))
