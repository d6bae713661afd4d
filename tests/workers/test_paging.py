"""Per-number paging end to end, under every reading Tencent leaves open.

The emulator plays each of (window on the send | the receive time) x (ascending | descending
answers); the real worker, client and SQLite state pull from it over loopback. Every status is
delivered once and none is missing: late receipts, numbers holding more than a page, ties at the
page boundary. Requests are counted by the emulator.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from tcsms_poller.emulator import DEFAULT_APP_ID, RunningEmulator, WindowTime
from tcsms_poller.emulator.store import ReplyRecord, SendStatusRecord
from tcsms_poller.state import StateStore
from tcsms_poller.tencent.api import PAGE_LIMIT
from tcsms_poller.workers.by_number import REPLY_ACTION, STATUS_ACTION
from tests.support.log_capture import captured_logs, json_lines
from tests.workers.support import INTERVAL, by_number_worker, requests_of

pytestmark = pytest.mark.anyio

LATE = "+8613711110001"
BUSY = "+8613711110002"
LOOKBACK = 7200.0  # longer than the latest receipt here (40 minutes) plus an interval
LEAD = 3  # seconds from send to receipt
LATE_LEAD = 1800  # a receipt that comes half an hour after its send


@pytest.fixture
def emulator(emulator_per_reading: RunningEmulator) -> RunningEmulator:
    """The emulator under each reading of the per-number window in turn."""
    return emulator_per_reading


def add_receipts(
    emulator: RunningEmulator, phone: str, times: Iterable[tuple[int, int]]
) -> set[str]:
    """Receipts of ``phone`` as (send, receive) times, pullable from now; their SerialNos."""
    serials = set()
    for sent, received in times:
        record = SendStatusRecord(
            app_id=DEFAULT_APP_ID,
            serial_no=emulator.state.make_serial(),
            phone_number=phone,
            country_code="86",
            subscriber_number=phone.removeprefix("+86"),
            report_status="SUCCESS",
            description="DELIVRD",
            user_receive_time=received,
            session_context=None,
            send_time=sent,
        )
        emulator.state.add_send_status(record, push=False)
        serials.add(record.serial_no)
    return serials


def busy_times(first: int) -> list[tuple[int, int]]:
    """250 receipts from ``first`` on: 40 share the second at each page boundary (the 100th
    record counted from either end), every 10th of the others came half an hour late."""
    seconds = (
        [first + i for i in range(80)] + [first + 90] * 40 + [first + 100 + i for i in range(130)]
    )
    seconds[130:170] = [first + 240] * 40
    return [
        (received - (LATE_LEAD if i % 10 == 5 and not 80 <= i < 170 else LEAD), received)
        for i, received in enumerate(seconds)
    ]


async def delivered_ids(store: StateStore) -> list[str]:
    """The ids of every record in the outbox, in order, repeats included."""
    rows = await store.read_outbox(after=0, limit=100_000)
    return [str(row.as_dict()["id"]) for row in rows]


async def test_late_receipts_and_a_busy_number_are_delivered_once_each(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Receipts sent before the last poll but arriving after it, and 250 receipts with ties
    across the page boundary: every one delivered exactly once over two polls."""
    async with by_number_worker(tmp_path, emulator, [LATE, BUSY], lookback=LOOKBACK) as (
        by_number,
        ctx,
        clock,
    ):
        now = int(clock.now)
        expected = add_receipts(
            emulator, LATE, [(now - 600 - LEAD, now - 600 + i) for i in range(5)]
        )
        expected |= add_receipts(emulator, BUSY, busy_times(now - 3000))
        await by_number.poll()
        clock.now += INTERVAL
        # Sent half an hour before the first poll, received after it: behind any cursor.
        expected |= add_receipts(emulator, LATE, [(now - LATE_LEAD, now + 30)] * 3)
        expected |= add_receipts(emulator, LATE, [(now + 37, now + 40)] * 2)
        expected |= add_receipts(emulator, BUSY, [(now + 20 - LEAD, now + 20)] * 20)
        await by_number.poll()
        delivered = await delivered_ids(ctx.store)
    assert len(delivered) == len(set(delivered)) == 5 + 250 + 5 + 20
    assert set(delivered) == expected


async def test_a_number_with_fewer_than_a_page_costs_one_request_a_poll(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """99 records in the span, late ones among them: one request a poll, every poll."""
    async with by_number_worker(tmp_path, emulator, [LATE], lookback=LOOKBACK) as (
        by_number,
        ctx,
        clock,
    ):
        now = int(clock.now)
        times = [
            (now - 3000 + i - (LATE_LEAD if i % 7 else LEAD), now - 3000 + i) for i in range(99)
        ]
        expected = add_receipts(emulator, LATE, times)
        for poll in range(1, 4):
            stats = await by_number.poll()
            assert stats.requests == 1
            assert requests_of(emulator) == poll
            clock.now += INTERVAL
        assert set(await delivered_ids(ctx.store)) == expected


async def test_a_busy_number_costs_fewer_requests_once_its_windows_are_known(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The second poll of a number with 250 records asks the windows the first ended with."""
    async with by_number_worker(tmp_path, emulator, [BUSY], lookback=LOOKBACK) as (
        by_number,
        ctx,
        clock,
    ):
        add_receipts(emulator, BUSY, busy_times(int(clock.now) - 3000))
        first = (await by_number.poll()).requests
        clock.now += INTERVAL
        second = (await by_number.poll()).requests
        assert second < first
        assert requests_of(emulator) == first + second
        assert len(await delivered_ids(ctx.store)) == 250


async def test_a_number_whose_old_records_left_the_span_is_one_request_again(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """120 records need three windows; once fewer than a page are left in the span, one."""
    async with by_number_worker(tmp_path, emulator, [BUSY], lookback=LOOKBACK) as (
        by_number,
        _ctx,
        clock,
    ):
        now = int(clock.now)
        for age in (7000, 4000, 100):  # 40 records each; the first 40 leave the span soon
            add_receipts(emulator, BUSY, [(now - age - LEAD, now - age)] * 40)
        requests = [(await by_number.poll()).requests]
        for _ in range(2):
            clock.now += 10 * INTERVAL
            requests.append((await by_number.poll()).requests)
    assert requests == [3, 2, 1]  # split; the windows known; merged, as 80 fit one page


async def test_more_than_a_page_in_one_second_is_counted_and_the_poll_ends(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """120 records in one second cannot be split: a page of them is delivered, the window is
    counted and logged once over two polls, and the other seconds are pulled in full."""
    async with by_number_worker(tmp_path, emulator, [BUSY], lookback=LOOKBACK) as (
        by_number,
        ctx,
        clock,
    ):
        now = int(clock.now)
        crowded = add_receipts(emulator, BUSY, [(now - 100 - LEAD, now - 100)] * 120)
        others = add_receipts(
            emulator, BUSY, [(now - 50 + i - LEAD, now - 50 + i) for i in range(30)]
        )
        with captured_logs() as out:
            await by_number.poll()
            clock.now += INTERVAL
            await by_number.poll()  # finds the same second again: not reported again
        delivered = await delivered_ids(ctx.store)
        overfull = ctx.metrics.registry.get_sample_value(
            "tcsms_poller_by_number_overfull_windows_total",
            {"app_id": DEFAULT_APP_ID, "action": STATUS_ACTION},
        )
    assert len(delivered) == len(set(delivered)) == PAGE_LIMIT + 30
    assert others <= set(delivered)
    assert len(crowded & set(delivered)) == PAGE_LIMIT
    assert overfull == 1.0
    [warning] = [line for line in json_lines(out) if line["event"] == "by_number.window_overfull"]
    by_send_time = emulator.state.options.by_number_time is WindowTime.SEND
    assert warning["second"] == now - 100 - (LEAD if by_send_time else 0)
    assert warning["number"] == "+86137****0002"


async def test_a_seven_day_lookback_reaches_the_oldest_second_the_api_accepts(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """With the longest lookback no BeginTime is refused and a receipt almost 7 days old is
    pulled."""
    async with by_number_worker(tmp_path, emulator, [LATE], lookback=7 * 86_400.0) as (
        by_number,
        ctx,
        clock,
    ):
        oldest = int(clock.now) - 7 * 86_400 + 600
        expected = add_receipts(emulator, LATE, [(oldest - LEAD, oldest)])
        stats = await by_number.poll()
        assert by_number.health.is_healthy
        assert stats.requests == 1
        assert set(await delivered_ids(ctx.store)) == expected


async def test_replies_with_ties_across_the_page_boundary_are_delivered_once_each(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """150 replies, 40 of them in the second at either page boundary: each delivered once."""
    async with by_number_worker(tmp_path, emulator, [BUSY], lookback=LOOKBACK, replies=True) as (
        by_number,
        ctx,
        clock,
    ):
        now = int(clock.now)
        seconds = (
            [now - 500 + i for i in range(80)]
            + [now - 400] * 40
            + [now - 300 + i for i in range(30)]
        )
        seconds[40:60] = [now - 450] * 20  # the 100th counted from the newest
        for i, second in enumerate(seconds):
            emulator.state.add_reply(
                ReplyRecord(
                    app_id=DEFAULT_APP_ID,
                    phone_number=BUSY,
                    country_code="86",
                    subscriber_number=BUSY.removeprefix("+86"),
                    sign_name="Tencent Cloud",
                    reply_content=f"reply {i}",
                    reply_time=second,
                    extend_code="",
                ),
                push=False,
            )
        await by_number.poll()
        clock.now += INTERVAL
        await by_number.poll()
        delivered = await delivered_ids(ctx.store)
    assert len(delivered) == len(set(delivered)) == 150
    assert all(record_id.startswith("reply:") for record_id in delivered)
    assert requests_of(emulator, REPLY_ACTION) > 2  # the first poll had to split
