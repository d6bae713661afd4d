"""systemd's view of the running daemon: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.e2e.conftest import free_port, wait_until
from tests.e2e.daemon_process import READY_TIMEOUT, daemon_config, running_daemon

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
