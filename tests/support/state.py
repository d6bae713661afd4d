"""The SQLite state store on a real file, as the state and sink tests open it."""

from __future__ import annotations

from pathlib import Path

from tcsms_poller.state.store import SqliteStore
from tests.support.records import FakeClock

__all__ = ["DAY", "open_store"]

DAY = 86_400.0


async def open_store(path: Path, clock: FakeClock | None = None) -> SqliteStore:
    """A store on ``path`` with the default 8-day dedupe window."""
    return await SqliteStore.open(path, dedupe_ttl=8 * DAY, clock=clock or FakeClock())
