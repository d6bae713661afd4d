"""Identical log lines in a flood become one line per interval with a count."""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from typing import Any

import anyio
import pytest
import structlog
from structlog.typing import EventDict

from tcsms_poller.logs import configure_logging, get_logger, report_held_lines
from tcsms_poller.logthrottle import RepeatThrottle
from tests.support.log_capture import captured_logs, json_lines
from tests.support.records import FakeClock
from tests.support.waiting import wait_until

ACCEPT_FAILED = "socket.accept() out of system resource"


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
    """asyncio's accept() error, logged a thousand times at once, is written once; the count
    follows when logging is configured again (a reload), not lost with the old settings."""
    with captured_logs() as out:
        for _ in range(1000):
            logging.getLogger("asyncio").error(ACCEPT_FAILED)
        get_logger("tests").error("other.line")
        assert [line["event"] for line in json_lines(out)] == [ACCEPT_FAILED, "other.line"]
    lines = [(line["event"], line["logger"], line.get("repeated")) for line in json_lines(out)]
    assert lines == [
        (ACCEPT_FAILED, "asyncio", None),
        ("other.line", "tests", None),
        (ACCEPT_FAILED, "asyncio", 999),
    ]


def held(throttle: RepeatThrottle, clock: FakeClock, line: dict[str, Any], count: int) -> None:
    """``count`` copies of ``line`` through ``throttle``, a millisecond apart."""
    for _ in range(count):
        with contextlib.suppress(structlog.DropEvent):
            throttle(None, str(line["level"]), {**line, "ts": clock.now})
        clock.now += 0.001


FULL = {"event": "listener.connections_full", "level": "warning", "limit": 200}


def test_held_lines_are_released_once_their_interval_has_passed() -> None:
    """A burst and then silence: the count comes out without a next line, as the last line held
    with ``repeated``; the release counts as a line written, so the next repeat is held again."""
    clock = FakeClock(100.0)
    throttle = RepeatThrottle(10.0, clock=clock)
    held(throttle, clock, FULL, 1000)
    assert throttle.release() == []  # not yet a full interval since the line was written
    clock.now = 110.0
    [report] = throttle.release()
    assert report == {**FULL, "ts": pytest.approx(100.999), "repeated": 999}  # the last held
    assert throttle.release() == []
    held(throttle, clock, FULL, 2)
    clock.now = 119.0
    assert throttle.release() == []
    clock.now = 120.0
    assert [line["repeated"] for line in throttle.release()] == [2]


def test_the_final_release_gives_every_held_line_and_forgets_the_rest() -> None:
    """At stop (or a reload) whatever is held comes out at once, and the next line is new."""
    clock = FakeClock(100.0)
    throttle = RepeatThrottle(10.0, clock=clock)
    held(throttle, clock, FULL, 3)
    held(throttle, clock, {**FULL, "limit": 201}, 1)
    assert [line["repeated"] for line in throttle.release(final=True)] == [2]
    assert throttle(None, "warning", dict(FULL)) == FULL


def test_lines_forgotten_for_room_keep_their_count() -> None:
    """More distinct lines than the throttle remembers: what it forgets is still released."""
    clock = FakeClock(100.0)
    throttle = RepeatThrottle(10.0, clock=clock)
    held(throttle, clock, FULL, 5)
    for index in range(2000):
        throttle(None, "warning", {"event": "poll.failed", "level": "warning", "attempt": index})
    assert [(line["event"], line["repeated"]) for line in throttle.release()] == [
        ("listener.connections_full", 4)
    ]


class Ticks:
    """A sleep that returns when the test ticks, the fake clock then at its deadline."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._send, self._receive = anyio.create_memory_object_stream[None]()

    async def sleep(self, seconds: float) -> None:
        deadline = self.clock.now + seconds
        await self._receive.receive()
        self.clock.now = max(self.clock.now, deadline)

    async def tick(self) -> None:
        """Returns once the sleeping reporter has taken the tick."""
        await self._send.send(None)

    def __enter__(self) -> Ticks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._send.close()
        self._receive.close()


@pytest.mark.anyio
async def test_the_reporter_writes_a_burst_within_two_intervals_and_the_rest_at_stop() -> None:
    """Every interval the reporter writes what has been held for a full one, so a burst that
    starts just after a tick is written at the second tick after it; at stop, all of it."""
    clock = FakeClock(100.0)
    throttle = RepeatThrottle(10.0, clock=clock)
    written: list[tuple[float, EventDict]] = []

    def record(line: EventDict) -> None:
        written.append((clock.now, line))

    with Ticks(clock) as ticks:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(throttle.report, record, sleep=ticks.sleep))
            await ticks.tick()  # 110
            clock.now = 112.0
            held(throttle, clock, FULL, 100)
            await ticks.tick()  # 120: only 8 s since the burst's first line was written
            await ticks.tick()  # 130
            await wait_until(lambda: bool(written), what="the held count")
            assert [(at, line["repeated"]) for at, line in written] == [(130.0, 99)]
            held(throttle, clock, {**FULL, "limit": 201}, 3)
            tg.cancel_scope.cancel()
    assert [(line["limit"], line["repeated"]) for _, line in written] == [(200, 99), (201, 2)]


@pytest.mark.anyio
async def test_the_daemon_reporter_writes_held_lines_at_stop() -> None:
    """``report_held_lines`` (run by the daemon) writes through the configured renderer."""
    with captured_logs() as out:
        async with anyio.create_task_group() as tg:
            tg.start_soon(report_held_lines)
            await anyio.wait_all_tasks_blocked()
            for _ in range(50):
                get_logger("tests").error("sink.failed", sink="http")
            tg.cancel_scope.cancel()
        lines = [(line["event"], line.get("repeated")) for line in json_lines(out)]
        assert lines == [("sink.failed", None), ("sink.failed", 49)]
        configure_logging(fmt="json", stream=out, environ={})
        assert len(json_lines(out)) == 2  # released at stop: nothing left for a reload


@pytest.mark.parametrize("value", [{1: object()}, [{"a"}, {1}]])
def test_values_that_cannot_be_compared_are_written(value: object) -> None:
    throttle = RepeatThrottle(10.0, clock=FakeClock(100.0))
    event: dict[Any, Any] = {"event": "x", "level": "error", "value": value, 1: "mixed keys"}
    assert throttle(None, "info", dict(event)) == event
    assert throttle(None, "info", dict(event)) == event
