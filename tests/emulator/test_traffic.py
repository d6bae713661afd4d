"""Synthetic traffic: repeatable with a seed, realistic in shape, and live."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, TrafficOptions, run_emulator
from tcsms_poller.emulator.numbers import split_number
from tcsms_poller.emulator.options import LATE_DELAY, PendingStatus
from tcsms_poller.emulator.pusher import status_payload
from tcsms_poller.emulator.state import EmulatorState
from tcsms_poller.emulator.traffic import TrafficGenerator
from tcsms_poller.tencent.models import STATISTICS_FIELDS
from tests.support.emulator_api import APP, Api, receipt
from tests.support.waiting import wait_until

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
        await wait_until(
            lambda: (
                len(emulator.state.truth()["send_statuses"]) >= 20
                and len(emulator.state.truth()["replies"]) >= 2
            ),
            timeout=10.0,
            interval=0.01,
        )
        async with httpx.AsyncClient() as http:
            answer = await Api(emulator, http).call(
                "PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 100}
            )
    times = [item["UserReceiveTime"] for item in answer["PullSmsSendStatusSet"]]
    assert len(times) >= 20
    assert all(started - 1 <= at <= time.time() + 1 for at in times)


async def test_a_pending_share_shows_placeholders_until_the_final_receipts() -> None:
    """With every receipt pending first: each message has one placeholder (no ReportStatus,
    Description or time, counted in no statistics); by number, a placeholder shows at its send
    time only until its final receipt arrives, which takes its place."""
    state, generator = backfilled(5, TrafficOptions(backfill=300, pending_share=1.0))
    truth = state.truth()
    placeholders, finals = truth["pending_statuses"], truth["send_statuses"]
    assert len(placeholders) == truth["messages_sent"] == len(finals) + generator.pending
    assert {
        (p["report_status"], p["description"], p["user_receive_time"]) for p in placeholders
    } == {("", "", 0)}
    final_serials = {status["serial_no"] for status in finals}
    shown: list[dict[str, Any]] = []
    for number in generator.numbers:
        window = state.store.send_statuses_of(APP, number, int(NOW) - 400, int(NOW), 10_000)
        shown += [record.to_api() for record in window]
    waiting = [item for item in shown if item["ReportStatus"] == ""]
    assert len(waiting) == generator.pending > 0
    assert not {item["SerialNo"] for item in waiting} & final_serials
    assert len(shown) - len(waiting) == len(finals)
    counters = state.store.statistics(APP, int(NOW) - 3600, int(NOW) + 3600)
    assert counters["CallbackCount"] == len(finals)
    assert counters["RequestSuccessCount"] == truth["messages_sent"]


async def test_an_injected_placeholder_gives_way_to_its_receipt() -> None:
    """``"pending": true`` injects the placeholder; by number it shows until the receipt with
    its SerialNo arrives, while the queue hands out both, in order."""
    async with (
        run_emulator(EmulatorOptions(seed=4)) as emulator,
        httpx.AsyncClient() as http,
    ):
        api = Api(emulator, http)
        now = int(time.time())
        number = "+8613711112222"
        window = {
            "SmsSdkAppId": APP,
            "PhoneNumber": number,
            "BeginTime": now - 60,
            "EndTime": now + 60,
            "Offset": 0,
            "Limit": 100,
        }
        pending = {"phone_number": number, "serial_no": "s-1", "user_receive_time": now - 30}
        [stored] = (await api.inject(send_statuses=[pending | {"pending": True}]))["send_statuses"]
        assert (stored["report_status"], stored["user_receive_time"]) == ("", 0)
        answer = await api.call("PullSmsSendStatusByPhoneNumber", window)
        [shown] = answer["PullSmsSendStatusSet"]
        assert (shown["SerialNo"], shown["ReportStatus"], shown["UserReceiveTime"]) == (
            "s-1",
            "",
            0,
        )
        await api.inject(send_statuses=[pending | {"user_receive_time": now - 10}])
        answer = await api.call("PullSmsSendStatusByPhoneNumber", window)
        [shown] = answer["PullSmsSendStatusSet"]
        assert (shown["ReportStatus"], shown["UserReceiveTime"]) == ("SUCCESS", now - 10)
        queue = await api.call("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 100})
        assert [item["ReportStatus"] for item in queue["PullSmsSendStatusSet"]] == ["", "SUCCESS"]


@pytest.mark.parametrize(("form", "shown"), [("empty", ""), ("null", None), ("absent", "-")])
async def test_pending_status_says_how_a_placeholder_shows(
    form: PendingStatus, shown: str | None
) -> None:
    """``pending_status``: a placeholder's ReportStatus is "", null or left out, when pulled
    and when pushed alike."""
    async with (
        run_emulator(EmulatorOptions(seed=4, pending_status=form)) as emulator,
        httpx.AsyncClient() as http,
    ):
        api = Api(emulator, http)
        pending = {"phone_number": "+8613711112222", "serial_no": "s-1", "pending": True}
        [stored] = (await api.inject(send_statuses=[pending]))["send_statuses"]
        queue = await api.call("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 100})
    assert stored["shown_as"] == form
    [item] = queue["PullSmsSendStatusSet"]
    assert item.get("ReportStatus", "-") == shown
    pushed = status_payload(receipt(1_764_000_000, "s-2").placeholder(form))
    assert pushed.get("report_status", "-") == shown
