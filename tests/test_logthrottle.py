"""Identical log lines in a flood become one line per interval with a count."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
import structlog

from tcsms_poller.logs import get_logger
from tcsms_poller.logthrottle import RepeatThrottle
from tests.support.log_capture import captured_logs, json_lines
from tests.support.records import FakeClock


def test_repeats_within_the_interval_are_dropped_and_counted_on_the_next_line() -> None:
    """1,000 identical lines in one interval write one; the first after it says 999 were held."""
    clock = FakeClock(100.0)
    throttle = RepeatThrottle(10.0, clock=clock)
    line = {"event": "listener.connections_full", "level": "warning", "limit": 200}
    written = []
    for _ in range(1000):
        with contextlib.suppress(structlog.DropEvent):
            written.append(throttle(None, "warning", {**line, "ts": clock.now}))
        clock.now += 0.001
    assert len(written) == 1
    assert "repeated" not in written[0]
    clock.now += 10
    assert throttle(None, "warning", dict(line))["repeated"] == 999
    assert "repeated" not in throttle(None, "warning", {**line, "limit": 201})


def test_lines_that_differ_in_any_value_are_all_written() -> None:
    """Only lines equal in every key but the time stamp count as repeats."""
    throttle = RepeatThrottle(10.0, clock=FakeClock(100.0))
    for index in range(50):
        throttle(None, "warning", {"event": "poll.failed", "level": "warning", "attempt": index})


def test_lines_below_warning_are_never_held_back() -> None:
    """Two reloads in a row are two events, logged twice."""
    throttle = RepeatThrottle(10.0, clock=FakeClock(100.0))
    for _ in range(3):
        throttle(None, "info", {"event": "daemon.reloaded", "level": "info"})


def test_a_stdlib_flood_reaches_the_log_as_one_line() -> None:
    """asyncio's accept() error, logged a thousand times at once, is written once."""
    with captured_logs() as out:
        for _ in range(1000):
            logging.getLogger("asyncio").error("socket.accept() out of system resource")
        get_logger("tests").error("other.line")
    events = [line["event"] for line in json_lines(out)]
    assert events == ["socket.accept() out of system resource", "other.line"]


@pytest.mark.parametrize("value", [{1: object()}, [{"a"}, {1}]])
def test_values_that_cannot_be_compared_are_written(value: object) -> None:
    throttle = RepeatThrottle(10.0, clock=FakeClock(100.0))
    event: dict[Any, Any] = {"event": "x", "level": "error", "value": value, 1: "mixed keys"}
    assert throttle(None, "info", dict(event)) == event
    assert throttle(None, "info", dict(event)) == event
