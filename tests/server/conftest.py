"""A real listener on loopback over a real state database, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tcsms_poller.config import ServerSettings
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.server import ListenerContext, serving
from tcsms_poller.state.conversions import pending_conversions
from tcsms_poller.state.store import SqliteStore

TOKEN = "test-token-0123456789"
SECRET = "callback-secret-0123456789"
APP = "1400006666"
OTHER_APP = "1400007777"
NOW = 1_764_000_000.0


@dataclass
class Listener:
    """The running listener and what it writes to."""

    client: httpx.AsyncClient
    store: SqliteStore
    board: HealthBoard
    metrics: Metrics
    address: tuple[str, int]

    async def snapshot(self) -> tuple[int, int, int, int]:
        """Outbox head, tracked numbers, queued conversions and quarantined items: what bad
        input must not move."""
        numbers = await self.store.list_numbers(limit=10_000)
        quarantined = await self.store.read(
            lambda connection: connection.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
        )
        conversions = await self.store.read(pending_conversions)
        return self.store.head, len(numbers), conversions, quarantined


@asynccontextmanager
async def open_listener(tmp_path: Path, **settings: Any) -> AsyncIterator[Listener]:
    """A listener over a fresh database in ``tmp_path``; ``settings`` override ``server``."""
    store = await SqliteStore.open(tmp_path / "state.db", dedupe_ttl=8 * 86_400, clock=lambda: NOW)
    metrics = Metrics()
    board = HealthBoard(clock=lambda: NOW)
    ctx = ListenerContext(
        settings=ServerSettings.model_validate(
            {
                "listen": "127.0.0.1:0",
                "token": TOKEN,
                "callback_secret": SECRET,
                "max_body": "64KiB",
                **settings,
            }
        ),
        intake=Intake(store, metrics),
        store=store,
        metrics=metrics,
        board=board,
        health=board.register("listener", "listener"),
        app_ids=(APP, OTHER_APP),
        conversion_apps=frozenset({APP}),
        clock=lambda: NOW,
    )
    try:
        async with (
            serving(ctx) as (host, port),
            httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as client,
        ):
            yield Listener(
                client=client, store=store, board=board, metrics=metrics, address=(host, port)
            )
    finally:
        await store.aclose()


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    async with open_listener(tmp_path) as running:
        yield running
