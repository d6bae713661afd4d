"""What the emulator saw, per action, for ``GET /_emulator/stats``.

``max_in_window`` is the most requests that reached the rate limiter (authenticated requests of
a known action) in any window of ``1 s - slack``: the same window the limiter uses, so a client
that never got ``RequestLimitExceeded`` shows at most N there, jitter included.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ActionStats", "RequestStats"]

NO_ACTION = "-"  # the key for requests that named no known action


@dataclass(slots=True)
class ActionStats:
    """Counters of one action."""

    window: float
    requests: int = 0
    ok: int = 0
    limit_hits: int = 0
    max_in_window: int = 0
    lost_items: int = 0  # records in answers a lost_* fault broke after the action ran
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    _recent: deque[float] = field(default_factory=deque)

    def reached_limiter(self, now: float) -> None:
        """A request reached the limiter at monotonic time ``now``."""
        recent = self._recent
        recent.append(now)
        while recent[0] <= now - self.window:
            recent.popleft()
        self.max_in_window = max(self.max_in_window, len(recent))

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "limit_hits": self.limit_hits,
            "max_in_window": self.max_in_window,
            "lost_items": self.lost_items,
            "errors": dict(self.errors),
            "faults": dict(self.faults),
        }


class RequestStats:
    """Per-action counters, created on first use."""

    def __init__(self, *, window: float) -> None:
        self._window = window
        self._actions: dict[str, ActionStats] = {}

    def of(self, action: str | None) -> ActionStats:
        """The counters of ``action``; ``None`` (no known action) is counted under ``-``."""
        key = action or NO_ACTION
        stats = self._actions.get(key)
        if stats is None:
            stats = self._actions[key] = ActionStats(self._window)
        return stats

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every action's counters, as JSON-ready dicts."""
        return {action: stats.snapshot() for action, stats in sorted(self._actions.items())}
