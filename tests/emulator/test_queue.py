"""Queue mode: every record handed out exactly once, oldest first, at most Limit at a time."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcsms_poller.emulator.store import Store
from tests.support.emulator_api import APP, NUMBER, Api, receipt, reply

Operation = tuple[str, int]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 30)),
        st.tuples(st.just("take"), st.integers(1, 100)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_queue_hands_out_everything_once_in_order(steps: list[Operation]) -> None:
    """Whatever the interleaving of arrivals and pulls, no record twice and none lost."""
    store = Store((APP,))
    added: list[str] = []
    taken: list[str] = []
    for clock, (kind, count) in enumerate(steps):
        if kind == "add":
            for _ in range(count):
                serial = f"s{len(added)}"
                store.add_send_status(receipt(1_700_000_000, serial))
                added.append(serial)
        else:
            page = store.take_send_statuses(APP, count, float(clock))
            assert len(page) == min(count, len(added) - len(taken))
            taken.extend(record.serial_no for record in page)
    while page := store.take_send_statuses(APP, 100, 0.0):
        taken.extend(record.serial_no for record in page)
    assert taken == added
    assert all(entry["handed_out_at"] is not None for entry in store.truth()["send_statuses"])


def test_replies_and_receipts_have_separate_queues() -> None:
    """Pulling receipts leaves replies queued, and the other way round."""
    store = Store((APP, "1400000001"))
    store.add_send_status(receipt(1, "a"))
    store.add_reply(reply(1, "Y"))
    assert [r.reply_content for r in store.take_replies(APP, 10, 0.0)] == ["Y"]
    assert [r.serial_no for r in store.take_send_statuses(APP, 10, 0.0)] == ["a"]
    assert store.take_send_statuses("1400000001", 10, 0.0) == []


@pytest.mark.anyio
async def test_concurrent_pullers_share_the_queue_without_overlap(api: Api) -> None:
    """Five clients pulling at once over HTTP together get each receipt exactly once."""
    now = int(time.time())
    statuses = [{"phone_number": NUMBER, "user_receive_time": now - 300 + i} for i in range(250)]
    injected = await api.inject(send_statuses=statuses)
    expected = [status["serial_no"] for status in injected["send_statuses"]]
    pages: list[list[str]] = []

    async def pull(limit: int) -> None:
        while True:
            answer: dict[str, Any] = await api.call(
                "PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": limit}
            )
            items = answer["PullSmsSendStatusSet"]
            if items is None:
                return
            assert len(items) <= limit
            pages.append([item["SerialNo"] for item in items])

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for limit in (1, 7, 33, 50, 100):
                tg.start_soon(pull, limit)
    got = [serial for page in pages for serial in page]
    assert sorted(got) == sorted(expected)
    assert len(got) == len(set(got))
    for page in pages:  # each page is a run of the arrival order
        start = expected.index(page[0])
        assert page == expected[start : start + len(page)]
    truth = await api.control("GET", "truth")
    assert all(entry["handed_out_at"] is not None for entry in truth["send_statuses"])
