"""What the daemon-facing commands share: ``-c FILE``, loading it, and setting up logging."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TextIO, TypeVar

import anyio
import structlog

from tcsms_poller.config import Config, load_config
from tcsms_poller.exits import ConfigError, ReportedError, UsageError
from tcsms_poller.logs import configure_logging
from tcsms_poller.units import parse_duration

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_CONFIG",
    "add_config_argument",
    "default_config_path",
    "duration_argument",
    "load_and_configure",
    "run_reporting",
]

T = TypeVar("T")
CONFIG_VARIABLE = "TCSMS_POLLER_CONFIG"
DEFAULT_CONFIG = Path("/etc/tcsms-poller/config.yaml")
LOG_LEVELS = ("debug", "info", "warning", "error")
log = structlog.get_logger("tcsms_poller.daemon")


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Without ``-c``: ``$TCSMS_POLLER_CONFIG``, else ``/etc/tcsms-poller/config.yaml``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_VARIABLE) or DEFAULT_CONFIG)


def add_config_argument(parser: argparse.ArgumentParser, *, logs: bool = False) -> None:
    """The ``-c/--config FILE`` option every daemon command takes; ``logs``: ``--log-level``."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default_config_path(),
        metavar="FILE",
        help=f"YAML configuration (default: ${CONFIG_VARIABLE}, else {DEFAULT_CONFIG})",
    )
    if logs:
        parser.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            help="overrides log.level of the configuration",
        )


def log_stream(config: Config) -> TextIO:
    """stdout for logs, unless a stdout sink claims it for records: then stderr."""
    return sys.stderr if any(sink.type == "stdout" for sink in config.sinks) else sys.stdout


def load_and_configure(args: argparse.Namespace, *, prints_result: bool = False) -> Config:
    """Load ``args.config`` (a ``ConfigError`` exits 78 in ``cli``) and configure logging.

    ``--log-level`` overrides ``log.level``. A command that ``prints_result`` on stdout logs to
    stderr, so its output stays parseable; so does one whose stdout sink writes records there.
    """
    config = load_config(args.config)
    configure_logging(
        level=getattr(args, "log_level", None) or config.log.level,
        fmt=config.log.format,
        secrets=config.secrets(),
        stream=sys.stderr if prints_result else log_stream(config),
    )
    return config


def duration_argument(text: str) -> float:
    """A command-line duration: ``20`` (seconds) or ``500ms``/``20s``/``2m`` like the config."""
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero")
    return seconds


def add_duration_argument(
    parser: argparse.ArgumentParser, flag: str, *, default: float, help: str
) -> None:
    """An option taking a duration (``20``, ``500ms``, ``2m``; see ``duration_argument``)."""
    parser.add_argument(
        flag, type=duration_argument, default=default, metavar="DURATION", help=help
    )


def run_reporting(func: Callable[[], Awaitable[T]], *, event: str) -> T:
    """``anyio.run(func)``; a failure is one ``event`` line at error, never a traceback.

    anyio hands a task's exception out of its task group wrapped in an ``ExceptionGroup``, so
    the reason is found among the group's leaves. A ``ConfigError`` found while starting (a
    numbers file gone bad) is re-raised, to exit 78, and so is a ``UsageError`` (exit 2: a
    mistake found only once the state was read); anything else is logged and becomes
    ``ReportedError`` (exit 1). An unexpected exception keeps its traceback, inside the one
    JSON line, so ``jq`` still reads the log.
    """
    from tcsms_poller.state import StateError  # here: check-config needs no state package

    try:
        return anyio.run(func, backend="asyncio")
    except Exception as error:  # every failure must end as one line
        causes = _leaves(error)
        for cause in causes:
            if isinstance(cause, ConfigError | UsageError):
                raise cause from None
        reason = "; ".join(_reason(cause) for cause in causes)
        unexpected = [c for c in causes if not isinstance(c, StateError | OSError)]
        if unexpected:
            log.error(event, error=reason, exc_info=unexpected[0])
        else:
            log.error(event, error=reason)
        raise ReportedError(reason) from None


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; ``error`` if it is none."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _reason(error: BaseException) -> str:
    from tcsms_poller.state import StateError

    if isinstance(error, StateError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
