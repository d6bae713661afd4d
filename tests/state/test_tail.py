"""The outbox's newest rows in RAM: served to sinks that keep up, never ahead of the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tcsms_poller.state import StateStore
from tcsms_poller.state.tail import OutboxTail
from tests.support.records import record
from tests.support.state import open_store


async def everything(store: StateStore) -> list[int]:
    """The seqs a sink at 0 reads, batch after batch, as a drainer does."""
    seqs: list[int] = []
    while batch := await store.read_outbox(after=seqs[-1] if seqs else 0, limit=2):
        seqs += [row.seq for row in batch]
    return seqs


def test_rows_come_from_ram_only_once_committed() -> None:
    tail = OutboxTail()
    tail.begin()
    tail.add([b"a", b"b"], last_seq=2)
    assert tail.read(after=0, limit=10) is None  # not committed: nothing to serve
    tail.committed()
    assert [(r.seq, r.data) for r in tail.read(after=0, limit=10) or []] == [(1, b"a"), (2, b"b")]
    assert tail.read(after=2, limit=10) == []  # nothing newer
    tail.begin()
    tail.add([b"c"], last_seq=3)
    tail.begin()  # that transaction never committed; the next one reuses seq 3
    tail.add([b"d"], last_seq=3)
    mark = tail.mark()
    tail.add([b"e"], last_seq=4)
    tail.rollback_to(mark)  # a write of the group failed
    tail.committed()
    assert [r.data for r in tail.read(after=1, limit=10) or []] == [b"b", b"d"]


def test_a_read_older_than_the_tail_goes_to_the_database() -> None:
    tail = OutboxTail(max_bytes=4)
    for seq, data in enumerate([b"aa", b"bb", b"cc", b"ddddd"], start=1):
        tail.begin()
        tail.add([data], last_seq=seq)
        tail.committed()
    assert tail.read(after=3, limit=10) is not None  # the newest commit stays, however large
    assert tail.read(after=2, limit=10) is None  # trimmed: "cc" is gone from RAM
    tail.forget_before(5)  # purged from the outbox
    assert tail.read(after=3, limit=10) is None


@pytest.mark.anyio
async def test_a_sink_that_keeps_up_reads_from_ram(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "state.db")
    await store.commit([record(str(i)) for i in range(3)])
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("DELETE FROM outbox")  # the rows now exist in RAM only
    other.close()
    assert [row.as_dict()["id"] for row in await store.read_outbox(after=0, limit=10)] == [
        "0",
        "1",
        "2",
    ]
    await store.aclose()


@pytest.mark.anyio
async def test_rows_another_process_commits_are_read_from_the_database(tmp_path: Path) -> None:
    """Another connection appends to the same outbox: a gap in this store's tail."""
    ours = await open_store(tmp_path / "state.db")
    theirs = await open_store(tmp_path / "state.db")
    await ours.commit([record("a"), record("b")])
    await theirs.commit([record("c")])
    await ours.commit([record("d")])
    assert await everything(ours) == [1, 2, 3, 4]
    await theirs.aclose()
    await ours.aclose()


@pytest.mark.anyio
async def test_purged_rows_leave_the_tail_too(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "state.db")
    await store.sink_cursor("only")
    await store.commit([record(str(i)) for i in range(4)])
    await store.ack("only", seq=3, position=None)
    assert (await store.purge(["only"]))[1] == 3
    assert [row.seq for row in await store.read_outbox(after=0, limit=10)] == [4]
    await store.aclose()
