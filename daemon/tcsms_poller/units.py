"""Human-friendly durations (``500ms``, ``7d``) and sizes (``1MiB``), both ways.

Configuration, the CLI and the local API all accept the same spellings, so the parsing lives here
once and every caller reports the same error text.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Return seconds for ``500ms``/``5s``/``2m``/``1h``/``7d``; a unit is mandatory.

    Raises:
        ValueError: with a message fit to show an operator.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit: ms, s, m, h or d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Spell seconds back in the largest unit that keeps a whole number."""
    millis = round(seconds * 1000)
    for unit, factor in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis and millis % factor == 0:
            return f"{millis // factor}{unit}"
    return f"{millis}ms"


def parse_size(text: str | int) -> int:
    """Return bytes for ``1MiB``, ``512KB``, ``100`` (bytes)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must not be negative")
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: use a number and a unit: B, KB, MB, KiB, MiB, GiB"
        )
    if len(match.group(1)) > 18:  # no size has more digits; int() would refuse 4,300 and up
        raise ValueError(f"invalid size {text[:40]!r}: too large")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def format_size(size: int) -> str:
    """Spell bytes back in the largest binary unit that keeps a whole number."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
