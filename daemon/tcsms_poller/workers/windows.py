"""Per-number windows: each poll covers the number's whole span, and a full page is split.

``PullSmsSendStatusByPhoneNumber`` and ``PullSmsReplyStatusByPhoneNumber`` answer at most 100
records of ``[BeginTime, EndTime]`` (UNIX seconds, both inclusive), with ``Offset`` fixed at 0
and nothing older than 7 days. Tencent does not say which time the window filters on (the send
time, as the 2019 name ``SendDateTime`` suggests, or ``UserReceiveTime``), nor in which order
the records come. Paging relies on neither:

1. Every poll asks for the number's whole span, ``[now - lookback, now]`` (inside the 7 days).
   There is no cursor that a late record could fall behind.
2. A page of fewer than 100 records is all its window holds, in whatever order it came.
3. A full page may hide more: its window is split into two halves by time, and each half is
   asked in turn, until every window answers fewer than 100. The halves partition their window,
   so the windows that answered short partition the span: every record of the span lies in
   exactly one of them and came back with it. The records of full pages are delivered too (they
   repeat records of the halves), and so is every record again at every poll while it stays in
   the span: dedupe drops the repeats, as ``state.dedupe_ttl`` (at least 7 days, the
   configuration checks) outlasts any span.
4. A one-second window cannot be split. Its full page is delivered and the window is reported
   as overfull (once, not at every poll that finds it again): 100 or more records of one
   number in one second, and those beyond the page cannot be reached with ``Offset`` fixed
   at 0. The sweep goes on with the next window, and every split makes a window strictly
   shorter, so a poll always ends.

Why this is correct under all four readings, (send time | receive time) x (ascending |
descending): steps 2-4 look only at how many records a page holds and at the bounds we sent,
never at the times inside the records or at their order, and a split partitions whichever time
the API filters on. So the order never matters, and the reading only decides which records the
span holds. Read as receive time, that is every receipt received within ``lookback``; read as
send time, every receipt of a message sent within ``lookback``, including one that arrives
hours after its send (the phone was off, ``EXPIRED``): a receipt becomes pullable at some moment
``v`` for a message sent at ``s``, and the first poll after ``v`` holds it as long as ``v - s``
plus one interval is less than ``lookback``. Replies are the same: a reply's send time is its
reply time, so both readings coincide there.

Cost: the windows a sweep ended with are its ``Plan``, and the next poll of the number starts
from it instead of from the whole span: neighbours that together held fewer than
``MERGE_BELOW`` records share a window again (all of them, if they held fewer than 100 in all),
the part of the span that is new is added to the last window, and the part that left the span
is dropped. Any partition of the span is as
correct as another (a window that has grown full is split like any), so the plan only saves
requests. A number with fewer than 100 records in its span costs one request a poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcsms_poller.tencent.api import BY_NUMBER_LOOKBACK, PAGE_LIMIT

__all__ = [
    "MERGE_BELOW",
    "Answered",
    "Plan",
    "Sweep",
    "Window",
    "oldest_allowed",
    "span_of",
]

WINDOW_MARGIN = 300  # stay this far inside the 7 days, so clock skew never trips the check
MERGE_BELOW = PAGE_LIMIT * 2 // 3  # leave a third of a page for records that arrive meanwhile


@dataclass(frozen=True, slots=True)
class Window:
    """One request's ``[begin, end]`` in UNIX seconds, both inclusive."""

    begin: int
    end: int

    @property
    def is_splittable(self) -> bool:
        """Whether the window is longer than one second."""
        return self.end > self.begin

    def halves(self) -> tuple[Window, Window]:
        """The two halves, earlier first; together exactly this window."""
        middle = (self.begin + self.end) // 2
        return Window(self.begin, middle), Window(middle + 1, self.end)


@dataclass(frozen=True, slots=True)
class Answered:
    """A window asked in full, and how many records it answered."""

    window: Window
    count: int


Plan = tuple[Answered, ...]  # the windows a sweep ended with, in time order


def oldest_allowed(now: float) -> int:
    """The oldest ``BeginTime`` to send at ``now``: inside the API's 7 days, with a margin."""
    return int(now) - BY_NUMBER_LOOKBACK + WINDOW_MARGIN


def span_of(*, now: float, lookback: float) -> Window:
    """The span a poll covers: from ``lookback`` ago until now, inside the API's 7 days."""
    end = int(now)
    return Window(begin=max(end - int(lookback), oldest_allowed(now)), end=end)


def _start(span: Window, plan: Plan, limit: int) -> list[Window]:
    """The windows a sweep of ``span`` asks first: ``plan``'s, merged and fitted to the span.

    Fewer than ``limit`` records in all (some left the span) are asked in one window again.
    """
    pieces = [a for a in plan if a.window.end >= span.begin and a.window.begin <= span.end]
    if sum(piece.count for piece in pieces) < limit:
        return [span]
    windows: list[Window] = []
    begin, held = span.begin, 0
    for piece in pieces:
        if held and held + piece.count >= MERGE_BELOW:
            windows.append(Window(begin, piece.window.begin - 1))
            begin, held = piece.window.begin, 0
        held += piece.count
    windows.append(Window(begin, span.end))
    return windows


@dataclass(slots=True)
class Sweep:
    """One poll's walk over a span: the windows still to ask, and the outcome of those asked.

    Call ``next`` for the window to ask, then ``record`` with how many records it answered
    (rejected and pending items included: they count towards the page), until ``next`` returns None.
    """

    span: Window
    limit: int = PAGE_LIMIT
    plan: list[Answered] = field(default_factory=list)  # the windows not split, in time order
    overfull: list[Window] = field(default_factory=list)  # overfull, and not in the last plan
    _pending: list[Window] = field(default_factory=list)  # a stack: the earliest last
    _known: frozenset[Window] = frozenset()  # overfull in the last plan: reported already

    @classmethod
    def start(cls, span: Window, plan: Plan = (), *, limit: int = PAGE_LIMIT) -> Sweep:
        """A sweep of ``span``, beginning with the windows of the previous sweep's ``plan``."""
        known = frozenset(a.window for a in plan if a.count >= limit)
        return cls(span=span, limit=limit, _pending=_start(span, plan, limit)[::-1], _known=known)

    @property
    def unreachable(self) -> list[Window]:
        """Every one-second window of this sweep that answered a full page."""
        return [a.window for a in self.plan if a.count >= self.limit]

    def next(self, now: float) -> Window | None:
        """The next window to ask, moved inside the API's 7 days as of ``now``; None when done.

        A sweep that waits long for the rate limit can see the oldest seconds of its span age
        past what the API accepts: those can no longer be pulled, so they are left out.
        """
        oldest = oldest_allowed(now)
        while self._pending:
            window = self._pending.pop()
            if window.end >= oldest:
                return Window(max(window.begin, oldest), window.end)
        return None

    def record(self, window: Window, count: int) -> None:
        """``window`` answered ``count`` records: split it if the page was full."""
        if count < self.limit:
            self.plan.append(Answered(window, count))
        elif window.is_splittable:
            early, late = window.halves()
            self._pending += [late, early]
        else:
            self.plan.append(Answered(window, count))
            if window not in self._known:
                self.overfull.append(window)

    def finished_plan(self) -> Plan:
        """The plan for the next sweep of this number; empty when one window sufficed."""
        return tuple(self.plan) if len(self.plan) > 1 else ()
