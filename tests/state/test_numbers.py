"""Tracked numbers: syncing, the most overdue first, cursors, expiry, paging."""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

import pytest

from tcsms_poller.state.roles import NumberPolled
from tcsms_poller.state.schema import MIGRATIONS
from tcsms_poller.state.store import SqliteStore
from tests.support.records import FakeClock
from tests.support.state import open_store

APP = "1400006666"
A, B, C = "+8613700000001", "+8613700000002", "+8613700000003"


async def due(store: SqliteStore, limit: int = 10, skip: frozenset[str] = frozenset()) -> list[str]:
    """Phones of the most overdue numbers, ``skip`` left out."""
    _, numbers = await store.due_numbers(APP, limit=limit, skip=skip)
    return [number.phone for number in numbers]


@pytest.mark.anyio
async def test_sync_adds_and_removes_only_its_origin(tmp_path: Path) -> None:
    """Re-reading the numbers file replaces the file's numbers and leaves API numbers alone."""
    store = await open_store(tmp_path / "s.db")
    assert await store.sync_numbers(APP, "file", [A, B]) == (2, 0)
    await store.track_number(APP, C, track_for=3600)
    assert await store.sync_numbers(APP, "file", [B]) == (0, 1)
    listed = await store.list_numbers()
    assert [(n.phone, n.origin) for n in listed] == [(B, "file"), (C, "api")]
    await store.aclose()


@pytest.mark.anyio
async def test_most_overdue_numbers_come_first_and_those_being_polled_are_skipped(
    tmp_path: Path,
) -> None:
    """The oldest due time first; numbers in flight are left out, yet ``limit`` others found."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A])
    clock.now += 1
    await store.sync_numbers(APP, "file", [B])
    clock.now += 1
    await store.track_number(APP, C, track_for=3600)
    assert await due(store, limit=2) == [A, B]
    assert await due(store, limit=2, skip=frozenset({A, B})) == [C]
    assert await due(store, limit=1, skip=frozenset({A})) == [B]
    assert await due(store, skip=frozenset({A, B, C})) == []
    oldest, _ = await store.due_numbers(APP, limit=1)
    assert oldest == clock.now - 2
    await store.aclose()


@pytest.mark.anyio
async def test_nothing_due_and_nothing_tracked_differ(tmp_path: Path) -> None:
    """The earliest due time tells "all polled for now" from "no number at all"."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    assert await store.due_numbers(APP, limit=5) == (None, [])
    await store.sync_numbers(APP, "config", [A])
    await store.reschedule_number(APP, A, delay=60)
    assert await store.due_numbers(APP, limit=5) == (clock.now + 60, [])
    clock.now += 60
    assert await due(store) == [A]
    await store.aclose()


@pytest.mark.anyio
async def test_advance_sets_next_due_and_cursors_never_move_back(tmp_path: Path) -> None:
    """A finished poll schedules the number and keeps the newest cursor."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A])

    def advance(cursor: int) -> NumberPolled:
        return NumberPolled(
            app_id=APP,
            phone=A,
            next_due=clock.now + 60,
            polled_at=clock.now,
            status_cursor=cursor,
        )

    await store.commit([], also=advance(500))
    await store.commit([], also=advance(400))
    [number] = await store.list_numbers()
    assert number.status_cursor == 500
    assert number.next_due == clock.now + 60
    await store.aclose()


@pytest.mark.anyio
async def test_a_poll_without_records_leaves_the_cursors_unset(tmp_path: Path) -> None:
    """No record seen yet keeps NULL, so the next window is ``lookback``, not seven days."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A])
    nothing = partial(NumberPolled, app_id=APP, phone=A, next_due=clock.now, polled_at=clock.now)
    await store.commit([], also=nothing())
    [number] = await store.list_numbers()
    assert (number.status_cursor, number.reply_cursor) == (None, None)
    await store.commit([], also=nothing(status_cursor=500))
    await store.commit([], also=nothing())
    [number] = await store.list_numbers()
    assert (number.status_cursor, number.reply_cursor) == (500, None)
    await store.aclose()


@pytest.mark.anyio
async def test_api_numbers_expire(tmp_path: Path) -> None:
    """A number tracked for a while is not polled after its period and is purged."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    assert await store.track_number(APP, A, track_for=100)
    assert not await store.track_number(APP, A, track_for=50)  # never shortens
    clock.now += 120
    assert await due(store) == []
    assert (await store.purge([]))[2] == 1
    assert await store.list_numbers() == []
    await store.aclose()


@pytest.mark.anyio
async def test_configured_numbers_never_expire_even_if_tracked_by_api(tmp_path: Path) -> None:
    """An API tracking request does not put an expiry on a configured number."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A])
    await store.track_number(APP, A, track_for=10)
    [number] = await store.list_numbers()
    assert (number.origin, number.expires_at) == ("config", None)
    await store.aclose()


@pytest.mark.anyio
async def test_an_unchanged_list_is_in_place_unless_a_row_changed_since(tmp_path: Path) -> None:
    """The same list again changes nothing; a number removed meanwhile comes back all the same.

    Syncing an unchanged list is skipped, so what the skip rests on must hold: any row added,
    removed or moved to another origin since the last sync makes the next one diff for real.
    """
    store = await open_store(tmp_path / "s.db")
    assert await store.sync_numbers(APP, "file", [A, B]) == (2, 0)
    assert await store.sync_numbers(APP, "file", [A, B]) == (0, 0)
    assert await store.untrack_number(APP, A)  # DELETE /v1/numbers/A
    assert await store.sync_numbers(APP, "file", [A, B]) == (1, 0)
    # C in the config and the file is the config's; dropped from the config, it is the file's.
    assert await store.sync_numbers(APP, "config", [C]) == (1, 0)
    assert await store.sync_numbers(APP, "file", [A, B, C]) == (0, 0)
    assert await store.sync_numbers(APP, "file", [A, B, C]) == (0, 0)
    assert await store.sync_numbers(APP, "config", []) == (0, 1)
    assert await store.sync_numbers(APP, "file", [A, B, C]) == (1, 0)
    listed = await store.list_numbers()
    assert [(n.phone, n.origin) for n in listed] == [(A, "file"), (B, "file"), (C, "file")]
    await store.aclose()


@pytest.mark.anyio
async def test_an_upgrade_unsets_the_zero_cursors_of_earlier_releases(tmp_path: Path) -> None:
    """Cursor 0 meant "no record seen" before schema 4: it becomes NULL again."""
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path, isolation_level=None)
    script = "".join(MIGRATIONS[:3])
    connection.executescript(f"BEGIN;{script}PRAGMA user_version = 3;COMMIT;")
    connection.execute(
        "INSERT INTO numbers (app_id, phone, origin, status_cursor, reply_cursor, next_due, "
        "added_at) VALUES (?, ?, 'config', 0, 700, 0, 0)",
        (APP, A),
    )
    connection.close()
    store = await open_store(path)
    [number] = await store.list_numbers()
    assert (number.status_cursor, number.reply_cursor) == (None, 700)
    await store.aclose()
