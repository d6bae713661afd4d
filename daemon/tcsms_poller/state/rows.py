"""Many rows into one table in a few statements, for the tables every record passes through.

``executemany`` pays a bind, a step and a reset per row; one ``INSERT ... VALUES (...), (...)``
per chunk pays them once (figures: docs/benchmarks.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

__all__ = ["insert_rows"]

_CHUNK = 500  # rows per statement: a few thousand bound values, far below SQLite's limit


def insert_rows(
    connection: sqlite3.Connection, into: str, values: Sequence[Any], *, width: int = 1
) -> None:
    """``INSERT INTO <into> VALUES`` the rows of ``values``: ``width`` values each, flattened.

    ``into`` is a table and column list written in our code, like ``"outbox (data)"``; only the
    values are bound.
    """
    if not values:
        return
    placeholder = "(" + ",".join("?" * width) + ")"
    step = _CHUNK * width
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        connection.execute(
            f"INSERT INTO {into} VALUES {','.join([placeholder] * (len(chunk) // width))}",  # noqa: S608 (placeholders only)
            chunk,
        )
