"""The statistics worker against both readings of ``EndTime``: one record an hour, no overlap.

Real parts: the emulator over loopback (playing each reading), our client, the SQLite state in
a temp dir (PostgreSQL for the fenced commit of cluster mode). The worker's clock is fixed, so
its hours are exact; the expected counters are worked out here from the receipts injected, not
asked of the emulator.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller.cluster.leases import Lease, pull_lease
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    EmulatorOptions,
    RunningEmulator,
    StatisticsEnd,
    run_emulator,
)
from tcsms_poller.tencent.api import BEIJING, Action
from tcsms_poller.tencent.models import STATISTICS_FIELDS
from tcsms_poller.workers import poll_cycle
from tcsms_poller.workers.statistics import EQUAL_HOURS_REFUSED, StatisticsWorker
from tests.cluster.test_leases import wait_for_lease
from tests.state.test_postgres import opened
from tests.support.backends import Backend
from tests.support.emulator import control
from tests.support.log_capture import captured_logs, json_lines
from tests.workers.support import Clock, committed, worker_context

pytestmark = pytest.mark.anyio

HOUR = 3600
NOW = int(time.time()) // HOUR * HOUR - 5 * HOUR + 1800  # half past an hour, in the past
LOOKBACK = 4 * HOUR  # the current hour and the three before it
NUMBER = "+8613711112222"
BUCKETS = {"EXPIRED": "ShutdownErrorCount", "REJECTD": "BlackListCount"}

# (hours before the current one, ReportStatus, Description); 2 hours back stays empty.
RECEIPTS: Sequence[tuple[int, str, str]] = (
    (0, "SUCCESS", "DELIVRD"),
    (0, "FAIL", "EXPIRED"),
    (1, "SUCCESS", "DELIVRD"),
    (1, "SUCCESS", "DELIVRD"),
    (1, "FAIL", "REJECTD"),
    (3, "SUCCESS", "DELIVRD"),
    (3, "FAIL", "EXPIRED"),
    (4, "SUCCESS", "DELIVRD"),  # before the lookback
    (-1, "SUCCESS", "DELIVRD"),  # after the worker's now
)


def hour_name(moment: int) -> str:
    return datetime.fromtimestamp(moment, BEIJING).strftime("%Y%m%d%H")


CURRENT = NOW // HOUR * HOUR


def expected_hours(receipts: Sequence[tuple[int, str, str]]) -> dict[str, dict[str, int]]:
    """Tencent's counters for each hour of the lookback, worked out from ``receipts``."""
    hours: dict[str, Counter[str]] = {
        hour_name(CURRENT - back * HOUR): Counter() for back in range(4)
    }
    for back, status, description in receipts:
        counters = hours.get(hour_name(CURRENT - back * HOUR))
        if counters is None:
            continue
        counters.update(["CallbackCount", "RequestSuccessCount"])
        if status == "SUCCESS":
            counters["CallbackSuccessCount"] += 1
        else:
            counters.update(["CallbackFailCount", BUCKETS[description]])
    return {
        name: {ours: counters[theirs] for ours, theirs in STATISTICS_FIELDS}
        for name, counters in hours.items()
    }


async def inject(emulator: RunningEmulator, receipts: Sequence[tuple[int, str, str]]) -> None:
    """The receipts, each 10 minutes into its hour."""
    await control(
        emulator,
        "records",
        {
            "send_statuses": [
                {
                    "phone_number": NUMBER,
                    "report_status": status,
                    "description": description,
                    "user_receive_time": CURRENT - back * HOUR + 600,
                }
                for back, status, description in receipts
            ]
        },
    )


def counters_of(record: dict[str, Any]) -> dict[str, int]:
    return {ours: record[ours] for ours, _ in STATISTICS_FIELDS}


def refusals(emulator: RunningEmulator) -> int:
    stats = emulator.state.stats_snapshot()["actions"]["CallbackStatusStatistics"]
    return int(stats["errors"].get(EQUAL_HOURS_REFUSED, 0))


@pytest.mark.parametrize("reading", list(StatisticsEnd))
async def test_hourly_records_never_overlap_and_match_the_truth(
    tmp_path: Path, reading: StatisticsEnd
) -> None:
    """Under either reading: one record per hour naming that hour alone, each hour's counters
    the truth for that hour, the metric their sum; the fallback is logged once, used from then."""
    async with run_emulator(EmulatorOptions(seed=5, statistics_end=reading)) as emulator:
        await inject(emulator, RECEIPTS)
        async with worker_context(tmp_path, emulator, clock=Clock(NOW)) as ctx:
            worker = StatisticsWorker(ctx, app_id=DEFAULT_APP_ID, interval=300, lookback=LOOKBACK)
            with captured_logs() as out:
                first = await worker.poll()
                refused = refusals(emulator)
                second = await worker.poll()
            records = await committed(ctx)
            metric = {
                name: ctx.metrics.registry.get_sample_value(
                    "tcsms_poller_callback_statistics",
                    {"app_id": DEFAULT_APP_ID, "counter": name},
                )
                for name, _ in STATISTICS_FIELDS
            }
        assert refusals(emulator) == refused  # the second cycle asks the accepted way at once
    expected = expected_hours(RECEIPTS)
    assert [(r["begin_time"], r["end_time"]) for r in records] == [(h, h) for h in sorted(expected)]
    assert {r["begin_time"]: counters_of(r) for r in records} == expected
    assert metric == {
        name: sum(hour[name] for hour in expected.values()) for name, _ in STATISTICS_FIELDS
    }
    assert (first.new, second.new, second.duplicates) == (4, 0, 4)
    fallbacks = [e for e in json_lines(out) if e["event"] == "statistics.end_hour_exclusive"]
    if reading is StatisticsEnd.INCLUSIVE:
        assert (refused, fallbacks) == (0, [])
    else:
        assert refused == 1  # the first request learned the reading for every other hour
        assert len(fallbacks) == 1
        assert fallbacks[0]["level"] == "warning"


async def poll_both_readings(
    tmp_path: Path, extra: Sequence[tuple[int, str, str]]
) -> list[list[dict[str, Any]]]:
    """Per reading, the records of a poll, then of a poll after ``extra`` receipts arrived."""
    rounds: list[list[dict[str, Any]]] = []
    for reading in StatisticsEnd:
        async with run_emulator(EmulatorOptions(seed=5, statistics_end=reading)) as emulator:
            await inject(emulator, RECEIPTS)
            async with worker_context(tmp_path / reading, emulator, clock=Clock(NOW)) as ctx:
                worker = StatisticsWorker(
                    ctx, app_id=DEFAULT_APP_ID, interval=300, lookback=LOOKBACK
                )
                await worker.poll()
                await inject(emulator, extra)
                await worker.poll()
                rounds.append(await committed(ctx))
    return rounds


async def test_a_changed_hour_is_emitted_again_under_the_same_id_whatever_the_reading(
    tmp_path: Path,
) -> None:
    """Both readings give the same ids; a later receipt re-emits its hour alone, once."""
    (tmp_path / "inclusive").mkdir()
    (tmp_path / "exclusive").mkdir()
    inclusive, exclusive = await poll_both_readings(tmp_path, [(2, "SUCCESS", "DELIVRD")])
    strip = [{k: v for k, v in r.items() if k != "received_at"} for r in inclusive]
    assert strip == [{k: v for k, v in r.items() if k != "received_at"} for r in exclusive]
    assert len({r["id"] for r in inclusive}) == len(inclusive) == 5
    again = inclusive[4]
    assert again["begin_time"] == again["end_time"] == hour_name(CURRENT - 2 * HOUR)
    assert again["callback_count"] == 1
    assert again["id"].startswith(
        f"stats:{DEFAULT_APP_ID}:{again['begin_time']}-{again['end_time']}:"
    )


async def test_an_instance_that_lost_the_lease_meanwhile_commits_no_statistics(
    tmp_path: Path, postgres_url: str
) -> None:
    """Cluster mode: instance a asks for its hours under the app's statistics lease, which
    passed to b meanwhile (a paused past its TTL, still believing it holds it): the commit is
    fenced, the cycle ends in ``poll.lease_lost`` with nothing committed and the worker healthy;
    b's poll then commits every hour."""
    name = pull_lease(DEFAULT_APP_ID, Action.CALLBACK_STATUS_STATISTICS)
    assert name is not None
    backend = Backend("postgresql", postgres_url)
    async with (
        run_emulator(EmulatorOptions(seed=5)) as emulator,
        opened(postgres_url) as cluster,
        worker_context(tmp_path, emulator, clock=Clock(NOW), backend=backend) as ctx,
    ):
        await inject(emulator, RECEIPTS)
        paused = Lease(name, "a")
        paused.granted(await wait_for_lease(cluster, "a", name, 1.0), anyio.current_time() + 3600)
        successor = Lease(name, "b")
        successor.granted(await wait_for_lease(cluster, "b", name, 1.0), math.inf)
        ctx.leases = lambda _: paused
        worker = StatisticsWorker(ctx, app_id=DEFAULT_APP_ID, interval=300, lookback=LOOKBACK)
        with captured_logs() as out:
            await poll_cycle(worker, ctx)
        assert [e["event"] for e in json_lines(out) if e["event"].startswith("poll.")] == [
            "poll.lease_lost"
        ]
        assert await committed(ctx) == []
        assert worker.health.is_healthy
        ctx.leases = lambda _: successor
        assert (await worker.poll()).new == 4
        assert len(await committed(ctx)) == 4
