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
   is when its bytes are written, not when its slot was granted: on a loaded machine a request
   can leave tens of milliseconds after its grant (or seconds, if the process was paused), and a
   late request k followed by a prompt request k+N would otherwise reach the server closer than
   a window apart. So the client calls ``Slot.leave`` right before it writes the request (with
   no await in between): the slot is checked again there, at the last moment (the share still
   holds, the action is not paused, fewer than N other requests left in the last window, the
   gate is open), and the request counts from then, and from when its write was seen complete
   (``Slot.sent``) once it was. A slot that no longer allows the request raises
   ``SlotLapsedError`` (nothing was written: the caller takes a fresh slot) or
   ``LeaseLostError``. The margin absorbs what remains, the varying delay between leaving and
   arriving.

Requests are granted in FIFO order (one ``anyio.Lock``), so no caller starves. A server-side
``RequestLimitExceeded`` (other clients share the account) pauses the whole action via ``pause``.

In cluster mode (``cluster/rates.py``) the database grants each instance a share of each action's
limit, until a local deadline: ``ActionLimiter.share`` sets it, and the limiter enforces that
share (none once the deadline passed: requests wait for the next grant). The shares in force never
add up to more than the limit, so the account's promise holds for the cluster. A request made on
behalf of a lease or a claim is refused with ``LeaseLostError`` (nothing sent) when its gate
(``REQUEST_GATE``, set by the worker for its task) says the lease or claim is no longer held, when
the slot is granted and again as the request leaves.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import anyio
from aiolimiter import AsyncLimiter

from tcsms_poller.state.roles import LeaseLostError

__all__ = ["MARGIN", "REQUEST_GATE", "ActionLimiter", "RateLimiters", "Slot", "SlotLapsedError"]

# Whether the requests of the current task may still be sent (the lease or claim they depend on
# is held): checked once the limiter granted a slot, and again as the request leaves.
REQUEST_GATE: ContextVar[Callable[[], bool] | None] = ContextVar("request_gate", default=None)


class SlotLapsedError(Exception):
    """The slot no longer allows its request (the share ran out, the action was paused or the
    window filled since it was granted): nothing was written; take a fresh slot."""


# How much longer than the server's window our window is. A request leaves some time after its
# slot (the event loop may be busy parsing a page or committing), and that delay varies on a
# loaded machine (what was measured: docs/benchmarks.md).
MARGIN = 0.020


@dataclass(slots=True, eq=False)
class Slot:
    """One granted request start: when it counts from, and how long its caller waited for it."""

    granted: float
    waited: float
    limiter: ActionLimiter
    gate: Callable[[], bool] | None = None
    at: float = 0.0
    left: bool = False  # ``leave`` let the request go (it counts from ``at``)
    counted: bool = False  # among the requests that left in the last window
    refused: bool = False  # ``leave`` refused the request

    def __post_init__(self) -> None:
        self.at = self.granted

    def leave(self) -> None:
        """The request is about to be written (no await may come between this call and the
        write): it counts from now, if the slot still allows it; otherwise ``SlotLapsedError``
        or ``LeaseLostError``, and the slot is given back."""
        self.limiter.leave(self)

    def sent(self) -> None:
        """The request has been written: it counts from now (the write completed at the latest
        now; counting later than it left only holds the next requests back)."""
        self.at = max(self.at, anyio.current_time())


class ActionLimiter:
    """At most ``rate`` request starts in any ``window`` seconds, evenly paced.

    ``limit`` is the account's limit of the action; ``rate`` is what this process may use of it:
    all of it alone, its share in a cluster (0 until the first grant, and once a grant's local
    deadline passed).
    """

    def __init__(
        self,
        rate: int,
        *,
        window: float = 1.0,
        margin: float = MARGIN,
        shared: bool = False,
        announce: Callable[[float], None] | None = None,
        starving: Callable[[], None] = lambda: None,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 request per window")
        self.limit = rate
        self.window = window + margin
        self._unit = window
        self._rate = 0 if shared else rate
        self._until = -math.inf if shared else math.inf
        self._starts: deque[Slot] = deque()  # granted, in the order of their grants
        self._sent: deque[Slot] = deque()  # left in the last window, in the order they left
        self._lock = anyio.Lock()
        self._bucket = self._pacer(self._rate)
        self._paused_until = 0.0
        self._changed = anyio.Event()
        self._announce = announce
        self._starving = starving
        self._waiting = 0
        self.wanted_at = -math.inf  # when a caller last asked for a slot (cluster demand)

    def _pacer(self, rate: int) -> AsyncLimiter:
        burst = max(1, rate // 10)
        # aiolimiter binds to the running event loop: construct limiters inside it.
        return AsyncLimiter(burst, burst * self._unit / max(1, rate))

    @property
    def rate(self) -> int:
        """The requests per window this process may start now."""
        if self._until == math.inf:
            return self._rate
        return self._rate if anyio.current_time() < self._until else 0

    @property
    def waiting(self) -> bool:
        """Whether a caller waits for a slot now."""
        return self._waiting > 0

    @property
    def paused_for(self) -> float:
        """Seconds the action stays paused (0 when it is not)."""
        return max(0.0, self._paused_until - anyio.current_time())

    def share(self, rate: int, until: float) -> None:
        """Cluster mode: ``rate`` requests per window are this process's until ``until``
        (monotonic); a lower rate applies at once, to every slot granted from now on."""
        if rate != self._rate and rate > 0:
            self._bucket = self._pacer(rate)
        self._rate, self._until = rate, until
        if rate > 0:  # a caller waiting for a share, or for a slot, looks again
            self._changed.set()
            self._changed = anyio.Event()

    def pause(self, seconds: float, *, announce: bool = True) -> None:
        """Hold every request of this action for ``seconds`` from now (server said: too fast);
        in a cluster, ``announce`` pauses the other instances too."""
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)
        if announce and self._announce is not None:
            self._announce(seconds)

    def recent(self) -> tuple[Slot, ...]:
        """The slots granted that may still count against the window, oldest first."""
        return tuple(self._starts)

    async def acquire(self) -> float:
        """Wait for a slot; return how long this caller waited, in seconds."""
        return (await self.slot()).waited

    async def slot(self) -> Slot:
        """Wait for a slot; call its ``leave`` right before the request is written."""
        started = self.wanted_at = anyio.current_time()
        self._waiting += 1
        try:
            async with self._lock:
                now = await self._slot()
                gate = REQUEST_GATE.get()
                _check_gate(gate)
                slot = Slot(granted=now, waited=now - started, limiter=self, gate=gate)
                self._starts.append(slot)
        finally:
            self._waiting -= 1
        return slot

    def leave(self, slot: Slot) -> None:
        """``Slot.leave``: the last check before the request is written (synchronous, so that
        nothing runs between it and the write)."""
        now = anyio.current_time()
        sent = self._sent
        try:
            _check_gate(slot.gate)
            if self.rate == 0:
                raise SlotLapsedError("the share ran out before the request left")
            if self._paused_until > now:
                raise SlotLapsedError("the action was paused before the request left")
            while sent and sent[0].at <= now - self.window:
                sent.popleft().counted = False
            if len(sent) - slot.counted >= self.rate:
                raise SlotLapsedError("the window filled before the request left")
        except (SlotLapsedError, LeaseLostError):
            slot.refused = True
            if not slot.left and slot in self._starts:  # nothing written: it does not count
                self._starts.remove(slot)
            raise
        slot.at, slot.left = max(slot.at, now), True
        if not slot.counted:
            slot.counted = True
            sent.append(slot)

    async def _slot(self) -> float:
        """Wait until a start is allowed; the time it is."""
        paced = False
        while True:
            rate = self.rate
            if rate == 0:  # no share (yet, or any more): ask for one, wait for a grant
                self._starving()
                await self._changed.wait()
                continue
            if not paced:
                await self._bucket.acquire()
                paced = True
                continue
            now = anyio.current_time()
            while self._starts and self._starts[0].at <= now - self.window:
                self._starts.popleft()
            earliest = self._paused_until
            if len(self._starts) >= rate:
                earliest = max(earliest, self._starts[-rate].at + self.window)
            if earliest <= now:
                return now
            with anyio.move_on_after(earliest - now):  # a new share is looked at again
                await self._changed.wait()


def _check_gate(gate: Callable[[], bool] | None) -> None:
    if gate is not None and not gate():
        raise LeaseLostError("the lease or claim passed to another instance: not sent")


class RateLimiters:
    """One ``ActionLimiter`` per action for the whole process, created on first use.

    ``shared`` (cluster mode): each limiter waits for its share (``cluster/rates.py``), and a
    pause it takes is passed to ``announce(action, seconds)``.
    """

    def __init__(
        self, limits: Mapping[str, int], *, margin: float = MARGIN, shared: bool = False
    ) -> None:
        self._limits = dict(limits)
        self._margin = margin
        self._limiters: dict[str, ActionLimiter] = {}
        self.shared = shared
        self.announce: Callable[[str, float], None] | None = None
        self.starving: Callable[[], None] = lambda: None  # a caller waits with no share

    def for_action(self, action: str) -> ActionLimiter:
        """The limiter of ``action``; an action without a configured limit is a bug."""
        limiter = self._limiters.get(action)
        if limiter is None:
            limiter = ActionLimiter(
                self._limits[action],
                margin=self._margin,
                shared=self.shared,
                announce=lambda seconds: self._announced(action, seconds),
                starving=lambda: self.starving(),
            )
            self._limiters[action] = limiter
        return limiter

    def _announced(self, action: str, seconds: float) -> None:
        if self.announce is not None:
            self.announce(action, seconds)

    def created(self) -> dict[str, ActionLimiter]:
        """The limiters used so far, by action."""
        return dict(self._limiters)
