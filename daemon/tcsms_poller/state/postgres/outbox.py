"""The outbox append: a page's dedupe and its rows in one statement, numbered in commit order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import AsyncConnection

from tcsms_poller.records import Record
from tcsms_poller.state.postgres.schema import PROGRAM_KEY

__all__ = ["OUTBOX_LOCK", "append", "append_unless_pending"]

# Held from a commit's seq assignment to the end of its COMMIT (store.py's docstring says why);
# tcsms_append (schema.py) takes it by its numbers.
OUTBOX_LOCK = (PROGRAM_KEY, 2)
_APPEND = "SELECT fresh, last_seq FROM tcsms_append(%b::text[], %b::bytea[], %s, %s)"
# A WITH query that calls a volatile function runs once, and its select list only if its WHERE
# holds: with a tracked message pending, tcsms_append is not called and no row comes back.
_APPEND_UNLESS_PENDING = (
    "WITH appended AS (SELECT tcsms_append(%b::text[], %b::bytea[], %s, %s) AS a "
    "WHERE NOT EXISTS (SELECT 1 FROM messages WHERE state = 'pending')) "
    "SELECT (a).fresh, (a).last_seq FROM appended"
)


async def append(
    connection: AsyncConnection[tuple[Any, ...]],
    records: Sequence[Record],
    *,
    expires_at: int,
    now: float,
) -> tuple[list[Record], int]:
    """Mark the unseen among ``records`` seen and append them to the outbox, numbered after
    every visible row (``tcsms_append``); the new records, in order, and the last seq (0: none).

    One statement: run alone in autocommit, it is its own transaction, and the outbox lock it
    takes is held until its COMMIT is visible (``store.py``).
    """
    appended = await _append(connection, _APPEND, records, expires_at=expires_at, now=now)
    assert appended is not None
    return appended


async def append_unless_pending(
    connection: AsyncConnection[tuple[Any, ...]],
    records: Sequence[Record],
    *,
    expires_at: int,
    now: float,
) -> tuple[list[Record], int] | None:
    """``append``, in the same one statement, unless some tracked message is pending: then
    nothing is written and the answer is None.

    A page whose receipts find no message pending has nothing to resolve, and this spares it the
    transaction that resolving takes (``store.py`` commits the page that way when None comes
    back). Beside other writers, other daemons included, a receipt still never misses its
    message. The check and the append are one statement, so one transaction, and the check sees
    every message whose tracking committed before the statement began: if one is pending, the
    page goes the full way and resolves it. A message the check cannot see was being tracked by
    a transaction still running, concurrent with this commit, and the full way could miss it
    too (its resolving statement sees only what committed before that statement began). It
    stands where a message tracked just after its receipt was committed stands, and that case
    is covered: tracking it makes its number due, the number's poll brings the receipt again,
    and the repeat resolves it (docs/tracking.md).
    """
    return await _append(
        connection, _APPEND_UNLESS_PENDING, records, expires_at=expires_at, now=now
    )


async def _append(
    connection: AsyncConnection[tuple[Any, ...]],
    query: LiteralString,
    records: Sequence[Record],
    *,
    expires_at: int,
    now: float,
) -> tuple[list[Record], int] | None:
    first: dict[str, Record] = {}
    for record in records:  # the first of a batch wins
        first.setdefault(record.id, record)
    unique = list(first.values())
    cursor = await connection.execute(
        query, ([r.id for r in unique], [r.to_json() for r in unique], expires_at, now)
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    fresh = set(row[0])
    return [record for record in unique if record.id in fresh], int(row[1])
