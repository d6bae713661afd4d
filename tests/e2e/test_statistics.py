"""The daemon's statistics records under both readings of ``CallbackStatusStatistics``' EndTime."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, StatisticsEnd, run_emulator
from tcsms_poller.tencent.api import BEIJING
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.jsonl import read_jsonl
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

HOUR = 3600
NUMBER = "+8613711112222"


def hour_of(moment: int) -> str:
    return datetime.fromtimestamp(moment, BEIJING).strftime("%Y%m%d%H")


@pytest.mark.parametrize("reading", list(StatisticsEnd))
async def test_statistics_records_count_each_hour_once(
    tmp_path: Path, reading: StatisticsEnd
) -> None:
    """Every hourly record names one hour and holds that hour's receipts; under the exclusive
    reading the daemon falls back once and says so once."""
    now = int(time.time())
    times = [now - 2 * HOUR, now - HOUR, now - HOUR + 1, now - 5]
    expected = Counter(hour_of(moment) for moment in times)
    async with run_emulator(EmulatorOptions(seed=7, statistics_end=reading)) as emulator:
        await _inject(emulator.url, times)
        app = {
            "replies": {"enabled": False},
            "send_status": {"enabled": False},
            "statistics": {"enabled": True, "interval": "300ms", "lookback": "3h"},
        }
        config = daemon_config(emulator.url, tmp_path, app=app)
        sink = tmp_path / "records.jsonl"
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(
                lambda: len(daemon.events("poll.completed")) >= 3, what="three statistics cycles"
            )
            await daemon.stop()
    records = [r for r in read_jsonl(sink) if r["kind"] == "callback_statistics"]
    assert records
    for record in records:
        assert record["begin_time"] == record["end_time"]
        assert record["callback_count"] == expected[record["begin_time"]], record
        assert record["request_success_count"] == expected[record["begin_time"]], record
    assert {r["begin_time"] for r in records} >= set(expected)
    fallbacks = daemon.events("statistics.end_hour_exclusive")
    assert len(fallbacks) == (1 if reading is StatisticsEnd.EXCLUSIVE else 0)


async def _inject(url: str, times: list[int]) -> None:
    body = {"send_statuses": [{"phone_number": NUMBER, "user_receive_time": t} for t in times]}
    async with httpx.AsyncClient() as client:
        (await client.post(f"{url}/_emulator/records", json=body)).raise_for_status()
