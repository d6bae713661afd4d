"""The daemon as a subprocess against the emulator: exactly once, paging, restarts, crashes."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import daemon_config, running_daemon

# Re-exported for the tests that import them from here; the home is tests/support/emulator.py.
from tests.support.emulator import NUMBER as NUMBER
from tests.support.emulator import expected_ids, request_counts, truth, truth_reply_id
from tests.support.emulator import inject as inject
from tests.support.emulator import receipts as receipts
from tests.support.emulator import replies as replies
from tests.support.jsonl import ids_in, read_jsonl
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def by_number_config(
    emulator: RunningEmulator, directory: Path, by_number: dict[str, Any]
) -> dict[str, Any]:
    """A daemon polling per-number statuses only, so the queue workers take nothing first."""
    return daemon_config(
        emulator.url,
        directory,
        app={
            "replies": {"enabled": False},
            "send_status": {"enabled": False},
            "by_number": by_number,
        },
    )


async def test_every_record_arrives_exactly_once_in_the_file_sink(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Queue pulls and per-number pulls see the same receipts: dedupe keeps one of each."""
    other = "+8613711113333"
    await inject(
        emulator,
        send_statuses=receipts(230) + receipts(40, number=other),
        replies=replies(150) + replies(5, number=other),
    )
    expected = expected_ids(await truth(emulator))
    assert len(expected) == 230 + 40 + 150 + 5
    output = tmp_path / "records.jsonl"
    config = daemon_config(
        emulator.url,
        tmp_path,
        app={"by_number": {"numbers": [NUMBER, other], "interval": "1s", "replies": True}},
    )
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= len(expected), what="every record")
        await daemon.stop()
    delivered = ids_in(output)
    assert Counter(delivered).most_common(1)[0][1] == 1
    assert set(delivered) == expected
    duplicates = sum(event["duplicates"] for event in daemon.events("poll.completed"))
    assert duplicates > 0  # the same receipts came by both routes and were merged


async def test_one_number_pages_beyond_100(tmp_path: Path, emulator: RunningEmulator) -> None:
    """250 receipts of one number within minutes need three pages; none is missed."""
    await inject(emulator, send_statuses=receipts(250))
    output = tmp_path / "records.jsonl"
    config = by_number_config(emulator, tmp_path, {"numbers": [NUMBER], "interval": "1h"})
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 250, what="250 receipts")
        await daemon.stop()
    assert sorted(ids_in(output)) == sorted(expected_ids(await truth(emulator)))
    [by_number] = [event for event in daemon.events("poll.completed") if event["fetched"] >= 250]
    assert by_number["requests"] >= 3


async def test_per_number_replies_arrive_by_their_own_route(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """With the reply queue off, ``by_number.replies`` alone brings a tracked number's replies:
    each once, as ``PullSmsReplyStatusByPhoneNumber`` records; an untracked number's stay put."""
    stranger = "+8613799990000"
    await inject(emulator, replies=replies(130) + replies(7, number=stranger))
    tracked = {
        truth_reply_id(reply)
        for reply in (await truth(emulator))["replies"]
        if reply["phone_number"] == NUMBER
    }
    assert len(tracked) == 130  # more than one page of 100
    output = tmp_path / "records.jsonl"
    config = by_number_config(
        emulator, tmp_path, {"numbers": [NUMBER], "interval": "1h", "replies": True}
    )
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= len(tracked), what="the tracked replies")
        await daemon.stop()
    records = read_jsonl(output)
    assert sorted(record["id"] for record in records) == sorted(tracked)
    assert {record["source"] for record in records} == {"PullSmsReplyStatusByPhoneNumber"}
    assert request_counts(emulator, "PullSmsReplyStatus") == (0, 0)
    requests, ok = request_counts(emulator, "PullSmsReplyStatusByPhoneNumber")
    assert requests == ok >= 2  # a full page continued at once


async def test_restarts_and_kills_deliver_nothing_twice(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A graceful restart and a kill -9 with records in flight: each record once, none lost."""
    output = tmp_path / "records.jsonl"
    config = daemon_config(
        emulator.url,
        tmp_path,
        app={"by_number": {"numbers": [NUMBER], "interval": "1s", "replies": True}},
    )
    await inject(emulator, send_statuses=receipts(120), replies=replies(30))
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 150, what="the first records")
        await daemon.stop()
    await inject(emulator, send_statuses=receipts(60, at=int(time.time()) - 60))
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 210, what="the later records")
        await inject(emulator, replies=replies(20, number="+8613799990000"))
        await daemon.kill()
    async with running_daemon(tmp_path, config) as daemon:
        expected = expected_ids(await truth(emulator))
        await wait_until(lambda: set(ids_in(output)) >= expected, what="every record")
        await daemon.stop()
    delivered = ids_in(output)
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == expected


async def test_once_pulls_drains_and_exits_zero(tmp_path: Path, emulator: RunningEmulator) -> None:
    await inject(emulator, send_statuses=receipts(30), replies=replies(10))
    output = tmp_path / "records.jsonl"
    config = daemon_config(emulator.url, tmp_path)
    async with running_daemon(tmp_path, config, command="once", wait_ready=False) as daemon:
        assert await daemon.wait() == 0, daemon.log_tail()
    assert set(ids_in(output)) == expected_ids(await truth(emulator))
    async with running_daemon(tmp_path, config, command="once", wait_ready=False) as daemon:
        assert await daemon.wait() == 0
    assert len(ids_in(output)) == 40  # a second pass finds nothing new


async def test_once_refuses_a_state_a_running_daemon_holds(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Both would drain the same sinks: ``once`` exits 1 naming the holder, ``run`` goes on."""
    await inject(emulator, send_statuses=receipts(5))
    output = tmp_path / "records.jsonl"
    config = daemon_config(emulator.url, tmp_path)
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) == 5, what="the first receipts")
        async with running_daemon(
            tmp_path / "once", config, command="once", wait_ready=False
        ) as second:
            assert await second.wait() == 1, second.log_tail()
        [failed] = second.events("once.failed")
        assert f"in use by another tcsms-poller (pid {daemon.process.pid})" in failed["error"]
        await inject(emulator, send_statuses=receipts(3))
        await wait_until(lambda: len(ids_in(output)) == 8, what="the later receipts")
        await daemon.stop()
    assert len(set(ids_in(output))) == 8


async def test_sighup_adds_numbers_from_the_numbers_file(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    later = "+8613755556666"
    numbers_file = tmp_path / "numbers.txt"
    numbers_file.write_text(f"{NUMBER}\n")
    await inject(emulator, send_statuses=receipts(5) + receipts(7, number=later))
    output = tmp_path / "records.jsonl"
    config = by_number_config(
        emulator, tmp_path, {"numbers_file": str(numbers_file), "interval": "500ms"}
    )
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 5, what="the first number's receipts")
        numbers_file.write_text(f"{NUMBER}\n{later}\n")
        daemon.signal(signal.SIGHUP)
        await wait_until(lambda: len(ids_in(output)) >= 12, what="the added number's receipts")
        await daemon.stop()
    assert len(set(ids_in(output))) == 12
    # One number from the file at start, the other one at the reload.
    assert [event["added"] for event in daemon.events("numbers.synced")] == [1, 1]
    assert len(daemon.events("daemon.reloaded")) == 1
