"""The daemon as a subprocess pulls every receipt of a tracked number under each reading of the
per-number window: the emulator filters on the send or the receive time and answers ascending
or descending; receipts come in hundreds with shared seconds, and late ones after a poll."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import NUMBER, expected_ids, inject, receipts, truth
from tests.support.jsonl import ids_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def emulator(emulator_per_reading: RunningEmulator) -> RunningEmulator:
    """The emulator under each reading of the per-number window in turn."""
    return emulator_per_reading


def late(count: int, *, now: int) -> list[dict[str, Any]]:
    """``count`` receipts received now of messages sent half an hour ago (a phone was off)."""
    return [{"phone_number": NUMBER, "user_receive_time": now, "send_time": now - 1800}] * count


async def test_late_receipts_after_a_full_sweep_arrive_once_each(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """250 receipts, three to a second, then late ones sent before the first poll: each once."""
    await inject(emulator, send_statuses=receipts(250))
    output = tmp_path / "records.jsonl"
    config = daemon_config(
        emulator.url,
        tmp_path,
        app={
            "replies": {"enabled": False},
            "send_status": {"enabled": False},
            "by_number": {"numbers": [NUMBER], "interval": "1s", "lookback": "2h"},
        },
    )
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 250, what="250 receipts")
        await inject(emulator, send_statuses=late(4, now=int(time.time())))
        await wait_until(lambda: len(ids_in(output)) >= 254, what="the late receipts")
        await daemon.stop()
    delivered = ids_in(output)
    assert Counter(delivered).most_common(1)[0][1] == 1
    assert set(delivered) == expected_ids(await truth(emulator))
