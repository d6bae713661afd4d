"""Whole numbers read from untrusted text: ASCII digits only, bounded in length and range.

``str.isdigit()`` accepts ``"²"`` and other scripts' digits that ``int()`` then refuses, and
``int()`` of thousands of digits is slow or refused outright; a number parsed from a request, a
push or a query string goes through here instead, so bad input is a 4xx and never a 500.
"""

from __future__ import annotations

__all__ = ["INT64_MAX", "MAX_UNIX_TIME", "is_ascii_digits", "parse_ascii_int", "shorten"]

INT64_MAX = 2**63 - 1
MAX_UNIX_TIME = 253_402_300_799  # 9999-12-31 23:59:59 UTC, the last second datetime can show
_MAX_DIGITS = len(str(INT64_MAX))


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty string of ``0``-``9`` only."""
    return text.isascii() and text.isdigit()


def parse_ascii_int(value: object, *, minimum: int = 0, maximum: int = INT64_MAX) -> int | None:
    """``value`` as an int within ``minimum..maximum``, from an int or a string of ASCII digits.

    Returns None for anything else: a bool, a float, a sign, spaces, other scripts' digits,
    more digits than a signed 64-bit integer has, or a number out of range.
    """
    if isinstance(value, str):
        if len(value) > _MAX_DIGITS or not is_ascii_digits(value):
            return None
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if minimum <= value <= maximum else None


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis, for echoing input back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
