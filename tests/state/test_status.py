"""``status`` reads the state beside a running daemon: sinks, numbers and their cursors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tcsms_poller.commands.status import render
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import NewMessage, Schedule
from tcsms_poller.state.roles import NumberPolled
from tcsms_poller.state.status import read_snapshot
from tests.support.records import FakeClock, record
from tests.support.state import open_store

APP = "1400006666"
A, B, C = "+8613700000001", "+8613700000002", "+8613700000003"


@pytest.mark.anyio
async def test_status_shows_depths_numbers_and_their_cursors(tmp_path: Path) -> None:
    """Per sink its backlog, per app the numbers, how overdue, and how far their cursors got."""
    clock = FakeClock()
    store = await open_store(tmp_path / "state.db", clock)
    await store.sink_cursor("file")
    await store.commit([record("a"), record("b")])
    await store.sync_numbers(APP, "config", [A, B, C])
    advance = partial(NumberPolled, APP, next_due=clock.now + 60, polled_at=clock.now)
    await store.commit([], also=advance(A, status_cursor=1_700_000_000))
    await store.commit([], also=advance(B, status_cursor=1_699_990_000))
    await store.aclose()
    clock.now += 30

    snapshot = read_snapshot(tmp_path / "state.db", now=clock.now)
    [numbers] = snapshot["numbers"]
    assert numbers["tracked"] == 3
    assert numbers["oldest_overdue_s"] == 30  # C was due at the start and never polled
    assert numbers["cursors"] == {
        "status": {"numbers": 2, "oldest": 1_699_990_000, "newest": 1_700_000_000}
    }
    text = render(snapshot, ["file", "http"])
    assert "  file: 2 pending, acked up to 0" in text
    assert "  http: not started yet" in text
    assert f"  {APP}: 3 numbers, most overdue by 30.0s" in text
    assert (
        "    status cursors: 2 numbers, newest record 2023-11-14 22:13:20Z, "
        "stalest number's 2023-11-14 19:26:40Z"
    ) in text


@pytest.mark.anyio
async def test_status_shows_pending_tracked_messages_and_the_oldest_age(tmp_path: Path) -> None:
    """Per app the messages still waiting for their receipt and how long ago the oldest went."""
    clock = FakeClock()
    store = await open_store(tmp_path / "state.db", clock)
    empty = render(read_snapshot(tmp_path / "state.db", now=clock.now), [])
    assert "tracked messages:\n  none pending" in empty
    messages = tracked_messages(store, clock=clock)
    sent = int(clock.now)
    new = [NewMessage(APP, "m:1", A, sent - 90), NewMessage(APP, "m:2", B, sent)]
    await messages.track(new, schedule=Schedule(first_poll=15.0, max_gap=3600.0))
    await store.aclose()
    clock.now += 10

    snapshot = read_snapshot(tmp_path / "state.db", now=clock.now)
    assert snapshot["messages"] == [{"app_id": APP, "pending": 2, "oldest_pending_age_s": 100.0}]
    assert f"tracked messages:\n  {APP}: 2 pending, the oldest sent 100.0s ago" in render(
        snapshot, []
    )
