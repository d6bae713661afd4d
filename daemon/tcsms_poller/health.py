"""Health of every worker and sink, as /healthz, sd_notify STATUS and ``status`` report it.

A part is unhealthy when it says so (a permanent API error, a database failure) or when it has
been failing for longer than its grace period (a sink retrying for too long). Recovery is the
first success after that.

``/healthz`` answers without authentication, so a reason is masked like a log line (secrets,
phone numbers) and cut to ``REASON_LIMIT`` characters on one line: a downstream's answer or
Tencent's error text shows as a short excerpt, never whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tcsms_poller.masking import Masker

__all__ = ["REASON_LIMIT", "Health", "HealthBoard"]

REASON_LIMIT = 300


@dataclass(slots=True)
class Health:
    """The health of one worker or sink; mutated only by its owner."""

    name: str
    kind: str
    clock: Callable[[], float] = field(default=time.time, repr=False)
    masker: Masker = field(default_factory=Masker, repr=False)
    failing_since: float | None = None
    grace: float = 0.0
    reason: str | None = None
    last_success_at: float | None = None
    note: str | None = None  # why a healthy part is idle (an API not activated for the app)

    def succeeded(self) -> None:
        """The part just did its job: healthy again."""
        self.failing_since = None
        self.reason = None
        self.last_success_at = self.clock()

    def failed(self, reason: str, *, grace: float = 0.0) -> None:
        """The part is failing; it counts as unhealthy once ``grace`` seconds have passed."""
        if self.failing_since is None:
            self.failing_since = self.clock()
        self.grace = grace
        self.reason = _excerpt(self.masker.text(reason))

    @property
    def is_healthy(self) -> bool:
        """Whether the part works, or has been failing for less than its grace period."""
        if self.failing_since is None:
            return True
        return self.clock() - self.failing_since < self.grace

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "name": self.name,
            "kind": self.kind,
            "healthy": self.is_healthy,
            "reason": self.reason,
            "failing_since": self.failing_since,
            "last_success_at": self.last_success_at,
            "note": self.note,
        }


class HealthBoard:
    """Every part's ``Health``, registered at start."""

    def __init__(
        self, clock: Callable[[], float] = time.time, *, masker: Masker | None = None
    ) -> None:
        self._clock = clock
        self._masker = masker or Masker()  # numbers only: the daemon passes its secrets too
        self._parts: dict[str, Health] = {}

    def register(self, name: str, kind: str) -> Health:
        """A new (healthy) entry; registering a name again replaces it (e.g. a reloaded sink)."""
        health = Health(name=name, kind=kind, clock=self._clock, masker=self._masker)
        self._parts[name] = health
        return health

    def unregister(self, name: str) -> None:
        """Forget a part that no longer exists (a sink removed on reload)."""
        self._parts.pop(name, None)

    @property
    def is_healthy(self) -> bool:
        """Whether every part is healthy."""
        return all(part.is_healthy for part in self._parts.values())

    def unhealthy(self) -> list[Health]:
        """The parts that are not healthy, by name."""
        return sorted((p for p in self._parts.values() if not p.is_healthy), key=lambda p: p.name)

    def describe(self) -> list[dict[str, Any]]:
        """Every part's summary, by name."""
        return [self._parts[name].describe() for name in sorted(self._parts)]


def _excerpt(text: str) -> str:
    """``text`` on one line, at most ``REASON_LIMIT`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "…"
