"""The running daemon's listener under clients that open connections and never finish a request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.server.test_callbacks import RECEIPT
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import inject, receipts
from tests.support.jsonl import ids_in
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio
TOKEN = "listener-token-0123456789"
CALLBACK = "callback-secret-0123456789"
PUSH = {**RECEIPT, "sid": "2019:-987654321"}


def listener_config(
    emulator: RunningEmulator, directory: Path, port: int, **server: Any
) -> dict[str, Any]:
    return daemon_config(
        emulator.url,
        directory,
        server={
            "listen": f"127.0.0.1:{port}",
            "token": TOKEN,
            "callback_secret": CALLBACK,
            **server,
        },
    )


@asynccontextmanager
async def idle_connections(port: int, count: int) -> AsyncIterator[list[anyio.abc.SocketStream]]:
    """``count`` connections that never send a byte."""
    async with AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
            for _ in range(count)
        ]
        yield streams


@asynccontextmanager
async def slow_header_connections(port: int, count: int) -> AsyncIterator[None]:
    """``count`` connections each sending a request's headers one line every 200 ms, for ever."""

    async def dribble(stream: anyio.abc.SocketStream) -> None:
        await stream.send(f"POST /callback/{CALLBACK}/status HTTP/1.1\r\n".encode())
        line = 0
        while True:
            await anyio.sleep(0.2)
            await stream.send(f"X-Slow-{line}: 1\r\n".encode())
            line += 1

    async with idle_connections(port, count) as streams, anyio.create_task_group() as tg:
        for stream in streams:
            tg.start_soon(_until_closed, dribble, stream)
        yield
        tg.cancel_scope.cancel()


async def _until_closed(dribble: Any, stream: anyio.abc.SocketStream) -> None:
    # The server may close it: the header deadline at work.
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await dribble(stream)


async def closed_by_server(stream: anyio.abc.SocketStream) -> bool:
    try:
        return await stream.receive() == b""
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return True


async def test_healthz_and_pushes_are_answered_under_idle_and_slow_header_connections(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Twice ``max_concurrency`` connections, half silent and half sending headers line by line,
    leave ``/healthz`` and a push answered within 1 s; the header deadline then closes them."""
    port = free_port()
    config = listener_config(emulator, tmp_path, port, max_concurrency=8, header_timeout="3s")
    async with (
        running_daemon(tmp_path, config) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        async with idle_connections(port, 8) as silent, slow_header_connections(port, 8):
            with anyio.fail_after(1):
                health = await client.get("/healthz")
            with anyio.fail_after(1):
                push = await client.post(f"/callback/{CALLBACK}/status", json=[PUSH])
            assert health.status_code == 200, health.text
            assert push.json() == {"result": 0, "errmsg": "OK"}
            with anyio.fail_after(30):
                for stream in silent:
                    assert await closed_by_server(stream)
        await daemon.stop()
    assert "2019:-987654321" in ids_in(tmp_path / "records.jsonl")


async def test_the_default_limits_hold_128_idle_connections_off(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """With the shipped defaults (``max_concurrency: 64``), 64 silent and 64 slow-header
    connections leave ``/healthz`` and a push answered within 1 s."""
    port = free_port()
    config = listener_config(emulator, tmp_path, port)
    async with (
        running_daemon(tmp_path, config) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        async with idle_connections(port, 64), slow_header_connections(port, 64):
            with anyio.fail_after(1):
                health = await client.get("/healthz")
            with anyio.fail_after(1):
                push = await client.post(f"/callback/{CALLBACK}/status", json=[PUSH])
        assert health.status_code == 200, health.text
        assert push.status_code == 200, push.text
        await daemon.stop()


async def test_connections_beyond_the_open_files_limit_neither_flood_the_log_nor_stop_pulls(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Started with a soft limit of 200 open files (hard 400), the daemon raises it to 400 and
    caps connections at 200: 450 silent connections cost no ``accept()`` error, pulls and the
    file sink go on, ``/healthz`` answers, and the cap's warning is one line per interval."""
    port = free_port()
    config = listener_config(emulator, tmp_path, port, max_concurrency=8)
    output = tmp_path / "records.jsonl"
    async with (
        running_daemon(tmp_path, config, open_files=(200, 400)) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
        assert any(
            line.startswith("Max open files") and line.split()[3:5] == ["400", "400"]
            for line in limits.splitlines()
        ), limits
        async with idle_connections(port, 450):
            started = time.monotonic()
            await inject(emulator, send_statuses=receipts(120))
            await wait_until(lambda: len(ids_in(output)) >= 120, what="every receipt")
            with anyio.fail_after(1):
                health = await client.get("/healthz")
            assert health.status_code == 200, health.text
            assert time.monotonic() - started < 30
        await daemon.stop()
    lines = daemon.log_path.read_text().splitlines()
    assert not [
        line for line in lines if "accept()" in line
    ]  # asyncio: "socket.accept() out of system resource"
    full = daemon.events("listener.connections_full")
    assert 1 <= len(full) <= 10, len(full)
