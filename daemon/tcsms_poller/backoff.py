"""Capped exponential backoff with full jitter, for Tencent retries and sink retries alike.

Full jitter (a uniform draw between zero and the capped exponential) spreads the retries of many
workers that failed together, so they do not hit a recovering server in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` (0 for the first retry)."""

    initial: float = 0.2
    maximum: float = 20.0
    multiplier: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay the given attempt may wait."""
        # Cap the exponent before computing: 2**5000 would overflow a float.
        exponent = min(attempt, 64)
        return min(self.maximum, self.initial * self.multiplier**exponent)

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """A jittered delay in ``[0, ceiling(attempt)]``."""
        return (rng or random).uniform(0.0, self.ceiling(attempt))
