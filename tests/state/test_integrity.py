"""The state database is vetted before it is trusted, and created whole and private."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tcsms_poller.state import StateError, integrity
from tcsms_poller.state.store import SqliteStore
from tests.support.log_capture import captured_logs, json_lines
from tests.support.permissions import mode, no_umask
from tests.support.records import records

pytestmark = pytest.mark.anyio
__all__ = ["no_umask"]  # a fixture
TTL = 8 * 86_400.0


async def a_database_with_records(path: Path, count: int = 3) -> int:
    """A real state database with ``count`` records and a sink ``file`` at the head."""
    store = await SqliteStore.open(path, dedupe_ttl=TTL)
    await store.commit(records(*(f"id-{n}" for n in range(count))))
    await store.sink_cursor("file")
    head = store.head
    await store.aclose()
    return head


async def refused(path: Path) -> str:
    """The one-line reason ``StateStore.open`` refuses ``path`` with."""
    with pytest.raises(StateError) as caught:
        await SqliteStore.open(path, dedupe_ttl=TTL)
    message = str(caught.value)
    assert "\n" not in message
    return message


async def test_an_empty_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    message = await refused(path)
    assert "empty file" in message
    assert f"remove {path}" in message
    assert path.stat().st_size == 0


async def test_a_database_without_our_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    other.close()
    assert "has no tcsms-poller schema" in await refused(path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not sqlite at all " * 400)
    assert "cannot be read as a database" in await refused(path)


async def test_a_sink_cursor_beyond_the_head_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    head = await a_database_with_records(path)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE sink_cursors SET acked_seq = ? WHERE name = 'file'", (head + 50,)
        )
    connection.close()
    message = await refused(path)
    assert f"sink 'file' acknowledged up to {head + 50}, beyond the newest record {head}" in message


@pytest.mark.parametrize("position", ["{not json", "[1, 2]", "42"])
async def test_a_position_that_is_not_a_json_object_is_refused(
    tmp_path: Path, position: str
) -> None:
    path = tmp_path / "state.db"
    await a_database_with_records(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE sink_cursors SET position = ? WHERE name = 'file'", (position,))
    connection.close()
    assert "unreadable position for sink 'file'" in await refused(path)


async def test_a_corrupted_outbox_page_is_refused(tmp_path: Path) -> None:
    """A page of the outbox overwritten with garbage: ``quick_check`` finds it at start."""
    path = tmp_path / "state.db"
    await a_database_with_records(path, count=2000)
    with sqlite3.connect(path) as connection:
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        (root,) = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'outbox'"
        ).fetchone()
    connection.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)
    assert "is damaged (quick_check:" in await refused(path)


async def test_quick_check_gives_up_after_its_budget_and_the_state_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that would take longer than the budget stops there: a warning, not a refusal."""
    path = tmp_path / "state.db"
    await a_database_with_records(path, count=2000)
    monkeypatch.setattr(integrity, "QUICK_CHECK_BUDGET", -1.0)
    with captured_logs() as out:
        store = await SqliteStore.open(path, dedupe_ttl=TTL)
    await store.aclose()
    assert [line["event"] for line in json_lines(out)] == ["state.quick_check_incomplete"]


async def test_a_new_database_is_created_whole_and_private_whatever_the_umask(
    tmp_path: Path, no_umask: None
) -> None:
    """Under umask 000 the directory is 0700, the database, WAL and SHM 0600; a leftover of a
    first start that crashed midway is replaced."""
    directory = tmp_path / "state"
    path = directory / "state.db"
    directory.mkdir()
    directory.chmod(0o700)
    (directory / "state.db.new").write_bytes(b"")  # a crash between create and rename
    nested = tmp_path / "deep" / "state" / "state.db"
    for target in (path, nested):
        store = await SqliteStore.open(target, dedupe_ttl=TTL)
        await store.commit(records("a", "b"))
        assert mode(target.parent) == 0o700
        for name in ("", "-wal", "-shm"):
            assert mode(Path(f"{target}{name}")) == 0o600, name
        await store.aclose()
    assert mode(tmp_path / "deep") == 0o700
    assert not (directory / "state.db.new").exists()


async def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    """The file is restricted; the operator's directory is left as it is, with a warning."""
    path = tmp_path / "state.db"
    await a_database_with_records(path)
    path.chmod(0o644)
    os.chmod(tmp_path, 0o755)  # noqa: S103 (the loose directory under test)
    with captured_logs() as out:
        store = await SqliteStore.open(path, dedupe_ttl=TTL)
    await store.aclose()
    assert mode(path) == 0o600
    assert mode(tmp_path) == 0o755
    [warning] = json_lines(out)
    assert (warning["event"], warning["mode"]) == ("state.directory_not_private", "0o755")
