"""Logs captured as the daemon writes them: ``configure_logging`` into a buffer, undone after.

Usage::

    with captured_logs(level="debug") as out:
        get_logger("tcsms_poller.worker.replies").info("poll.completed", records=3)
    assert json_lines(out)[0]["event"] == "poll.completed"
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO

from tcsms_poller.logs import THIRD_PARTY_LOGGERS, configure_logging
from tcsms_poller.settings_types import SecretValue

__all__ = ["captured_logs", "json_lines"]

_LIBRARIES = (*THIRD_PARTY_LOGGERS, "httpcore")


@contextmanager
def captured_logs(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "json",
    secrets: Iterable[str | SecretValue] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[TextIO]:
    """Configure logging into ``stream`` (a new ``StringIO`` by default) and yield it.

    The test's own environment never leaks in (``environ`` defaults to empty); on exit loggers
    write JSON to stdout at info again, as after import, and the root logger and the library
    levels are as they were.
    """
    out: TextIO = io.StringIO() if stream is None else stream
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    library_levels = {name: logging.getLogger(name).level for name in _LIBRARIES}
    configure_logging(
        level=level,
        fmt=fmt,
        secrets=secrets,
        stream=out,
        environ={} if environ is None else environ,
    )
    try:
        yield out
    finally:
        configure_logging(fmt="json", environ={})
        root.handlers[:] = handlers
        root.setLevel(root_level)
        for name, library_level in library_levels.items():
            logging.getLogger(name).setLevel(library_level)


def json_lines(out: TextIO) -> list[dict[str, Any]]:
    """Every line written to a ``StringIO`` from ``captured_logs``, parsed."""
    assert isinstance(out, io.StringIO)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def output(out: TextIO) -> str:
    """Everything ``captured_logs`` wrote so far."""
    assert isinstance(out, io.StringIO)
    return out.getvalue()
