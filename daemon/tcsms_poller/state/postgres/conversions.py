"""The conversion queue in PostgreSQL, on the database's clock.

Several daemons share the queue (cluster mode), and their clocks may differ: with due times and
claims written by one daemon's clock and compared with another's, a daemon whose clock runs
ahead by more than a claim would take a conversion another daemon holds (both report it), and a
daemon whose clock runs behind would not see conversions as due until its clock caught up. So
every time here is the database's: ``statement_timestamp()`` as Unix seconds (the columns' unit,
as with SQLite), one value for a whole statement, so a claim's due check and its end agree (a
stable function, unlike ``clock_timestamp()``, lets the index on ``next_attempt_at`` serve the
due check). A claim takes its rows ``FOR UPDATE SKIP LOCKED``: a daemon claiming at the same
time takes other rows instead of waiting, and a row claimed meanwhile is checked again against
its new due time, so it is skipped. SQLite has one daemon per file and keeps the daemon's clock
(``state/conversions.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from tcsms_poller.state.roles import PendingConversion

__all__ = ["defer_conversion", "enqueue_conversions", "lease_conversions"]

Connection = AsyncConnection[tuple[Any, ...]]
NOW = "extract(epoch FROM statement_timestamp())::float8"  # the database's clock, Unix seconds


async def enqueue_conversions(
    connection: Connection, items: Sequence[tuple[str, str, int | None]]
) -> None:
    """Queue ``(app_id, serial_no, conversion_time)`` items, due at once."""
    async with connection.cursor() as many:
        await many.executemany(
            "INSERT INTO conversions "  # noqa: S608 (NOW is a constant of this module)
            "(app_id, serial_no, conversion_time, enqueued_at, next_attempt_at) "
            f"VALUES (%s, %s, %s, {NOW}, {NOW})",
            items,
        )


async def lease_conversions(
    connection: Connection, *, limit: int, lease: float
) -> list[PendingConversion]:
    """Up to ``limit`` due conversions, oldest first, leased for ``lease`` seconds; rows another
    daemon is leasing are skipped."""
    cursor = await connection.execute(
        f"UPDATE conversions SET next_attempt_at = {NOW} + %s WHERE id IN ("  # noqa: S608
        f"  SELECT id FROM conversions WHERE next_attempt_at <= {NOW} "
        "  ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED"
        ") RETURNING id, app_id, serial_no, conversion_time, attempts",
        (lease, limit),
    )
    rows = await cursor.fetchall()
    return sorted((PendingConversion(*row) for row in rows), key=lambda item: item.id)


async def defer_conversion(
    connection: Connection, conversion_id: int, *, delay: float, error: str
) -> None:
    """Try a conversion again ``delay`` seconds from now after a transient failure."""
    await connection.execute(
        "UPDATE conversions SET attempts = attempts + 1, "  # noqa: S608
        f"next_attempt_at = {NOW} + %s, last_error = %s WHERE id = %s",
        (delay, error, conversion_id),
    )
