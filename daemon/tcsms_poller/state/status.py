"""A read-only snapshot of the state for ``tcsms-poller status`` (works beside a running daemon)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tcsms_poller.sinks.deadletter import dead_letter_counts
from tcsms_poller.state.conversions import pending_conversions
from tcsms_poller.state.numbers import cursor_ranges, number_counts
from tcsms_poller.state.outbox import outbox_head

__all__ = [
    "PENDING_MESSAGES",
    "SINKS",
    "WORKERS",
    "assemble_snapshot",
    "read_snapshot",
    "snapshot_of",
]


def read_snapshot(path: Path, *, now: float) -> dict[str, Any]:
    """Everything ``status`` shows, read in one transaction without writing anything.

    Raises:
        FileNotFoundError: there is no database at ``path`` yet.
        sqlite3.Error: the database cannot be read.
    """
    if not path.exists():
        raise FileNotFoundError(f"no state database at {path} (has the daemon run yet?)")
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        connection.execute("BEGIN")
        return snapshot_of(connection, now=now, database=str(path))
    finally:
        connection.close()


def snapshot_of(connection: sqlite3.Connection, *, now: float, database: str) -> dict[str, Any]:
    """The snapshot, read inside the transaction the caller opened."""
    (seen,) = connection.execute("SELECT COUNT(*) FROM seen").fetchone()
    if _has_table(connection, "seen_recent"):  # not before the daemon migrated the file
        seen += connection.execute("SELECT COUNT(*) FROM seen_recent").fetchone()[0]
    pending_messages = []
    if _has_table(connection, "messages"):  # not before the daemon migrated the file
        pending_messages = connection.execute(PENDING_MESSAGES).fetchall()
    return assemble_snapshot(
        now=now,
        database=database,
        head=outbox_head(connection),
        sinks=connection.execute(SINKS).fetchall(),
        ranges=cursor_ranges(connection),
        counts=number_counts(connection, now=now),
        workers=connection.execute(WORKERS).fetchall(),
        pending=pending_conversions(connection),
        rejected=connection.execute("SELECT COUNT(*) FROM rejected").fetchone()[0],
        seen=seen,
        messages=pending_messages,
        dead_letters=dead_letter_counts(Path(database).parent),  # files beside the database
    )


# The queries both backends run as they are.
SINKS = "SELECT name, acked_seq, updated_at FROM sink_cursors ORDER BY name"
WORKERS = "SELECT name, healthy, last_error, last_success_at, updated_at FROM workers ORDER BY name"
PENDING_MESSAGES = (
    "SELECT app_id, COUNT(*), MIN(sent_at) FROM messages WHERE state = 'pending' "
    "GROUP BY app_id ORDER BY app_id"
)


def assemble_snapshot(
    *,
    now: float,
    database: str,
    head: int,
    sinks: Iterable[Sequence[Any]],
    ranges: Mapping[str, Mapping[str, tuple[int, int, int]]],
    counts: Mapping[str, tuple[int, float]],
    workers: Iterable[Sequence[Any]],
    pending: int,
    rejected: int,
    seen: int,
    messages: Iterable[Sequence[Any]],
    dead_letters: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """The snapshot's shape, from what either backend read (rows of ``SINKS``, ``WORKERS`` and
    ``PENDING_MESSAGES``, ``cursor_ranges`` and ``number_counts`` results, and per sink with
    any its dead letters and the records queued for replay)."""
    return {
        "database": database,
        "outbox_head": head,
        "sinks": [
            {"name": name, "acked_seq": acked, "depth": max(0, head - acked), "updated_at": at}
            for name, acked, at in sinks
        ],
        "numbers": [
            {
                "app_id": app,
                "tracked": count,
                "oldest_overdue_s": round(lag, 1),
                "cursors": {
                    kind: {"numbers": with_cursor, "oldest": oldest, "newest": newest}
                    for kind, (with_cursor, oldest, newest) in ranges.get(app, {}).items()
                },
            }
            for app, (count, lag) in sorted(counts.items())
        ],
        "workers": [
            {
                "name": name,
                "healthy": bool(ok),
                "last_error": error,
                "last_success_at": success,
                "updated_at": at,
            }
            for name, ok, error, success, at in workers
        ],
        "messages": [
            {
                "app_id": app,
                "pending": count,
                "oldest_pending_age_s": round(max(0.0, now - float(oldest)), 1),
            }
            for app, count, oldest in messages
        ],
        "dead_letters": {
            sink: {"count": count, "replays_queued": queued}
            for sink, (count, queued) in sorted(dead_letters.items())
        },
        "pending_conversions": pending,
        "rejected_items": rejected,
        "seen_ids": seen,
    }


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return connection.execute(query, (name,)).fetchone() is not None
