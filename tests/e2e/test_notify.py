"""systemd's view of the running daemon: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import READY_TIMEOUT, daemon_config, running_daemon
from tests.support.notify_socket import NotifySocket
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def fields(messages: list[str]) -> list[str]:
    """Every ``NAME=value`` line of every datagram, in order."""
    return [line for message in messages for line in message.split("\n")]


async def test_the_notify_sequence_of_a_whole_run(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    config = daemon_config(emulator.url, tmp_path)
    watchdog = {"WATCHDOG_USEC": "400000"}  # pings every 200 ms
    async with running_daemon(tmp_path, config, environ=watchdog) as daemon:
        assert fields(daemon.notify.messages).count("READY=1") == 1
        first_ping = await daemon.wait_for_notify("WATCHDOG=1", timeout=30)
        await daemon.wait_for_notify("WATCHDOG=1", timeout=30, after=len(first_ping))
        before_reload = len(daemon.notify.messages)
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for_notify("READY=1", timeout=30, after=before_reload)
        await daemon.stop()
        messages = daemon.notify.pending()
    lines = fields(messages)
    reloading = lines.index("RELOADING=1")
    assert lines[reloading + 1].startswith("MONOTONIC_USEC=")
    assert "READY=1" in lines[reloading + 2 :]
    assert lines.index("STOPPING=1") > reloading
    assert lines.count("WATCHDOG=1") >= 2
    [status, *_] = [line for line in lines if line.startswith("STATUS=")]
    assert "records/min" in status
    assert "STOPPING=1" not in lines[: lines.index("READY=1")]


async def test_ready_comes_before_the_first_request(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Workers start before the listener, but none pulls until READY=1 has been sent."""
    arrivals: list[float] = []  # wall-clock arrival of every request at the emulator
    monotonic = emulator.state.monotonic

    def timed_arrival() -> float:
        arrivals.append(time.time())
        return monotonic()

    emulator.state.monotonic = timed_arrival
    server = {"listen": f"127.0.0.1:{free_port()}", "token": "t" * 24, "callback_secret": "c" * 24}
    config = daemon_config(emulator.url, tmp_path, server=server)
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: bool(arrivals), what="a pull")
        await daemon.stop()
    [ready] = daemon.events("daemon.ready")  # logged right after READY=1, before any pull
    ready_at = datetime.strptime(ready["ts"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    assert min(arrivals) >= ready_at  # ts is truncated to the millisecond: never late


def ping_times(notify: NotifySocket, duration: float) -> list[float]:
    """Receive for ``duration`` seconds; the monotonic arrival time of each ``WATCHDOG=1``."""
    arrivals: list[float] = []
    deadline = time.monotonic() + duration
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = notify.receive(remaining)
        except TimeoutError:
            break
        if "WATCHDOG=1" in message.split("\n"):
            arrivals.append(time.monotonic())
    return arrivals


async def test_a_hung_state_write_stops_the_watchdog_pings_until_it_completes(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """With WatchdogSec=2s the daemon pings every second, until a state write has been pending
    for 2 s; then it stays silent (systemd would restart it) and pings again once the write
    went through. The write is held up by a lock for 7 s, below the 10 s it waits for one."""
    config = daemon_config(emulator.url, tmp_path)  # empty queue polls commit every 200 ms
    async with running_daemon(tmp_path, config, environ={"WATCHDOG_USEC": "2000000"}) as daemon:
        await daemon.wait_for_notify("WATCHDOG=1", timeout=30)
        blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None, timeout=30)
        try:
            blocker.execute("BEGIN EXCLUSIVE")  # every write of the daemon now waits
            locked_at = time.monotonic()
            while_locked = await anyio.to_thread.run_sync(ping_times, daemon.notify, 7.0)
            blocker.rollback()
        finally:
            blocker.close()
        released_at = time.monotonic()
        # Fails unless it pings again once the write could complete.
        await daemon.wait_for_notify("WATCHDOG=1", timeout=30, after=len(daemon.notify.messages))
        await daemon.stop()
    # A poll starts a write within 200 ms of the lock; 2 s later it counts as hung. Pings
    # before that are fine (up to 1.5 s of delay allowed); none may come once it is hung.
    silent_from = locked_at + 3.5
    assert released_at > silent_from + 3
    assert [at - locked_at for at in while_locked if at >= silent_from] == []


def fill(pipe_end: int) -> None:
    """Write into a pipe until it is full, so the next write by anyone blocks."""
    os.set_blocking(pipe_end, False)  # the daemon shares this flag (one open file): restore it
    try:
        while True:
            os.write(pipe_end, b"x" * 65536)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(pipe_end, True)


def drain_until_closed(pipe_end: int) -> None:
    while os.read(pipe_end, 65536):
        pass


async def test_a_blocked_event_loop_stops_the_watchdog_pings(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The pings come from the event loop itself. Here the loop blocks writing a log line into
    a full pipe, as behind a wedged log collector: the pings stop, and resume once the pipe is
    read again."""
    config = daemon_config(emulator.url, tmp_path)  # debug: log lines every 200 ms
    reader, writer = os.pipe()
    watchdog = {"WATCHDOG_USEC": "1000000"}  # pings every 500 ms
    try:
        async with running_daemon(tmp_path, config, environ=watchdog, stdout=writer) as daemon:
            await daemon.wait_for_notify("WATCHDOG=1", timeout=30)
            fill(writer)  # the daemon's own write end of the same pipe: its next line blocks
            filled_at = time.monotonic()
            while_full = await anyio.to_thread.run_sync(ping_times, daemon.notify, 5.0)
            os.close(writer)  # ours; the daemon's copy stays open until it exits
            writer = -1
            drainer = threading.Thread(target=drain_until_closed, args=(reader,), daemon=True)
            drainer.start()
            # Fails unless it pings again once the loop turns.
            await daemon.wait_for_notify(
                "WATCHDOG=1", timeout=30, after=len(daemon.notify.messages)
            )
            await daemon.stop()
        drainer.join(timeout=30)
    finally:
        for end in (reader, writer):
            if end >= 0:
                os.close(end)
    # The next log line comes within 200 ms; pings may be late by up to 2 s, then none.
    assert [at - filled_at for at in while_full if at >= filled_at + 2.5] == []


async def test_without_notify_socket_the_daemon_runs_just_the_same(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    config = daemon_config(emulator.url, tmp_path)
    async with running_daemon(
        tmp_path, config, environ={"NOTIFY_SOCKET": ""}, wait_ready=False
    ) as daemon:
        await wait_until(lambda: bool(daemon.events("daemon.ready")), what="daemon.ready")
        await daemon.stop()
        assert daemon.notify.pending() == []


async def test_a_daemon_that_exits_before_ready_fails_the_wait_at_once(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """No READY=1 will come from a dead process: the harness says so with its exit code."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = {**daemon_config(emulator.url, tmp_path), "state": {"path": str(blocker / "s.db")}}
    with anyio.fail_after(READY_TIMEOUT / 2), pytest.raises(AssertionError, match="exit code 1"):
        async with running_daemon(tmp_path, config):
            pass
