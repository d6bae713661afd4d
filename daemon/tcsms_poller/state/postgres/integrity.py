"""Checks on a PostgreSQL state before the daemon trusts it, as ``state/integrity.py`` makes
them on a SQLite file, with the same words.

``vet`` runs at open, after the migration, on the migrating connection (autocommit): read-only
queries, each on an index or a catalog, so a cluster's instances opening the database at once
neither wait for each other nor see each other's writes as damage. It refuses:

- a database whose ``tcsms_schema`` records a version but lacks our tables (dropped by hand);
- a sink cursor beyond the outbox head, and a sink position that is not a JSON object
  (``integrity.cursor_problem``). The head is the last value of the outbox's identity, which
  only grows, read after the cursors: a cursor another instance moves meanwhile stays below it;
- outbox rows beyond that identity, as a restore without its sequences leaves them: every
  write would fail on a duplicate seq.

``schema.migrate`` refuses, before changing anything, a ``tcsms_schema`` that is not ours, and
our tables without a recorded version (an emptied ``tcsms_schema``, or another program's tables
of the same names). Other tables in the database are no concern: ours are created beside them.
"""

from __future__ import annotations

from psycopg import AsyncConnection

from tcsms_poller.state.integrity import SINK_CURSORS, cursor_problem, refusal

__all__ = ["FRESH", "OWN_TABLES", "vet"]

FRESH = "to start afresh deliberately, stop every instance and point state.url at an empty database"
# The tables whose loss loses the pipeline: looked for by name, in the connection's search_path.
OWN_TABLES = ("seen", "outbox", "sink_cursors")
# One statement: the identity's last value is read after the snapshot ``max(seq)`` sees.
_OUTBOX_ENDS = (
    "SELECT (SELECT max(seq) FROM outbox), "
    "pg_sequence_last_value(pg_get_serial_sequence('outbox', 'seq')::regclass)"
)


async def missing_tables(connection: AsyncConnection[tuple[object, ...]]) -> tuple[str, ...]:
    """Those of ``OWN_TABLES`` the database lacks."""
    cursor = await connection.execute(
        "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL", (list(OWN_TABLES),)
    )
    return tuple(str(row[0]) for row in await cursor.fetchall())


async def vet(connection: AsyncConnection[tuple[object, ...]], *, database: str) -> None:
    """Refuse a state the daemon must not trust (see the module docstring); ``database`` is the
    masked URL.

    Raises:
        IntegrityError: one line saying what is wrong and what to do.
        psycopg.Error: the database could not be read.
    """
    problem = await _problem(connection)
    if problem is not None:
        raise refusal(database, problem, fresh=FRESH)


async def _problem(connection: AsyncConnection[tuple[object, ...]]) -> str | None:
    missing = await missing_tables(connection)
    if missing:
        return f"has a tcsms_schema version but not its tables {', '.join(missing)}"
    cursors = await (await connection.execute(SINK_CURSORS)).fetchall()
    cursor = await connection.execute(_OUTBOX_ENDS)
    row = await cursor.fetchone()
    newest, identity = row if row is not None else (None, None)
    head = int(identity) if isinstance(identity, int) else 0
    if isinstance(newest, int) and newest > head:
        return (
            f"has record {newest} in its outbox beyond the last seq its identity gave ({head}): "
            "was it restored without its sequences?"
        )
    return cursor_problem(cursors, head=head)
