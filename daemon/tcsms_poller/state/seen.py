"""The dedupe set: the record ids delivered within ``dedupe_ttl``, on disk, with a bounded RAM part.

Record ids land at random places in a B-tree, so inserting each page's ids straight into ``seen``
dirtied about one page per id and made the commit the bottleneck (figures: docs/benchmarks.md).
So new ids are appended to ``seen_recent`` (a plain rowid table: a few pages per commit) and
mirrored in RAM, and once ``MERGE_AT`` ids are pending they move into ``seen`` in key order in
one statement, which touches each leaf once for many ids. RAM holds at most ``MERGE_AT`` ids;
opening the state merges whatever a previous process left, so nothing is rebuilt at start.

Every method runs on the writer's thread inside the write transaction, except ``committed``,
which runs right after its COMMIT: the RAM mirror only ever reflects committed rows.

Another connection may write the same state (``state/lock.py`` keeps a second daemon off, but
not a second store or an operator's tool): its new ids are in ``seen_recent``, not in our RAM. So
each transaction first asks SQLite whether another connection committed since this one last
looked (``PRAGMA data_version``, a read of the shared WAL index), and if one did, reloads the
mirror from ``seen_recent``: rarely, and never more than the ids pending a merge.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain, repeat

from tcsms_poller.state.rows import insert_rows

__all__ = ["MERGE_AT", "SeenIds"]

# Pending ids that trigger a merge: the more ids a merge carries, the more of them share each
# leaf it rewrites, within a bounded RAM (figures: docs/benchmarks.md).
MERGE_AT = 50_000
_CHUNK = 500  # ids per IN (...) query; far below SQLite's bound-parameter limit


class SeenIds:
    """The ids in ``seen`` and ``seen_recent``; see the module docstring.

    It is the writer's ``Mirror`` (``state/writer.py``): the ids a transaction adds count as seen
    for the rest of that transaction (a later write of the same group sees them), and reach the
    RAM mirror only once it committed.
    """

    def __init__(self, *, merge_at: int = MERGE_AT) -> None:
        self._recent: dict[str, int] = {}  # id -> expires_at, exactly the rows of seen_recent
        self._added: list[tuple[str, int]] = []  # rows added by the open transaction
        self._added_ids: set[str] = set()
        self._merged_at: int | None = None  # the open transaction merged _added[:this] and before
        self._merge_at = merge_at
        self._data_version: int | None = None  # what others had committed when RAM last synced
        self._synced = False  # in the open transaction

    def __len__(self) -> int:
        """Ids held in RAM (committed, not merged yet)."""
        return len(self._recent)

    @classmethod
    def open(cls, connection: sqlite3.Connection, *, merge_at: int = MERGE_AT) -> SeenIds:
        """Merge what an earlier process left in ``seen_recent`` (one transaction)."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            _merge(connection)
        except BaseException:
            connection.rollback()
            raise
        connection.execute("COMMIT")
        seen = cls(merge_at=merge_at)
        seen._data_version = _data_version(connection)
        return seen

    def begin(self) -> None:
        """Forget what a transaction that never committed had added."""
        self._added.clear()
        self._added_ids.clear()
        self._merged_at = None
        self._synced = False

    def mark(self) -> tuple[int, int | None]:
        """Where the open transaction is, for ``rollback_to`` after a failed savepoint."""
        return len(self._added), self._merged_at

    def rollback_to(self, mark: object) -> None:
        """Forget what was added (and merged) since ``mark``."""
        assert isinstance(mark, tuple)
        added, self._merged_at = mark
        del self._added[added:]
        self._added_ids = {record_id for record_id, _ in self._added}

    def seen(self, connection: sqlite3.Connection, ids: Sequence[str], *, now: float) -> set[str]:
        """The ids among ``ids`` seen and not expired at ``now``."""
        self._sync(connection)
        added, recent = self._added_ids, self._recent
        found = {i for i in ids if i in added or recent.get(i, 0) > now}
        on_disk = [i for i in ids if i not in found]
        for start in range(0, len(on_disk), _CHUNK):
            chunk = on_disk[start : start + _CHUNK]
            placeholders = ",".join("?" * len(chunk))
            rows = connection.execute(
                f"SELECT id FROM seen WHERE id IN ({placeholders}) AND expires_at > ?",  # noqa: S608 (placeholders only)
                (*chunk, now),
            )
            found.update(row[0] for row in rows)
        return found

    def add(self, connection: sqlite3.Connection, ids: Iterable[str], *, expires_at: int) -> None:
        """Mark ``ids`` seen until ``expires_at``, merging into ``seen`` once enough are pending."""
        self._sync(connection)
        ids = list(ids)
        rows = list(zip(ids, repeat(expires_at)))
        values = list(chain.from_iterable(rows))
        insert_rows(connection, "seen_recent (id, expires_at)", values, width=2)
        self._added += rows
        self._added_ids.update(ids)
        if self._merged_at is None:
            held = len(self._recent) + len(self._added)
        else:
            held = len(self._added) - self._merged_at
        if held >= self._merge_at:
            _merge(connection)
            self._merged_at = len(self._added)

    def _sync(self, connection: sqlite3.Connection) -> None:
        """Once a transaction, before it adds anything: take in what others committed."""
        if self._synced:
            return
        self._synced = True
        version = _data_version(connection)
        if version != self._data_version:
            self._data_version = version
            self._recent = dict(
                connection.execute("SELECT id, MAX(expires_at) FROM seen_recent GROUP BY id")
            )

    def committed(self) -> None:
        """The transaction committed: RAM now mirrors ``seen_recent`` again."""
        if self._merged_at is not None:
            self._recent = dict(self._added[self._merged_at :])  # added since the last merge
        else:
            self._recent.update(self._added)
        self.begin()


def _data_version(connection: sqlite3.Connection) -> int:
    """A number that changes when another connection commits (never for this one's commits)."""
    return int(connection.execute("PRAGMA data_version").fetchone()[0])


def _merge(connection: sqlite3.Connection) -> None:
    """Move every row of ``seen_recent`` into ``seen``, in key order, the latest expiry winning."""
    connection.execute(
        "INSERT INTO seen (id, expires_at) "
        "SELECT id, expires_at FROM seen_recent WHERE true ORDER BY id, expires_at "
        "ON CONFLICT (id) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)"
    )
    connection.execute("DELETE FROM seen_recent")
