"""``status`` reads the state beside a running daemon: sinks, numbers and their cursors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tcsms_poller.commands.status import render
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
