"""The state store on real SQLite files: dedupe, outbox, cursors, atomicity, restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tcsms_poller.state import StateError
from tcsms_poller.state.schema import MIGRATIONS
from tcsms_poller.state.status import read_snapshot
from tcsms_poller.tencent.models import RejectedItem

# Re-exported for the state tests that import them from here; the home is tests/support.
from tests.support.records import FakeClock as FakeClock
from tests.support.records import record as record
from tests.support.state import DAY as DAY
from tests.support.state import open_store as open_store
from tests.support.waiting import wait_until


@pytest.mark.anyio
async def test_duplicates_are_dropped_within_and_across_commits(tmp_path: Path) -> None:
    """An id already seen, or repeated in the same batch, is not queued again."""
    store = await open_store(tmp_path / "state.db")
    first = await store.commit([record("a"), record("b"), record("a")])
    second = await store.commit([record("b"), record("c")])
    assert [r.id for r in first.new] == ["a", "b"]
    assert first.duplicates == 1
    assert [r.id for r in second.new] == ["c"]
    assert second.duplicates == 1
    rows = await store.read_outbox(after=0, limit=10)
    assert [row.as_dict()["id"] for row in rows] == ["a", "b", "c"]
    await store.aclose()


@pytest.mark.anyio
async def test_dedupe_survives_a_restart(tmp_path: Path) -> None:
    """Seen ids live on disk: a restarted daemon still knows them."""
    store = await open_store(tmp_path / "state.db")
    await store.commit([record("a")])
    await store.aclose()
    store = await open_store(tmp_path / "state.db")
    assert (await store.commit([record("a")])).duplicates == 1
    await store.aclose()


@pytest.mark.anyio
async def test_dedupe_holds_between_two_stores_on_one_file(tmp_path: Path) -> None:
    """A record one store queued is a duplicate for another on the same file (and back)."""
    first = await open_store(tmp_path / "state.db")
    second = await open_store(tmp_path / "state.db")
    assert len((await first.commit([record("a")])).new) == 1
    assert (await second.commit([record("a"), record("b")])).duplicates == 1
    assert (await first.commit([record("b")])).duplicates == 1
    await second.aclose()
    await first.aclose()


@pytest.mark.anyio
async def test_an_id_is_new_again_after_the_dedupe_window(tmp_path: Path) -> None:
    """After dedupe_ttl the id may be delivered again (and purge forgets it)."""
    clock = FakeClock()
    store = await open_store(tmp_path / "state.db", clock)
    await store.commit([record("a")])
    clock.now += 8 * DAY - 1
    assert (await store.commit([record("a")])).duplicates == 1
    clock.now += 2
    assert [r.id for r in (await store.commit([record("a")])).new] == ["a"]
    await store.aclose()


@pytest.mark.anyio
async def test_rejected_items_are_quarantined_in_the_same_commit(tmp_path: Path) -> None:
    """Unparseable API items are kept verbatim, not dropped."""
    store = await open_store(tmp_path / "state.db")
    await store.commit(
        [], rejected=[RejectedItem(raw={"x": 1}, reason="bad")], source="PullSmsReplyStatus"
    )
    rows = await store.read(
        lambda c: c.execute("SELECT source, reason, raw FROM rejected").fetchall()
    )
    assert rows == [("PullSmsReplyStatus", "bad", '{"x": 1}')]
    await store.aclose()


@pytest.mark.anyio
async def test_a_new_sink_starts_at_the_head(tmp_path: Path) -> None:
    """A sink added later receives what is committed after it appeared, not a partial past."""
    store = await open_store(tmp_path / "state.db")
    await store.commit([record("a"), record("b")])
    cursor = await store.sink_cursor("late")
    assert cursor.acked_seq == store.head == 2
    assert cursor.position is None
    await store.aclose()


@pytest.mark.anyio
async def test_ack_saves_position_and_never_moves_back(tmp_path: Path) -> None:
    """An ack stores the sink's position; an older ack cannot rewind the cursor."""
    store = await open_store(tmp_path / "state.db")
    await store.sink_cursor("file")
    await store.commit([record("a"), record("b")])
    await store.ack("file", seq=2, position={"offset": 10})
    await store.ack("file", seq=1, position={"offset": 5})
    await store.ack("file", seq=2, position=None)
    cursor = await store.sink_cursor("file")
    assert (cursor.acked_seq, cursor.position) == (2, {"offset": 10})
    await store.aclose()


@pytest.mark.anyio
async def test_purge_keeps_rows_any_sink_still_needs(tmp_path: Path) -> None:
    """Rows leave the outbox only once every configured sink acknowledged them."""
    store = await open_store(tmp_path / "state.db")
    await store.sink_cursor("fast")
    await store.sink_cursor("slow")
    await store.commit([record(str(i)) for i in range(5)])
    await store.ack("fast", seq=5, position=None)
    await store.ack("slow", seq=2, position=None)
    _, purged, _ = await store.purge(["fast", "slow"])
    assert purged == 2
    assert [row.seq for row in await store.read_outbox(after=0, limit=10)] == [3, 4, 5]
    await store.aclose()


@pytest.mark.anyio
async def test_a_removed_sink_keeps_its_backlog_until_dedupe_ttl(tmp_path: Path) -> None:
    """A sink dropped from the configuration holds its rows for ``dedupe_ttl``, then lets go."""
    clock = FakeClock()
    store = await open_store(tmp_path / "state.db", clock)
    await store.sink_cursor("kept")
    await store.sink_cursor("removed")
    await store.commit([record(str(i)) for i in range(5)])
    await store.ack("kept", seq=5, position=None)
    await store.ack("removed", seq=2, position=None)
    assert await store.forget_removed_sinks(["kept"]) == []
    assert (await store.purge(["kept"]))[1] == 2
    clock.now += 9 * DAY
    assert await store.forget_removed_sinks(["kept"]) == ["removed"]
    assert (await store.purge(["kept"]))[1] == 3
    assert (await store.sink_cursor("removed")).acked_seq == 5  # back later: starts at the head
    await store.aclose()


@pytest.mark.anyio
async def test_purge_forgets_expired_ids(tmp_path: Path) -> None:
    """Expired seen ids are deleted once merged into ``seen``, so the set stays bounded on disk."""
    clock = FakeClock()
    store = await open_store(tmp_path / "state.db", clock)
    await store.commit([record("a"), record("b")])
    await store.aclose()
    store = await open_store(tmp_path / "state.db", clock)  # opening merges the recent ids
    clock.now += 9 * DAY
    expired, _, _ = await store.purge([])
    assert expired == 2
    await store.aclose()


@pytest.mark.anyio
async def test_wait_for_commit_wakes_on_new_records(tmp_path: Path) -> None:
    """A drainer waiting at the head wakes when a record is committed, not on a timer."""
    store = await open_store(tmp_path / "state.db")
    woke = anyio.Event()

    async def drainer() -> None:
        await store.wait_for_commit(store.head)
        woke.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drainer)
            await anyio.wait_all_tasks_blocked()
            assert not woke.is_set()
            await store.commit([record("a")])
            await woke.wait()
    await store.aclose()


@pytest.mark.anyio
async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer release is not touched by an older one."""
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 999")
    connection.close()
    with pytest.raises(StateError, match="newer"):
        await open_store(path)


@pytest.mark.anyio
async def test_a_first_release_database_is_migrated_with_its_seen_ids(tmp_path: Path) -> None:
    """An upgrade keeps every seen id; ``status`` reads the file before and after."""
    path = tmp_path / "state.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript(f"BEGIN;{MIGRATIONS[0]}PRAGMA user_version = 1;COMMIT;")
    clock = FakeClock()
    connection.execute("INSERT INTO seen VALUES ('a', ?)", (int(clock.now + DAY),))
    connection.close()
    assert read_snapshot(path, now=clock.now)["seen_ids"] == 1
    store = await open_store(path, clock)
    assert (await store.commit([record("a"), record("b")])).duplicates == 1
    await store.aclose()
    assert read_snapshot(path, now=clock.now)["seen_ids"] == 2


@pytest.mark.anyio
async def test_an_unwritable_location_is_a_state_error(tmp_path: Path) -> None:
    """A path that cannot hold a database fails with a StateError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot open state database"):
        await open_store(blocker / "state.db")


@pytest.mark.anyio
async def test_a_write_waiting_on_the_disk_shows_as_stalled(tmp_path: Path) -> None:
    """While a write cannot proceed its stall time grows; once it commits it is 0 again."""
    path = tmp_path / "state.db"
    store = await open_store(path)
    assert store.write_stalled_for() == 0.0
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # as a hung disk would, keeps every write waiting
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.commit, [record("a")])
            await wait_until(lambda: store.write_stalled_for() >= 0.2, what="a stalled write")
            blocker.rollback()
    assert store.write_stalled_for() == 0.0
    assert [r.as_dict()["id"] for r in await store.read_outbox(after=0, limit=5)] == ["a"]
    blocker.close()
    await store.aclose()


@pytest.mark.anyio
async def test_commits_that_share_a_transaction_dedupe_against_each_other(
    tmp_path: Path,
) -> None:
    """A pull and a push of the same record, committed together, queue it once."""
    store = await open_store(tmp_path / "state.db")
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the first commit waits; the next two queue behind it
    results = []

    async def commit(ids: str) -> None:
        results.append(await store.commit([record(i) for i in ids]))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(commit, "a")
            await wait_until(lambda: store.write_stalled_for() > 0, what="a waiting write")
            tg.start_soon(commit, "bc")
            tg.start_soon(commit, "cd")
            await anyio.wait_all_tasks_blocked()
            blocker.rollback()
    assert store.transactions == 2
    assert sorted(r.id for result in results for r in result.new) == ["a", "b", "c", "d"]
    assert sum(result.duplicates for result in results) == 1
    rows = await store.read_outbox(after=0, limit=10)
    assert sorted(row.as_dict()["id"] for row in rows) == ["a", "b", "c", "d"]
    assert store.head == 4
    blocker.close()
    await store.aclose()
