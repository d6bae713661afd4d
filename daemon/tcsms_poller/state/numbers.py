"""Tracked phone numbers and their per-number cursors, scheduled by an index on ``next_due``.

The scheduler needs no task per number and no scan: ``due_numbers`` reads the most overdue
numbers of an app through the ``(app_id, next_due)`` index, a read that commits nothing. The
numbers being polled right now are the caller's to skip (it holds them in memory: one process
polls a state database), so a crash leaves nothing behind to expire. A successful poll sets the
next ``next_due`` in the commit of its page; a failed one reschedules the number.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from tcsms_poller.state.roles import NumberOrigin, TrackedNumber

__all__ = [
    "CURSOR_RANGES",
    "NumberOrigin",
    "TrackedNumber",
    "add_number",
    "advance_number",
    "due_numbers",
    "list_numbers",
    "number_counts",
    "oldest_due",
    "purge_expired_numbers",
    "ranges_from_rows",
    "remove_number",
    "reschedule_number",
    "sync_numbers",
]

_COLUMNS = (
    "app_id, phone, origin, expires_at, status_cursor, reply_cursor, next_due, last_polled_at"
)


def _number(row: Sequence[object]) -> TrackedNumber:
    return TrackedNumber(*row)  # type: ignore[arg-type]


def sync_numbers(
    connection: sqlite3.Connection,
    app_id: str,
    origin: NumberOrigin,
    numbers: Sequence[str],
    *,
    now: float,
) -> tuple[int, int]:
    """Make the numbers of ``origin`` exactly ``numbers``; return (added, removed).

    New numbers are due at once; numbers kept keep their cursors. Numbers added through the API
    are not touched, and a configured number that was API-tracked loses its expiry.

    A list identical to the one of the last sync, with no row of the app added or removed since
    (the ``number_sources`` triggers), is already in place: reading 100,000 rows to diff them
    would cost a start or a reload about 0.1 s for nothing.
    """
    digest = hashlib.sha256("\n".join(numbers).encode()).hexdigest()
    last = connection.execute(
        "SELECT digest FROM number_sources WHERE app_id = ? AND origin = ?", (app_id, origin)
    ).fetchone()
    if last is not None and last[0] == digest:
        return 0, 0
    wanted = set(numbers)
    existing = {
        row[0]
        for row in connection.execute(
            "SELECT phone FROM numbers WHERE app_id = ? AND origin = ?", (app_id, origin)
        )
    }
    stale = existing - wanted
    connection.executemany(
        "DELETE FROM numbers WHERE app_id = ? AND phone = ?", [(app_id, phone) for phone in stale]
    )
    added = 0
    for phone in wanted - existing:
        cursor = connection.execute(
            "INSERT INTO numbers (app_id, phone, origin, expires_at, next_due, added_at) "
            "VALUES (?, ?, ?, NULL, ?, ?) "
            "ON CONFLICT (app_id, phone) DO UPDATE SET origin = excluded.origin, expires_at = NULL "
            "WHERE numbers.origin = 'api'",
            (app_id, phone, origin, now, now),
        )
        added += cursor.rowcount
    connection.execute(
        "INSERT INTO number_sources (app_id, origin, digest) VALUES (?, ?, ?) "
        "ON CONFLICT (app_id, origin) DO UPDATE SET digest = excluded.digest",
        (app_id, origin, digest),
    )
    return added, len(stale)


def add_number(
    connection: sqlite3.Connection, app_id: str, phone: str, *, expires_at: float, now: float
) -> bool:
    """Track ``phone`` until ``expires_at``; return True if it was not tracked before.

    Tracking an already tracked number extends an API expiry, never shortens it, and leaves a
    configured number (no expiry) as it is.
    """
    created = (
        connection.execute(
            "SELECT 1 FROM numbers WHERE app_id = ? AND phone = ?", (app_id, phone)
        ).fetchone()
        is None
    )
    connection.execute(
        "INSERT INTO numbers (app_id, phone, origin, expires_at, next_due, added_at) "
        "VALUES (?, ?, 'api', ?, ?, ?) "
        "ON CONFLICT (app_id, phone) DO UPDATE "
        "SET expires_at = MAX(expires_at, excluded.expires_at) "
        "WHERE numbers.origin = 'api'",
        (app_id, phone, expires_at, now, now),
    )
    return created


def remove_number(connection: sqlite3.Connection, app_id: str, phone: str) -> bool:
    """Stop tracking ``phone``; return whether it was tracked."""
    cursor = connection.execute(
        "DELETE FROM numbers WHERE app_id = ? AND phone = ?", (app_id, phone)
    )
    return cursor.rowcount > 0


def due_numbers(
    connection: sqlite3.Connection,
    app_id: str,
    *,
    now: float,
    limit: int,
    skip: Collection[str] = (),
) -> tuple[float | None, list[TrackedNumber]]:
    """The app's earliest ``next_due`` (None: nothing tracked) and its most overdue live numbers.

    Up to ``limit`` numbers not in ``skip``, most overdue first. ``skip`` holds the numbers
    being polled (their ``next_due`` moves when their page commits): reading ``limit +
    len(skip)`` rows always finds ``limit`` others if that many are due, so the cost is bounded
    by the work in flight, never by the number of tracked numbers.
    """
    oldest = oldest_due(connection, app_id)
    if oldest is None or oldest > now:
        return oldest, []
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM numbers WHERE app_id = ? AND next_due <= ? "  # noqa: S608
        "AND (expires_at IS NULL OR expires_at > ?) ORDER BY next_due LIMIT ?",
        (app_id, now, now, limit + len(skip)),
    )
    picked = [number for number in map(_number, rows) if number.phone not in skip]
    return oldest, picked[:limit]


def advance_number(
    connection: sqlite3.Connection,
    app_id: str,
    phone: str,
    *,
    next_due: float,
    polled_at: float,
    status_cursor: int | None = None,
    reply_cursor: int | None = None,
) -> None:
    """Record a polled page: new cursors (never moving back) and the next due time.

    A cursor is the newest record time seen, shown by ``status``; polls do not start from it
    (each covers the number's whole lookback). It stays NULL until a record was seen (SQLite's
    MAX of a NULL is NULL).
    """
    connection.execute(
        "UPDATE numbers SET next_due = ?, last_polled_at = ?, "
        "status_cursor = COALESCE(MAX(status_cursor, ?), status_cursor, ?), "
        "reply_cursor = COALESCE(MAX(reply_cursor, ?), reply_cursor, ?) "
        "WHERE app_id = ? AND phone = ?",
        (
            next_due,
            polled_at,
            status_cursor,
            status_cursor,
            reply_cursor,
            reply_cursor,
            app_id,
            phone,
        ),
    )


def reschedule_number(
    connection: sqlite3.Connection, app_id: str, phone: str, *, next_due: float
) -> None:
    """Make a number due at ``next_due`` without touching its cursors (its poll failed)."""
    connection.execute(
        "UPDATE numbers SET next_due = ? WHERE app_id = ? AND phone = ?", (next_due, app_id, phone)
    )


def list_numbers(
    connection: sqlite3.Connection,
    *,
    app_id: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[TrackedNumber]:
    """A page of tracked numbers ordered by (app, phone), starting after ``after``."""
    start_app, start_phone = after or ("", "")
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM numbers WHERE (app_id, phone) > (?, ?) "  # noqa: S608
        "AND (? IS NULL OR app_id = ?) ORDER BY app_id, phone LIMIT ?",
        (start_app, start_phone, app_id, app_id, limit),
    ).fetchall()
    return [_number(row) for row in rows]


def oldest_due(connection: sqlite3.Connection, app_id: str) -> float | None:
    """The earliest ``next_due`` of the app's numbers (an index lookup, not a scan)."""
    row = connection.execute(
        "SELECT next_due FROM numbers WHERE app_id = ? ORDER BY next_due LIMIT 1", (app_id,)
    ).fetchone()
    return float(row[0]) if row else None


def number_counts(connection: sqlite3.Connection, *, now: float) -> dict[str, tuple[int, float]]:
    """Per app: tracked numbers and how overdue the most overdue one is (seconds, ≥ 0)."""
    rows = connection.execute(
        "SELECT app_id, COUNT(*), MIN(next_due) FROM numbers "
        "WHERE expires_at IS NULL OR expires_at > ? GROUP BY app_id",
        (now,),
    )
    return {app: (count, max(0.0, now - oldest)) for app, count, oldest in rows}


CURSOR_RANGES = (
    "SELECT app_id, COUNT(status_cursor), MIN(status_cursor), MAX(status_cursor), "
    "COUNT(reply_cursor), MIN(reply_cursor), MAX(reply_cursor) FROM numbers GROUP BY app_id"
)


def cursor_ranges(connection: sqlite3.Connection) -> dict[str, dict[str, tuple[int, int, int]]]:
    """Per app and kind (``status``, ``reply``): numbers with a cursor, the oldest and newest.

    A cursor is the time of the newest record seen for a number; the oldest one tells how long
    the quietest number has gone without one (polls cover each number's lookback regardless).
    """
    return ranges_from_rows(connection.execute(CURSOR_RANGES))


def ranges_from_rows(
    rows: Iterable[Sequence[Any]],
) -> dict[str, dict[str, tuple[int, int, int]]]:
    """``cursor_ranges`` from the rows of ``CURSOR_RANGES`` (either backend's)."""
    return {
        row[0]: {
            kind: (row[at], row[at + 1], row[at + 2])
            for kind, at in (("status", 1), ("reply", 4))
            if row[at]
        }
        for row in rows
    }


def purge_expired_numbers(connection: sqlite3.Connection, *, now: float) -> int:
    """Forget API-tracked numbers whose tracking period has ended."""
    return connection.execute(
        "DELETE FROM numbers WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
    ).rowcount
