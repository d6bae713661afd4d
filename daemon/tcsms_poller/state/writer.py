"""Group commit: writes that wait for the writer share its next transaction, and its one sync.

With ``synchronous = FULL`` every COMMIT syncs the WAL, and every write is a hop to the writer
thread. The queue workers, the listener's pushes, each sink's acks and the per-number workers all
write, often at the same moment; one at a time they queue behind each other anyway. So a write
that arrives while another runs waits, and then every waiting write runs in one transaction, each
inside its own SAVEPOINT:

- a write that raises is rolled back alone and gets its own exception; the others commit;
- the writes of one transaction see one COMMIT: it holds for all of them or fails for all, leaving
  nothing (an error that ends the whole transaction, like a full disk, fails them all too);
- a write waiting its turn that is cancelled never runs; one that runs completes, and its caller
  gets the outcome all the same (the cancellation shows at the caller's next checkpoint).

A ``Mirror`` is RAM state that reflects rows (the dedupe set's recent ids, the outbox's newest
rows); it is told about savepoints and the COMMIT so that it only ever reflects what committed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.to_thread

__all__ = ["MAX_GROUP", "GroupWriter", "Mirror", "PendingWrite", "Transaction", "WriteQueue"]

T = TypeVar("T")
W = TypeVar("W")
Transaction = Callable[[sqlite3.Connection], T]
MAX_GROUP = 64  # writes per transaction: bounds how long one COMMIT keeps the others waiting


class Mirror(Protocol):
    """RAM state that follows the fate of the rows written beside it."""

    def begin(self) -> None:
        """A transaction starts: forget what one that never committed had added."""

    def mark(self) -> object:
        """A savepoint starts: a token for ``rollback_to``."""

    def rollback_to(self, mark: object) -> None:
        """The savepoint was rolled back: forget what was added since ``mark``."""

    def committed(self) -> None:
        """The transaction committed."""


class PendingWrite(Generic[W]):
    """One caller's write: its work and, once its transaction ended, its outcome."""

    __slots__ = ("done", "error", "result", "taken", "work")

    def __init__(self, work: W) -> None:
        self.work = work
        self.taken = False  # in the transaction now running
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class WriteQueue(Generic[W]):
    """Writes that wait while a transaction runs, then run together; a subclass runs a group.

    The waiting and cancellation rules of the module docstring live here, for every backend.
    """

    def __init__(self) -> None:
        self._waiting: deque[PendingWrite[W]] = deque()
        self._running = False
        self._finished = anyio.Event()  # set (and replaced) each time a transaction ends

    async def _queue(self, work: W) -> Any:
        """Wait for ``work`` to run, alone or grouped; its result (or its exception)."""
        write = PendingWrite(work)
        self._waiting.append(write)
        try:
            while not write.done:
                if self._running:
                    await self._finished.wait()
                else:
                    await self._run_waiting()
        except anyio.get_cancelled_exc_class():
            if not write.taken:
                self._waiting.remove(write)
                raise
            with anyio.CancelScope(shield=True):  # it runs: its caller gets the outcome
                while not write.done:
                    await self._finished.wait()
        return write.outcome()

    async def _run_waiting(self) -> None:
        group = [self._waiting.popleft() for _ in range(min(MAX_GROUP, len(self._waiting)))]
        for write in group:
            write.taken = True
        self._running = True
        try:
            await self._run(group)
        finally:
            self._running = False
            if not group[0].done:  # cancelled before the transaction started: it waits again
                for write in reversed(group):
                    write.taken = False
                    self._waiting.appendleft(write)
            finished, self._finished = self._finished, anyio.Event()
            finished.set()

    async def _run(self, group: Sequence[PendingWrite[W]]) -> None:
        """Run ``group`` in one transaction; mark each write done with its outcome."""
        raise NotImplementedError


_Pending = PendingWrite[Transaction[Any]]


class GroupWriter(WriteQueue[Transaction[Any]]):
    """Runs write transactions on one connection, grouping those that wait; see the docstring."""

    def __init__(self, connection: sqlite3.Connection, mirrors: Sequence[Mirror]) -> None:
        super().__init__()
        self._connection = connection
        self._mirrors = tuple(mirrors)
        self._thread = anyio.CapacityLimiter(1)
        self._since: float | None = None  # monotonic start of the transaction in progress
        self.transactions = 0  # committed or not: how many times the writer ran

    def running_for(self) -> float:
        """Seconds the transaction in progress has taken so far (0 when none is running)."""
        since = self._since
        return 0.0 if since is None else time.monotonic() - since

    async def write(self, work: Transaction[T]) -> T:
        """Run ``work`` in a write transaction, maybe with other writes; see the docstring."""
        result: T = await self._queue(work)
        return result

    async def aclose(self) -> None:
        """Wait for the transaction in progress, then close the connection."""
        async with self._thread:
            self._connection.close()

    async def _run(self, group: Sequence[_Pending]) -> None:
        await anyio.to_thread.run_sync(self._transact, group, limiter=self._thread)

    # -- on the writer thread -------------------------------------------------------------------

    def _transact(self, group: Sequence[_Pending]) -> None:
        self._since = time.monotonic()
        self.transactions += 1
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            for mirror in self._mirrors:
                mirror.begin()
            if len(group) == 1:
                self._run_alone(group[0])
            else:
                self._run_grouped(group)
        except BaseException as error:  # noqa: BLE001 (handed to every caller of the group)
            self._fail_all(group, error)
        finally:
            for write in group:
                write.done = True
            self._since = None

    def _run_alone(self, write: _Pending) -> None:
        write.result = write.work(self._connection)
        self._commit()

    def _run_grouped(self, group: Sequence[_Pending]) -> None:
        connection = self._connection
        for write in group:
            connection.execute("SAVEPOINT write")
            marks = [mirror.mark() for mirror in self._mirrors]
            try:
                write.result = write.work(connection)
            except BaseException as error:  # handed to this write's caller
                if not connection.in_transaction:
                    raise  # the error ended the whole transaction: nothing of it is left
                write.error = error
                connection.execute("ROLLBACK TO write")
                for mirror, mark in zip(self._mirrors, marks, strict=True):
                    mirror.rollback_to(mark)
            connection.execute("RELEASE write")
        self._commit()

    def _commit(self) -> None:
        self._connection.execute("COMMIT")
        for mirror in self._mirrors:
            mirror.committed()

    def _fail_all(self, group: Sequence[_Pending], error: BaseException) -> None:
        """Nothing of the transaction stays: every write of it gets ``error`` (or its own)."""
        if self._connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # connection gone: the next BEGIN says so
                self._connection.rollback()
        for mirror in self._mirrors:
            mirror.begin()
        for write in group:
            if write.error is None:
                write.error = error
            write.result = None
