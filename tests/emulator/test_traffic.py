"""Synthetic traffic: repeatable with a seed, realistic in shape, and live."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, TrafficOptions, run_emulator
from tcsms_poller.emulator.numbers import split_number
from tcsms_poller.emulator.options import LATE_DELAY
from tcsms_poller.emulator.state import EmulatorState
from tcsms_poller.emulator.traffic import TrafficGenerator
from tcsms_poller.tencent.models import STATISTICS_FIELDS
from tests.emulator.support import APP, Api, eventually

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0


def backfilled(seed: int, traffic: TrafficOptions) -> tuple[EmulatorState, TrafficGenerator]:
    """A state filled with ``traffic.backfill`` seconds of history up to ``NOW``."""
    state = EmulatorState(EmulatorOptions(seed=seed, traffic=traffic), clock=lambda: NOW)
    generator = TrafficGenerator(traffic, app_ids=(APP,), sink=state, seed=seed, clock=lambda: NOW)
    generator.backfill()
    return state, generator


async def test_the_same_seed_gives_the_same_traffic() -> None:
    """Two runs with one seed hold identical records; another seed differs."""
    traffic = TrafficOptions(backfill=300)
    first, _ = backfilled(11, traffic)
    second, _ = backfilled(11, traffic)
    other, _ = backfilled(12, traffic)
    assert first.truth() == second.truth()
    assert first.truth()["send_statuses"] != other.truth()["send_statuses"]


async def test_history_needs_paging_and_shares_seconds() -> None:
    """Ten minutes of default traffic: heavy numbers past 100 receipts, shared seconds, failures."""
    state, generator = backfilled(5, TrafficOptions(backfill=600))
    truth = state.truth()
    statuses: list[dict[str, Any]] = truth["send_statuses"]
    per_number = Counter(status["phone_number"] for status in statuses)
    heavy = generator.numbers[:2]
    assert all(per_number[number] > 100 for number in heavy)
    per_second = Counter((s["phone_number"], s["user_receive_time"]) for s in statuses)
    assert max(per_second.values()) >= 2
    failed = [s for s in statuses if s["report_status"] == "FAIL"]
    assert 0.03 < len(failed) / len(statuses) < 0.15
    assert {s["description"] for s in statuses if s["report_status"] == "SUCCESS"} == {"DELIVRD"}
    assert len({s["description"] for s in failed}) > 3
    assert all(s["user_receive_time"] <= NOW for s in statuses)
    assert generator.pending > 0  # receipts still on their way
    assert truth["messages_sent"] == len(statuses) + generator.pending
    assert 60 < len(truth["replies"]) < 200  # 0.2 per second for 600 s


async def test_a_late_share_of_receipts_comes_10_to_40_minutes_after_the_send() -> None:
    """Every generated receipt carries its send time; the late share comes half an hour on."""
    state, _ = backfilled(5, TrafficOptions(backfill=4 * 3600, send_rate=0.5, late_share=0.3))
    statuses: list[dict[str, Any]] = state.truth()["send_statuses"]
    delays = [s["user_receive_time"] - s["send_time"] for s in statuses]
    shortest, longest = LATE_DELAY
    late = [delay for delay in delays if delay >= shortest]
    assert all(0 <= delay <= 5 or shortest <= delay <= longest for delay in delays)
    assert 0.2 < len(late) / len(delays) < 0.4


async def test_statistics_add_up() -> None:
    """Callbacks are successes plus failures; failures are the sum of the five buckets."""
    state, _ = backfilled(3, TrafficOptions(backfill=7200))
    counters = state.store.statistics(APP, int(NOW) - 3 * 3600, int(NOW) + 3600)
    assert set(counters) == {name for _, name in STATISTICS_FIELDS}
    assert counters["CallbackCount"] == (
        counters["CallbackSuccessCount"] + counters["CallbackFailCount"]
    )
    buckets = [
        "InternalErrorCount",
        "InvalidNumberCount",
        "ShutdownErrorCount",
        "BlackListCount",
        "FrequencyLimitCount",
    ]
    assert counters["CallbackFailCount"] == sum(counters[name] for name in buckets)
    assert counters["RequestSuccessCount"] >= counters["CallbackCount"] > 30_000


async def test_given_numbers_are_used_and_split() -> None:
    """Explicit numbers are the whole set; CountryCode and SubscriberNumber come from E.164."""
    numbers = ("+14155550100", "+85291234567", "+8613711112222")
    state, _ = backfilled(1, TrafficOptions(phone_numbers=numbers, backfill=120))
    statuses = state.truth()["send_statuses"]
    assert {s["phone_number"] for s in statuses} == set(numbers)
    for status in statuses:
        assert "+" + status["country_code"] + status["subscriber_number"] == status["phone_number"]
    assert split_number("+14155550100") == ("1", "4155550100")
    assert split_number("+85291234567") == ("852", "91234567")
    assert split_number("+447911123456") == ("44", "7911123456")


async def test_live_traffic_reaches_the_api() -> None:
    """With traffic running, receipts and replies keep arriving and can be pulled."""
    traffic = TrafficOptions(
        send_rate=100, reply_rate=20, receipt_delay_min=0, receipt_delay_max=0.05, backfill=0
    )
    started = int(time.time())
    async with run_emulator(EmulatorOptions(seed=2, traffic=traffic)) as emulator:
        await eventually(
            lambda: (
                len(emulator.state.truth()["send_statuses"]) >= 20
                and len(emulator.state.truth()["replies"]) >= 2
            )
        )
        async with httpx.AsyncClient() as http:
            answer = await Api(emulator, http).call(
                "PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 100}
            )
    times = [item["UserReceiveTime"] for item in answer["PullSmsSendStatusSet"]]
    assert len(times) >= 20
    assert all(started - 1 <= at <= time.time() + 1 for at in times)
