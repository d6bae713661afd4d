"""Collapsing a flood of identical log lines into one line per interval, with a count.

A failure that repeats in a tight loop (``accept()`` out of file descriptors, a connection cap
hit by every newcomer) must not write megabytes a second: the disk fills, the journal rotates
away what mattered, and the logging itself slows the daemon. So a warning or error identical to
one written less than ``interval`` ago (every key but the time stamp) is dropped and counted;
the first identical line after the interval is written with ``repeated`` set to how many were
dropped. Lines below warning are events, not failures, and always written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["RepeatThrottle"]

_IGNORED_KEYS = frozenset({"ts"})
_THROTTLED_LEVELS = frozenset({"warning", "error", "critical", "exception"})
_MAX_TRACKED = 1024  # distinct lines remembered; beyond, the oldest are forgotten


class RepeatThrottle:
    """A structlog processor: identical warnings and errors at most once per ``interval`` s."""

    def __init__(
        self, interval: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # stdlib records arrive from other threads too
        self._lines: dict[str, list[float | int]] = {}  # identity -> [written at, dropped since]

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("level", method_name) not in _THROTTLED_LEVELS:
            return event_dict
        try:
            identity = repr(sorted((k, v) for k, v in event_dict.items() if k not in _IGNORED_KEYS))
        except Exception:  # noqa: BLE001 (an unsortable or unprintable value: write the line)
            return event_dict
        now = self._clock()
        with self._lock:
            entry = self._lines.get(identity)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                raise structlog.DropEvent
            if len(self._lines) >= _MAX_TRACKED:
                self._forget_before(now)
            self._lines[identity] = [now, 0]
        if entry is not None and entry[1]:
            event_dict["repeated"] = int(entry[1])
        return event_dict

    def _forget_before(self, now: float) -> None:
        """Forget lines written more than an interval ago (all of them if none is that old)."""
        stale = [key for key, (at, _) in self._lines.items() if now - at >= self.interval]
        for key in stale or list(self._lines):
            del self._lines[key]
