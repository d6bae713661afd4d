"""``SendSms``: messages a client sends through the emulator, and their receipts after a delay.

Each accepted number gets a SerialNo at once and its receipt later, drawn from
``ReceiptDelays`` with a seeded ``random.Random``: a log-normal delay (``median``, 95 % within
``p95``), a ``late_share`` hours late (phone off), a ``never_share`` that never comes. ``scale``
multiplies every delay (below 1 compresses them, for benchmarks). A receipt becomes pullable
(and is pushed, if pushing is on) at its due time: ``release`` runs before every answer, so a
pull sees exactly the receipts due by then, and ``run`` releases them in real time for pushes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from tcsms_poller.emulator.numbers import split_number
from tcsms_poller.emulator.options import ReceiptDelays
from tcsms_poller.emulator.receipts import draw_outcome, make_receipt
from tcsms_poller.emulator.store import SendStatusRecord
from tcsms_poller.settings_types import is_e164

__all__ = ["MAX_NUMBERS", "Outbound", "Sent"]

MAX_NUMBERS = 200  # numbers of one SendSms request (Tencent's limit)
_Z95 = 1.6448536269514722  # the 95th percentile of the standard normal distribution
_ISO = {"86": "CN", "852": "HK", "853": "MO", "886": "TW", "1": "US", "65": "SG", "44": "GB"}


class _Sink(Protocol):
    def make_serial(self) -> str: ...

    def record_send(self, app_id: str, serial_no: str, sent_at: int) -> None: ...

    def add_send_status(self, record: SendStatusRecord, *, push: bool = True) -> None: ...


@dataclass(frozen=True, slots=True)
class Sent:
    """One message sent through ``SendSms``: when, and when its receipt is (or is not) due."""

    serial_no: str
    phone_number: str
    sent_at: float
    due: float | None  # None: its receipt never comes


@dataclass(slots=True)
class Outbound:
    """Messages sent and their receipts still to come; see the module docstring."""

    delays: ReceiptDelays
    sink: _Sink
    clock: Callable[[], float]
    rng: random.Random
    sent: dict[str, Sent] = field(default_factory=dict)  # serial_no -> message, for benchmarks
    _due: list[tuple[float, int, SendStatusRecord]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _woken: anyio.Event = field(default_factory=anyio.Event)

    def delay(self) -> float | None:
        """One receipt delay in seconds, or None for a receipt that never comes."""
        d, rng = self.delays, self.rng
        roll = rng.random()
        if roll < d.never_share:
            return None
        if roll < d.never_share + d.late_share:
            return rng.uniform(*d.late_delay) * d.scale
        sigma = math.log(d.p95 / d.median) / _Z95
        return rng.lognormvariate(math.log(d.median), sigma) * d.scale

    def send(
        self, app_id: str, numbers: Sequence[str], session_context: str
    ) -> list[dict[str, Any]]:
        """Send one message to each of ``numbers``: the ``SendStatusSet`` of the answer."""
        self.release()
        now = self.clock()
        answers = []
        for number in numbers:
            if not is_e164(number):
                answers.append(_refused(number))
                continue
            serial_no = self.sink.make_serial()
            self.sink.record_send(app_id, serial_no, int(now))
            delay = self.delay()
            due = None if delay is None else now + delay
            self.sent[serial_no] = Sent(serial_no, number, now, due)
            if due is not None:
                receipt = self._receipt(app_id, serial_no, number, now, due, session_context)
                heapq.heappush(self._due, (due, next(self._order), receipt))
            country_code, _ = split_number(number)
            answers.append(
                {
                    "SerialNo": serial_no,
                    "PhoneNumber": number,
                    "Fee": 1,
                    "SessionContext": session_context,
                    "Code": "Ok",
                    "Message": "send success",
                    "IsoCode": _ISO.get(country_code, ""),
                }
            )
        self._woken.set()
        return answers

    def _receipt(
        self, app_id: str, serial_no: str, number: str, sent_at: float, due: float, context: str
    ) -> SendStatusRecord:
        outcome = draw_outcome(self.rng, self.delays.fail_ratio)
        return make_receipt(
            app_id, serial_no, number, outcome, due=due, sent_at=sent_at, context=context or None
        )

    def release(self) -> None:
        """Make every receipt due by now pullable (and pushed)."""
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _, _, receipt = heapq.heappop(self._due)
            self.sink.add_send_status(receipt)

    async def run(self) -> None:
        """Release receipts as they fall due, until cancelled."""
        while True:
            self.release()
            wait = self._due[0][0] - self.clock() if self._due else math.inf
            self._woken = anyio.Event()
            with anyio.move_on_after(max(0.0, wait)):
                await self._woken.wait()


def _refused(number: str) -> dict[str, Any]:
    return {
        "SerialNo": "",
        "PhoneNumber": number,
        "Fee": 0,
        "SessionContext": "",
        "Code": "InvalidParameterValue.IncorrectPhoneNumber",
        "Message": f"PhoneNumber {number!r} is not in E.164 format, like +8613711112222.",
        "IsoCode": "",
    }
