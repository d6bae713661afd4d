"""Phone numbers: splitting E.164 into Tencent's CountryCode/SubscriberNumber, making some up.

Country calling codes are a prefix code (ITU-T E.164), so a number splits without a full table:
1 and 7 are the one-digit codes, the two-digit ones match the pattern below, all others have three.
"""

from __future__ import annotations

import random
import re

__all__ = ["make_mainland_numbers", "split_number"]

_TWO_DIGIT_CODE = re.compile(r"2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58]")


def split_number(number: str) -> tuple[str, str]:
    """``+8613711112222`` -> (``86``, ``13711112222``); ``number`` must be E.164."""
    digits = number.removeprefix("+")
    if digits[0] in "17":
        length = 1
    elif _TWO_DIGIT_CODE.fullmatch(digits[:2]):
        length = 2
    else:
        length = 3
    return digits[:length], digits[length:]


def make_mainland_numbers(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct, plausible mainland China mobile numbers (``+861[3-9]`` + 9 digits)."""
    numbers: dict[str, None] = {}  # ordered and distinct
    while len(numbers) < count:
        numbers[f"+861{rng.choice('3456789')}{rng.randrange(10**9):09d}"] = None
    return list(numbers)
