"""The newest committed outbox rows, kept in RAM for the sinks that keep up.

A sink that keeps up asks, after each commit, for the rows that commit just added. Reading them
back through SQLite is a thread hop and a query on a reader whose page cache every commit drops
(its cost: docs/benchmarks.md). So the writer keeps the rows of the
latest commits, up to ``TAIL_BYTES``, and ``read`` serves a sink from them when they reach back
to its cursor; a sink further behind reads the database, as before.

It is one of the writer's mirrors (``state/writer.py``): rows enter it only once their
transaction committed. Its rows are consecutive by seq. Another connection writing the same
database (``state/lock.py`` keeps a second daemon off, not every tool) leaves a gap in what this
one commits; the tail then starts afresh after the gap, and a read that reaches into it goes to
the database.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial

from tcsms_poller.records import OutboxRecord

__all__ = ["TAIL_BYTES", "OutboxTail"]

# Several commits' worth, for sinks a batch or two behind: a larger tail served them no more
# often and pinned much more memory (figures: docs/benchmarks.md).
TAIL_BYTES = 256 * 2**10
_outbox_record = partial(tuple.__new__, OutboxRecord)  # from a (seq, data) pair, in C


class OutboxTail:
    """See the module docstring. ``add`` and the mirror calls run on the writer thread, ``read``
    on the event loop's."""

    def __init__(self, *, max_bytes: int = TAIL_BYTES) -> None:
        self._rows: list[OutboxRecord] = []  # consecutive seqs, oldest first
        self._bytes = 0
        self._pending: list[OutboxRecord] = []  # added by the open transaction
        self._pending_bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def add(self, data: Sequence[bytes], *, last_seq: int) -> None:
        """Rows the open transaction inserted, whose seqs end at ``last_seq``."""
        seqs = range(last_seq - len(data) + 1, last_seq + 1)
        self._pending += map(_outbox_record, zip(seqs, data, strict=True))
        self._pending_bytes += sum(map(len, data))

    def read(self, *, after: int, limit: int) -> list[OutboxRecord] | None:
        """Up to ``limit`` rows after ``after``; None when the tail does not reach back that far.

        An empty list means nothing newer was committed here.
        """
        with self._lock:
            rows = self._rows
            if not rows or after + 1 < rows[0].seq:
                return None
            start = after + 1 - rows[0].seq
            return rows[start : start + limit]

    def forget_before(self, seq: int | None) -> None:
        """Rows before ``seq`` were purged from the outbox (None: all of them); drop them too."""
        with self._lock:
            if seq is None or not self._rows or seq > self._rows[-1].seq:
                self._rows, self._bytes = [], 0
            elif seq > self._rows[0].seq:
                dropped = self._rows[: seq - self._rows[0].seq]
                self._bytes -= sum(len(row.data) for row in dropped)  # rare: on a purge
                del self._rows[: len(dropped)]

    # -- the writer's Mirror ------------------------------------------------------------------

    def begin(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0

    def mark(self) -> tuple[int, int]:
        return len(self._pending), self._pending_bytes

    def rollback_to(self, mark: object) -> None:
        assert isinstance(mark, tuple)
        rows, self._pending_bytes = mark
        del self._pending[rows:]

    def committed(self) -> None:
        if not self._pending:
            return
        with self._lock:
            if self._rows and self._rows[-1].seq + 1 != self._pending[0].seq:
                self._rows, self._bytes = [], 0  # another process committed in between
            self._rows += self._pending
            self._bytes += self._pending_bytes
            self._trim()
        self.begin()

    def _trim(self) -> None:
        """Drop the oldest rows past ``max_bytes``, keeping the newest commit's whole."""
        drop, droppable = 0, len(self._rows) - len(self._pending)
        while self._bytes > self._max_bytes and drop < droppable:
            self._bytes -= len(self._rows[drop].data)
            drop += 1
        del self._rows[:drop]
