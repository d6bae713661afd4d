"""Limits that protect the daemon from slow or greedy clients."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.server.conftest import SECRET, open_listener

pytestmark = pytest.mark.anyio


async def test_a_request_that_takes_too_long_gets_503(tmp_path: Path) -> None:
    async with open_listener(tmp_path, request_timeout="300ms") as listener:
        before = await listener.snapshot()
        host, port = listener.address
        async with await anyio.connect_tcp(host, port) as stream:
            # Promise 100 bytes, send 2, then stall: the deadline must answer for us.
            await stream.send(
                f"POST /callback/{SECRET}/status HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[ ".encode()
            )
            received = b""
            with anyio.fail_after(30):
                while b"\r\n\r\n" not in received or not received.endswith(b"}"):
                    received += await stream.receive()
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body) == {"error": "request took too long"}
        assert await listener.snapshot() == before
