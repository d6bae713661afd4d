"""The durable queue of conversions waiting to be reported to Tencent."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tcsms_poller.state.roles import PendingConversion

__all__ = [
    "PendingConversion",
    "defer_conversion",
    "enqueue_conversions",
    "finish_conversion",
    "lease_conversions",
    "pending_conversions",
]


def enqueue_conversions(
    connection: sqlite3.Connection,
    items: Sequence[tuple[str, str, int | None]],
    *,
    now: float,
) -> None:
    """Queue ``(app_id, serial_no, conversion_time)`` items, due at once."""
    connection.executemany(
        "INSERT INTO conversions "
        "(app_id, serial_no, conversion_time, enqueued_at, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(app, serial, when, now, now) for app, serial, when in items],
    )


def lease_conversions(
    connection: sqlite3.Connection, *, now: float, limit: int, lease: float
) -> list[PendingConversion]:
    """Up to ``limit`` due conversions, oldest first, leased so no one else takes them."""
    rows = connection.execute(
        "UPDATE conversions SET next_attempt_at = ? WHERE id IN ("
        "  SELECT id FROM conversions WHERE next_attempt_at <= ? "
        "  ORDER BY next_attempt_at, id LIMIT ?"
        ") RETURNING id, app_id, serial_no, conversion_time, attempts",
        (now + lease, now, limit),
    ).fetchall()
    return sorted((PendingConversion(*row) for row in rows), key=lambda item: item.id)


def finish_conversion(connection: sqlite3.Connection, conversion_id: int) -> None:
    """Drop a reported conversion (its outcome record is committed in the same transaction)."""
    connection.execute("DELETE FROM conversions WHERE id = ?", (conversion_id,))


def defer_conversion(
    connection: sqlite3.Connection, conversion_id: int, *, retry_at: float, error: str
) -> None:
    """Try a conversion again at ``retry_at`` after a transient failure."""
    connection.execute(
        "UPDATE conversions SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
        "WHERE id = ?",
        (retry_at, error, conversion_id),
    )


def pending_conversions(connection: sqlite3.Connection) -> int:
    """How many conversions wait to be reported."""
    return int(connection.execute("SELECT COUNT(*) FROM conversions").fetchone()[0])
