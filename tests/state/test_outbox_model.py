"""A hypothesis state machine: the SQLite outbox against a plain in-memory model.

Appends (some rolled back as if the process died mid-transaction), acks per sink, purges and
crashes (connection dropped, database reopened) in any order: every sink must still see exactly
the committed records after its cursor, in order, each id once. The dedupe set merges its recent
ids into ``seen`` every few ids here, so merges, crashes and expiry interleave too.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tcsms_poller.state import outbox
from tcsms_poller.state.schema import migrate
from tcsms_poller.state.seen import SeenIds
from tests.support.records import record

T = TypeVar("T")
SINKS = ("file", "http")
TTL = 1_000.0
MERGE_AT = 4  # ids pending before they move into ``seen``: small, so merges happen often


class OutboxMachine(RuleBasedStateMachine):
    """Drives the outbox functions the way the store does, checking against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "state.db"
        self.connection, self.seen_ids = self._connect()
        self.now = 0.0
        self.committed: list[tuple[int, str]] = []  # (seq, id) in commit order
        self.seen: set[str] = set()
        self.cursors: dict[str, int] = {}
        for sink in SINKS:
            self.cursors[sink] = self._transact(
                partial(outbox.sink_cursor, name=sink, now=0)
            ).acked_seq

    def _connect(self) -> tuple[sqlite3.Connection, SeenIds]:
        connection = sqlite3.connect(self.path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        migrate(connection)
        return connection, SeenIds.open(connection, merge_at=MERGE_AT)

    def _transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self.connection.execute("BEGIN IMMEDIATE")
        result = work(self.connection)
        self.connection.execute("COMMIT")
        return result

    @rule(ids=st.lists(st.sampled_from("abcdefghij"), max_size=6), dies=st.booleans())
    def append(self, ids: list[str], dies: bool) -> None:
        """Commit a page; a process that dies before COMMIT leaves no trace."""
        records = [record(i) for i in ids]
        self.connection.execute("BEGIN IMMEDIATE")
        self.seen_ids.begin()
        fresh = outbox.commit_records(
            self.connection, records, seen=self.seen_ids, now=self.now, ttl=TTL
        )
        if dies:
            self.connection.close()
            self.connection, self.seen_ids = self._connect()
            return
        head = outbox.outbox_head(self.connection)
        self.connection.execute("COMMIT")
        self.seen_ids.committed()
        expected = [i for n, i in enumerate(ids) if i not in self.seen and i not in ids[:n]]
        assert [r.id for r in fresh] == expected
        first = head - len(fresh) + 1
        self.committed += [(first + n, r.id) for n, r in enumerate(fresh)]
        self.seen.update(expected)

    @rule(sink=st.sampled_from(SINKS), count=st.integers(min_value=1, max_value=5))
    def deliver(self, sink: str, count: int) -> None:
        """A sink takes a batch from its cursor and acknowledges it."""
        batch = self._transact(
            lambda c: outbox.read_outbox(c, after=self.cursors[sink], limit=count)
        )
        if batch:
            self._transact(
                lambda c: outbox.ack_sink(c, sink, seq=batch[-1].seq, position=None, now=self.now)
            )
            self.cursors[sink] = batch[-1].seq

    @rule()
    def purge(self) -> None:
        """Drop rows every sink acknowledged."""
        self._transact(lambda c: outbox.purge_acknowledged(c, SINKS, limit=3))

    @rule()
    def crash(self) -> None:
        """The process dies between transactions and starts again."""
        self.connection.close()
        self.connection, self.seen_ids = self._connect()
        for sink in SINKS:
            cursor = self._transact(partial(outbox.sink_cursor, name=sink, now=self.now))
            assert cursor.acked_seq == self.cursors[sink]

    @precondition(lambda self: bool(self.seen))
    @rule()
    def time_passes_beyond_the_window(self) -> None:
        """After the dedupe window every id may come again."""
        self.now += TTL + 1
        self.seen.clear()

    @invariant()
    def every_sink_sees_exactly_what_it_has_not_acknowledged(self) -> None:
        """From its cursor, each sink reads the committed records it has not acked, in order."""
        for cursor in self.cursors.values():
            rows = self._transact(partial(outbox.read_outbox, after=cursor, limit=10_000))
            expected = [(seq, rid) for seq, rid in self.committed if seq > cursor]
            assert [(row.seq, row.as_dict()["id"]) for row in rows] == expected

    def teardown(self) -> None:
        self.connection.close()
        self.directory.cleanup()


OutboxMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestOutboxModel = OutboxMachine.TestCase
