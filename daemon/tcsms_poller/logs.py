"""Structured logs for operators who tail them: one JSON object a line, secrets and numbers masked.

Every line, from our structlog loggers or from stdlib ``logging`` (uvicorn, httpx), takes one path::

    get_logger(...).info(...) ─ level filter ─ contextvars, level ───────────────┐
    logging record ─ root handler ─ contextvars, level, logger name ─────────────┤
        ts (not under journald), stack, exception text, Masker, JSON or console ─┴─> one line

Events are dotted snake_case (``poll.completed``) with data in keys (``app_id``, ``worker``,
``action``, ``sink``, ``request_id``); lines start with ``ts``, ``level``, ``event``, ``logger``.
Under journald the journal stamps the time, and lines start with their syslog priority (``<3>``
error ... ``<7>`` debug) for ``journalctl -p``; never elsewhere: it would break JSON for kubectl.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO, cast
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from tcsms_poller.fields import REDACTED, SecretValue

__all__ = ["Masker", "configure_logging", "get_logger"]

_PRIORITIES = {"critical": "<2>", "error": "<3>", "warning": "<4>", "info": "<6>", "debug": "<7>"}
_LEVELS = {name: logging.getLevelNamesMapping()[name.upper()] for name in _PRIORITIES}
_LEADING_KEYS = ("ts", "level", "event", "logger")
_MIN_SECRET_LENGTH = 4  # shorter "secrets" would mask half of every line
_MAX_DEPTH = 16  # deeper (or cyclic) values are shown by their masked repr
_KEY_CACHE_SIZE = 4096
_STARS = "****"

# "+" and 7 or more digits: E.164 stops at 15, but a longer run is no less private.
_PLUS_NUMBER = re.compile(r"\+([0-9]{7,})")
_DIGIT = re.compile(r"[0-9]")
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

    __slots__ = ("_keys", "_secrets")

    def __init__(self, secrets: Iterable[str | SecretValue] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            raw = secret.reveal() if isinstance(secret, SecretValue) else secret
            if len(raw) >= _MIN_SECRET_LENGTH:
                # Also the forms a secret takes once escaped in a repr, a JSON body or a URL.
                forms.update((raw, repr(raw)[1:-1], json.dumps(raw)[1:-1], quote(raw, safe="")))
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._keys: dict[str, tuple[str, bool]] = {}

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return self._mapping(event_dict, 0)

    def text(self, text: str) -> str:
        """``text`` with every configured secret and every ``+`` number masked."""
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        if "+" in text:
            text = _PLUS_NUMBER.sub(lambda match: _mask_e164(match[1]), text)
        return text

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
        cached = self._keys.get(key)
        if cached is None:
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()
            is_phone = key.replace("_", "").lower() in _PHONE_KEYS
            cached = self._keys[key] = (self.text(key), is_phone)
        return cached


class _Output:
    """Where every line goes: one lock and one write a line, so no two lines ever interleave."""

    def __init__(self) -> None:
        self.stream: TextIO | None = None  # None: whatever sys.stdout is at the time
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        stream = sys.stdout if self.stream is None else self.stream
        # Like stdlib logging, a closed or broken log stream must not take the daemon down.
        with contextlib.suppress(OSError, ValueError), self._lock:
            stream.write(line + "\n")
            stream.flush()


class _NamedWriter:
    """What a bound logger writes to: the one output, and a name for the ``logger`` key."""

    __slots__ = ("name",)

    def __init__(self, name: str | None) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _OUTPUT.write_line(message)

    debug = info = warning = warn = error = critical = fatal = exception = msg


class _Handler(logging.Handler):
    """Sends stdlib records through the same processors to the same writer."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 (a record must never crash the library that logs it)
            # handleError() would print the raw, unmasked record: say only that it failed.
            line = json.dumps(
                {"level": "error", "event": "log.unformattable", "logger": record.name}
            )
        _OUTPUT.write_line(line)


def _add_timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    seconds, millis = divmod(time.time_ns() // 1_000_000, 1000)
    event_dict["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
    return event_dict


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")  # set by ProcessorFormatter on stdlib records
    name = record.name if record is not None else getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def _render_json(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    line = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    line.update(event_dict)
    return json.dumps(line, separators=(",", ":"))


def _with_priority(render: Processor) -> Processor:
    """Prefix every physical line with the syslog priority, as journald reads stdout."""

    def render_for_journal(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        prefix = _PRIORITIES.get(event_dict.get("level", method_name), "<6>")
        return prefix + str(render(logger, method_name, event_dict)).replace("\n", "\n" + prefix)

    return render_for_journal


def _tail(masker: Masker, *, console: bool, journald: bool, colors: bool) -> list[Processor]:
    """The processors every line runs through, wherever it came from; masking runs last."""
    render: Processor = _render_json
    if console:
        render = structlog.dev.ConsoleRenderer(
            colors=colors, timestamp_key="ts", exception_formatter=structlog.dev.plain_traceback
        )
    stamp: list[Processor] = [] if journald else [_add_timestamp]
    return [
        *stamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        masker,
        _with_priority(render) if journald else render,
    ]


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _is_journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal: ``$JOURNAL_STREAM`` (``dev:inode``) names it.

    Children inherit the variable while their output goes elsewhere, so being set is not enough.
    """
    try:
        device, inode = (int(part) for part in environ.get("JOURNAL_STREAM", "").split(":"))
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def _set_level(level: int) -> None:
    """Swap the level's methods into the one logger class, so loggers handed out earlier (and
    their bound children) follow a reload; a call below the level stays a bare ``return None``."""
    for name, method in vars(structlog.make_filtering_bound_logger(level)).items():
        if not name.startswith("__"):
            setattr(_BoundLogger, name, method)


_BoundLogger = type("BoundLogger", (structlog.BoundLoggerBase,), {})
_OUTPUT = _Output()
_HANDLER = _Handler()
# One list for the life of the process, edited in place: loggers hold a reference to it.
_PROCESSORS: list[Processor] = []
_HEAD: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    _add_logger_name,
]


def _writer_factory(*args: Any) -> _NamedWriter:
    """For ``structlog.get_logger(name)``: the name becomes the ``logger`` key here too."""
    return _NamedWriter(str(args[0]) if args else None)


def _route_structlog(threshold: int, tail: list[Processor], stream: TextIO | None) -> None:
    """Point every structlog logger at ``tail``: ours, and ``structlog.get_logger()``'s too.

    Loggers hold the class, the processor list and the output by reference; changing them in
    place is what lets a reload reach loggers bound long before (and keeps caching them safe).
    """
    _set_level(threshold)
    _PROCESSORS[:] = [*_HEAD, *tail]
    _OUTPUT.stream = stream
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=_BoundLogger,
        logger_factory=_writer_factory,
        context_class=dict,
        cache_logger_on_first_use=True,
    )


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str | SecretValue] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Set up structlog and stdlib logging; call again on reload, existing loggers follow.

    ``auto`` is console on a terminal, JSON otherwise; ``stream`` defaults to stdout (the daemon
    passes stderr when a stdout sink owns stdout).
    """
    threshold = _LEVELS.get(level.lower())
    if threshold is None:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(_LEVELS)}")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}: use auto, json or console")
    target = sys.stdout if stream is None else stream
    tty = _is_tty(target)
    tail = _tail(
        Masker(secrets),
        console=fmt == "console" or (fmt == "auto" and tty),
        journald=_is_journal_stream(target, os.environ if environ is None else environ),
        colors=tty,
    )
    _route_structlog(threshold, tail, stream)
    _HANDLER.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_HEAD,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    root.addHandler(_HANDLER)  # once: addHandler ignores a handler it already has
    root.setLevel(threshold)
    # httpx logs every request at info, httpcore every socket read at debug.
    libraries = logging.DEBUG if threshold <= logging.DEBUG else logging.WARNING
    logging.getLogger("httpx").setLevel(libraries)
    logging.getLogger("httpcore").setLevel(max(libraries, logging.INFO))


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name``; fine to create at import time."""
    return cast(FilteringBoundLogger, _BoundLogger(_NamedWriter(name), _PROCESSORS, {}))


# Until configure_logging() runs: info and above, JSON on stdout, numbers masked.
_route_structlog(logging.INFO, _tail(Masker(), console=False, journald=False, colors=False), None)
