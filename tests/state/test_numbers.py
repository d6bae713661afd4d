"""Tracked numbers: syncing, leasing the most overdue first, cursors, expiry, paging."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tcsms_poller.state import StateStore
from tcsms_poller.state.numbers import advance_number

from .test_store import FakeClock, open_store

APP = "1400006666"
A, B, C = "+8613700000001", "+8613700000002", "+8613700000003"


async def due(store: StateStore, limit: int = 10, lease: float = 30.0) -> list[str]:
    """Phones handed out by one lease."""
    return [n.phone for n in await store.lease_due_numbers(APP, limit=limit, lease=lease)]


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
async def test_most_overdue_numbers_come_first_and_are_leased(tmp_path: Path) -> None:
    """Leasing serves the oldest due time first and never hands a number out twice."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A])
    clock.now += 1
    await store.sync_numbers(APP, "file", [B])
    clock.now += 1
    await store.track_number(APP, C, track_for=3600)
    assert await due(store, limit=2) == [A, B]
    assert await due(store, limit=2) == [C]
    assert await due(store) == []
    clock.now += 31  # the lease ran out without a successful poll: they are due again
    assert await due(store) == [A, B, C]
    await store.aclose()


@pytest.mark.anyio
async def test_advance_sets_next_due_and_cursors_never_move_back(tmp_path: Path) -> None:
    """A finished poll schedules the number and keeps the newest cursor."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A])
    await due(store)

    def advance(cursor: int) -> partial[None]:
        return partial(
            advance_number,
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
async def test_leases_of_a_dead_process_are_released_on_the_schedule(tmp_path: Path) -> None:
    """At start, numbers leased mid-poll by a killed process are due again; others keep theirs."""
    clock = FakeClock()
    store = await open_store(tmp_path / "s.db", clock)
    await store.sync_numbers(APP, "config", [A, B, C])
    assert await due(store, lease=300) == [A, B, C]
    # B finished its poll; C finished one and was leased again; A was never polled at all.
    for phone in (B, C):
        await store.commit(
            [],
            also=partial(
                advance_number,
                app_id=APP,
                phone=phone,
                next_due=clock.now + 60,
                polled_at=clock.now,
            ),
        )
    clock.now += 60
    assert await due(store, lease=300) == [B, C]
    await store.commit(
        [],
        also=partial(
            advance_number, app_id=APP, phone=B, next_due=clock.now + 60, polled_at=clock.now
        ),
    )
    # The process dies here, holding the leases of A and C.
    assert await store.release_number_leases(APP, interval=60) == 2
    assert await due(store, lease=300) == [A, C]  # A as added, C an interval after its poll
    assert await due(store) == []  # B keeps its own schedule
    clock.now += 60
    assert await due(store) == [B]
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
async def test_listing_pages_through_every_number(tmp_path: Path) -> None:
    """Pages continue after the last (app, phone) and together list every number once."""
    store = await open_store(tmp_path / "s.db")
    phones = [f"+86137{i:08d}" for i in range(25)]
    await store.sync_numbers(APP, "config", phones)
    seen: list[str] = []
    after: tuple[str, str] | None = None
    while page := await store.list_numbers(after=after, limit=10):
        seen += [n.phone for n in page]
        after = (page[-1].app_id, page[-1].phone)
    assert seen == sorted(phones)
    assert await store.untrack_number(APP, phones[0])
    assert not await store.untrack_number(APP, phones[0])
    assert (await store.number_counts())[APP][0] == 24
    await store.aclose()
