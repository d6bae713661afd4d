"""The dedupe set's two parts: recent ids (appended, mirrored in RAM) and the merged ``seen``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcsms_poller.state.schema import migrate
from tcsms_poller.state.seen import SeenIds

MERGE_AT = 3


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    migrate(connection)
    yield connection
    connection.close()


def add(connection: sqlite3.Connection, seen: SeenIds, ids: list[str], expires_at: int) -> None:
    """One committed transaction that marks ``ids`` seen."""
    connection.execute("BEGIN IMMEDIATE")
    seen.begin()
    seen.add(connection, ids, expires_at=expires_at)
    connection.execute("COMMIT")
    seen.committed()


def rows(connection: sqlite3.Connection, table: str) -> int:
    return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


def test_recent_ids_are_seen_and_merge_into_seen_once_enough_are_pending(
    connection: sqlite3.Connection,
) -> None:
    seen = SeenIds.open(connection, merge_at=MERGE_AT)
    add(connection, seen, ["a", "b"], expires_at=100)
    assert (len(seen), rows(connection, "seen_recent"), rows(connection, "seen")) == (2, 2, 0)
    assert seen.seen(connection, ["a", "b", "c"], now=0) == {"a", "b"}
    add(connection, seen, ["c"], expires_at=100)  # the third pending id: merged
    assert (len(seen), rows(connection, "seen_recent"), rows(connection, "seen")) == (0, 0, 3)
    assert seen.seen(connection, ["a", "b", "c", "d"], now=0) == {"a", "b", "c"}


def test_expired_ids_are_unseen_in_both_parts(connection: sqlite3.Connection) -> None:
    seen = SeenIds.open(connection, merge_at=MERGE_AT)
    add(connection, seen, ["a", "b", "c"], expires_at=100)  # merged
    add(connection, seen, ["d"], expires_at=100)  # recent
    assert seen.seen(connection, ["a", "d"], now=99) == {"a", "d"}
    assert seen.seen(connection, ["a", "d"], now=100) == set()


def test_a_later_expiry_wins_when_an_id_comes_again(connection: sqlite3.Connection) -> None:
    """An id seen again after its window is kept for the new window, in RAM and once merged."""
    seen = SeenIds.open(connection, merge_at=MERGE_AT)
    add(connection, seen, ["a"], expires_at=100)
    add(connection, seen, ["a"], expires_at=300)
    assert seen.seen(connection, ["a"], now=200) == {"a"}
    add(connection, seen, ["b", "c"], expires_at=300)  # merged, "a" twice among the rows
    assert connection.execute("SELECT id, expires_at FROM seen ORDER BY id").fetchall() == [
        ("a", 300),
        ("b", 300),
        ("c", 300),
    ]


def test_a_transaction_that_never_commits_leaves_nothing(connection: sqlite3.Connection) -> None:
    """Neither the rows nor the RAM mirror keep ids of a rolled-back transaction."""
    seen = SeenIds.open(connection, merge_at=MERGE_AT)
    connection.execute("BEGIN IMMEDIATE")
    seen.begin()
    seen.add(connection, ["a", "b", "c"], expires_at=100)  # would merge
    connection.rollback()
    seen.begin()  # the store's next transaction starts so
    add(connection, seen, ["d"], expires_at=100)
    assert seen.seen(connection, ["a", "b", "c", "d"], now=0) == {"d"}
    assert (len(seen), rows(connection, "seen")) == (1, 0)


def test_opening_merges_what_a_dead_process_left(connection: sqlite3.Connection) -> None:
    """After a crash the RAM part is gone; opening moves its committed rows into ``seen``."""
    add(connection, SeenIds.open(connection, merge_at=MERGE_AT), ["a", "b"], expires_at=100)
    reopened = SeenIds.open(connection, merge_at=MERGE_AT)
    assert (len(reopened), rows(connection, "seen_recent"), rows(connection, "seen")) == (0, 0, 2)
    assert reopened.seen(connection, ["a", "b", "c"], now=0) == {"a", "b"}


def test_ids_added_after_a_merge_in_the_same_transaction_stay_seen(
    connection: sqlite3.Connection,
) -> None:
    """A group of writes can merge halfway: what comes after is mirrored in RAM, not lost."""
    seen = SeenIds.open(connection, merge_at=MERGE_AT)
    connection.execute("BEGIN IMMEDIATE")
    seen.begin()
    seen.add(connection, ["a", "b", "c"], expires_at=100)  # merged
    seen.add(connection, ["d"], expires_at=100)  # pending again
    assert seen.seen(connection, ["a", "d", "e"], now=0) == {"a", "d"}  # within the transaction
    connection.execute("COMMIT")
    seen.committed()
    assert (len(seen), rows(connection, "seen_recent"), rows(connection, "seen")) == (1, 1, 3)
    assert seen.seen(connection, ["a", "b", "c", "d", "e"], now=0) == {"a", "b", "c", "d"}


def test_a_rolled_back_savepoint_forgets_its_ids_and_its_merge(
    connection: sqlite3.Connection,
) -> None:
    seen = SeenIds.open(connection, merge_at=MERGE_AT)
    add(connection, seen, ["a"], expires_at=100)
    connection.execute("BEGIN IMMEDIATE")
    seen.begin()
    seen.add(connection, ["b"], expires_at=100)
    connection.execute("SAVEPOINT write")
    mark = seen.mark()
    seen.add(connection, ["c", "d"], expires_at=100)  # the fourth id: merges
    connection.execute("ROLLBACK TO write")
    seen.rollback_to(mark)
    connection.execute("RELEASE write")
    assert seen.seen(connection, ["a", "b", "c", "d"], now=0) == {"a", "b"}
    connection.execute("COMMIT")
    seen.committed()
    assert (len(seen), rows(connection, "seen_recent"), rows(connection, "seen")) == (2, 2, 0)
    assert seen.seen(connection, ["a", "b", "c", "d"], now=0) == {"a", "b"}


# -- another connection writing the same state -------------------------------------------------


@pytest.fixture
def other(tmp_path: Path, connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A second connection to the same file, as another process would hold."""
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    yield other
    other.close()


def opened_by_both(
    connection: sqlite3.Connection, other: sqlite3.Connection
) -> tuple[SeenIds, SeenIds]:
    return SeenIds.open(connection, merge_at=MERGE_AT), SeenIds.open(other, merge_at=MERGE_AT)


def test_ids_another_connection_committed_are_seen(
    connection: sqlite3.Connection, other: sqlite3.Connection
) -> None:
    """Their pending ids are in ``seen_recent``, not in our RAM: they count all the same."""
    ours, theirs = opened_by_both(connection, other)
    add(connection, ours, ["a"], expires_at=100)
    add(other, theirs, ["b"], expires_at=100)
    assert ours.seen(connection, ["a", "b", "c"], now=0) == {"a", "b"}
    assert theirs.seen(other, ["a", "b", "c"], now=0) == {"a", "b"}


def test_a_merge_by_another_connection_empties_this_ones_mirror(
    connection: sqlite3.Connection, other: sqlite3.Connection
) -> None:
    """Their merge moved our pending ids into ``seen`` too: RAM holds only what is still pending."""
    ours, theirs = opened_by_both(connection, other)
    add(connection, ours, ["a"], expires_at=100)
    add(other, theirs, ["b", "c", "d"], expires_at=100)  # four pending with ours: all merged
    assert (rows(connection, "seen_recent"), rows(connection, "seen")) == (0, 4)
    assert ours.seen(connection, ["a", "b", "e"], now=0) == {"a", "b"}
    assert len(ours) == 0
