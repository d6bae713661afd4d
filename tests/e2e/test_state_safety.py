"""The running daemon's state: refused when damaged, private whatever the umask."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import inject, receipts
from tests.support.jsonl import ids_in
from tests.support.permissions import mode
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_an_empty_state_file_stops_the_daemon_with_one_line(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A zero-length ``state.db``: exit 1, one ``daemon.failed`` line saying how to start afresh,
    nothing pulled and the file untouched."""
    (tmp_path / "state.db").touch()
    await inject(emulator, send_statuses=receipts(5))
    config = daemon_config(emulator.url, tmp_path)
    async with running_daemon(tmp_path, config, wait_ready=False) as daemon:
        assert await daemon.wait() == 1
    [failed] = daemon.events("daemon.failed")
    assert "is an empty file" in failed["error"]
    assert "remove" in failed["error"]
    assert "Traceback" not in daemon.log_tail()
    assert (tmp_path / "state.db").stat().st_size == 0
    assert not (tmp_path / "records.jsonl").exists()


async def test_a_sink_cursor_beyond_the_head_stops_the_daemon(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A file sink's cursor moved past the newest record would skip every new record: refused."""
    await inject(emulator, send_statuses=receipts(5))
    config = daemon_config(emulator.url, tmp_path)
    output = tmp_path / "records.jsonl"
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 5, what="the receipts")
        await daemon.stop()
    with sqlite3.connect(tmp_path / "state.db") as connection:
        connection.execute("UPDATE sink_cursors SET acked_seq = acked_seq + 1000")
    connection.close()
    async with running_daemon(tmp_path, config, wait_ready=False) as daemon:
        assert await daemon.wait() == 1
    [failed] = daemon.events("daemon.failed")
    assert "beyond the newest record" in failed["error"]


async def test_files_are_private_under_a_loose_umask(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Started with umask 000: the state directory is 0700, the database, its WAL, SHM and lock
    0600, the file sink 0640."""
    await inject(emulator, send_statuses=receipts(5))
    state = tmp_path / "state"
    config = daemon_config(emulator.url, state)
    output = state / "records.jsonl"
    async with running_daemon(tmp_path, config, umask=0o000) as daemon:
        await wait_until(lambda: len(ids_in(output)) >= 5, what="the receipts")
        assert mode(state) == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm", "state.db.lock"):
            assert mode(state / name) == 0o600, name
        assert mode(output) == 0o640
        await daemon.stop()
