"""``Retry-After`` (RFC 9110 §10.2.3) as seconds to wait: delta-seconds or an HTTP date."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: float, cap: float) -> float | None:
    """Seconds to wait from ``now``, at most ``cap``; None if absent or unreadable.

    A date in the past means "now" (0 s); a malformed value is ignored rather than trusted,
    so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(int(text[:12]))  # twelve digits are ~30,000 years: cap territory anyway
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # "-0000": RFC 5322's "UTC, origin unknown"
            return None
        seconds = moment.timestamp() - now
    return min(max(seconds, 0.0), cap)
