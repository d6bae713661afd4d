"""Synthetic traffic: messages to a set of numbers, their receipts after a delay, and replies.

A discrete-event simulation driven by one seeded ``random.Random``: sends and replies arrive as
Poisson processes (so some receipts share a second), each receipt is due a uniform random delay
after its send (for ``late_share`` of them ``LATE_DELAY``), and events are processed in
simulated-time order. The sequence of records is therefore the same for the same seed and
options, however late the event loop wakes up; only the absolute times differ between runs.

``backfill`` runs the simulation over the past instantly at start (history for by-number
windows and statistics, not pushed: Tencent would have pushed it long ago); ``run`` then keeps
it going in real time, sleeping until the next event.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import Protocol

import anyio

from tcsms_poller.emulator.numbers import make_mainland_numbers, split_number
from tcsms_poller.emulator.options import LATE_DELAY, TrafficOptions
from tcsms_poller.emulator.receipts import draw_outcome, make_receipt
from tcsms_poller.emulator.store import ReplyRecord, SendStatusRecord

__all__ = ["REPLY_TEXTS", "TrafficGenerator", "TrafficSink"]

REPLY_TEXTS = ("Y", "N", "1", "2", "TD", "好的", "收到", "退订", "谢谢", "Stop")


class TrafficSink(Protocol):
    """Where generated traffic goes (the emulator's state)."""

    def make_serial(self) -> str: ...

    def record_send(self, app_id: str, serial_no: str, sent_at: int) -> None: ...

    def add_send_status(self, record: SendStatusRecord, *, push: bool = True) -> None: ...

    def add_placeholder(
        self, receipt: SendStatusRecord, *, sent_at: int, push: bool = True
    ) -> object: ...

    def add_reply(self, record: ReplyRecord, *, push: bool = True) -> None: ...


class TrafficGenerator:
    """Generates traffic for ``app_ids`` into ``sink``, deterministically for a ``seed``."""

    def __init__(
        self,
        options: TrafficOptions,
        *,
        app_ids: tuple[str, ...],
        sink: TrafficSink,
        seed: int,
        clock: Callable[[], float],
    ) -> None:
        self._options = options
        self._app_ids = app_ids
        self._sink = sink
        self._clock = clock
        self._rng = random.Random(f"traffic:{seed}")
        self.numbers = list(options.phone_numbers) or make_mainland_numbers(
            options.numbers, random.Random(f"numbers:{seed}")
        )
        self._heavy = self.numbers[: options.heavy_numbers]
        self._light = self.numbers[options.heavy_numbers :] or self._heavy
        self._pending: list[tuple[float, int, SendStatusRecord]] = []  # (due, order, receipt)
        self._order = itertools.count()
        self._next_send = math.inf
        self._next_reply = math.inf

    @property
    def pending(self) -> int:
        """Messages sent whose receipt has not arrived yet."""
        return len(self._pending)

    def backfill(self) -> None:
        """Generate ``options.backfill`` seconds of history up to now, without pushing."""
        now = self._clock()
        self._start(now - self._options.backfill)
        self._advance(now, push=False)

    async def run(self) -> None:
        """Keep generating in real time until cancelled (call ``backfill`` first)."""
        while True:
            self._advance(self._clock(), push=True)
            next_event = min(self._next_send, self._next_reply, self._next_due())
            await anyio.sleep(max(0.0, next_event - self._clock()))

    def _start(self, at: float) -> None:
        self._next_send = at + self._gap(self._options.send_rate)
        self._next_reply = at + self._gap(self._options.reply_rate)

    def _gap(self, rate: float) -> float:
        return self._rng.expovariate(rate) if rate > 0 else math.inf

    def _next_due(self) -> float:
        return self._pending[0][0] if self._pending else math.inf

    def _advance(self, until: float, *, push: bool) -> None:
        """Process every event due by ``until``, in simulated-time order."""
        while True:
            due = self._next_due()
            moment = min(self._next_send, self._next_reply, due)
            if moment > until:
                return
            if moment == due:
                _, _, receipt = heapq.heappop(self._pending)
                self._sink.add_send_status(receipt, push=push)
            elif moment == self._next_send:
                self._send(moment, push=push)
                self._next_send += self._gap(self._options.send_rate)
            else:
                self._reply(moment, push=push)
                self._next_reply += self._gap(self._options.reply_rate)

    def _number(self) -> str:
        rng = self._rng
        pool = self._heavy if self._heavy and rng.random() < self._options.heavy_share else None
        return rng.choice(pool or self._light)

    def _send(self, at: float, *, push: bool) -> None:
        rng, options = self._rng, self._options
        app_id = rng.choice(self._app_ids)
        number = self._number()
        serial_no = self._sink.make_serial()
        self._sink.record_send(app_id, serial_no, int(at))
        if options.late_share and rng.random() < options.late_share:
            due = at + rng.uniform(*LATE_DELAY)
        else:
            due = at + rng.uniform(options.receipt_delay_min, options.receipt_delay_max)
        outcome = draw_outcome(rng, options.fail_ratio)
        context = f"order-{rng.randrange(10**6):06d}" if rng.random() < 0.3 else None
        receipt = make_receipt(
            app_id, serial_no, number, outcome, due=due, sent_at=at, context=context
        )
        heapq.heappush(self._pending, (due, next(self._order), receipt))
        # Drawn only when asked for, so that the same seed gives the same traffic without it.
        if options.pending_share and rng.random() < options.pending_share:
            self._sink.add_placeholder(receipt, sent_at=int(at), push=push)

    def _reply(self, at: float, *, push: bool) -> None:
        rng = self._rng
        number = self._number()
        country_code, subscriber = split_number(number)
        reply = ReplyRecord(
            app_id=rng.choice(self._app_ids),
            phone_number=number,
            country_code=country_code,
            subscriber_number=subscriber,
            sign_name=self._options.sign_name,
            reply_content=rng.choice(REPLY_TEXTS),
            reply_time=int(at),
            extend_code=rng.choice(("", "", "", "11")),
        )
        self._sink.add_reply(reply, push=push)
