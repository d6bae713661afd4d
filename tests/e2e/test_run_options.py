"""``run``'s own options, on the real daemon: how long a stop may wait for the sinks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import inject, replies
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

DEFAULT_GRACE = 10.0


async def test_drain_grace_bounds_how_long_a_stop_waits_for_the_sinks(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """With an HTTP sink that never answers, a stop waits --drain-grace (here 500ms), not the
    default 10s, and says the sinks did not drain; the records stay in the outbox."""
    await inject(emulator, replies=replies(5))
    sink = {"type": "http", "url": "http://127.0.0.1:9/hook", "max_backoff": "1s"}
    config = daemon_config(emulator.url, tmp_path, sinks=[sink])
    async with running_daemon(tmp_path, config, options=["--drain-grace", "500ms"]) as daemon:
        await wait_until(
            lambda: any(event.get("new") for event in daemon.events("poll.completed")),
            what="committed replies",
        )
        started = time.monotonic()
        await daemon.stop()
        stopping_took = time.monotonic() - started
    [stopped] = daemon.events("daemon.stopped")
    assert stopped["drained"] is False
    assert stopping_took < DEFAULT_GRACE - 2, stopping_took
