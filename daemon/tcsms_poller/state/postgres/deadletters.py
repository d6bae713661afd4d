"""The dead letters of a sink in PostgreSQL (``roles.DeadLetters``; migration 5 of ``schema.py``).

In a cluster the instance that dead-letters a batch may be gone by the time an operator looks
(a replica's disk goes with it), so the dead letters, the replay queue and the ids of
acknowledged replays are rows of the shared database: ``dead-letter list|replay`` on any
instance sees them, and the instance holding the sink's lease delivers what is queued. That
holder notices a replay queued elsewhere by looking at the queue every ``REPLAY_POLL`` seconds
(``wait_for_replay``); SIGHUP still makes it look at once.

- ``write`` commits before the drainer moves the cursor past the batch, fenced by the sink's
  lease: an instance whose lease passed on writes nothing, and the new holder, starting from
  the cursor, meets the batch itself.
- ``enqueue`` and ``finish`` take ``REPLAY_LOCK`` for their transaction, so a record cannot be
  queued again between a delivery's ``finish`` reading and taking it out, nor once a purge
  took its dead letters (and forgot it was delivered); the queue is unique
  per (sink, record id), and ``finish`` takes records out by id, so a batch finished twice
  (a holder that lost its lease meanwhile) takes out nothing else.
- ``purge`` deletes in one transaction under ``REPLAY_LOCK`` too, so a record queued for replay
  keeps its dead letters until ``finish``; it needs no lease, the drainer's fenced inserts are
  new rows it does not select. For a sink no longer configured it deletes the sink's replay
  queue too (no drainer would deliver it), which then holds nothing back.
- ``enqueue``, ``purge`` and the forgetting of delivered ids look dead letters up by (sink,
  record id): ``dead_letters_by_record``, migration 6.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import anyio

from tcsms_poller.records import OutboxRecord, format_received_at, record_ids
from tcsms_poller.state.postgres import leases
from tcsms_poller.state.postgres.messages import Connection, Writer
from tcsms_poller.state.postgres.schema import REPLAY_LOCK
from tcsms_poller.state.roles import DeadLetter, Fence, Purged, StateError

__all__ = ["REPLAY_POLL", "PostgresDeadLetters"]

REPLAY_POLL = 2.0  # seconds between looks at the replay queue, by the sink's lease holder

# One statement, one snapshot: the counts are of the rows as they were before the DELETE.
_PURGE = """
WITH selected AS (
    SELECT d.id, %(delivered)s AND EXISTS (
        SELECT 1 FROM dead_letter_replays AS q
        WHERE q.sink = d.sink AND q.record_id = d.record_id
    ) AS queued
    FROM dead_letters AS d
    WHERE d.sink = %(sink)s AND d.dead_lettered_at < %(before)s AND (NOT %(replayed)s OR EXISTS (
        SELECT 1 FROM dead_letters_replayed AS r
        WHERE r.sink = d.sink AND r.record_id = d.record_id
    ))
), doomed AS (
    DELETE FROM dead_letters
    WHERE NOT %(dry_run)s AND id IN (SELECT id FROM selected WHERE NOT queued)
    RETURNING 1
)
SELECT count(*) FILTER (WHERE NOT queued), count(*) FILTER (WHERE queued),
    (SELECT count(*) FROM dead_letters WHERE sink = %(sink)s),
    (SELECT count(*) FROM doomed)
FROM selected
"""
_FORGET_REPLAYED = (
    "DELETE FROM dead_letters_replayed AS r WHERE r.sink = %s AND NOT EXISTS "
    "(SELECT 1 FROM dead_letters AS d WHERE d.sink = r.sink AND d.record_id = r.record_id)"
)


def _moment(seconds: float) -> datetime:
    """The time as a dead-letter file holds it: UTC, to the millisecond."""
    return datetime.fromisoformat(format_received_at(seconds))


class PostgresDeadLetters:
    """The dead letters of ``sink`` in a ``PostgresStore``'s database: writes in its
    transactions, reads on its pool in autocommit."""

    def __init__(
        self,
        sink: str,
        write: Writer,
        read: Callable[[], AbstractAsyncContextManager[Connection]],
        *,
        poll: float = REPLAY_POLL,
    ) -> None:
        self.sink = sink
        self._write = write
        self._read = read
        self._poll = poll

    @property
    def log_fields(self) -> Mapping[str, str]:
        """The table, for log events."""
        return {"table": "dead_letters"}

    async def write(
        self,
        batch: Sequence[OutboxRecord],
        *,
        reason: str,
        now: float,
        fence: Fence | None = None,
    ) -> None:
        """Insert every record of ``batch`` with ``reason``, committed when this returns."""
        params = (self.sink, now, reason, record_ids(batch), [record.data for record in batch])

        async def work(connection: Connection) -> None:
            await leases.check_fence(connection, fence)
            await connection.execute(
                "INSERT INTO dead_letters (sink, dead_lettered_at, reason, record_id, data) "
                "SELECT %s, %s, %s, r.id, r.data "
                "FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS r (id, data, n) "
                "ORDER BY r.n",
                params,
            )

        await self._write(work)

    async def letters(self, *, since: datetime | None = None) -> list[DeadLetter]:
        """The dead letters of the sink, oldest first; with ``since``, those since then."""
        # A millisecond of margin: the times compared are the ones shown, to the millisecond.
        after = float("-inf") if since is None else since.timestamp() - 0.001
        async with self._read() as connection:
            cursor = await connection.execute(
                "SELECT dead_lettered_at, reason, record_id, data FROM dead_letters "
                "WHERE sink = %s AND dead_lettered_at >= %s ORDER BY id",
                (self.sink, after),
            )
            rows = await cursor.fetchall()
        letters = [
            DeadLetter(_moment(at), reason, record_id, bytes(data))
            for at, reason, record_id, data in rows
        ]
        return [one for one in letters if since is None or one.dead_lettered_at >= since]

    async def replayed_ids(self) -> set[str]:
        """Ids of replayed records the sink acknowledged."""
        async with self._read() as connection:
            cursor = await connection.execute(
                "SELECT record_id FROM dead_letters_replayed WHERE sink = %s", (self.sink,)
            )
            return {row[0] for row in await cursor.fetchall()}

    async def queued(self, *, limit: int | None = None) -> list[OutboxRecord]:
        """The records queued for replay, in order."""
        async with self._read() as connection:
            cursor = await connection.execute(
                "SELECT data FROM dead_letter_replays WHERE sink = %s ORDER BY id LIMIT %s",
                (self.sink, limit),
            )
            return [OutboxRecord(0, bytes(row[0])) for row in await cursor.fetchall()]

    async def enqueue(self, letters: Sequence[DeadLetter]) -> tuple[int, int]:
        """Queue the records of ``letters`` still dead-lettered (a purge since they were read
        may have deleted them: those are skipped), not acknowledged and not queued already
        (the first of an id listed twice), all checked in the transaction, so a purge
        meanwhile cannot make a delivered record queued again; (queued, skipped)."""
        ids = [letter.record_id for letter in letters]
        params = (self.sink, ids, [letter.data for letter in letters], self.sink, self.sink)

        async def work(connection: Connection) -> int:
            await connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", REPLAY_LOCK)
            cursor = await connection.execute(
                "INSERT INTO dead_letter_replays (sink, record_id, data) "
                "SELECT %s, r.id, r.data "
                "FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS r (id, data, n) "
                "WHERE NOT EXISTS (SELECT 1 FROM dead_letters_replayed AS d "
                "WHERE d.sink = %s AND d.record_id = r.id) "
                "AND EXISTS (SELECT 1 FROM dead_letters AS d "
                "WHERE d.sink = %s AND d.record_id = r.id) "
                "ORDER BY r.n ON CONFLICT (sink, record_id) DO NOTHING",
                params,
            )
            return cursor.rowcount

        queued = await self._write(work) if letters else 0
        return queued, len(letters) - queued

    async def finish(
        self, batch: Sequence[OutboxRecord], *, acknowledged: bool, fence: Fence | None = None
    ) -> None:
        """Take ``batch`` out of the queue, by id; remember the ids if ``acknowledged``."""
        ids = record_ids(batch)

        async def work(connection: Connection) -> None:
            await leases.check_fence(connection, fence)
            await connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", REPLAY_LOCK)
            if acknowledged:
                await connection.execute(
                    "INSERT INTO dead_letters_replayed (sink, record_id) "
                    "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (self.sink, ids),
                )
            await connection.execute(
                "DELETE FROM dead_letter_replays WHERE sink = %s AND record_id = ANY(%s::text[])",
                (self.sink, ids),
            )

        await self._write(work)

    async def purge(
        self,
        *,
        before: datetime | None = None,
        replayed: bool = False,
        dry_run: bool = False,
        delivered: bool = True,
    ) -> Purged:
        """Delete the selected dead letters but those queued for replay, and the acknowledged
        ids no dead letter has any more, in one transaction (``DeadLetters.purge``); without
        ``delivered``, the sink's replay queue first."""
        params = {
            "sink": self.sink,
            "before": float("inf") if before is None else before.timestamp(),
            "replayed": replayed,
            "dry_run": dry_run,
            "delivered": delivered,
        }

        async def work(connection: Connection) -> Purged:
            await connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", REPLAY_LOCK)
            if not (delivered or dry_run):
                await connection.execute(
                    "DELETE FROM dead_letter_replays WHERE sink = %s", (self.sink,)
                )
            cursor = await connection.execute(_PURGE, params)
            row: Any = await cursor.fetchone()
            removed, held, total, deleted = (int(count) for count in row)
            if deleted:
                await connection.execute(_FORGET_REPLAYED, (self.sink,))
            return Purged(removed=removed, kept=total - removed, held=held)

        return await self._write(work)

    async def wait_for_replay(self) -> None:
        """Return once records are queued, looking every ``REPLAY_POLL`` seconds (a database
        that fails is looked at again then: the drainer's own reads report it)."""
        while True:
            await anyio.sleep(self._poll)
            try:
                async with self._read() as connection:
                    cursor = await connection.execute(
                        "SELECT EXISTS (SELECT 1 FROM dead_letter_replays WHERE sink = %s)",
                        (self.sink,),
                    )
                    row: Any = await cursor.fetchone()
            except StateError:
                continue
            if row is not None and row[0]:
                return
