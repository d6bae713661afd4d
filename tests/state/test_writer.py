"""Group commit on a real SQLite file: writes that wait share a transaction, and fail alone."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from anyio import wait_all_tasks_blocked

from tcsms_poller.state.writer import GroupWriter


class Journal:
    """A ``Mirror`` that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def begin(self) -> None:
        self.events.append("begin")

    def mark(self) -> object:
        self.events.append("mark")
        return len(self.events)

    def rollback_to(self, mark: object) -> None:
        self.events.append(f"rollback_to {mark}")

    def committed(self) -> None:
        self.events.append("committed")


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
async def writer(tmp_path: Path, journal: Journal) -> AsyncIterator[GroupWriter]:
    connection = sqlite3.connect(
        tmp_path / "state.db", isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE t (v TEXT)")
    writer = GroupWriter(connection, [journal])
    yield writer
    await writer.aclose()


def insert(value: str) -> Callable[[sqlite3.Connection], str]:
    def work(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO t VALUES (?)", (value,))
        return value

    return work


@pytest.fixture
def committed(tmp_path: Path) -> Callable[[], list[str]]:
    """What is committed, read as another process would."""

    def read() -> list[str]:
        other = sqlite3.connect(tmp_path / "state.db")
        try:
            return sorted(v for (v,) in other.execute("SELECT v FROM t"))
        finally:
            other.close()

    return read


class Blocker:
    """A write that holds the writer thread until released, so that the next ones queue up."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()

    def __call__(self, connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO t VALUES ('blocker')")
        self.running.set()
        assert self.release.wait(20)
        return "blocker"

    async def started(self) -> None:
        """Return once the writer thread runs the blocker."""
        assert await anyio.to_thread.run_sync(self.running.wait, 20)


async def grouped(
    writer: GroupWriter, works: list[Callable[[sqlite3.Connection], str]]
) -> list[str | BaseException]:
    """Run ``works`` queued behind a blocker, so that they form one group; their outcomes."""
    blocker = Blocker()
    outcomes: list[str | BaseException] = [""] * len(works)

    async def run(index: int) -> None:
        try:
            outcomes[index] = await writer.write(works[index])
        except Exception as error:  # noqa: BLE001 (the test inspects it)
            outcomes[index] = error

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.write, blocker)
            await blocker.started()
            for index in range(len(works)):
                tg.start_soon(run, index)
            await wait_all_tasks_blocked()
            blocker.release.set()
    return outcomes


@pytest.mark.anyio
async def test_writes_that_wait_share_one_transaction(
    writer: GroupWriter, committed: Callable[[], list[str]]
) -> None:
    outcomes = await grouped(writer, [insert(v) for v in "abcde"])
    assert outcomes == list("abcde")  # each caller gets its own result
    assert writer.transactions == 2  # the blocker's, then one for all five
    assert committed() == ["a", "b", "blocker", "c", "d", "e"]


@pytest.mark.anyio
async def test_a_failing_write_rolls_back_alone(
    writer: GroupWriter, journal: Journal, committed: Callable[[], list[str]]
) -> None:
    """Its caller gets its exception, its rows and its mirror changes go; the others commit."""

    def fail(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO t VALUES ('lost')")
        raise ValueError("no")

    outcomes = await grouped(writer, [insert("a"), fail, insert("c")])
    assert outcomes[0::2] == ["a", "c"]
    assert isinstance(outcomes[1], ValueError)
    assert committed() == ["a", "blocker", "c"]
    assert journal.events == [
        *("begin", "committed"),  # the blocker, alone: no savepoint
        *("begin", "mark", "mark", "rollback_to 5", "mark", "committed"),
    ]


@pytest.mark.anyio
async def test_an_error_that_ends_the_transaction_fails_the_whole_group(
    writer: GroupWriter, committed: Callable[[], list[str]]
) -> None:
    """Like a full disk: SQLite rolled everything back, so no caller of the group may think
    its write committed."""

    def disk_full(connection: sqlite3.Connection) -> str:
        connection.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    outcomes = await grouped(writer, [insert("a"), disk_full, insert("c")])
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes), outcomes
    assert committed() == ["blocker"]
    assert await writer.write(insert("d")) == "d"  # the writer goes on
    assert committed() == ["blocker", "d"]


@pytest.mark.anyio
async def test_a_cancelled_write_that_waits_never_runs(
    writer: GroupWriter, committed: Callable[[], list[str]]
) -> None:
    blocker = Blocker()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.write, blocker)
            await blocker.started()
            tg.start_soon(writer.write, insert("b"))
            waiting = anyio.CancelScope()

            async def cancelled_write() -> None:
                with waiting:
                    await writer.write(insert("never"))

            tg.start_soon(cancelled_write)
            await wait_all_tasks_blocked()
            waiting.cancel()
            await wait_all_tasks_blocked()
            blocker.release.set()
    assert committed() == ["b", "blocker"]
    assert writer.transactions == 2


@pytest.mark.anyio
async def test_a_write_that_runs_completes_though_its_caller_is_cancelled(
    writer: GroupWriter, committed: Callable[[], list[str]]
) -> None:
    """Cancelled while its group's transaction runs, a caller still gets the outcome."""
    first, second = Blocker(), Blocker()
    outcome = ""
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.write, first)
            await first.started()
            tg.start_soon(writer.write, second)
            caller = anyio.CancelScope()

            async def cancelled_caller() -> None:
                nonlocal outcome
                with caller:
                    outcome = await writer.write(insert("b"))

            tg.start_soon(cancelled_caller)
            await wait_all_tasks_blocked()
            first.release.set()  # the second blocker and "b" run next, in one transaction
            await second.started()
            caller.cancel()
            await wait_all_tasks_blocked()
            second.release.set()
    assert outcome == "b"
    assert committed() == ["b", "blocker", "blocker"]
    assert writer.transactions == 2


@pytest.mark.anyio
async def test_a_write_cancelled_before_its_thread_starts_never_runs(
    writer: GroupWriter, committed: Callable[[], list[str]]
) -> None:
    """Cancelled on its way to the writer thread, a write is taken back, and the writer goes on."""
    with anyio.fail_after(20):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await writer.write(insert("never"))
        assert await writer.write(insert("a")) == "a"
    assert committed() == ["a"]
