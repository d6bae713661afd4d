"""The running daemon's file sink when its file, directory and all, is removed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import inject, receipts
from tests.support.jsonl import ids_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_records_after_the_directory_is_removed_go_to_a_new_file(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """No batch is acknowledged into the deleted file: the next ones land in a new file at the
    path, and the removal is logged."""
    output = tmp_path / "out" / "records.jsonl"
    config = daemon_config(emulator.url, tmp_path, sinks=[{"type": "file", "path": str(output)}])
    await inject(emulator, send_statuses=receipts(5))
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) == 5, what="the first receipts")
        first = set(ids_in(output))
        shutil.rmtree(output.parent)
        await inject(emulator, send_statuses=receipts(7, at=1_700_000_000))
        await wait_until(lambda: len(ids_in(output)) >= 7, what="the later receipts")
        await daemon.stop()
    later = ids_in(output)
    assert len(later) == 7
    assert not first & set(later)
    assert len(daemon.events("sink.file_deleted")) == 1
