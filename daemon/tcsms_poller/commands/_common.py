"""What the daemon-facing commands share: ``-c FILE``, loading it, and setting up logging."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from tcsms_poller.config import Config, load_config
from tcsms_poller.logs import configure_logging
from tcsms_poller.units import parse_duration

__all__ = ["add_config_argument", "duration_argument", "load_and_configure"]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``-c/--config FILE`` option every daemon command takes."""
    parser.add_argument(
        "-c", "--config", required=True, type=Path, metavar="FILE", help="YAML configuration"
    )


def log_stream(config: Config) -> TextIO:
    """stdout for logs, unless a stdout sink claims it for records: then stderr."""
    return sys.stderr if any(sink.type == "stdout" for sink in config.sinks) else sys.stdout


def load_and_configure(path: Path, *, prints_result: bool = False) -> Config:
    """Load the configuration (a ``ConfigError`` exits 78 in ``cli``) and configure logging.

    A command that ``prints_result`` on stdout logs to stderr, so its output stays parseable.
    """
    config = load_config(path)
    configure_logging(
        level=config.log.level,
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
