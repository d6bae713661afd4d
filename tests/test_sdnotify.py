"""The notify protocol against real AF_UNIX datagram sockets bound by the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tcsms_poller.sdnotify import Notifier, run_watchdog
from tests.support.log_capture import captured_logs, json_lines
from tests.support.notify_socket import NotifySocket, notify_socket


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def sock(request: pytest.FixtureRequest) -> Iterator[NotifySocket]:
    with notify_socket(abstract=request.param) as bound:
        yield bound


def notifier_for(sock: NotifySocket, **extra: str) -> Notifier:
    return Notifier.from_environ(sock.environ(**extra))


class StopWatchdogError(Exception):
    """Ends a watchdog loop driven by a fake sleep."""


class FakeSleep:
    """Records the intervals asked for; the last of ``ticks`` ends the loop."""

    def __init__(self, ticks: int) -> None:
        self.ticks = ticks
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if len(self.calls) == self.ticks:
            raise StopWatchdogError


def test_ready_arrives_at_the_socket(sock: NotifySocket) -> None:
    """READY=1 reaches a path socket and an abstract (@) one alike."""
    assert notifier_for(sock).ready()
    assert sock.receive() == "READY=1"


def test_reloading_carries_the_monotonic_time(sock: NotifySocket) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC read from CLOCK_MONOTONIC at the call."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier_for(sock).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = sock.receive().split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=")
    assert before <= int(second.removeprefix("MONOTONIC_USEC=")) <= after


def test_stopping_is_sent(sock: NotifySocket) -> None:
    """STOPPING=1 is one datagram of its own."""
    notifier_for(sock).stopping()
    assert sock.receive() == "STOPPING=1"


def test_status_is_one_line(sock: NotifySocket) -> None:
    """A newline in the status cannot smuggle in another field such as READY=1."""
    notifier_for(sock).status("120 records/min\nREADY=1")
    assert sock.receive() == "STATUS=120 records/min READY=1"


def test_notify_sends_fields_in_order(sock: NotifySocket) -> None:
    """notify() upper-cases keys and keeps their order in one datagram."""
    notifier_for(sock).notify(status="starting", extend_timeout_usec=5_000_000)
    assert sock.receive() == "STATUS=starting\nEXTEND_TIMEOUT_USEC=5000000"


def test_watchdog_message(sock: NotifySocket) -> None:
    """watchdog() sends WATCHDOG=1."""
    notifier_for(sock).watchdog()
    assert sock.receive() == "WATCHDOG=1"


@pytest.mark.parametrize("value", [None, ""])
def test_without_notify_socket_nothing_is_sent(value: str | None) -> None:
    """Outside systemd the notifier is disabled and every call is a no-op."""
    environ = {} if value is None else {"NOTIFY_SOCKET": value}
    notifier = Notifier.from_environ(environ)
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("idle")


@pytest.mark.parametrize("value", ["vsock:2:1234", "relative/notify", "@"])
def test_unsupported_socket_address_is_disabled(value: str) -> None:
    """Addresses that are neither absolute paths nor @abstract names are not used."""
    assert not Notifier.from_environ({"NOTIFY_SOCKET": value}).enabled


def test_send_failure_returns_false(tmp_path: Path) -> None:
    """A socket nobody listens on makes send() return False instead of raising."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert notifier.enabled
    assert not notifier.ready()


def test_send_failure_is_logged_once_at_debug(tmp_path: Path) -> None:
    """Repeated failures give one debug line, not one per watchdog tick."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    with captured_logs(level="debug") as out:
        notifier.ready()
        notifier.watchdog()
    lines = [line for line in json_lines(out) if line["event"] == "sdnotify.send_failed"]
    assert len(lines) == 1
    assert lines[0]["level"] == "debug"
    assert lines[0]["logger"] == "tcsms_poller.sdnotify"


def test_send_does_not_block_when_the_receiver_is_full(sock: NotifySocket) -> None:
    """With systemd not reading, send() reports failure at once instead of blocking."""
    notifier = notifier_for(sock)
    results = [notifier.watchdog() for _ in range(5000)]
    assert results[0]
    assert not all(results)
    assert sock.receive() == "WATCHDOG=1"


def test_watchdog_interval_is_half_the_timeout() -> None:
    """WATCHDOG_USEC=30s gives a ping every 15 s."""
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval == 15.0


def test_watchdog_pid_of_this_process_enables_it() -> None:
    """WATCHDOG_PID naming us keeps the watchdog."""
    environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(environ).watchdog_interval == 1.0


def test_watchdog_pid_of_another_process_disables_it() -> None:
    """A watchdog meant for another process (we were forked or exec'd from it) is not ours."""
    environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(environ).watchdog_interval is None


@pytest.mark.parametrize(
    "environ",
    [{}, {"WATCHDOG_USEC": ""}, {"WATCHDOG_USEC": "soon"}, {"WATCHDOG_USEC": "0"}],
    ids=["unset", "empty", "garbage", "zero"],
)
def test_no_usable_watchdog_usec_means_no_watchdog(environ: dict[str, str]) -> None:
    """Without a positive WATCHDOG_USEC there is no interval."""
    assert Notifier.from_environ(environ).watchdog_interval is None


@pytest.mark.anyio
async def test_watchdog_pings_only_while_healthy(sock: NotifySocket) -> None:
    """An unhealthy tick sends nothing; healthy ticks send WATCHDOG=1."""
    health = iter([True, False, True])
    with pytest.raises(StopWatchdogError):
        await run_watchdog(
            notifier_for(sock, WATCHDOG_USEC="30000000"), lambda: next(health), sleep=FakeSleep(3)
        )
    assert sock.pending() == ["WATCHDOG=1", "WATCHDOG=1"]


@pytest.mark.anyio
async def test_watchdog_waits_the_interval_between_pings(sock: NotifySocket) -> None:
    """Each tick sleeps half of WATCHDOG_USEC."""
    sleep = FakeSleep(2)
    with pytest.raises(StopWatchdogError):
        await run_watchdog(notifier_for(sock, WATCHDOG_USEC="30000000"), lambda: True, sleep=sleep)
    assert sleep.calls == [15.0, 15.0]


@pytest.mark.anyio
async def test_watchdog_returns_at_once_without_a_watchdog(sock: NotifySocket) -> None:
    """Without WATCHDOG_USEC the task ends and never sleeps or pings."""

    async def sleep(seconds: float) -> None:
        raise AssertionError("slept without a watchdog")

    await run_watchdog(notifier_for(sock), lambda: True, sleep=sleep)
    assert sock.pending() == []


@pytest.mark.anyio
async def test_watchdog_keeps_pinging_on_the_real_clock(sock: NotifySocket) -> None:
    """With anyio.sleep, pings keep coming at the interval until the task is cancelled."""
    notifier = notifier_for(sock, WATCHDOG_USEC="20000")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_watchdog, notifier, lambda: True)
            received = [await anyio.to_thread.run_sync(sock.receive) for _ in range(3)]
            tg.cancel_scope.cancel()
    assert received == ["WATCHDOG=1"] * 3


def test_a_child_process_notifies_through_the_environment(sock: NotifySocket) -> None:
    """A separate process given NOTIFY_SOCKET reaches the test's socket, as systemd's would."""
    script = (
        "from tcsms_poller.sdnotify import Notifier\n"
        "notifier = Notifier.from_environ()\n"
        "notifier.ready(); notifier.status('0 records/min'); notifier.stopping()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **sock.environ()}, check=True, timeout=60
    )
    assert sock.wait_for("STOPPING=1") == ["READY=1", "STATUS=0 records/min", "STOPPING=1"]
