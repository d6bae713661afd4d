"""Limits that protect the daemon from slow or greedy clients."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from tests.server.conftest import SECRET, TOKEN, open_listener
from tests.server.test_callbacks import RECEIPT

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


async def stalled_upload(host: str, port: int) -> anyio.abc.SocketStream:
    """A push whose body never comes: a request in progress until its deadline."""
    stream = await anyio.connect_tcp(host, port)
    await stream.send(
        f"POST /callback/{SECRET}/status HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[ ".encode()
    )
    return stream


async def test_requests_beyond_max_concurrency_get_503_until_others_finish(
    tmp_path: Path,
) -> None:
    """Two stalled pushes fill ``max_concurrency: 2`` of the callbacks' budget: a third push is
    turned away at once while ``/healthz`` and the API still answer, and pushes are served again
    as soon as the stalled ones are gone."""
    async with open_listener(tmp_path, max_concurrency=2) as listener:
        host, port = listener.address

        async def post_push() -> httpx.Response:
            return await listener.client.post(f"/callback/{SECRET}/status", json=[RECEIPT])

        with anyio.fail_after(30):
            streams = [await stalled_upload(host, port) for _ in range(2)]
            # The server counts a request once its headers are in: ask until both are.
            while (push := await post_push()).status_code != 503:  # noqa: ASYNC110 (no event to wait on across the socket)
                await anyio.sleep(0.05)
            assert push.headers["retry-after"] == "1"
            assert (await listener.client.get("/healthz")).status_code == 200
            assert (await listener.client.get("/metrics")).status_code == 200
            for stream in streams:
                await stream.aclose()
            while (push := await post_push()).status_code == 503:  # noqa: ASYNC110 (no event to wait on across the socket)
                await anyio.sleep(0.05)
            assert push.status_code == 200


async def wait_closed(stream: anyio.abc.SocketStream) -> None:
    """Return once the server has closed ``stream`` (it never answers anything on it)."""
    while True:
        try:
            data = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return
        assert data == b"", "the server answered instead of closing"


async def test_a_connection_that_sends_no_request_is_closed_after_header_timeout(
    tmp_path: Path,
) -> None:
    """A silent socket and one sending a header line by line both lose their connection once
    ``header_timeout`` passes without a complete request; a keep-alive client is unaffected."""
    async with open_listener(tmp_path, header_timeout="300ms") as listener:
        host, port = listener.address
        silent = await anyio.connect_tcp(host, port)
        dribbling = await anyio.connect_tcp(host, port)
        await dribbling.send(b"GET /healthz HTTP/1.1\r\n")
        started = anyio.current_time()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_closed, silent)

                async def dribble() -> None:
                    for line in range(1000):
                        try:
                            await dribbling.send(f"X-Line-{line}: 1\r\n".encode())
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                            return  # the server shut the socket
                        await anyio.sleep(0.05)
                    raise AssertionError("50 s of header lines and the connection still open")

                tg.start_soon(dribble)
        await silent.aclose()
        await dribbling.aclose()
        assert anyio.current_time() - started >= 0.25
        assert (await listener.client.get("/healthz")).status_code == 200


async def test_beyond_max_connections_the_oldest_idle_connection_makes_room(
    tmp_path: Path,
) -> None:
    """With ``max_connections: 4`` held by idle sockets, a newcomer is served and the oldest
    idle socket is the one closed."""
    async with open_listener(tmp_path, max_connections=4) as listener:
        host, port = listener.address
        await listener.client.aclose()  # its keep-alive connection would count too
        with anyio.fail_after(20):
            idle = [await anyio.connect_tcp(host, port) for _ in range(4)]
            await idle[0].send(b"GET /healthz HTTP/1.1\r\n")  # half a request is still idle
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                assert (await client.get("/healthz")).status_code == 200
            await wait_closed(idle[0])
            await idle[1].send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await idle[1].receive()).startswith(b"HTTP/1.1 200")
        for stream in idle:
            await stream.aclose()
