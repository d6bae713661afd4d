"""Per-action request limits shared by every caller in the process.

The promise (SPEC §6): never more than N requests of an action in any sliding one-second window,
and close to N per second when there is enough work, whatever the latency.

``aiolimiter.AsyncLimiter(N, 1)`` alone breaks the first half: its bucket starts empty and admits
N at once, then N more over the first second (about 2N in one window). So each action gets two
layers:

1. a small leaky bucket (aiolimiter, capacity ``N/10``) that paces requests evenly, so the server
   sees a smooth stream instead of bursts whose arrival jitter could bunch them up; and
2. a hard sliding-window log of the last N start times: request k+N may start only once request k
   is at least ``window + margin`` old. This is what guarantees the promise. A request's start
   is when its bytes were written (the client calls ``Slot.sent``), not when its slot was granted:
   on a loaded machine a request can leave tens of milliseconds after its grant, and a late
   request k followed by a prompt request k+N would otherwise reach the server closer than a
   window apart. The margin absorbs what remains, the varying delay between leaving and arriving.

Requests are granted in FIFO order (one ``anyio.Lock``), so no caller starves. A server-side
``RequestLimitExceeded`` (other clients share the account) pauses the whole action via ``pause``.

In cluster mode only the holder of the ``pull`` lease calls Tencent (``cluster/leases.py``), so
this one limiter is the cluster's; ``RateLimiters.gate`` says whether this instance still holds
it, and a slot is refused with ``LeaseLostError`` (nothing sent) once it does not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from aiolimiter import AsyncLimiter

from tcsms_poller.state.roles import LeaseLostError

__all__ = ["MARGIN", "ActionLimiter", "RateLimiters", "Slot"]

# How much longer than the server's window our window is. A request leaves some time after its
# slot (the event loop may be busy parsing a page or committing), and that delay varies on a
# loaded machine (what was measured: docs/benchmarks.md).
MARGIN = 0.020


@dataclass(slots=True)
class Slot:
    """One granted request start: when it counts from, and how long its caller waited for it."""

    granted: float
    waited: float
    at: float = 0.0

    def __post_init__(self) -> None:
        self.at = self.granted

    def sent(self) -> None:
        """The request has left: it counts from now (never earlier than its grant)."""
        self.at = max(self.at, anyio.current_time())


class ActionLimiter:
    """At most ``rate`` request starts in any ``window`` seconds, evenly paced."""

    def __init__(
        self,
        rate: int,
        *,
        window: float = 1.0,
        margin: float = MARGIN,
        gate: Callable[[], bool] = lambda: True,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 request per window")
        self.rate = rate
        self._window = window + margin
        self._starts: deque[Slot] = deque(maxlen=rate)
        self._lock = anyio.Lock()
        burst = max(1, rate // 10)
        # aiolimiter binds to the running event loop: construct limiters inside it.
        self._bucket = AsyncLimiter(burst, burst * window / rate)
        self._paused_until = 0.0
        self._gate = gate

    def pause(self, seconds: float) -> None:
        """Hold every request of this action for ``seconds`` from now (server said: too fast)."""
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)

    def recent(self) -> tuple[Slot, ...]:
        """The last ``rate`` slots granted, oldest first."""
        return tuple(self._starts)

    async def acquire(self) -> float:
        """Wait for a slot; return how long this caller waited, in seconds."""
        return (await self.slot()).waited

    async def slot(self) -> Slot:
        """Wait for a slot; call its ``sent`` once the request has been written."""
        started = anyio.current_time()
        async with self._lock:
            await self._bucket.acquire()
            now = anyio.current_time()
            earliest = self._paused_until
            if len(self._starts) == self.rate:
                earliest = max(earliest, self._starts[0].at + self._window)
            if earliest > now:
                await anyio.sleep(earliest - now)
                now = anyio.current_time()
            if not self._gate():
                raise LeaseLostError("the pull lease passed to another instance: request not sent")
            slot = Slot(granted=now, waited=now - started)
            self._starts.append(slot)
        return slot


class RateLimiters:
    """One ``ActionLimiter`` per action for the whole process, created on first use."""

    def __init__(self, limits: Mapping[str, int], *, margin: float = MARGIN) -> None:
        self._limits = dict(limits)
        self._margin = margin
        self._limiters: dict[str, ActionLimiter] = {}
        self.gate: Callable[[], bool] | None = None  # cluster mode: is the pull lease ours?

    def for_action(self, action: str) -> ActionLimiter:
        """The limiter of ``action``; an action without a configured limit is a bug."""
        limiter = self._limiters.get(action)
        if limiter is None:
            limiter = ActionLimiter(
                self._limits[action],
                margin=self._margin,
                gate=lambda: self.gate is None or self.gate(),
            )
            self._limiters[action] = limiter
        return limiter
