"""One daemon per database: a session advisory lock, held on a connection of its own.

Two daemons on one state would both drain its sinks (``state/lock.py`` says why that is bad; its
file lock only keeps off a second daemon on the same host). So the store takes
``pg_try_advisory_lock`` when it opens and refuses when another session holds it. PostgreSQL
releases the lock when that session ends, however it ends: a crashed daemon leaves nothing to
clean up. A session also ends when the server restarts or the network cuts it; the store then
confirms the lock before its next write, taking it again, or failing the write while another
daemon took it in between.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection

from tcsms_poller.state.postgres.schema import PROGRAM_KEY
from tcsms_poller.state.roles import StateError

__all__ = ["DAEMON_LOCK", "Ownership"]

DAEMON_LOCK = (PROGRAM_KEY, 3)


class Ownership:
    """The daemon lock of one store; see the module docstring."""

    def __init__(self, url: str, settings: dict[str, Any], database: str) -> None:
        self._url = url
        self._settings = settings
        self._database = database  # masked
        self._connection: AsyncConnection[tuple[Any, ...]] | None = None
        self._suspect = False

    async def acquire(self) -> None:
        """Take the lock; ``StateError`` if another session holds it (``psycopg.Error`` if the
        database cannot be reached)."""
        connection = await AsyncConnection.connect(self._url, **self._settings)
        cursor = await connection.execute("SELECT pg_try_advisory_lock(%s, %s)", DAEMON_LOCK)
        row = await cursor.fetchone()
        if row is None or not row[0]:
            holder = await _holder(connection)
            await connection.close()
            raise StateError(
                f"state database {self._database} is in use by another tcsms-poller{holder}: "
                "one daemon per state, stop the other first"
            )
        self._connection = connection
        self._suspect = False

    def suspect(self) -> None:
        """A write failed: the lock's session may have ended with the others."""
        self._suspect = True

    async def confirm(self) -> None:
        """After a failure, make sure the lock is still ours (taking it again if needed)."""
        if not self._suspect:
            return
        if self._connection is not None:
            try:
                await self._connection.execute("SELECT 1")
            except psycopg.Error:
                await self._connection.close()
                self._connection = None
        if self._connection is None:
            await self.acquire()
        self._suspect = False

    async def release(self) -> None:
        """Close the lock's session, which frees the lock."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


async def _holder(connection: AsyncConnection[tuple[Any, ...]]) -> str:
    """`` (PostgreSQL backend pid N, client ADDR)`` of the session holding the lock."""
    cursor = await connection.execute(
        "SELECT a.pid, a.client_addr FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s",
        DAEMON_LOCK,
    )
    row = await cursor.fetchone()
    if row is None:
        return ""
    return f" (PostgreSQL backend pid {row[0]}, client {row[1] or 'local socket'})"
