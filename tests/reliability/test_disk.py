"""The state database becomes unwritable under the running daemon, then writable again.

Queue-mode APIs hand each record out once, so while the daemon cannot commit it must hold the one
page it has and pull no other; it must say it is unhealthy, stay up, and lose nothing.

The "disk full" is ``RLIMIT_FSIZE`` lowered to 0 on the daemon process: every write to a regular
file fails with ``EFBIG`` (CPython ignores ``SIGXFSZ``), which works as root, where permissions do
not stop writes, and needs no mount. It hits the file sink too (also disk trouble, and it must
recover), and it would hit a log file, so the daemon's output goes through a pipe to the test.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator
from tests.support.daemon_process import APP, DaemonProcess, daemon_config
from tests.support.emulator import emulator_truth, request_counts
from tests.support.jsonl import ids_in
from tests.support.notify_socket import notify_socket
from tests.support.ports import free_port
from tests.support.reliability import HealthProbe, listener, live_traffic, reason_of
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

QUEUES = {f"replies:{APP}": "PullSmsReplyStatus", f"send_status:{APP}": "PullSmsSendStatus"}
# Commit retries each queue worker must have logged while its page waits: long enough for a
# daemon that wrongly pulled on to have done so, short enough that the retry backoff (0.5 s
# doubling) is still a few seconds when the disk comes back.
RETRIES_WHILE_FULL = 3


class PipedDaemon(DaemonProcess):
    """A daemon whose output reaches the test through a pipe (its own file writes may fail).

    A thread keeps every line in memory (what ``events`` parses) and copies it to
    ``daemon.log`` for the humans reading a failure.
    """

    def __init__(self, process: subprocess.Popen[bytes], *args: Any) -> None:
        super().__init__(process, *args)
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def pump(self) -> None:
        """Read the pipe until the daemon closes it."""
        assert self.process.stdout is not None
        with self.log_path.open("a") as copy:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    self.lines.append(line)
                copy.write(line + "\n")
                copy.flush()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(self.lines)
        parsed = [json.loads(line) for line in lines if line.startswith("{")]
        return [event for event in parsed if name is None or event.get("event") == name]

    def log_tail(self, lines: int = 40) -> str:
        with self._lock:
            return "\n".join(self.lines[-lines:])

    def limit_file_size(self, limit: int) -> None:
        """Set the daemon's ``RLIMIT_FSIZE`` soft limit (``RLIM_INFINITY`` lifts it)."""
        _soft, hard = resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (limit, hard))


@asynccontextmanager
async def piped_daemon(directory: Path, config: Mapping[str, Any]) -> AsyncIterator[PipedDaemon]:
    """``tcsms-poller run`` on ``config`` with its output piped; yields once READY=1 arrived."""
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config)))
    with notify_socket() as notify:
        process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block; waits are threaded)
            [sys.executable, "-m", "tcsms_poller", "run", "-c", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **notify.environ()},
        )
        daemon = PipedDaemon(process, notify, directory / "daemon.log")
        pump = threading.Thread(target=daemon.pump, name="daemon-output", daemon=True)
        pump.start()
        try:
            await daemon.wait_for_notify("READY=1")
            yield daemon
        finally:
            if process.poll() is None:
                process.kill()
                await daemon.wait()
            await anyio.to_thread.run_sync(pump.join)
            assert process.stdout is not None
            process.stdout.close()


def commit_failures(daemon: PipedDaemon, worker: str) -> list[dict[str, Any]]:
    """The ``state.commit_failed`` lines of ``worker`` so far."""
    return [e for e in daemon.events("state.commit_failed") if e.get("worker") == worker]


def holds_a_page(daemon: PipedDaemon, worker: str) -> bool:
    """Whether ``worker`` has failed to commit a pulled page (and so holds it)."""
    return bool(commit_failures(daemon, worker))


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """An emulator without faults: the trouble in this file is on the daemon's side."""
    return EmulatorOptions(seed=5)


async def test_a_full_disk_holds_the_page_in_hand_and_loses_nothing(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """No queue pull while the state cannot be written; unhealthy, alive, then all once."""
    port = free_port()
    output = tmp_path / "records.jsonl"
    config = daemon_config(emulator.url, tmp_path, server=listener(port))
    async with piped_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
        health = HealthProbe(client, port)
        async with live_traffic(emulator, seed=7) as traffic:
            await wait_until(lambda: len(ids_in(output)) >= 20, what="records before the trouble")

            daemon.limit_file_size(0)
            for worker in QUEUES:
                await wait_until(
                    partial(holds_a_page, daemon, worker),
                    what=f"{worker} to hold a page it cannot commit",
                )
            held = {action: request_counts(emulator, action) for action in QUEUES.values()}
            batches = traffic.batches
            await wait_until(
                lambda: (
                    traffic.batches >= batches + 10
                    and all(len(commit_failures(daemon, w)) > RETRIES_WHILE_FULL for w in QUEUES)
                ),
                what="commit retries while records queue up",
            )
            now = {action: request_counts(emulator, action) for action in QUEUES.values()}
            assert now == held, "a queue was pulled while the page in hand could not be committed"
            body = await health.wait_for(503, unhealthy=list(QUEUES))
            for worker in QUEUES:
                assert reason_of(body, worker).startswith("state database write failed:"), body
            assert daemon.process.poll() is None, "the daemon died of a full disk"

            daemon.limit_file_size(resource.RLIM_INFINITY)
            await health.wait_for(200)
        expected = await emulator_truth(emulator)
        await wait_until(lambda: set(ids_in(output)) >= expected, what="every record")
        await daemon.stop()
    delivered = ids_in(output)
    assert set(delivered) == expected
    assert Counter(delivered).most_common(1)[0][1] == 1, "a record was delivered twice"
