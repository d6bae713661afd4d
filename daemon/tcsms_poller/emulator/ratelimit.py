"""The server side of a per-action request limit: strict, sliding, and fair to a correct client.

A request is refused when admitting it would put more than ``rate`` requests in a window of
``1 s - slack``. The slack absorbs loopback arrival jitter: a client that keeps N requests per
sliding second at its end can look like N+1 in exactly 1.000 s here.

One window alone cannot catch a client that is only slightly too fast: at 1.01 N/s, N+1 requests
span 0.9901 s, just outside a 0.990 s window. So the check also runs over longer windows: at most
``k * rate`` requests in any ``k s - slack``, for k = 1 .. ``horizon``. Over two seconds that
client's 2N+1 requests span 1.980 s, inside 1.990 s, and it is caught; a correct client never is,
because at most N in every second means at most kN in every k seconds. Refused requests do not
count: a client that backs off gets its full rate back.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """Admits at most ``k * rate`` requests in any window of ``k - slack`` seconds, k <= horizon."""

    def __init__(self, rate: int, *, slack: float = 0.010, horizon: int = 2) -> None:
        if rate < 1 or horizon < 1 or not 0 <= slack < 1:
            raise ValueError("need rate >= 1, horizon >= 1 and 0 <= slack < 1")
        self.rate = rate
        self._slack = slack
        self._horizon = horizon
        self._admitted: deque[float] = deque(maxlen=rate * horizon)

    def admit(self, now: float) -> bool:
        """Whether a request arriving at monotonic time ``now`` is within the limit (and count it).

        ``now`` must not go backwards between calls.
        """
        admitted = self._admitted
        for k in range(1, self._horizon + 1):
            count = k * self.rate
            # The count-th most recent admission inside the window means the window is full.
            if len(admitted) >= count and admitted[-count] > now - (k - self._slack):
                return False
        admitted.append(now)
        return True
