"""Tracked numbers, worker health and the status snapshot, in PostgreSQL.

The same statements as the SQLite helpers (``state/numbers.py``), in PostgreSQL's dialect:
``GREATEST`` ignores NULLs where SQLite's ``MAX`` returns one, which is exactly the "a cursor
never moves back, NULL until a record was seen" rule. Every function runs inside the transaction
its caller opened.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from psycopg import AsyncConnection

from tcsms_poller.state.numbers import CURSOR_RANGES, ranges_from_rows
from tcsms_poller.state.roles import NumberOrigin, NumberPolled, TrackedNumber
from tcsms_poller.state.status import PENDING_MESSAGES, SINKS, WORKERS, assemble_snapshot

__all__ = [
    "add_number",
    "advance_number",
    "due_numbers",
    "list_numbers",
    "number_counts",
    "snapshot_of",
    "sync_numbers",
]

Connection = AsyncConnection[tuple[Any, ...]]
_COLUMNS = (
    "app_id, phone, origin, expires_at, status_cursor, reply_cursor, next_due, last_polled_at"
)


async def sync_numbers(
    connection: Connection,
    app_id: str,
    origin: NumberOrigin,
    numbers: Sequence[str],
    *,
    now: float,
) -> tuple[int, int]:
    """Make the numbers of ``origin`` exactly ``numbers``; return (added, removed)."""
    cursor = await connection.execute(
        "SELECT phone FROM numbers WHERE app_id = %s AND origin = %s", (app_id, origin)
    )
    existing = {row[0] for row in await cursor.fetchall()}
    wanted = set(numbers)
    stale = sorted(existing - wanted)
    if stale:
        await connection.execute(
            "DELETE FROM numbers WHERE app_id = %s AND phone = ANY(%s::text[])", (app_id, stale)
        )
    cursor = await connection.execute(
        "INSERT INTO numbers (app_id, phone, origin, expires_at, next_due, added_at) "
        "SELECT %s, phone, %s, NULL, %s, %s FROM unnest(%s::text[]) AS phone ORDER BY phone "
        "ON CONFLICT (app_id, phone) DO UPDATE SET origin = excluded.origin, expires_at = NULL "
        "WHERE numbers.origin = 'api'",
        (app_id, origin, now, now, sorted(wanted - existing)),
    )
    return max(0, cursor.rowcount), len(stale)


async def add_number(
    connection: Connection, app_id: str, phone: str, *, expires_at: float, now: float
) -> bool:
    """Track ``phone`` until ``expires_at`` (extending an API expiry, never shortening it)."""
    cursor = await connection.execute(
        "SELECT 1 FROM numbers WHERE app_id = %s AND phone = %s", (app_id, phone)
    )
    created = await cursor.fetchone() is None
    await connection.execute(
        "INSERT INTO numbers (app_id, phone, origin, expires_at, next_due, added_at) "
        "VALUES (%s, %s, 'api', %s, %s, %s) "
        "ON CONFLICT (app_id, phone) DO UPDATE "
        "SET expires_at = GREATEST(numbers.expires_at, excluded.expires_at) "
        "WHERE numbers.origin = 'api'",
        (app_id, phone, expires_at, now, now),
    )
    return created


async def due_numbers(
    connection: Connection, app_id: str, *, now: float, limit: int, skip: Collection[str]
) -> tuple[float | None, list[TrackedNumber]]:
    """The app's earliest ``next_due`` and its most overdue live numbers not in ``skip``."""
    cursor = await connection.execute(
        "SELECT next_due FROM numbers WHERE app_id = %s ORDER BY next_due LIMIT 1", (app_id,)
    )
    row = await cursor.fetchone()
    oldest = float(row[0]) if row else None
    if oldest is None or oldest > now:
        return oldest, []
    # A number claimed by a poller (this instance's or another's: state/postgres/cluster.py) is
    # being polled: not due for anyone else.
    cursor = await connection.execute(
        f"SELECT {_COLUMNS} FROM numbers WHERE app_id = %s AND next_due <= %s "  # noqa: S608
        "AND (expires_at IS NULL OR expires_at > %s) AND NOT EXISTS (SELECT 1 FROM number_claims "
        "AS c WHERE c.app_id = numbers.app_id AND c.phone = numbers.phone "
        "AND c.expires_at > clock_timestamp()) ORDER BY next_due LIMIT %s",
        (app_id, now, now, limit + len(skip)),
    )
    picked = [TrackedNumber(*row) for row in await cursor.fetchall() if row[1] not in skip]
    return oldest, picked[:limit]


async def advance_number(connection: Connection, change: NumberPolled) -> None:
    """Record a polled page: new cursors (never moving back) and the next due time."""
    await connection.execute(
        "UPDATE numbers SET next_due = %s, last_polled_at = %s, "
        "status_cursor = GREATEST(status_cursor, %s::bigint), "
        "reply_cursor = GREATEST(reply_cursor, %s::bigint) "
        "WHERE app_id = %s AND phone = %s",
        (
            change.next_due,
            change.polled_at,
            change.status_cursor,
            change.reply_cursor,
            change.app_id,
            change.phone,
        ),
    )


async def list_numbers(
    connection: Connection, *, app_id: str | None, after: tuple[str, str] | None, limit: int
) -> list[TrackedNumber]:
    """A page of tracked numbers ordered by (app, phone), starting after ``after``."""
    start_app, start_phone = after or ("", "")
    cursor = await connection.execute(
        f"SELECT {_COLUMNS} FROM numbers WHERE (app_id, phone) > (%s, %s) "  # noqa: S608
        "AND (%s::text IS NULL OR app_id = %s) ORDER BY app_id, phone LIMIT %s",
        (start_app, start_phone, app_id, app_id, limit),
    )
    return [TrackedNumber(*row) for row in await cursor.fetchall()]


async def number_counts(connection: Connection, *, now: float) -> dict[str, tuple[int, float]]:
    """Per app: tracked numbers and how overdue the most overdue one is (seconds, ≥ 0)."""
    cursor = await connection.execute(
        "SELECT app_id, COUNT(*), MIN(next_due) FROM numbers "
        "WHERE expires_at IS NULL OR expires_at > %s GROUP BY app_id",
        (now,),
    )
    return {app: (count, max(0.0, now - oldest)) for app, count, oldest in await cursor.fetchall()}


async def _all(connection: Connection, query: str, *params: object) -> list[tuple[Any, ...]]:
    cursor = await connection.execute(query, params)
    return await cursor.fetchall()


# Per sink with any, its dead letters and the records queued for replay (``deadletters.py``).
DEAD_LETTER_COUNTS = (
    "SELECT sink, sum(letters), sum(queued) FROM ("
    "SELECT sink, count(*) AS letters, 0 AS queued FROM dead_letters GROUP BY sink "
    "UNION ALL SELECT sink, 0, count(*) FROM dead_letter_replays GROUP BY sink"
    ") AS counted GROUP BY sink"
)


async def snapshot_of(connection: Connection, *, now: float, database: str) -> dict[str, Any]:
    """What ``status`` shows (``state/status.py``), read in the caller's transaction."""
    ((outbox_max, acked_max, pending, rejected, seen, tracking, dead_letters),) = await _all(
        connection,
        "SELECT (SELECT max(seq) FROM outbox), (SELECT max(acked_seq) FROM sink_cursors), "
        "(SELECT COUNT(*) FROM conversions), (SELECT COUNT(*) FROM rejected), "
        "(SELECT COUNT(*) FROM seen), to_regclass('messages') IS NOT NULL, "
        "to_regclass('dead_letters') IS NOT NULL",
    )
    # Beside a daemon of an older release, the schema may not have these tables yet.
    messages = await _all(connection, PENDING_MESSAGES) if tracking else []
    dead = await _all(connection, DEAD_LETTER_COUNTS) if dead_letters else []
    return assemble_snapshot(
        now=now,
        database=database,
        head=max(outbox_max or 0, acked_max or 0),
        sinks=await _all(connection, SINKS),
        ranges=ranges_from_rows(await _all(connection, CURSOR_RANGES)),
        counts=await number_counts(connection, now=now),
        workers=await _all(connection, WORKERS),
        pending=pending,
        rejected=rejected,
        seen=seen,
        messages=messages,
        dead_letters={sink: (int(count), int(queued)) for sink, count, queued in dead},
    )
