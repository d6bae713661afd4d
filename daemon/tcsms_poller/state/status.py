"""A read-only snapshot of the state for ``tcsms-poller status`` (works beside a running daemon)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tcsms_poller.state.conversions import pending_conversions
from tcsms_poller.state.numbers import cursor_ranges, number_counts
from tcsms_poller.state.outbox import outbox_head

__all__ = ["read_snapshot"]


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
        head = outbox_head(connection)
        sinks = [
            {"name": name, "acked_seq": acked, "depth": max(0, head - acked), "updated_at": at}
            for name, acked, at in connection.execute(
                "SELECT name, acked_seq, updated_at FROM sink_cursors ORDER BY name"
            )
        ]
        ranges = cursor_ranges(connection)
        numbers = [
            {
                "app_id": app,
                "tracked": count,
                "oldest_overdue_s": round(lag, 1),
                "cursors": {
                    kind: {"numbers": with_cursor, "oldest": oldest, "newest": newest}
                    for kind, (with_cursor, oldest, newest) in ranges.get(app, {}).items()
                },
            }
            for app, (count, lag) in sorted(number_counts(connection, now=now).items())
        ]
        workers = [
            {
                "name": name,
                "healthy": bool(ok),
                "last_error": error,
                "last_success_at": success,
                "updated_at": at,
            }
            for name, ok, error, success, at in connection.execute(
                "SELECT name, healthy, last_error, last_success_at, updated_at "
                "FROM workers ORDER BY name"
            )
        ]
        (rejected,) = connection.execute("SELECT COUNT(*) FROM rejected").fetchone()
        (seen,) = connection.execute("SELECT COUNT(*) FROM seen").fetchone()
        if _has_table(connection, "seen_recent"):  # not before the daemon migrated the file
            seen += connection.execute("SELECT COUNT(*) FROM seen_recent").fetchone()[0]
        return {
            "database": str(path),
            "outbox_head": head,
            "sinks": sinks,
            "numbers": numbers,
            "workers": workers,
            "pending_conversions": pending_conversions(connection),
            "rejected_items": rejected,
            "seen_ids": seen,
        }
    finally:
        connection.close()


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return connection.execute(query, (name,)).fetchone() is not None
