"""Structured logs for operators who tail them: one JSON object a line, secrets and numbers masked.

Every line, from our structlog loggers or from stdlib ``logging`` (uvicorn, httpx), takes one path::

    get_logger(...).info(...) ─ level filter ─ contextvars, level ───────────────┐
    logging record ─ root handler ─ contextvars, level, logger name ─────────────┤
        ts (not under journald), stack, exception text, Masker, repeats throttled
        (logthrottle.py), JSON or console ──────────────────────────────────────┴─> one line
    report_held_lines() (a daemon task): the counts a burst left, every 10 s and at stop ──┘

Events are dotted snake_case (``poll.completed``) with data in keys (``app_id``, ``worker``,
``action``, ``sink``, ``request_id``); lines start with ``ts``, ``level``, ``event``, ``logger``.
Under journald the journal stamps the time, and lines start with their syslog priority (``<3>``
error ... ``<7>`` debug) for ``journalctl -p``; never elsewhere: it would break JSON for kubectl.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from tcsms_poller.logthrottle import RepeatThrottle
from tcsms_poller.masking import Masker
from tcsms_poller.settings_types import SecretValue

__all__ = [
    "THIRD_PARTY_LOGGERS",
    "configure_logging",
    "get_logger",
    "learn_secrets",
    "lost_lines",
    "report_held_lines",
]

_PRIORITIES = {"critical": "<2>", "error": "<3>", "warning": "<4>", "info": "<6>", "debug": "<7>"}
_LEVELS = {name: logging.getLevelNamesMapping()[name.upper()] for name in _PRIORITIES}
_LEADING_KEYS = ("ts", "level", "event", "logger")
# Libraries whose info lines are per-request detail: shown at debug, else warnings and worse.
THIRD_PARTY_LOGGERS = ("httpx", "asyncio", "uvicorn", "uvicorn.access", "uvicorn.error")


class _Output:
    """Where every line goes: one lock and one write a line, so no two lines ever interleave.

    Like stdlib logging, a closed or broken log stream must not take the daemon down, and a full
    non-blocking pipe must not stall it: such a line is lost (or, from a full pipe, may reach it
    later or in part). Never silently, though: the lines whose write failed are counted
    (``tcsms_poller_log_lines_lost_total``), and the first line that gets through again is
    followed by a ``log.lines_lost`` warning saying how many failed.
    """

    def __init__(self) -> None:
        self.stream: TextIO | None = None  # None: whatever sys.stdout is at the time
        self.lost = 0  # lines whose write failed since the process started
        self._unreported = 0
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        stream = sys.stdout if self.stream is None else self.stream
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                self.lost += 1
                self._unreported += 1
                return
            unreported, self._unreported = self._unreported, 0
        if unreported:  # outside the lock: this logs a line of its own
            get_logger("tcsms_poller.logs").warning("log.lines_lost", lines=unreported)


def lost_lines() -> int:
    """Log lines whose write failed since the process started."""
    return _OUTPUT.lost


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
        except structlog.DropEvent:  # a repeat the throttle holds back
            return
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
    """The processors every line runs through, wherever it came from; masking comes before
    anything that compares or renders values."""
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
        _THROTTLE,  # after the masker: it compares plain values, never calls a repr
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
_THROTTLE = RepeatThrottle()  # one for the process: a reload releases what it holds
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

    ``auto`` is console on a terminal, JSON otherwise; console lines are coloured on a terminal
    unless ``NO_COLOR`` is set. ``stream`` defaults to stdout (the daemon passes stderr when a
    stdout sink owns stdout).
    """
    threshold = _LEVELS.get(level.lower())
    if threshold is None:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(_LEVELS)}")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}: use auto, json or console")
    environ = os.environ if environ is None else environ
    target = sys.stdout if stream is None else stream
    _write_held(_THROTTLE.release(final=True))  # counts held under the old settings
    tty = _is_tty(target)
    tail = _tail(
        Masker(secrets),
        console=fmt == "console" or (fmt == "auto" and tty),
        journald=_is_journal_stream(target, environ),
        colors=tty and not environ.get("NO_COLOR"),  # https://no-color.org: set and not empty
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
    # httpx and uvicorn log every request (and uvicorn its start and stop) at info, httpcore
    # every socket read at debug, asyncio its slow callbacks and selector at debug: per request
    # is debug detail for us. Their warnings and errors pass at every level up to ours.
    libraries = logging.DEBUG if threshold <= logging.DEBUG else max(threshold, logging.WARNING)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(libraries)
    logging.getLogger("httpcore").setLevel(max(libraries, logging.INFO))


def learn_secrets(secrets: Iterable[str | SecretValue]) -> None:
    """Mask ``secrets`` too in every line from now on, besides those known (``Masker.learn``).

    A reload's new sinks may carry new secrets and log before the reload completes: it calls
    this first. The structlog path and the stdlib handler share the one masker in the chain.
    """
    secrets = tuple(secrets)
    for processor in _PROCESSORS:
        if isinstance(processor, Masker):
            processor.learn(secrets)


async def report_held_lines() -> None:
    """Until cancelled, write the counts of repeats the throttle held back when no identical
    line follows to carry them (``logthrottle.py``); when cancelled (at stop), all of them."""
    await _THROTTLE.report(lambda line: _write_held([line]))


def _write_held(lines: list[EventDict]) -> None:
    """Write lines the throttle released through the processors after it (the renderer)."""
    after = _PROCESSORS[_PROCESSORS.index(_THROTTLE) + 1 :]
    for line in lines:
        rendered: Any = line
        level = str(line.get("level", "warning"))
        try:
            for processor in after:
                rendered = processor(_NamedWriter(line.get("logger")), level, rendered)
        except Exception:  # noqa: BLE001 (a line must never stop the task that writes it)
            rendered = json.dumps({"level": level, "event": "log.unformattable"})
        _OUTPUT.write_line(str(rendered))


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name``; fine to create at import time."""
    return cast(FilteringBoundLogger, _BoundLogger(_NamedWriter(name), _PROCESSORS, {}))


# Until configure_logging() runs: info and above, JSON on stdout, numbers masked.
_route_structlog(logging.INFO, _tail(Masker(), console=False, journald=False, colors=False), None)
