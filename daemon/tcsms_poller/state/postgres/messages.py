"""Tracked messages in PostgreSQL: the statements of ``state/messages.py`` in its dialect.

The rules are SQLite's (pending until a final receipt commits by any path, or given up as
missing; one ``message_numbers`` row per number with something pending, due at its messages'
nearest poll), and the pure parts of them (``final_receipts``, ``first_due``, ``next_due``,
``Schedule``) are shared. What differs is concurrency: SQLite has one writer, here the
listener, the workers, ``track`` and other daemons of a cluster write at once, so

- a number's row is locked (``FOR UPDATE``) before its pending messages are read to reschedule
  or drop it: a message tracked meanwhile either committed before the lock (the read, a
  statement of its own, sees it) or upserts the row after this commit (and recreates it);
- messages are locked in SerialNo order and numbers in (app, phone) order, messages first, so
  two writes resolving, giving up or tracking the same messages wait for each other instead of
  deadlocking. (Writes grouped in one transaction, ``group.py``, still add up their rows in
  arrival order; the deadlock that can make between two daemons fails one write, which
  ``store.py`` runs again.)

Every function runs inside the transaction its caller opened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from psycopg import AsyncConnection

from tcsms_poller.state.messages import (
    COLUMNS,
    FinalReceipt,
    MessageRacedError,
    NewMessage,
    Resolved,
    Schedule,
    TrackedMessage,
    first_due,
    next_due,
    numbers_of,
)

__all__ = [
    "PostgresMessages",
    "after_poll",
    "mark_missing",
    "purge_resolved",
    "resolve_messages",
]

T = TypeVar("T")
Connection = AsyncConnection[tuple[Any, ...]]


def _columns(items: Sequence[object], *names: str) -> list[list[Any]]:
    """The ``names`` attributes of ``items``, one list each: arrays to ``unnest``."""
    return [[getattr(item, name) for item in items] for name in names]


async def add_messages(
    connection: Connection, messages: Sequence[NewMessage], *, now: float, schedule: Schedule
) -> list[bool]:
    """Track ``messages``; for each, whether it is new (the same SerialNo twice is one message).

    A new message makes its number due at its first poll time unless it is due sooner.
    """
    first_of: dict[str, NewMessage] = {}
    for message in messages:  # the first of a batch is the one tracked, as with SQLite
        first_of.setdefault(message.serial_no, message)
    cursor = await connection.execute(
        "INSERT INTO messages (app_id, serial_no, phone, sent_at, state, tracked_at) "
        "SELECT app_id, serial_no, phone, sent_at, 'pending', %s "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS m (app_id, serial_no, phone, sent_at) ORDER BY serial_no "
        "ON CONFLICT (serial_no) DO NOTHING RETURNING serial_no",
        (now, *_columns(list(first_of.values()), "app_id", "serial_no", "phone", "sent_at")),
    )
    inserted = {row[0] for row in await cursor.fetchall()}
    created: list[bool] = []
    due: dict[tuple[str, str], float] = {}
    for message in messages:
        is_new = message.serial_no in inserted
        inserted.discard(message.serial_no)  # a second of the batch is the same message
        created.append(is_new)
        if is_new:
            key = (message.app_id, message.phone)
            first = first_due(message.sent_at, now=now, schedule=schedule)
            due[key] = min(due.get(key, first), first)
    if due:
        keys = sorted(due)
        await connection.execute(
            "INSERT INTO message_numbers (app_id, phone, next_due) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[]) "
            "ON CONFLICT (app_id, phone) DO UPDATE "
            "SET next_due = LEAST(message_numbers.next_due, excluded.next_due)",
            ([a for a, _ in keys], [p for _, p in keys], [due[k] for k in keys]),
        )
    return created


async def _lock_numbers(connection: Connection, numbers: Collection[tuple[str, str]]) -> None:
    """Lock the rows of ``numbers`` (those that exist) in (app, phone) order."""
    keys = sorted(numbers)
    await connection.execute(
        "SELECT 1 FROM message_numbers n "
        "JOIN unnest(%s::text[], %s::text[]) AS k (app_id, phone) USING (app_id, phone) "
        "ORDER BY n.app_id, n.phone FOR UPDATE OF n",
        ([a for a, _ in keys], [p for _, p in keys]),
    )


async def _lock_pending(connection: Connection, serial_nos: Sequence[str]) -> set[str]:
    """Lock the pending messages among ``serial_nos`` in SerialNo order; their SerialNos."""
    cursor = await connection.execute(
        "SELECT serial_no FROM messages WHERE serial_no = ANY(%s::text[]) AND state = 'pending' "
        "ORDER BY serial_no FOR UPDATE",
        (sorted(serial_nos),),
    )
    return {row[0] for row in await cursor.fetchall()}


async def resolve_messages(
    connection: Connection, receipts: Sequence[FinalReceipt], *, now: float
) -> list[Resolved]:
    """Resolve the pending messages of ``receipts`` (``final_receipts`` of a commit's records,
    new or repeats alike); drop the numbers left with nothing pending."""
    if not receipts or not await _lock_pending(connection, [r.serial_no for r in receipts]):
        return []
    cursor = await connection.execute(
        "UPDATE messages AS m SET state = r.state, resolved_at = %s, "
        "report_status = r.report_status, description = r.description, "
        "user_receive_time = r.user_receive_time "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS r (serial_no, state, report_status, description, user_receive_time) "
        "WHERE m.serial_no = r.serial_no AND m.state = 'pending' "
        "RETURNING m.state, m.sent_at, m.user_receive_time, m.app_id, m.phone",
        (
            now,
            *_columns(
                receipts, "serial_no", "state", "report_status", "description", "user_receive_time"
            ),
        ),
    )
    rows = await cursor.fetchall()
    idle = sorted({(row[3], row[4]) for row in rows})
    if idle:  # a number with nothing left pending costs nothing from now on
        await _lock_numbers(connection, idle)
        await connection.execute(
            "DELETE FROM message_numbers AS n USING unnest(%s::text[], %s::text[]) "
            "AS k (app_id, phone) WHERE n.app_id = k.app_id AND n.phone = k.phone "
            "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.app_id = n.app_id "
            "AND m.phone = n.phone AND m.state = 'pending')",
            ([a for a, _ in idle], [p for _, p in idle]),
        )
    return [Resolved(state, sent_at, received) for state, sent_at, received, _, _ in rows]


async def after_poll(
    connection: Connection, app_id: str, phone: str, *, now: float, schedule: Schedule
) -> None:
    """A poll of ``phone`` committed: due again at its pending messages' next poll, or dropped."""
    await _lock_numbers(connection, [(app_id, phone)])
    cursor = await connection.execute(
        "SELECT sent_at FROM messages WHERE app_id = %s AND phone = %s AND state = 'pending'",
        (app_id, phone),
    )
    rows = await cursor.fetchall()
    if not rows:
        await connection.execute(
            "DELETE FROM message_numbers WHERE app_id = %s AND phone = %s", (app_id, phone)
        )
        return
    await connection.execute(
        "UPDATE message_numbers SET next_due = %s WHERE app_id = %s AND phone = %s",
        (next_due((row[0] for row in rows), now=now, schedule=schedule), app_id, phone),
    )


async def due_message_numbers(
    connection: Connection, app_id: str, *, now: float, limit: int, skip: Collection[str]
) -> tuple[float | None, list[tuple[str, float, int]]]:
    """The app's earliest ``next_due`` (None: nothing pending) and up to ``limit`` due numbers
    not in ``skip``, most overdue first: ``(phone, next_due, oldest pending sent_at)``. A number
    another instance is polling (a live row in ``number_claims``) is not due: the worker claims a
    number before polling it (``cluster/claims.py``), whichever worker polls it.
    """
    cursor = await connection.execute(
        "SELECT min(next_due) FROM message_numbers WHERE app_id = %s", (app_id,)
    )
    row = await cursor.fetchone()
    first = None if row is None or row[0] is None else float(row[0])
    if first is None or first > now:
        return first, []
    cursor = await connection.execute(
        "SELECT n.phone, n.next_due, (SELECT min(m.sent_at) FROM messages m "
        "WHERE m.app_id = n.app_id AND m.phone = n.phone AND m.state = 'pending') "
        "FROM message_numbers n WHERE n.app_id = %s AND n.next_due <= %s "
        "AND NOT EXISTS (SELECT 1 FROM number_claims c WHERE c.app_id = n.app_id "
        "AND c.phone = n.phone AND c.expires_at > clock_timestamp()) "
        "ORDER BY n.next_due LIMIT %s",
        (app_id, now, limit + len(skip)),
    )
    picked = [
        (phone, float(due), int(oldest if oldest is not None else now))
        for phone, due, oldest in await cursor.fetchall()
        if phone not in skip
    ]
    return first, picked[:limit]


async def expired_messages(
    connection: Connection, app_id: str, *, sent_before: float, limit: int
) -> list[TrackedMessage]:
    """Up to ``limit`` pending messages of the app sent before ``sent_before``."""
    cursor = await connection.execute(
        f"SELECT {COLUMNS} FROM messages WHERE state = 'pending' AND sent_at < %s "  # noqa: S608
        "AND app_id = %s ORDER BY sent_at LIMIT %s",
        (sent_before, app_id, limit),
    )
    return [TrackedMessage(*row) for row in await cursor.fetchall()]


async def mark_missing(
    connection: Connection,
    messages: Sequence[TrackedMessage],
    *,
    now: float,
    schedule: Schedule,
) -> None:
    """As ``state.messages.mark_missing``, the messages locked first (in SerialNo order)."""
    serial_nos = [m.serial_no for m in messages]
    pending = await _lock_pending(connection, serial_nos)
    if raced := sorted(set(serial_nos) - pending):
        raise MessageRacedError(raced[0])
    await connection.execute(
        "UPDATE messages SET state = 'missing', resolved_at = %s "
        "WHERE serial_no = ANY(%s::text[]) AND state = 'pending'",
        (now, serial_nos),
    )
    for app_id, phone in numbers_of(messages):
        await after_poll(connection, app_id, phone, now=now, schedule=schedule)


async def purge_resolved(connection: Connection, *, before: float, limit: int) -> int:
    """Forget up to ``limit`` messages resolved before ``before``."""
    cursor = await connection.execute(
        "DELETE FROM messages WHERE serial_no IN (SELECT serial_no FROM messages "
        "WHERE state <> 'pending' AND resolved_at < %s LIMIT %s)",
        (before, limit),
    )
    return cursor.rowcount


class Writer(Protocol):
    """Runs work in a write transaction (``PostgresStore._write``)."""

    def __call__(self, work: Callable[[Connection], Awaitable[T]]) -> Awaitable[T]: ...


class PostgresMessages:
    """The message tables (``roles.MessageTables``) of a ``PostgresStore``: writes in its
    transactions, reads on its pool in autocommit."""

    def __init__(
        self, write: Writer, read: Callable[[], AbstractAsyncContextManager[Connection]]
    ) -> None:
        self._write = write
        self._read = read

    async def add_messages(
        self, messages: Sequence[NewMessage], *, now: float, schedule: Schedule
    ) -> list[bool]:
        """Track ``messages`` (idempotent); for each, whether it was new."""
        return await self._write(
            lambda connection: add_messages(connection, messages, now=now, schedule=schedule)
        )

    async def get_message(self, serial_no: str) -> TrackedMessage | None:
        """One tracked message, or None."""
        async with self._read() as connection:
            cursor = await connection.execute(
                f"SELECT {COLUMNS} FROM messages WHERE serial_no = %s",  # noqa: S608
                (serial_no,),
            )
            row = await cursor.fetchone()
        return None if row is None else TrackedMessage(*row)

    async def message_counts(self) -> dict[str, int]:
        """Pending messages per app."""
        async with self._read() as connection:
            cursor = await connection.execute(
                "SELECT app_id, COUNT(*) FROM messages WHERE state = 'pending' GROUP BY app_id"
            )
            return {str(app_id): int(count) for app_id, count in await cursor.fetchall()}

    async def due_message_numbers(
        self, app_id: str, *, now: float, limit: int, skip: frozenset[str]
    ) -> tuple[float | None, list[tuple[str, float, int]]]:
        """The app's earliest due time and its due numbers (``due_message_numbers``)."""
        async with self._read() as connection:
            return await due_message_numbers(connection, app_id, now=now, limit=limit, skip=skip)

    async def expired_messages(
        self, app_id: str, *, sent_before: float, limit: int
    ) -> list[TrackedMessage]:
        """Up to ``limit`` pending messages of the app sent before ``sent_before``."""
        async with self._read() as connection:
            return await expired_messages(connection, app_id, sent_before=sent_before, limit=limit)
