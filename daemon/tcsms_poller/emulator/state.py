"""The running emulator's parts in one place, shared by the API, the control endpoints, the
traffic generator and the pusher.

Two clocks: ``clock`` is wall time (signatures, record times, the 7-day window) and is injectable
so tests can skew it; ``monotonic`` times the rate limits and bursts. A request's arrival on
``monotonic`` is when the kernel received it, where the server can tell (``arrival``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from tcsms_poller.asgi import RECEIVED
from tcsms_poller.emulator.faults import FaultInjector
from tcsms_poller.emulator.options import EmulatorOptions
from tcsms_poller.emulator.pusher import Pusher
from tcsms_poller.emulator.ratelimit import SlidingWindowLimiter
from tcsms_poller.emulator.sending import Outbound
from tcsms_poller.emulator.stats import RequestStats
from tcsms_poller.emulator.store import PlaceholderRecord, ReplyRecord, SendStatusRecord, Store

__all__ = ["EmulatorState", "make_serial"]


def make_serial(rng: random.Random) -> str:
    """A fresh SerialNo shaped like Tencent's (``5000:1045710669157053657849499619``)."""
    return f"{rng.randrange(1000, 10_000)}:{rng.randrange(10**27, 10**28)}"


class EmulatorState:
    """Options, data, limits, faults and counters of one emulator; build it inside the loop."""

    def __init__(
        self,
        options: EmulatorOptions,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.seed = (
            options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
        )
        self.clock = clock
        self.monotonic = monotonic
        self.store = Store(
            options.app_ids, window_time=options.by_number_time, order=options.by_number_order
        )
        self.secrets = {options.secret_id: options.secret_key}
        self.limiters = {
            action: SlidingWindowLimiter(rate, slack=options.slack, horizon=options.limit_horizon)
            for action, rate in options.rate_limits.items()
        }
        self.stats = RequestStats(window=1.0 - options.slack)
        # When a test sets a list here: (phone, arrival, answered) of every per-number request
        # answered, monotonic, to check that no two polls of one number overlapped.
        self.number_log: list[tuple[str, float, float]] | None = None
        # Set with it: (action, RequestId, arrival, admitted) of every request that reached a
        # limiter, so that a test can set each refusal beside when its client says it sent.
        self.limit_log: list[tuple[str, str, float, bool]] | None = None
        self._last_arrival = -math.inf
        self.faults = FaultInjector(options.faults, random.Random(f"faults:{self.seed}"))
        self.inactive = dict(options.inactive)  # action -> refusal code; changed at runtime
        self.pusher = Pusher(options.push) if options.push.enabled else None
        self.closing = anyio.Event()  # set when the emulator stops: held connections let go
        self._serials = random.Random(f"serials:{self.seed}")
        self.outbound = Outbound(
            options.receipts, self, clock, random.Random(f"receipts:{self.seed}")
        )

    def arrival(self, scope: Mapping[str, Any]) -> float:
        """When the request of ``scope`` arrived, on ``monotonic``.

        Tencent's limits count requests as they reach its servers, not as a busy process gets
        to them: so the kernel's receive time where the server knows it (``asgi.RECEIVED``),
        else now. Never before the previous arrival, as the limiter and the stats count in
        order: a request read after one that arrived later (rare: the loop reads connections
        in turn) counts from that one's arrival, a little late.
        """
        now = self.monotonic()
        received = scope.get("extensions", {}).get(RECEIVED)
        if received is not None:
            now -= max(0.0, time.monotonic() - received["at"])
        self._last_arrival = max(self._last_arrival, now)
        return self._last_arrival

    def make_serial(self) -> str:
        """A fresh SerialNo shaped like Tencent's (``5000:1045710669157053657849499619``)."""
        return make_serial(self._serials)

    def record_send(self, app_id: str, serial_no: str, sent_at: int) -> None:
        """A message was sent (its receipt comes later)."""
        self.store.record_send(app_id, serial_no, sent_at)

    def add_send_status(self, record: SendStatusRecord, *, push: bool = True) -> None:
        """A receipt arrived: pullable from now on, and pushed if pushing is configured."""
        self.store.add_send_status(record)
        if push and self.pusher is not None:
            self.pusher.offer_status(record)

    def add_placeholder(
        self, receipt: SendStatusRecord, *, sent_at: int, push: bool = True
    ) -> PlaceholderRecord:
        """``receipt`` shows before the carrier reported it: its placeholder is pullable from
        now on, and pushed if pushing is configured."""
        placeholder = receipt.placeholder(self.options.pending_status)
        self.store.add_placeholder(placeholder, sent_at)
        if push and self.pusher is not None:
            self.pusher.offer_status(placeholder)
        return placeholder

    def add_reply(self, record: ReplyRecord, *, push: bool = True) -> None:
        """A reply arrived: pullable from now on, and pushed if pushing is configured."""
        self.store.add_reply(record)
        if push and self.pusher is not None:
            self.pusher.offer_reply(record)

    def stats_snapshot(self) -> dict[str, Any]:
        """``GET /_emulator/stats``."""
        return {
            "seed": self.seed,
            "actions": self.stats.snapshot(),
            "push": None if self.pusher is None else self.pusher.snapshot(),
        }

    def truth(self) -> dict[str, Any]:
        """``GET /_emulator/truth``."""
        return {"seed": self.seed, **self.store.truth()}
