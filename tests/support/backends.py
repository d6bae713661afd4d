"""Each state backend in turn, for the tests that must hold on both: a fresh SQLite file or a
fresh database of the session's PostgreSQL server (``postgres.py``), opened as the daemon opens
it; ``open`` again is a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tcsms_poller.state import StateStore
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.store import SqliteStore

__all__ = ["BACKENDS", "Backend", "backend"]

BACKENDS = ("sqlite", "postgresql")


class Backend:
    """Opens one state (a file or a database) as often as a test wants."""

    def __init__(self, kind: str, location: Any) -> None:
        self.kind = kind
        self.location = location

    @asynccontextmanager
    async def open(
        self, clock: Callable[[], float], *, dedupe_ttl: float = 8 * 86_400.0
    ) -> AsyncIterator[StateStore]:
        store: StateStore
        if self.kind == "sqlite":
            store = await SqliteStore.open(self.location, dedupe_ttl=dedupe_ttl, clock=clock)
        else:
            store = await PostgresStore.open(self.location, dedupe_ttl=dedupe_ttl, clock=clock)
        try:
            yield store
        finally:
            await store.aclose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn, on a state of this test's own."""
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path / "state.db")
    return Backend("postgresql", request.getfixturevalue("postgres_url"))
