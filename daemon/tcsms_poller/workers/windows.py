"""Time windows and paging for the per-number APIs, as pure functions.

The per-number APIs take ``[BeginTime, EndTime]``, at most 100 records a call, ``Offset`` fixed
at 0 and nothing older than 7 days. So a poll starts a little before the newest record already
seen (receipts reach Tencent late: the overlap catches stragglers, dedupe absorbs the repeats)
and a full page continues from its last timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["API_WINDOW", "OVERLAP", "PAGE_LIMIT", "Window", "first_window", "next_window"]

API_WINDOW = 7 * 86_400  # the API refuses a BeginTime older than this
WINDOW_MARGIN = 300  # stay this far inside the 7 days, so clock skew never trips the check
OVERLAP = 300  # re-read this far before the newest record seen: late receipts land there
PAGE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Window:
    """One request's ``[begin, end]`` in UNIX seconds, both inclusive."""

    begin: int
    end: int


def first_window(*, cursor: int | None, now: float, lookback: float) -> Window:
    """The window of a poll: from before the cursor (or ``lookback`` ago) until now."""
    end = int(now)
    oldest_allowed = end - API_WINDOW + WINDOW_MARGIN
    begin = end - int(lookback) if cursor is None else cursor - OVERLAP
    return Window(begin=max(begin, oldest_allowed), end=end)


def next_window(window: Window, times: Sequence[int], *, limit: int = PAGE_LIMIT) -> Window | None:
    """The window after a page with these record ``times`` (ascending), or None when done.

    A short page means the window is exhausted. A full page continues from its last timestamp
    (records sharing that second come again and are deduplicated). If a whole page shares one
    second there is no way past it with ``Offset`` fixed at 0, so we step one second on: the
    caller logs that records may have been skipped.
    """
    if len(times) < limit:
        return None
    last = max(times)
    begin = last + 1 if min(times) == last else last
    if begin > window.end:
        return None
    return Window(begin=begin, end=window.end)
