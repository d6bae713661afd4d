"""Seen ids, the outbox and per-sink cursors: the tables every record passes through.

All functions run inside a transaction the caller (``StateStore``) opened, on the writer's or the
reader's connection; none commits by itself. That is what lets a worker commit a page's records
and its own cursor atomically.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from tcsms_poller.records import OutboxRecord, Record
from tcsms_poller.state.roles import Rejected, SinkCursor
from tcsms_poller.state.rows import insert_rows
from tcsms_poller.state.seen import SeenIds
from tcsms_poller.state.tail import OutboxTail

__all__ = [
    "SinkCursor",
    "ack_sink",
    "commit_records",
    "forget_removed_sinks",
    "oldest_seq",
    "outbox_head",
    "purge_acknowledged",
    "purge_expired_ids",
    "quarantine",
    "read_outbox",
    "sink_cursor",
]


def commit_records(
    connection: sqlite3.Connection,
    records: Sequence[Record],
    *,
    seen: SeenIds,
    now: float,
    ttl: float,
    tail: OutboxTail | None = None,
) -> list[Record]:
    """Mark unseen records seen and append them to the outbox (and ``tail``); return the new ones.

    A record is a duplicate when its id was seen and has not expired, or when an earlier record
    of the same batch has the same id.
    """
    if not records:
        return []
    already = seen.seen(connection, [record.id for record in records], now=now)
    fresh: list[Record] = []
    for record in records:
        if record.id not in already:
            already.add(record.id)
            fresh.append(record)
    if fresh:
        seen.add(connection, (record.id for record in fresh), expires_at=int(now + ttl))
        data = [record.to_json() for record in fresh]
        insert_rows(connection, "outbox (data)", data)
        if tail is not None:
            tail.add(data, last_seq=outbox_head(connection))
    return fresh


def quarantine(
    connection: sqlite3.Connection, items: Sequence[Rejected], *, source: str, now: float
) -> None:
    """Keep API items we could not parse, verbatim, for an operator to inspect."""
    connection.executemany(
        "INSERT INTO rejected (at, source, reason, raw) VALUES (?, ?, ?, ?)",
        [(now, source, item.reason, json.dumps(item.raw, ensure_ascii=False)) for item in items],
    )


def outbox_head(connection: sqlite3.Connection) -> int:
    """The seq of the newest record ever committed (0 before the first)."""
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row else 0


def oldest_seq(connection: sqlite3.Connection) -> int | None:
    """The seq of the oldest record still in the outbox (None when it is empty)."""
    row = connection.execute("SELECT MIN(seq) FROM outbox").fetchone()
    return int(row[0]) if row[0] is not None else None


def sink_cursor(connection: sqlite3.Connection, name: str, *, now: float) -> SinkCursor:
    """The sink's cursor; a sink seen for the first time starts at the current head."""
    row = connection.execute(
        "SELECT acked_seq, position FROM sink_cursors WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        head = outbox_head(connection)
        connection.execute(
            "INSERT INTO sink_cursors (name, acked_seq, position, updated_at) "
            "VALUES (?, ?, NULL, ?)",
            (name, head, now),
        )
        return SinkCursor(head, None, created=True)
    return SinkCursor(int(row[0]), json.loads(row[1]) if row[1] else None)


def read_outbox(connection: sqlite3.Connection, *, after: int, limit: int) -> list[OutboxRecord]:
    """Up to ``limit`` records after ``after``, oldest first."""
    rows = connection.execute(
        "SELECT seq, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
    )
    return [OutboxRecord(seq, bytes(data)) for seq, data in rows]


def ack_sink(
    connection: sqlite3.Connection,
    name: str,
    *,
    seq: int,
    position: Mapping[str, Any] | None,
    now: float,
) -> None:
    """Advance the sink's cursor to ``seq``; ``position`` None keeps the previous one.

    The same ``seq`` again only moves the position: a replayed dead letter is not in the outbox,
    but the file sink's offset after it must be kept.
    """
    connection.execute(
        "UPDATE sink_cursors SET acked_seq = ?, position = COALESCE(?, position), updated_at = ? "
        "WHERE name = ? AND acked_seq <= ?",
        (seq, json.dumps(position) if position is not None else None, now, name, seq),
    )


def purge_acknowledged(
    connection: sqlite3.Connection, sink_names: Sequence[str], *, limit: int
) -> int:
    """Delete up to ``limit`` outbox rows that every sink with a cursor has acknowledged.

    That includes sinks removed from the configuration whose cursor is still kept (see
    ``forget_removed_sinks``): a sink that comes back resumes where it left off.
    """
    cursors = dict(connection.execute("SELECT name, acked_seq FROM sink_cursors"))
    if not cursors or any(name not in cursors for name in sink_names):
        return 0  # a configured sink has no cursor yet: keep everything
    cursor = connection.execute(
        "DELETE FROM outbox WHERE seq IN "
        "(SELECT seq FROM outbox WHERE seq <= ? ORDER BY seq LIMIT ?)",
        (min(cursors.values()), limit),
    )
    return cursor.rowcount


def forget_removed_sinks(
    connection: sqlite3.Connection, sink_names: Sequence[str], *, idle_since: float
) -> list[str]:
    """Drop the cursors of sinks not in ``sink_names`` that have not acknowledged since then.

    A removed sink's backlog is kept for a while, in case it comes back; past that it would
    only grow the outbox forever. A sink added again after this starts afresh at the head.
    """
    forgotten = [
        name
        for name, updated_at in connection.execute("SELECT name, updated_at FROM sink_cursors")
        if name not in sink_names and updated_at < idle_since
    ]
    connection.executemany("DELETE FROM sink_cursors WHERE name = ?", [(n,) for n in forgotten])
    return forgotten


def forget_sink(connection: sqlite3.Connection, name: str, acked_seq: int) -> None:
    """Drop the sink's cursor if it is still at ``acked_seq``."""
    connection.execute(
        "DELETE FROM sink_cursors WHERE name = ? AND acked_seq = ?", (name, acked_seq)
    )


def purge_expired_ids(connection: sqlite3.Connection, *, now: float, limit: int) -> int:
    """Delete up to ``limit`` seen ids whose dedupe window has passed."""
    cursor = connection.execute(
        "DELETE FROM seen WHERE id IN (SELECT id FROM seen WHERE expires_at <= ? LIMIT ?)",
        (now, limit),
    )
    return cursor.rowcount
