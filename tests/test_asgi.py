"""uvicorn embedded in a task group: real port, graceful stop, no signal handlers taken."""

from __future__ import annotations

import signal

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tcsms_poller.asgi import serve_asgi

pytestmark = pytest.mark.anyio


def make_app(entered: anyio.Event, release: anyio.Event) -> Starlette:
    async def hello(request: Request) -> Response:
        return JSONResponse({"hello": "world"})

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return JSONResponse({"finished": True})

    return Starlette(routes=[Route("/", hello), Route("/slow", slow)])


async def test_serves_on_a_free_port_and_keeps_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    async with serve_asgi(make_app(anyio.Event(), anyio.Event()), "127.0.0.1", 0) as (host, port):
        assert host == "127.0.0.1"
        assert port > 0
        assert signal.getsignal(signal.SIGTERM) is before
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{host}:{port}/")
        assert response.json() == {"hello": "world"}
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://{host}:{port}/")


async def test_a_request_in_progress_finishes_during_shutdown() -> None:
    entered, release = anyio.Event(), anyio.Event()
    results: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=30) as client, anyio.create_task_group() as tg:
        async with serve_asgi(make_app(entered, release), "127.0.0.1", 0) as (host, port):

            async def call() -> None:
                results.append(await client.get(f"http://{host}:{port}/slow"))

            tg.start_soon(call)
            await entered.wait()
            tg.start_soon(lambda: _release_soon(release))
        # Leaving the block waited for the slow request instead of cutting it off.
        assert release.is_set()
    assert [r.json() for r in results] == [{"finished": True}]


async def _release_soon(release: anyio.Event) -> None:
    await anyio.lowlevel.checkpoint()
    release.set()


async def test_a_busy_port_is_an_os_error() -> None:
    app = make_app(anyio.Event(), anyio.Event())
    async with serve_asgi(app, "127.0.0.1", 0) as (_, port):
        with pytest.raises(OSError, match="in use"):
            async with serve_asgi(app, "127.0.0.1", port):
                pass


async def test_a_kept_alive_connection_is_not_held_back_by_delayed_acks() -> None:
    """Each response leaves at once: Nagle's algorithm would hold its body back ~40 ms."""
    async with (
        serve_asgi(make_app(anyio.Event(), anyio.Event()), "127.0.0.1", 0) as (host, port),
        httpx.AsyncClient() as client,
    ):
        durations = []
        for _ in range(11):  # one connection: all but the first reuse it
            started = anyio.current_time()
            response = await client.get(f"http://{host}:{port}/")
            durations.append(anyio.current_time() - started)
            assert response.json() == {"hello": "world"}
    assert sorted(durations)[len(durations) // 2] < 0.02  # 40 ms and more each with Nagle on
