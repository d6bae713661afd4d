"""Limits that protect the daemon from slow or greedy clients."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from tests.server.conftest import SECRET, TOKEN, open_listener

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        (f"/callback/{SECRET}/status", {"result": 1, "errmsg": "request took too long"}),
        ("/v1/conversions", {"error": "request took too long"}),
    ],
    ids=["callback-in-tencent-format", "api"],
)
async def test_a_request_that_takes_too_long_gets_503(
    tmp_path: Path, path: str, answer: dict[str, object]
) -> None:
    """A stalled upload is cut off with a 503 in the format of the route's callers."""
    async with open_listener(tmp_path, request_timeout="300ms") as listener:
        before = await listener.snapshot()
        host, port = listener.address
        async with await anyio.connect_tcp(host, port) as stream:
            # Promise 100 bytes, send 2, then stall: the deadline must answer for us.
            await stream.send(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[ ".encode()
            )
            received = b""
            with anyio.fail_after(30):
                while b"\r\n\r\n" not in received or not received.endswith(b"}"):
                    received += await stream.receive()
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body) == answer
        assert await listener.snapshot() == before


async def test_requests_beyond_max_concurrency_get_503_until_others_finish(
    tmp_path: Path,
) -> None:
    """Two stalled uploads and the newcomer's own connection fill ``max_concurrency: 3``: the
    request is turned away at once, and served again as soon as the uploads are gone."""
    async with open_listener(tmp_path, max_concurrency=3) as listener:
        host, port = listener.address
        await listener.client.aclose()  # its idle keep-alive connection would count too

        async def stalled_upload(stream: anyio.abc.SocketStream) -> None:
            await stream.send(
                f"POST /callback/{SECRET}/status HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[ ".encode()
            )

        async def status_of_healthz() -> int:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                return (await client.get("/healthz")).status_code

        with anyio.fail_after(30):
            streams = [await anyio.connect_tcp(host, port) for _ in range(2)]
            for stream in streams:
                await stalled_upload(stream)
            assert await status_of_healthz() == 503
            for stream in streams:
                await stream.aclose()
            # The server learns of the closes on its own time: ask until it has.
            while (status := await status_of_healthz()) == 503:  # noqa: ASYNC110 (no event to wait on across the socket)
                await anyio.sleep(0.05)
            assert status == 200
