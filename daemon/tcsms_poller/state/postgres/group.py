"""Group commit for PostgreSQL: writes that wait share the next transaction and its one WAL flush.

Every commit waits for its WAL flush (``synchronous_commit = on``): a few milliseconds on an
ordinary disk, whatever the transaction holds. The queue workers, the listener's pushes and each
sink's acks all write, often at once; so, as with SQLite (``state/writer.py``), a write that
arrives while another transaction runs waits, and then every waiting write runs in one
transaction, each inside its own savepoint:

- a write that raises is rolled back alone and gets its own exception; the others commit;
- the writes of one transaction see one COMMIT: it holds for all of them or fails for all (a
  lost connection fails them all, and each caller retries as after any ``StateError``);
- a write waiting its turn that is cancelled never runs; one that runs completes, and its caller
  gets the outcome all the same (the cancellation shows at the caller's next checkpoint).

The waiting and the cancellation rules are ``state/writer.py``'s ``WriteQueue``. The transaction
runs in the task of the write that found none running, shielded from its cancellation
(``statement_timeout`` bounds it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from tcsms_poller.state.writer import PendingWrite, WriteQueue

__all__ = ["GroupWriter", "Job", "Work"]

T = TypeVar("T")
Connection = AsyncConnection[tuple[Any, ...]]
Work = Callable[[Connection], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Job:
    """A write's work, and whether it is one statement (which, alone, is its own transaction:
    one round trip instead of three)."""

    run: Work[Any]
    one_statement: bool


class GroupWriter(WriteQueue[Job]):
    """Runs write transactions on the pool's connections, grouping those that wait."""

    def __init__(self, pool: AsyncConnectionPool[Connection]) -> None:
        super().__init__()
        self._pool = pool

    async def write(self, work: Work[T], *, one_statement: bool = False) -> T:
        """Run ``work`` in a write transaction, maybe with other writes; see the docstring."""
        result: T = await self._queue(Job(work, one_statement))
        return result

    async def _run(self, group: Sequence[PendingWrite[Job]]) -> None:
        with anyio.CancelScope(shield=True):  # the group's callers wait for its outcome
            try:
                await self._transact(group)
            except BaseException as error:  # noqa: BLE001 (handed to every write of the group)
                for write in group:
                    if write.error is None:
                        write.error = error
                    write.result = None
            finally:
                for write in group:
                    write.done = True

    async def _transact(self, group: Sequence[PendingWrite[Job]]) -> None:
        async with self._pool.connection() as connection:
            if len(group) == 1 and group[0].work.one_statement:  # autocommit: its own transaction
                group[0].result = await group[0].work.run(connection)
                return
            async with connection.transaction():
                await self._run_in_transaction(connection, group)

    async def _run_in_transaction(
        self, connection: Connection, group: Sequence[PendingWrite[Job]]
    ) -> None:
        if len(group) == 1:
            group[0].result = await group[0].work.run(connection)
            return
        for write in group:
            try:
                async with connection.transaction():  # a savepoint
                    write.result = await write.work.run(connection)
            except Exception as error:  # handed to this write's caller
                if connection.info.transaction_status != TransactionStatus.INTRANS:
                    raise  # the error ended the whole transaction: nothing of it is left
                write.error = error
