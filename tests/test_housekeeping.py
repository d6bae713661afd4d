"""Housekeeping reports the state database's health even when no record arrives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tcsms_poller.health import HealthBoard
from tcsms_poller.housekeeping import Housekeeper
from tcsms_poller.metrics import Metrics
from tcsms_poller.sdnotify import Notifier
from tcsms_poller.sinks.fleet import SinkFleet
from tests.support.records import record
from tests.support.state import open_store


def state_part(board: HealthBoard) -> dict[str, object]:
    [part] = [part for part in board.describe() if part["name"] == "state"]
    return part


@pytest.mark.anyio
async def test_a_damaged_state_file_turns_the_state_part_unhealthy_until_repaired(
    tmp_path: Path,
) -> None:
    """A table dropped under the daemon: unhealthy with SQLite's reason; put back: healthy."""
    path = tmp_path / "state.db"
    store = await open_store(path)
    await store.commit([record("a")])
    board, metrics = HealthBoard(), Metrics()
    fleet = SinkFleet(store=store, metrics=metrics, board=board, state_dir=tmp_path)
    housekeeper = Housekeeper(
        store=store, fleet=fleet, metrics=metrics, board=board, notifier=Notifier(None)
    )
    await housekeeper.once()
    assert state_part(board)["healthy"] is True

    by_hand = sqlite3.connect(path, isolation_level=None)
    (table,) = by_hand.execute("SELECT sql FROM sqlite_master WHERE name = 'seen'").fetchone()
    by_hand.execute("DROP TABLE seen")
    await housekeeper.once()
    part = state_part(board)
    assert part["healthy"] is False
    assert part["reason"] == "state database write failed: no such table: seen"

    by_hand.execute(table)
    by_hand.close()
    await housekeeper.once()
    assert state_part(board)["healthy"] is True
    await store.aclose()
