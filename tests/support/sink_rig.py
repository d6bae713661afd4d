"""A real outbox (SQLite ``SqliteStore``) and the real ``Drainer`` around any sink under test.

Usage::

    async with outbox(tmp_path / "state.db", clock) as store:
        await store.sink_cursor("file")          # register the sink before committing
        await store.commit(records("a", "b"))
        await drain(store, sink, settings, tmp_path, clock)

The clock only moves when the drainer sleeps, so retries and backoff take no real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import OutboxRecord, Sink, SinkSettings
from tcsms_poller.sinks.deadletter import DeadLetterFile
from tcsms_poller.sinks.drainer import Drainer
from tcsms_poller.state.store import SqliteStore
from tests.support.records import FakeClock, record
from tests.support.state import open_store

__all__ = ["drain", "outbox", "outbox_records"]


def outbox_records(*ids: str, first_seq: int = 1) -> list[OutboxRecord]:
    """The records as a sink receives them, numbered from ``first_seq``."""
    return [OutboxRecord(seq=first_seq + n, data=record(i).to_json()) for n, i in enumerate(ids)]


@asynccontextmanager
async def outbox(path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    """A state store on a real SQLite file, closed on exit."""
    store = await open_store(path, clock)
    try:
        yield store
    finally:
        await store.aclose()


async def drain(
    store: SqliteStore,
    sink: Sink,
    settings: SinkSettings,
    dead_letter_dir: Path,
    clock: FakeClock,
) -> Drainer:
    """Run a drainer for ``sink`` until the outbox is empty for it, as the daemon would."""
    cursor = await store.sink_cursor(settings.sink_name)
    drainer = Drainer(
        sink=sink,
        settings=settings,
        store=store,
        dead_letters=DeadLetterFile(dead_letter_dir / f"{settings.sink_name}.jsonl"),
        health=HealthBoard(clock).register(f"sink:{settings.sink_name}", "sink"),
        metrics=Metrics(),
        acked_seq=cursor.acked_seq,
        clock=clock,
        sleep=clock.sleep,
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(drainer.run)
            drainer.drain_and_stop()
    return drainer
