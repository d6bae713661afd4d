"""Masking secrets and phone numbers in anything about to be logged.

Secrets are replaced wherever they appear (values, nested structures, exception text), since a
secret reaches a log line most often inside something else: a URL, an error message, a repr.
A secret of 8 characters or more is masked even inside a longer word. A shorter one is masked
only where it stands as a whole token: an edge of it that is a letter, digit or ``_`` must not
touch another one. So a PostgreSQL password ``p`` is masked in ``postgresql://u:***@db/x``, in
``password=***`` and as a value of its own, while ``port`` stays ``port``: masked everywhere, a
1-character secret would garble every line. A secret's edge that is punctuation (a secret path
``/h``) needs no separator. Empty secrets are no secrets.
Phone numbers keep their country code and last four digits (``+86137****2222``) so an operator
can still tell numbers apart without the log becoming personal data. In free text a number is
recognised by its ``+``, or, without one, by the shape of a mainland mobile number; under a
phone key (``mobile``, ``SubscriberNumber``) any digits are.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from structlog.typing import EventDict, WrappedLogger

from tcsms_poller.settings_types import REDACTED, SecretValue

__all__ = ["Masker"]

_MIN_ANYWHERE = 8  # shorter secrets are masked as whole tokens only (module docstring)
_MAX_DEPTH = 16  # deeper (or cyclic) values are shown by their masked repr
_KEY_CACHE_SIZE = 4096
_STARS = "****"

# "+" and 7 or more digits: E.164 stops at 15, but a longer run is no less private.
_PLUS_NUMBER = re.compile(r"\+([0-9]{7,})")
# A mainland China mobile number written without "+" (optionally after 86 or 0086), standing
# alone: Tencent's own error messages and reply texts quote numbers this way. Letters or digits
# on either side mean something else (a hex id, a longer count, a millisecond time).
_BARE_MOBILE = re.compile(
    r"(?<![0-9A-Za-z+])((?:0086|86)?)(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9A-Za-z])"
)
_DIGIT = re.compile(r"[0-9]")
_WORD = re.compile(r"\w")
# Keys (lower case, no underscores) whose values are numbers written without "+"; this also
# covers Tencent's own spelling (``Mobile``, ``SubscriberNumber``).
_PHONE_KEYS = frozenset(
    {"phone", "phonenumber", "phonenumbers", "mobile", "subscribernumber", "number", "numbers"}
)
# ITU-T calling codes: 1 and 7 have one digit, these have two, every other code has three.
_TWO_DIGIT_CODES = frozenset(
    {20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55}
    | {56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98}
)


def _mask_digits(digits: str) -> str:
    """``****`` and at most the last four digits, keeping at least four hidden."""
    keep = min(4, max(len(digits) - 4, 0))
    return _STARS + digits[len(digits) - keep :]


def _mask_e164(digits: str) -> str:
    """``8613711112222`` -> ``+86137****2222``: the first three subscriber digits stay only
    when four or more remain hidden between them and the last four."""
    code = 1 if digits[0] in "17" else 2 if int(digits[:2]) in _TWO_DIGIT_CODES else 3
    subscriber = digits[code:]
    head = subscriber[:3] if len(subscriber) >= 11 else ""
    return f"+{digits[:code]}{head}{_mask_digits(subscriber)}"


def _mask_subscriber(value: str) -> str:
    """A value under a phone key: E.164 when it starts with ``+``, otherwise digits only."""
    digits = "".join(_DIGIT.findall(value))
    if not digits:
        return value
    if value.lstrip().startswith("+") and len(digits) >= 7:
        return _mask_e164(digits)
    return _mask_digits(digits)


def _token(form: str) -> str:
    """The pattern of a short secret's form masked only as a whole token: a letter, digit or
    ``_`` at its edge must not continue a word."""
    before = r"(?<!\w)" if _WORD.match(form[0]) else ""
    after = r"(?!\w)" if _WORD.match(form[-1]) else ""
    return before + re.escape(form) + after


def _mask_text(text: str, secrets: re.Pattern[str] | None) -> str:
    """``text`` with what ``secrets`` matches and every phone number masked (``Masker.text``)."""
    if secrets is not None:
        text = secrets.sub(REDACTED, text)
    if "+" in text:
        text = _PLUS_NUMBER.sub(lambda match: _mask_e164(match[1]), text)
    return _BARE_MOBILE.sub(lambda match: f"{match[1]}{match[2]}{_STARS}{match[3]}", text)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 (a broken __repr__ must not lose the whole line)
        return f"<{type(value).__name__}: repr failed>"


class Masker:
    """Masks secrets (``***``) and phone numbers (``+86137****2222``) anywhere in a value.

    It is also the structlog processor that runs last before rendering, over the whole event
    dict: nested containers, dict keys, exception text and the ``repr`` of any other object (which
    the renderer would otherwise produce later, unmasked). Containers are copied, never mutated.
    """

    __slots__ = ("_forms", "_lock", "_state")

    def __init__(self, secrets: Iterable[str | SecretValue] = ()) -> None:
        self._lock = threading.Lock()  # one learn() at a time; reading needs no lock
        self._forms: dict[str, bool] = {}  # form -> masked anywhere, not as a whole token only
        # The secrets' pattern and the masked keys cached under it, swapped as one reference.
        self._state: tuple[re.Pattern[str] | None, dict[str, tuple[str, bool]]] = (None, {})
        self.learn(secrets)

    def learn(self, secrets: Iterable[str | SecretValue]) -> None:
        """Mask ``secrets`` too from now on, besides every one known already.

        A reload learns the secrets of its new configuration before it builds anything, and
        nothing is ever forgotten: a secret kept after a failed reload or a rotation is a word
        too many masked, one forgotten too early would be a secret in the clear.

        Lines are masked in whichever thread logs them (work handed to a thread, a library's
        own threads), so the new pattern and a fresh key cache replace the old pair as one
        reference: a reader uses the old pair or the new one, never a key masked by the old
        pattern cached beside the new one. Only ``learn`` takes the lock; logging never waits.
        """
        with self._lock:
            forms = dict(self._forms)
            for secret in secrets:
                raw = secret.reveal() if isinstance(secret, SecretValue) else secret
                # Also the forms a secret takes once escaped in a repr, a JSON body or a URL.
                for form in (raw, repr(raw)[1:-1], json.dumps(raw)[1:-1], quote(raw, safe="")):
                    if form:
                        forms[form] = forms.get(form, False) or len(raw) >= _MIN_ANYWHERE
            if forms == self._forms:
                return  # nothing new: the cached keys stay good
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(forms, key=len, reverse=True)
            patterns = [re.escape(form) if forms[form] else _token(form) for form in ordered]
            self._forms = forms
            self._state = (re.compile("|".join(patterns)), {})

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return self._mapping(event_dict, 0)

    def text(self, text: str) -> str:
        """``text`` with every configured secret, every ``+`` number and every bare mainland
        mobile number (``13711112222`` -> ``137****2222``) masked."""
        return _mask_text(text, self._state[0])

    def value(self, value: object) -> object:
        """A masked copy of ``value``, made only of JSON-friendly types."""
        return self._value(value, False, 0)

    def _value(self, value: object, is_phone: bool, depth: int) -> object:
        if isinstance(value, str):
            return self.text(_mask_subscriber(value) if is_phone else value)
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            return _mask_subscriber(str(value)) if is_phone else value
        if depth < _MAX_DEPTH:
            if isinstance(value, Mapping):
                return self._mapping(value, depth + 1)
            if isinstance(value, list | tuple | set | frozenset):
                items = [self._value(item, is_phone, depth + 1) for item in value]
                return tuple(items) if isinstance(value, tuple) else items
        return self.text(_safe_repr(value))

    def _mapping(self, mapping: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        masked = {}
        for key, item in mapping.items():
            masked_key, is_phone = self._key(key)
            masked[masked_key] = self._value(item, is_phone, depth)
        return masked

    def _key(self, key: object) -> tuple[object, bool]:
        """The masked key and whether it holds phone numbers; cached, as keys repeat endlessly."""
        if type(key) is not str:  # 1, 1.0 and True are one dict key: never cache them
            return self._value(key, False, _MAX_DEPTH), False  # at _MAX_DEPTH, never a container
        secrets, keys = self._state  # one read: the key is cached for the pattern it met
        cached = keys.get(key)
        if cached is None:
            if len(keys) >= _KEY_CACHE_SIZE:
                keys.clear()
            is_phone = key.replace("_", "").lower() in _PHONE_KEYS
            cached = keys[key] = (_mask_text(key, secrets), is_phone)
        return cached
