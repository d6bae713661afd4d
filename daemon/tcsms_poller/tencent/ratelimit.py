"""Per-action request limits shared by every caller in the process.

The promise (SPEC §6): never more than N requests of an action in any sliding one-second window,
and close to N per second when there is enough work, whatever the latency.

``aiolimiter.AsyncLimiter(N, 1)`` alone breaks the first half: its bucket starts empty and admits
N at once, then N more over the first second (about 2N in one window). So each action gets two
layers:

1. a small leaky bucket (aiolimiter, capacity ``N/10``) that paces requests evenly, so the server
   sees a smooth stream instead of bursts whose arrival jitter could bunch them up; and
2. a hard sliding-window log of the last N start times: request k+N may start only once request k
   is at least ``window + margin`` old. This is what guarantees the promise; the margin absorbs
   the varying delay between a request's slot and its arrival at the server.

Requests are granted in FIFO order (one ``anyio.Lock``), so no caller starves. A server-side
``RequestLimitExceeded`` (other clients share the account) pauses the whole action via ``pause``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import anyio
from aiolimiter import AsyncLimiter

__all__ = ["MARGIN", "ActionLimiter", "RateLimiters"]

# How much longer than the server's window our window is. A request leaves some time after its
# slot (the event loop may be busy parsing a page or committing), and that delay varies on a
# loaded machine (what was measured: docs/benchmarks.md).
MARGIN = 0.020


class ActionLimiter:
    """At most ``rate`` request starts in any ``window`` seconds, evenly paced."""

    def __init__(self, rate: int, *, window: float = 1.0, margin: float = MARGIN) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 request per window")
        self.rate = rate
        self._window = window + margin
        self._starts: deque[float] = deque(maxlen=rate)
        self._lock = anyio.Lock()
        burst = max(1, rate // 10)
        # aiolimiter binds to the running event loop: construct limiters inside it.
        self._bucket = AsyncLimiter(burst, burst * window / rate)
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request of this action for ``seconds`` from now (server said: too fast)."""
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)

    async def acquire(self) -> float:
        """Wait for a slot; return how long this caller waited, in seconds."""
        started = anyio.current_time()
        async with self._lock:
            await self._bucket.acquire()
            now = anyio.current_time()
            earliest = self._paused_until
            if len(self._starts) == self.rate:
                earliest = max(earliest, self._starts[0] + self._window)
            if earliest > now:
                await anyio.sleep(earliest - now)
                now = anyio.current_time()
            self._starts.append(now)
        return now - started


class RateLimiters:
    """One ``ActionLimiter`` per action for the whole process, created on first use."""

    def __init__(self, limits: Mapping[str, int], *, margin: float = MARGIN) -> None:
        self._limits = dict(limits)
        self._margin = margin
        self._limiters: dict[str, ActionLimiter] = {}

    def for_action(self, action: str) -> ActionLimiter:
        """The limiter of ``action``; an action without a configured limit is a bug."""
        limiter = self._limiters.get(action)
        if limiter is None:
            limiter = ActionLimiter(self._limits[action], margin=self._margin)
            self._limiters[action] = limiter
        return limiter
