"""The SQLite state (the embedded default): one writer, one reader, commit notifications.

SQLite calls are blocking, so they run in worker threads: all writes through one connection, one
transaction at a time (a single writer is what SQLite wants), and reads through a second
connection, which in WAL mode sees committed data without blocking the writer. Writes that wait
for the writer share its next transaction (``writer.py``: group commit), each in its own
savepoint; a failure rolls a write back whole and surfaces as ``StateError``, so callers either
committed everything or nothing (a queue page is never half-kept).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from tcsms_poller.records import OutboxRecord, Record
from tcsms_poller.sinks.deadletter import DeadLetterFile, dead_letter_path
from tcsms_poller.state import conversions, integrity, messages, numbers, outbox
from tcsms_poller.state.head import CommitHead
from tcsms_poller.state.message_store import SqliteMessages
from tcsms_poller.state.roles import (
    Change,
    CommitResult,
    ConversionReported,
    DeadLetters,
    Fence,
    MessagesMissing,
    MessagesPolled,
    MessageTables,
    NumberClaim,
    NumberPolled,
    PendingConversion,
    Rejected,
    SinkCursor,
    StateError,
    TrackedNumber,
)
from tcsms_poller.state.schema import SchemaError, migrate
from tcsms_poller.state.seen import SeenIds
from tcsms_poller.state.status import snapshot_of
from tcsms_poller.state.tail import OutboxTail
from tcsms_poller.state.writer import GroupWriter, Transaction

__all__ = ["PURGE_BATCH", "SqliteStore", "apply_change"]

T = TypeVar("T")
PURGE_BATCH = 5_000
# How long a write waits for a lock held by another connection (an operator's sqlite3 shell; a
# second daemon is kept off by ``state/lock.py``) before it fails and is retried. Kept below the
# watchdog timeout, so that only a write stuck in the disk itself stops the pings
# (``write_stalled_for``).
LOCK_WAIT = 10.0

# The sqlite3 module binds int, float, str and bytearray directly, but looks up an adapter for
# bytes through two failing attribute lookups, each raising and formatting an AttributeError;
# finding one is cheaper (figures: docs/benchmarks.md). (Process-wide, and the identity for
# bytes, so no other user of sqlite3 sees a change.)
sqlite3.register_adapter(bytes, bytes)


def apply_change(connection: sqlite3.Connection, change: Change) -> None:
    """Write the step a caller commits together with its records."""
    if isinstance(change, NumberPolled):
        numbers.advance_number(
            connection,
            change.app_id,
            change.phone,
            next_due=change.next_due,
            polled_at=change.polled_at,
            status_cursor=change.status_cursor,
            reply_cursor=change.reply_cursor,
        )
    elif isinstance(change, ConversionReported):
        conversions.finish_conversion(connection, change.conversion_id)
    elif isinstance(change, MessagesPolled):
        messages.after_poll(
            connection, change.app_id, change.phone, now=change.polled_at, schedule=change.schedule
        )
    elif isinstance(change, MessagesMissing):
        messages.mark_missing(
            connection, change.messages, now=change.given_up_at, schedule=change.schedule
        )


def _connect(path: Path, *, read_only: bool, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("PRAGMA cache_size = -8192")  # 8 MiB: RAM stays bounded whatever the size
    if read_only:
        connection.execute("PRAGMA query_only = ON")
    return connection


class SqliteStore:
    """Durable state of one daemon in one SQLite file; see the module docstring for the threading
    model. ``write`` and ``read`` run raw transactions, for the benchmarks of this backend."""

    def __init__(
        self,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        *,
        seen: SeenIds,
        dedupe_ttl: float,
        clock: Callable[[], float],
        database: str = "",
    ) -> None:
        self._database = database
        self._tail = OutboxTail()
        self._writer = GroupWriter(writer, [seen, self._tail])
        self._reader = reader
        self._seen = seen
        self._ttl = dedupe_ttl
        self._clock = clock
        self._read_lock = anyio.CapacityLimiter(1)
        self._head = CommitHead(outbox.outbox_head(writer))

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        dedupe_ttl: float,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> SqliteStore:
        """Open (creating and migrating as needed) the database at ``path``."""

        def connect() -> tuple[sqlite3.Connection, sqlite3.Connection, SeenIds]:
            try:
                integrity.vet(path)  # creates it whole, or refuses a damaged one
            except integrity.IntegrityError as error:
                raise StateError(str(error)) from None
            writer = _connect(path, read_only=False, synchronous=synchronous)
            try:
                migrate(writer)
                seen = SeenIds.open(writer)
                return writer, _connect(path, read_only=True, synchronous=synchronous), seen
            except BaseException:
                writer.close()
                raise

        try:
            writer, reader, seen = await anyio.to_thread.run_sync(connect)
        except (sqlite3.Error, OSError, SchemaError) as error:
            raise StateError(f"cannot open state database {path}: {error}") from None
        return cls(
            writer, reader, seen=seen, dedupe_ttl=dedupe_ttl, clock=clock, database=str(path)
        )

    async def aclose(self) -> None:
        """Close both connections (after the last write)."""
        await self._writer.aclose()
        async with self._read_lock:
            self._reader.close()

    # -- transactions ----------------------------------------------------------------------

    @property
    def transactions(self) -> int:
        """Write transactions run so far (fewer than writes when they were grouped)."""
        return self._writer.transactions

    def write_stalled_for(self) -> float:
        """Seconds the write in progress has taken so far (0 when none is running).

        The watchdog stops pinging systemd when this passes the watchdog timeout: a process
        whose disk hangs cannot commit, so a restart is the better bet. A lock held elsewhere
        fails the write after ``LOCK_WAIT`` instead, and the retry starts the count afresh.
        """
        return self._writer.running_for()

    async def write(self, work: Transaction[T]) -> T:
        """Run ``work`` in a write transaction on the writer thread, alone or grouped."""
        try:
            return await self._writer.write(work)
        except sqlite3.Error as error:
            raise StateError(f"state database write failed: {error}") from None

    def _read(self, work: Transaction[T]) -> T:
        self._reader.execute("BEGIN")
        try:
            return work(self._reader)
        finally:
            self._reader.rollback()  # a read changes nothing: ending it is all there is

    async def read(self, work: Transaction[T]) -> T:
        """Run ``work`` in one consistent read transaction on the reader thread."""
        try:
            return await anyio.to_thread.run_sync(self._read, work, limiter=self._read_lock)
        except sqlite3.Error as error:
            raise StateError(f"state database read failed: {error}") from None

    # -- the pipeline ----------------------------------------------------------------------

    async def commit(
        self,
        records: Sequence[Record],
        *,
        rejected: Sequence[Rejected] = (),
        source: str = "",
        also: Change | None = None,
        fence: Fence | None = None,
    ) -> CommitResult:
        """Dedupe ``records`` into the outbox, quarantine ``rejected`` items and apply ``also``,
        all in one transaction; then wake the sink drainers.

        ``fence`` is never set here: one daemon per SQLite file, no leases."""
        del fence
        now = self._clock()

        def work(
            connection: sqlite3.Connection,
        ) -> tuple[list[Record], list[messages.Resolved], int]:
            fresh = outbox.commit_records(
                connection, records, seen=self._seen, now=now, ttl=self._ttl, tail=self._tail
            )
            if rejected:
                outbox.quarantine(connection, rejected, source=source, now=now)
            resolved = messages.resolve_messages(connection, records, now=now)  # by any path
            if also is not None:
                apply_change(connection, also)
            return fresh, resolved, outbox.outbox_head(connection)

        fresh, resolved, head = await self.write(work)
        self._head.advance(head)
        return CommitResult(tuple(fresh), len(records) - len(fresh), tuple(resolved))

    @property
    def head(self) -> int:
        """The seq of the newest committed record."""
        return self._head.seq

    async def wait_for_commit(self, after: int) -> None:
        """Return once a record newer than ``after`` is committed (at once if one is)."""
        await self._head.wait_past(after)

    async def sink_cursor(self, name: str) -> SinkCursor:
        """The sink's cursor (created at the current head for a new sink)."""
        return await self.write(partial(outbox.sink_cursor, name=name, now=self._clock()))

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` records after ``after``, oldest first: from RAM when they are among
        the newest (``tail.py``), else from the database."""
        newest = self._tail.read(after=after, limit=limit)
        if newest is not None:
            await anyio.lowlevel.checkpoint()  # as the database read would, let others run
            return newest
        return await self.read(partial(outbox.read_outbox, after=after, limit=limit))

    async def ack(
        self,
        name: str,
        *,
        seq: int,
        position: Mapping[str, Any] | None,
        fence: Fence | None = None,
    ) -> None:
        """Commit the sink's cursor (and its position) after the sink acknowledged.

        ``fence`` is never set here: one daemon per SQLite file, no leases."""
        del fence
        await self.write(
            partial(outbox.ack_sink, name=name, seq=seq, position=position, now=self._clock())
        )

    async def purge(self, sink_names: Sequence[str]) -> tuple[int, int, int]:
        """Delete a batch of expired ids, fully acknowledged rows and expired numbers."""
        now = self._clock()

        def work(connection: sqlite3.Connection) -> tuple[int, int, int]:
            purged = outbox.purge_acknowledged(connection, sink_names, limit=PURGE_BATCH)
            if purged:
                self._tail.forget_before(outbox.oldest_seq(connection))
            # Resolved messages answer GET /v1/messages/<serial_no> as long as ids are remembered.
            messages.purge_resolved(connection, before=now - self._ttl, limit=PURGE_BATCH)
            return (
                outbox.purge_expired_ids(connection, now=now, limit=PURGE_BATCH),
                purged,
                numbers.purge_expired_numbers(connection, now=now),
            )

        return await self.write(work)

    async def forget_removed_sinks(self, sink_names: Sequence[str]) -> list[str]:
        """Drop the cursors of sinks removed from the configuration over ``dedupe_ttl`` ago."""
        return await self.write(
            partial(
                outbox.forget_removed_sinks,
                sink_names=sink_names,
                idle_since=self._clock() - self._ttl,
            )
        )

    async def forget_sink(self, name: str, *, acked_seq: int) -> None:
        """Drop the sink's cursor at once if it is still at ``acked_seq``: one created for a sink
        a reload then did not add. Once an ack moved it (another instance of a cluster added the
        same sink and drains it already), it stays."""
        await self.write(partial(outbox.forget_sink, name=name, acked_seq=acked_seq))

    # -- tracked numbers and messages --------------------------------------------------------

    def message_tables(self) -> MessageTables:
        """The tables of tracked messages, in this database."""
        return SqliteMessages(self.write, self.read)

    def dead_letters(self, sink: str) -> DeadLetters:
        """The dead-letter files of ``sink``, beside this database (one daemon's)."""
        return DeadLetterFile(dead_letter_path(Path(self._database).parent, sink))

    async def sync_numbers(
        self, app_id: str, origin: str, phones: Sequence[str]
    ) -> tuple[int, int]:
        """Make the numbers of ``origin`` (config or file) exactly ``phones``."""
        return await self.write(
            partial(
                numbers.sync_numbers,
                app_id=app_id,
                origin=origin,
                numbers=phones,
                now=self._clock(),
            )
        )

    async def track_number(self, app_id: str, phone: str, *, track_for: float) -> bool:
        """Track ``phone`` for ``track_for`` seconds from now; True if newly tracked."""
        now = self._clock()
        return await self.write(
            partial(
                numbers.add_number, app_id=app_id, phone=phone, expires_at=now + track_for, now=now
            )
        )

    async def untrack_number(self, app_id: str, phone: str) -> bool:
        """Stop tracking ``phone``; whether it was tracked."""
        return await self.write(partial(numbers.remove_number, app_id=app_id, phone=phone))

    async def due_numbers(
        self, app_id: str, *, limit: int, skip: frozenset[str] = frozenset()
    ) -> tuple[float | None, list[TrackedNumber]]:
        """The app's earliest due time and up to ``limit`` most overdue numbers not in ``skip``.

        A read, run on the writer's connection all the same: its page cache survives the
        commits, while the reader's is dropped at each one, and this runs every round.
        """
        return await self.write(
            partial(numbers.due_numbers, app_id=app_id, now=self._clock(), limit=limit, skip=skip)
        )

    async def reschedule_number(
        self, app_id: str, phone: str, *, delay: float, claim: NumberClaim | None = None
    ) -> None:
        """Make a number due again ``delay`` seconds from now, cursors unchanged.

        ``claim`` is never set here: one daemon per SQLite file, no claims."""
        del claim
        await self.write(
            partial(
                numbers.reschedule_number,
                app_id=app_id,
                phone=phone,
                next_due=self._clock() + delay,
            )
        )

    async def list_numbers(
        self, *, app_id: str | None = None, after: tuple[str, str] | None = None, limit: int = 100
    ) -> list[TrackedNumber]:
        """A page of tracked numbers in (app, phone) order."""
        return await self.read(
            partial(numbers.list_numbers, app_id=app_id, after=after, limit=limit)
        )

    async def number_counts(self) -> dict[str, tuple[int, float]]:
        """Per app: how many numbers are tracked and the largest overdue time."""
        return await self.read(partial(numbers.number_counts, now=self._clock()))

    # -- conversions -----------------------------------------------------------------------

    async def enqueue_conversions(self, items: Sequence[tuple[str, str, int | None]]) -> None:
        """Queue ``(app_id, serial_no, conversion_time)`` items durably."""
        await self.write(partial(conversions.enqueue_conversions, items=items, now=self._clock()))

    async def lease_conversions(self, *, limit: int, lease: float) -> list[PendingConversion]:
        """Due conversions, leased for ``lease`` seconds."""
        return await self.write(
            partial(conversions.lease_conversions, now=self._clock(), limit=limit, lease=lease)
        )

    async def pending_conversions(self) -> int:
        """How many conversions wait to be reported."""
        return await self.read(conversions.pending_conversions)

    async def defer_conversion(self, conversion_id: int, *, delay: float, error: str) -> None:
        """Retry a conversion after ``delay`` seconds."""
        await self.write(
            partial(
                conversions.defer_conversion,
                conversion_id=conversion_id,
                retry_at=self._clock() + delay,
                error=error,
            )
        )

    # -- worker health and status -----------------------------------------------------------

    async def save_worker_state(
        self, name: str, *, healthy: bool, error: str | None, last_success_at: float | None
    ) -> None:
        """Persist a worker's health so ``status`` (another process) can show it."""
        now = self._clock()

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO workers (name, healthy, last_error, last_success_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET healthy = excluded.healthy, "
                "last_error = excluded.last_error, "
                "last_success_at = COALESCE(excluded.last_success_at, last_success_at), "
                "updated_at = excluded.updated_at",
                (name, int(healthy), error, last_success_at, now),
            )

        await self.write(work)

    async def snapshot(self) -> dict[str, Any]:
        """Everything ``status`` shows, read in one transaction."""
        return await self.read(partial(snapshot_of, now=self._clock(), database=self._database))
