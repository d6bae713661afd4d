"""Collapsing a flood of identical log lines into one line per interval, with a count.

A failure that repeats in a tight loop (``accept()`` out of file descriptors, a connection cap
hit by every newcomer) must not write megabytes a second: the disk fills, the journal rotates
away what mattered, and the logging itself slows the daemon. So a warning or error identical to
one written less than ``interval`` ago (every key but the time stamp) is dropped and counted;
the first identical line after the interval is written with ``repeated`` set to how many were
dropped. Lines below warning are events, not failures, and always written.

A burst followed by silence has no next line to carry its count, so ``report`` (a task of the
daemon) releases every interval the lines held for a full one: the last one held, as it was
(its own ``ts``), with ``repeated``. A count is thus written within two intervals of the first
line it follows, and at stop (or when logging is configured anew) at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["RepeatThrottle"]

_IGNORED_KEYS = frozenset({"ts"})
_THROTTLED_LEVELS = frozenset({"warning", "error", "critical", "exception"})
_MAX_TRACKED = 1024  # distinct lines remembered; beyond, the oldest are forgotten


@dataclass(slots=True)
class _Line:
    """One distinct line: when it was last written, and what has been held back since."""

    written_at: float
    held: int = 0
    last: EventDict | None = None  # the last line held back

    def report(self) -> EventDict:
        return {**(self.last or {}), "repeated": self.held}


class RepeatThrottle:
    """A structlog processor: identical warnings and errors at most once per ``interval`` s."""

    def __init__(
        self, interval: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # stdlib records arrive from other threads too
        self._lines: dict[str, _Line] = {}  # identity -> the line
        self._forgotten: list[EventDict] = []  # counts of lines forgotten for room, to release

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("level", method_name) not in _THROTTLED_LEVELS:
            return event_dict
        try:
            identity = repr(sorted((k, v) for k, v in event_dict.items() if k not in _IGNORED_KEYS))
        except Exception:  # noqa: BLE001 (an unsortable or unprintable value: write the line)
            return event_dict
        now = self._clock()
        with self._lock:
            line = self._lines.get(identity)
            if line is not None and now - line.written_at < self.interval:
                line.held += 1
                line.last = event_dict
                raise structlog.DropEvent
            if len(self._lines) >= _MAX_TRACKED:
                self._forget_before(now)
            self._lines[identity] = _Line(now)
        if line is not None and line.held:
            event_dict["repeated"] = line.held
        return event_dict

    def release(self, *, final: bool = False) -> list[EventDict]:
        """The lines held back for a full interval, each the last one held with ``repeated``;
        a released line counts as written now. ``final`` (at stop, or before logging is
        configured anew): every line held, and every line forgotten."""
        now = self._clock()
        with self._lock:
            released, self._forgotten = self._forgotten, []
            for line in self._lines.values():
                if line.held and (final or now - line.written_at >= self.interval):
                    released.append(line.report())
                    line.written_at, line.held, line.last = now, 0, None
            if final:
                self._lines.clear()
        return released

    async def report(
        self,
        write: Callable[[EventDict], None],
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """Until cancelled, ``write`` every interval what has been held for a full one; when
        cancelled, all that is held (see the module docstring)."""
        try:
            while True:
                await sleep(self.interval)
                for line in self.release():
                    write(line)
        finally:
            for line in self.release(final=True):
                write(line)

    def _forget_before(self, now: float) -> None:
        """Forget lines written more than an interval ago (all of them if none is that old);
        the count of one held back is kept for the next release."""
        stale = [key for key, line in self._lines.items() if now - line.written_at >= self.interval]
        for key in stale or list(self._lines):
            line = self._lines.pop(key)
            if line.held:
                self._forgotten.append(line.report())
