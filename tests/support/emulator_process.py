"""The emulator in a process of its own (``tcsms-poller emulator``), for runs whose test process is
too busy to serve it: an emulator in the test's event loop stamps requests as late as that loop
wakes up, and its strict limits then count requests closer together than they were sent.

Everything a test reads from it goes over its control endpoints (``/_emulator/...``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["EmulatorProcess", "emulator_process"]

ANNOUNCEMENT = b"emulator listening on "


@dataclass(frozen=True, slots=True)
class EmulatorProcess:
    """A serving emulator process: its base URL and its process id."""

    url: str
    pid: int


@asynccontextmanager
async def emulator_process(
    log: Path, *, seed: int, flags: Sequence[str] = ()
) -> AsyncIterator[EmulatorProcess]:
    """Serve an emulator without traffic on a free loopback port while the block runs (its logs
    in ``log``); SIGTERM at the end, which it must answer with exit code 0."""
    command = [sys.executable, "-m", "tcsms_poller", "emulator", "--listen", "127.0.0.1:0"]
    command += ["--seed", str(seed), "--no-traffic", *flags]
    with log.open("wb") as stderr:
        async with await anyio.open_process(command, stderr=stderr) as process:
            assert process.stdout is not None
            with anyio.fail_after(30):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 200)
            assert line.startswith(ANNOUNCEMENT), line
            try:
                yield EmulatorProcess(line.removeprefix(ANNOUNCEMENT).decode(), process.pid)
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    code = await process.wait()
    assert code == 0, f"the emulator exited with {code}; its log: {log}"
