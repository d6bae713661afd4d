"""The state in PostgreSQL: a pool of connections, one short transaction per call.

Every write is committed with ``synchronous_commit = on`` before the call returns; writes that
wait for a running one share the next transaction, each in a savepoint (``group.py``: a failing
write fails alone).

Outbox order. Rows get their seq from an identity while their transaction runs, and become
visible when it commits; with several writers (several tasks here, several daemons in a
cluster) the two orders differ, and a drainer reading "the rows after my cursor" would step past
a row whose transaction committed after a higher-numbered one. So a commit takes its seqs last,
under a transaction-scoped advisory lock (``OUTBOX_LOCK``), right before COMMIT. PostgreSQL
releases that lock only after the commit is visible, so the next writer numbers its rows after
it: seq order is visibility order, and ``seq > cursor`` never skips a row. The lock covers only
the outbox insert and the COMMIT; deduplication, quarantine, the resolution of tracked messages
(``messages.py``) and the caller's ``Change`` run before it, concurrently. (The alternative,
reading only below ``pg_snapshot_xmin``, orders rows by transaction id instead, which would
need a (xid, seq) cursor in every sink.)

Deadlocks. Each write takes its rows in one order (``messages.py``), but writes that wait share
a transaction (``group.py``), whose rows add up in arrival order: two daemons whose groups take
two rows in opposite orders deadlock. PostgreSQL breaks the cycle by failing one statement,
which rolls back that write alone (its savepoint, or its transaction); it runs again, in a later
transaction, up to ``DEADLOCK_ATTEMPTS`` times in all. Every write is safe to run again: nothing
of a rolled-back one is left.

A database that goes away (a restart, a cut, a terminated backend) fails the calls in progress
with ``StateError``, as a full disk does with SQLite: the callers hold what they have and retry,
and the pool opens new connections once the server answers again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from itertools import count
from typing import Any, LiteralString, TypeVar

import anyio
import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tcsms_poller.records import OutboxRecord, Record
from tcsms_poller.state.head import CommitHead
from tcsms_poller.state.integrity import IntegrityError
from tcsms_poller.state.messages import Resolved, final_receipts
from tcsms_poller.state.postgres import cluster, conversions, leases, messages, numbers
from tcsms_poller.state.postgres.connect import CONNECT_TIMEOUT, connection_settings, describe
from tcsms_poller.state.postgres.deadletters import PostgresDeadLetters
from tcsms_poller.state.postgres.group import GroupWriter, Work
from tcsms_poller.state.postgres.integrity import vet
from tcsms_poller.state.postgres.messages import PostgresMessages
from tcsms_poller.state.postgres.outbox import append, append_unless_pending
from tcsms_poller.state.postgres.schema import migrate
from tcsms_poller.state.postgres.url import mask_url
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
    NumberOrigin,
    NumberPolled,
    PendingConversion,
    Rejected,
    SinkCursor,
    StateError,
    TrackedNumber,
)
from tcsms_poller.state.schema import SchemaError

__all__ = ["PURGE_BATCH", "PostgresStore"]

T = TypeVar("T")
Connection = AsyncConnection[tuple[Any, ...]]
PURGE_BATCH = 5_000
# How long a call waits for a connection of the pool. While the server is down the pool keeps
# reconnecting in the background, and a call fails after this, to be retried by its caller: a
# worker holding a page reports the failure and keeps holding it.
POOL_WAIT = 5.0
# A stopping instance's leases pass on this long after it left: a Tencent limit is "per
# second", and its last requests must leave that second before another instance sends.
HANDOVER = 1.1
DEADLOCK_ATTEMPTS = 5  # runs of a write that PostgreSQL keeps failing to break deadlocks
HEAD_POLL = 0.5  # seconds between reads of the outbox head while waiting for other daemons
# Once a page of receipts found a tracked message pending, pages resolve their receipts without
# asking again for this long: where messages are tracked, one is pending nearly all the time.
PENDING_RECHECK = 10.0
_HEAD = (
    "SELECT GREATEST((SELECT max(seq) FROM outbox), (SELECT max(acked_seq) FROM sink_cursors), 0)"
)


async def _apply_change(connection: Connection, change: Change) -> None:
    """Write the step a caller commits together with its records."""
    if isinstance(change, NumberPolled):
        await numbers.advance_number(connection, change)
    elif isinstance(change, ConversionReported):
        await connection.execute("DELETE FROM conversions WHERE id = %s", (change.conversion_id,))
    elif isinstance(change, MessagesPolled):
        await messages.after_poll(
            connection, change.app_id, change.phone, now=change.polled_at, schedule=change.schedule
        )
    elif isinstance(change, MessagesMissing):
        await messages.mark_missing(
            connection, change.messages, now=change.given_up_at, schedule=change.schedule
        )


def _claims_of(change: Change | None) -> tuple[NumberClaim, ...]:
    """The number claims that fence ``change`` (cluster mode; none with no claim)."""
    if isinstance(change, NumberPolled | MessagesPolled):
        return () if change.claim is None else (change.claim,)
    if isinstance(change, MessagesMissing):
        return change.claims
    return ()


class PostgresStore:
    """Durable state in a PostgreSQL database; see the module docstring."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        *,
        database: str,
        head: int,
        dedupe_ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self._pool = pool
        self._writer = GroupWriter(pool)
        self._database = database  # masked
        self._head = CommitHead(head)
        self._ttl = dedupe_ttl
        self._clock = clock
        self._writes: dict[int, float] = {}  # in progress: id -> monotonic start
        self._pending_until = 0.0  # monotonic; see PENDING_RECHECK
        self._ids = count()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        dedupe_ttl: float,
        pool_size: int = 10,
        statement_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> PostgresStore:
        """Connect, create or migrate the schema (once, under a lock), check the state
        (``integrity.py``), and open the pool."""
        database = mask_url(url)
        settings = connection_settings(statement_timeout)
        try:
            connection = await AsyncConnection.connect(url, **settings)
            try:
                await migrate(connection)
                await vet(connection, database=database)  # refuses a state not to be trusted
                cursor = await connection.execute(_HEAD)
                row = await cursor.fetchone()
                head = int(row[0]) if row else 0
            finally:
                await connection.close()
            pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs=settings,
                open=False,
                timeout=POOL_WAIT,
                reconnect_timeout=float("inf"),  # a database down for long is still worth waiting
                name="tcsms-poller-state",
            )
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except IntegrityError as error:
            raise StateError(str(error)) from None
        except (psycopg.Error, SchemaError) as error:
            message = describe(error, url)
            raise StateError(f"cannot open state database {database}: {message}") from None
        return cls(pool, database=database, head=head, dedupe_ttl=dedupe_ttl, clock=clock)

    async def aclose(self) -> None:
        """Close the pool (after the calls in progress)."""
        await self._pool.close()

    # -- transactions --------------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        """A connection for reads, in autocommit: each statement sees what was committed when
        it started (one round trip, where a transaction would take three)."""
        try:
            async with self._pool.connection() as connection:
                yield connection
        except psycopg.Error as error:
            message = describe(error, None)
            raise StateError(f"state database {self._database} read failed: {message}") from None

    async def _write(self, work: Work[T], *, one_statement: bool = False) -> T:
        """Run ``work`` in a write transaction, maybe grouped with others (``group.py``)."""
        write_id = next(self._ids)
        self._writes[write_id] = time.monotonic()
        attempts = 1
        try:
            while True:
                try:
                    return await self._writer.write(work, one_statement=one_statement)
                except psycopg.errors.DeadlockDetected:
                    if attempts == DEADLOCK_ATTEMPTS:
                        raise
                    attempts += 1  # rolled back alone: run it again (module docstring)
        except psycopg.Error as error:
            message = describe(error, None)
            raise StateError(f"state database {self._database} write failed: {message}") from None
        finally:
            del self._writes[write_id]

    def write_stalled_for(self) -> float:
        """Seconds the oldest write in progress has taken so far (0 when none is running)."""
        oldest = min(self._writes.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    # -- the pipeline --------------------------------------------------------------------------

    async def commit(
        self,
        records: Sequence[Record],
        *,
        rejected: Sequence[Rejected] = (),
        source: str = "",
        also: Change | None = None,
        fence: Fence | None = None,
    ) -> CommitResult:
        """Dedupe ``records`` into the outbox, quarantine ``rejected`` and apply ``also``, in
        one transaction; then wake the sink drainers. A ``fence`` (a lease) or the claim of
        ``also`` (a number) is checked first in the same transaction: ``LeaseLostError`` and
        nothing written once it passed to another instance."""
        now = self._clock()
        quarantined = [
            (now, source, item.reason, orjson.dumps(item.raw).decode()) for item in rejected
        ]
        expires_at = int(now + self._ttl)

        # Receipts resolve their tracked messages in this transaction, whatever brought them.
        receipts = final_receipts(records)

        async def work(
            connection: Connection,
        ) -> tuple[list[Record], int, list[Resolved]]:
            if quarantined:
                async with connection.cursor() as many:
                    await many.executemany(
                        "INSERT INTO rejected (at, source, reason, raw) VALUES (%s, %s, %s, %s)",
                        quarantined,
                    )
            await leases.check_fence(connection, fence)  # fencing: see Outbox.commit
            await cluster.check_claims(connection, _claims_of(also))  # fencing: NumberClaims
            resolved = await messages.resolve_messages(connection, receipts, now=now)
            if also is not None:
                await _apply_change(connection, also)
            if not records:
                return [], 0, resolved
            fresh, head = await append(connection, records, expires_at=expires_at, now=now)
            return fresh, head, resolved  # the append last: it holds the outbox lock to COMMIT

        # Records alone (no fence, no change beside them) can be committed in one statement.
        only_records = not quarantined and also is None and fence is None
        if only_records and receipts and time.monotonic() >= self._pending_until:
            appended = await self._write(  # still one, while no tracked message is pending
                lambda connection: append_unless_pending(
                    connection, records, expires_at=expires_at, now=now
                ),
                one_statement=True,
            )
            if appended is not None:
                fresh, head = appended
                self._head.advance(head)
                return CommitResult(tuple(fresh), len(records) - len(fresh), ())
            self._pending_until = time.monotonic() + PENDING_RECHECK
        one_statement = only_records and not receipts
        fresh, head, resolved = await self._write(work, one_statement=one_statement)
        self._head.advance(head)
        return CommitResult(tuple(fresh), len(records) - len(fresh), tuple(resolved))

    @property
    def head(self) -> int:
        """The seq of the newest record this process committed (or found at start)."""
        return self._head.seq

    async def wait_for_commit(self, after: int) -> None:
        """Return once a record newer than ``after`` is committed (at once if one is).

        Other daemons on the database commit too (cluster mode): without a commit of this
        process, the head is read again every ``HEAD_POLL`` seconds.
        """
        while self._head.seq <= after:
            with anyio.move_on_after(HEAD_POLL):
                await self._head.wait_past(after)
                continue
            await self._refresh_head()

    async def _refresh_head(self) -> None:
        try:
            async with self._read() as connection:
                cursor = await connection.execute("SELECT max(seq) FROM outbox")
                row = await cursor.fetchone()
        except StateError:
            return  # the drainer's next read reports it
        if row is not None and row[0] is not None and int(row[0]) > self._head.seq:
            self._head.seq = int(row[0])  # the loop of wait_for_commit looks at it

    # -- sink cursors --------------------------------------------------------------------------

    async def sink_cursor(self, name: str) -> SinkCursor:
        """The sink's cursor (created at the current head for a new sink)."""

        async def work(connection: Connection) -> tuple[tuple[Any, ...] | None, bool]:
            inserted = await connection.execute(
                "INSERT INTO sink_cursors (name, acked_seq, position, updated_at) "  # noqa: S608
                f"VALUES (%s, ({_HEAD}), NULL, %s) ON CONFLICT (name) DO NOTHING",
                (name, self._clock()),
            )
            cursor = await connection.execute(
                "SELECT acked_seq, position FROM sink_cursors WHERE name = %s", (name,)
            )
            return await cursor.fetchone(), inserted.rowcount == 1

        row, created = await self._write(work)
        assert row is not None
        position = orjson.loads(row[1]) if row[1] else None
        return SinkCursor(int(row[0]), position, created=created)

    async def read_outbox(self, *, after: int, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` records after ``after``, in seq order."""
        async with self._read() as connection:
            cursor = await connection.execute(
                "SELECT seq, data FROM outbox WHERE seq > %s ORDER BY seq LIMIT %s", (after, limit)
            )
            rows = await cursor.fetchall()
        return [OutboxRecord(seq, bytes(data)) for seq, data in rows]

    async def ack(
        self,
        name: str,
        *,
        seq: int,
        position: Mapping[str, Any] | None,
        fence: Fence | None = None,
    ) -> None:
        """Advance the sink's cursor to ``seq`` (never back); ``position`` None keeps the last.

        The same ``seq`` again only moves the position: a replayed dead letter is not in the
        outbox, but the file sink's offset after it must be kept. With ``fence``, the sink's
        lease is checked in the same transaction (``LeaseLostError``, nothing changed, if it moved).
        """
        encoded = orjson.dumps(position).decode() if position is not None else None
        params = (seq, encoded, self._clock(), name, seq)

        async def work(connection: Connection) -> None:
            await leases.check_fence(connection, fence)
            await connection.execute(
                "UPDATE sink_cursors SET acked_seq = %s, "
                "position = COALESCE(%s::text, position), updated_at = %s "
                "WHERE name = %s AND acked_seq <= %s",
                params,
            )

        await self._write(work)

    # -- cluster membership and leases (cluster/) ---------------------------------------------

    async def heartbeat(
        self, instance: str, *, version: str, healthy: bool, detail: str | None
    ) -> None:
        """Register this instance, or refresh its heartbeat."""
        await self._write(
            lambda connection: leases.heartbeat(
                connection, instance, version=version, healthy=healthy, detail=detail
            ),
            one_statement=True,
        )

    async def claim_leases(
        self, instance: str, names: Sequence[str], *, ttl: float
    ) -> dict[str, int]:
        """Renew or take the leases of ``names`` that are ours or free: name -> token."""
        rows = await self._write(
            lambda connection: leases.claim(connection, instance, names, ttl=ttl),
            one_statement=True,
        )
        return {row.name: row.token for row in rows}

    async def release_leases(self, instance: str, names: Sequence[str]) -> None:
        """Give up leases so another instance takes them at once."""
        await self._write(
            lambda connection: leases.release(connection, instance, names), one_statement=True
        )

    async def leave_cluster(self, instance: str) -> None:
        """Hand every lease of ``instance`` over (after one limit window), leave the registry."""
        await self._write(lambda connection: leases.leave(connection, instance, after=HANDOVER))

    async def cluster_snapshot(self) -> dict[str, Any]:
        """The instances, the leases, the rate shares and the number claims per instance, for
        ``status``."""
        async with self._read() as connection:
            return await leases.cluster_snapshot(connection)

    # -- the account's rates and the number claims, shared (cluster/) -------------------------

    async def share_rates(
        self,
        instance: str,
        wanted: Mapping[str, int],
        applied: Mapping[str, int],
        *,
        ttl: float,
        window: float,
    ) -> dict[str, int]:
        """This instance's shares of the actions' limits: action -> requests per window."""
        return await self._write(
            lambda connection: cluster.share_rates(
                connection, instance, wanted, applied, ttl=ttl, window=window
            )
        )

    async def pause_action(self, action: str, seconds: float) -> None:
        """Pause ``action`` on every instance for ``seconds`` (the database's clock)."""
        await self._write(
            lambda connection: cluster.pause_action(connection, action, seconds),
            one_statement=True,
        )

    async def paused_actions(self) -> dict[str, float]:
        """The actions paused now, with the seconds left."""
        async with self._read() as connection:
            return await cluster.paused_actions(connection)

    async def starved_actions(self, instance: str) -> set[str]:
        """The actions another instance waits for a share of."""
        async with self._read() as connection:
            return await cluster.starved_actions(connection, instance)

    async def claim_numbers(
        self, app_id: str, phones: Sequence[str], *, holder: str, ttl: float
    ) -> list[NumberClaim]:
        """Claim each free (or expired) number of ``phones`` for ``ttl`` seconds; those won."""
        return await self._write(
            lambda connection: cluster.claim_numbers(connection, holder, app_id, phones, ttl=ttl),
            one_statement=True,
        )

    async def renew_numbers(
        self, claims: Sequence[NumberClaim], *, ttl: float
    ) -> list[NumberClaim]:
        """Extend the claims still held as granted; those extended."""
        return await self._write(
            lambda connection: cluster.renew_numbers(connection, claims, ttl=ttl),
            one_statement=True,
        )

    async def release_numbers(self, claims: Sequence[NumberClaim]) -> None:
        """End claims whose polls are over."""
        await self._write(
            lambda connection: cluster.release_numbers(connection, claims), one_statement=True
        )

    async def forget_removed_sinks(self, sink_names: Sequence[str]) -> list[str]:
        """Drop the cursors of sinks not configured that have not acked for ``dedupe_ttl``."""

        async def work(connection: Connection) -> list[str]:
            cursor = await connection.execute(
                "DELETE FROM sink_cursors WHERE NOT (name = ANY(%s::text[])) AND updated_at < %s "
                "RETURNING name",
                (list(sink_names), self._clock() - self._ttl),
            )
            return sorted(row[0] for row in await cursor.fetchall())

        return await self._write(work)

    async def forget_sink(self, name: str, *, acked_seq: int) -> None:
        """Drop the sink's cursor at once if it is still at ``acked_seq``: one created for a sink
        a reload then did not add. Once an ack moved it (another instance of a cluster added the
        same sink and drains it already), it stays."""

        async def work(connection: Connection) -> None:
            await connection.execute(
                "DELETE FROM sink_cursors WHERE name = %s AND acked_seq = %s", (name, acked_seq)
            )

        await self._write(work, one_statement=True)

    async def purge(self, sink_names: Sequence[str]) -> tuple[int, int, int]:
        """Delete a batch of expired ids, fully acknowledged rows and expired numbers."""
        now = self._clock()

        async def work(connection: Connection) -> tuple[int, int, int]:
            cursor = await connection.execute("SELECT name, acked_seq FROM sink_cursors")
            cursors: dict[str, int] = dict(await cursor.fetchall())
            acked = 0
            if cursors and all(name in cursors for name in sink_names):
                cursor = await connection.execute(
                    "DELETE FROM outbox WHERE seq IN "
                    "(SELECT seq FROM outbox WHERE seq <= %s ORDER BY seq LIMIT %s)",
                    (min(cursors.values()), PURGE_BATCH),
                )
                acked = cursor.rowcount
            cursor = await connection.execute(
                "DELETE FROM seen WHERE id IN "
                "(SELECT id FROM seen WHERE expires_at <= %s LIMIT %s)",
                (now, PURGE_BATCH),
            )
            expired = cursor.rowcount
            # Resolved messages answer GET /v1/messages/<serial_no> as long as ids are remembered.
            await messages.purge_resolved(connection, before=now - self._ttl, limit=PURGE_BATCH)
            cursor = await connection.execute(
                "DELETE FROM numbers WHERE expires_at IS NOT NULL AND expires_at <= %s", (now,)
            )
            return expired, acked, cursor.rowcount

        return await self._write(work)

    async def _execute(self, query: LiteralString, params: Sequence[Any]) -> int:
        """One write statement in a transaction; the rows it changed."""

        async def work(connection: Connection) -> int:
            return (await connection.execute(query, params)).rowcount

        return await self._write(work)

    # -- tracked numbers and messages ----------------------------------------------------------

    def message_tables(self) -> MessageTables:
        """The tables of tracked messages, in this database (``messages.py``)."""
        return PostgresMessages(self._write, self._read)

    def dead_letters(self, sink: str) -> DeadLetters:
        """The dead letters of ``sink``, in this database, for every instance
        (``deadletters.py``)."""
        return PostgresDeadLetters(sink, self._write, self._read)

    async def dead_letter_sinks(self) -> set[str]:
        """The sinks with dead letters (or replays queued) in this database."""
        async with self._read() as connection:
            cursor = await connection.execute(
                "SELECT sink FROM dead_letters UNION SELECT sink FROM dead_letter_replays"
            )
            return {row[0] for row in await cursor.fetchall()}

    async def sync_numbers(
        self, app_id: str, origin: NumberOrigin, phones: Sequence[str]
    ) -> tuple[int, int]:
        """Make the numbers of ``origin`` (config or file) exactly ``phones``."""
        now = self._clock()
        return await self._write(
            lambda connection: numbers.sync_numbers(connection, app_id, origin, phones, now=now)
        )

    async def track_number(self, app_id: str, phone: str, *, track_for: float) -> bool:
        """Track ``phone`` for ``track_for`` seconds from now; True if newly tracked."""
        now = self._clock()
        return await self._write(
            lambda connection: numbers.add_number(
                connection, app_id, phone, expires_at=now + track_for, now=now
            )
        )

    async def untrack_number(self, app_id: str, phone: str) -> bool:
        """Stop tracking ``phone``; whether it was tracked."""
        query = "DELETE FROM numbers WHERE app_id = %s AND phone = %s"
        return await self._execute(query, (app_id, phone)) > 0

    async def due_numbers(
        self, app_id: str, *, limit: int, skip: frozenset[str] = frozenset()
    ) -> tuple[float | None, list[TrackedNumber]]:
        """The app's earliest due time and up to ``limit`` most overdue numbers not in ``skip``."""
        async with self._read() as connection:
            return await numbers.due_numbers(
                connection, app_id, now=self._clock(), limit=limit, skip=skip
            )

    async def reschedule_number(
        self, app_id: str, phone: str, *, delay: float, claim: NumberClaim | None = None
    ) -> None:
        """Make a number due again ``delay`` seconds from now, cursors unchanged; fenced by
        ``claim`` (``LeaseLostError``, nothing changed, once it passed to another instance)."""
        params = (self._clock() + delay, app_id, phone)

        async def work(connection: Connection) -> None:
            await cluster.check_claims(connection, () if claim is None else (claim,))
            await connection.execute(
                "UPDATE numbers SET next_due = %s WHERE app_id = %s AND phone = %s", params
            )

        await self._write(work, one_statement=claim is None)

    async def list_numbers(
        self, *, app_id: str | None = None, after: tuple[str, str] | None = None, limit: int = 100
    ) -> list[TrackedNumber]:
        """A page of tracked numbers in (app, phone) order."""
        async with self._read() as connection:
            return await numbers.list_numbers(connection, app_id=app_id, after=after, limit=limit)

    async def number_counts(self) -> dict[str, tuple[int, float]]:
        """Per app: how many numbers are tracked and the largest overdue time."""
        async with self._read() as connection:
            return await numbers.number_counts(connection, now=self._clock())

    # -- conversions ---------------------------------------------------------------------------

    async def enqueue_conversions(self, items: Sequence[tuple[str, str, int | None]]) -> None:
        """Queue ``(app_id, serial_no, conversion_time)`` items durably, due at once (the
        database's clock, as every time of the queue: ``conversions.py``)."""
        await self._write(lambda connection: conversions.enqueue_conversions(connection, items))

    async def lease_conversions(self, *, limit: int, lease: float) -> list[PendingConversion]:
        """Due conversions, leased for ``lease`` seconds."""
        return await self._write(
            lambda connection: conversions.lease_conversions(connection, limit=limit, lease=lease),
            one_statement=True,
        )

    async def defer_conversion(self, conversion_id: int, *, delay: float, error: str) -> None:
        """Retry a conversion after ``delay`` seconds."""
        await self._write(
            lambda connection: conversions.defer_conversion(
                connection, conversion_id, delay=delay, error=error
            ),
            one_statement=True,
        )

    async def pending_conversions(self) -> int:
        """How many conversions wait to be reported."""
        async with self._read() as connection:
            cursor = await connection.execute("SELECT COUNT(*) FROM conversions")
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # -- worker health and status --------------------------------------------------------------

    async def save_worker_state(
        self, name: str, *, healthy: bool, error: str | None, last_success_at: float | None
    ) -> None:
        """Persist a worker's health so ``status`` (another process) can show it."""
        await self._execute(
            "INSERT INTO workers (name, healthy, last_error, last_success_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE "
            "SET healthy = excluded.healthy, last_error = excluded.last_error, "
            "last_success_at = COALESCE(excluded.last_success_at, workers.last_success_at), "
            "updated_at = excluded.updated_at",
            (name, healthy, error, last_success_at, self._clock()),
        )

    async def snapshot(self) -> dict[str, Any]:
        """Everything ``status`` shows, read in one transaction."""
        async with self._read() as connection, connection.transaction():
            await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return await numbers.snapshot_of(connection, now=self._clock(), database=self._database)
