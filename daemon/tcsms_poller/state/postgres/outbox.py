"""The outbox append: a page's dedupe and its rows in one statement, numbered in commit order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from tcsms_poller.records import Record
from tcsms_poller.state.postgres.schema import PROGRAM_KEY

__all__ = ["OUTBOX_LOCK", "append"]

# Held from a commit's seq assignment to the end of its COMMIT (store.py's docstring says why);
# tcsms_append (schema.py) takes it by its numbers.
OUTBOX_LOCK = (PROGRAM_KEY, 2)


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
    first: dict[str, Record] = {}
    for record in records:  # the first of a batch wins
        first.setdefault(record.id, record)
    unique = list(first.values())
    cursor = await connection.execute(
        "SELECT fresh, last_seq FROM tcsms_append(%b::text[], %b::bytea[], %s, %s)",
        ([r.id for r in unique], [r.to_json() for r in unique], expires_at, now),
    )
    row = await cursor.fetchone()
    assert row is not None
    fresh = set(row[0])
    return [record for record in unique if record.id in fresh], int(row[1])
