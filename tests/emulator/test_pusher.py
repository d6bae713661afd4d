"""Push callbacks against a local receiver: Tencent's shapes, batches, retries, still pullable."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tcsms_poller.asgi import serve_asgi
from tcsms_poller.emulator import EmulatorOptions, PushOptions, RunningEmulator, run_emulator
from tcsms_poller.emulator.pusher import status_payload
from tcsms_poller.tencent.models import parse_replies, parse_send_statuses
from tcsms_poller.tencent.push import parse_reply_push, parse_status_push
from tests.support.emulator_api import APP, NUMBER, Api, receipt
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


class Receiver:
    """Records every push; answers 500 to the first ``failures`` of each kind, then OK."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: dict[str, int] = {"status": 0, "reply": 0}
        self.bodies: dict[str, list[Any]] = {"status": [], "reply": []}
        self._arrived = anyio.Event()

    async def receive(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        self.attempts[kind] += 1
        self._arrived.set()
        self._arrived = anyio.Event()
        if self.attempts[kind] <= self.failures:
            return JSONResponse({"result": 1, "errmsg": "busy"}, status_code=500)
        self.bodies[kind].append(json.loads(await request.body()))
        return JSONResponse({"result": 0, "errmsg": "OK"})

    async def wait_until(self, condition: Callable[[], bool], seconds: float = 20) -> None:
        """Wait for arrivals until ``condition`` holds."""
        with anyio.fail_after(seconds):
            while not condition():
                await self._arrived.wait()


@asynccontextmanager
async def pushing_emulator(receiver: Receiver) -> AsyncIterator[RunningEmulator]:
    """A receiver on a free port and an emulator pushing to it."""
    app = Starlette(routes=[Route("/{kind}", receiver.receive, methods=["POST"])])
    async with serve_asgi(app, "127.0.0.1", 0) as (host, port):
        push = PushOptions(
            status_url=f"http://{host}:{port}/status",
            reply_url=f"http://{host}:{port}/reply",
            interval=0.2,
            retry_delay=0.01,
        )
        async with run_emulator(EmulatorOptions(push=push)) as emulator:
            yield emulator


async def test_pushes_parse_and_match_the_pulled_records() -> None:
    """150 receipts in batches of at most 100, a reply alone; each equals its pulled copy."""
    receiver = Receiver()
    now = int(time.time())
    async with pushing_emulator(receiver) as emulator, httpx.AsyncClient() as http:
        api = Api(emulator, http)
        await api.inject(
            send_statuses=[
                {
                    "phone_number": NUMBER,
                    "user_receive_time": now - i,
                    "report_status": "FAIL" if i % 10 == 0 else "SUCCESS",
                    "session_context": f"ctx-{i}" if i % 3 == 0 else None,
                }
                for i in range(150)
            ],
            replies=[{"phone_number": NUMBER, "reply_content": "好的", "extend_code": "11"}],
        )
        await receiver.wait_until(
            lambda: (
                sum(map(len, receiver.bodies["status"])) == 150
                and len(receiver.bodies["reply"]) == 1
            )
        )
        pulled = parse_send_statuses(
            await api.call("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 100})
        )
        pulled_more = parse_send_statuses(
            await api.call("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 100})
        )
        pulled_reply = parse_replies(
            await api.call("PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": 1})
        )
        stats = (await api.control("GET", "stats"))["push"]
    assert all(len(body) <= 100 for body in receiver.bodies["status"])
    # The push documents no SessionContext: the pulled copy alone carries it.
    assert not any("ext" in item for body in receiver.bodies["status"] for item in body)
    pushed = [
        status for body in receiver.bodies["status"] for status, _ in parse_status_push(body).items
    ]
    assert sorted(pushed, key=lambda s: s.serial_no) == sorted(
        (s._replace(session_context=None) for s in pulled.items + pulled_more.items),
        key=lambda s: s.serial_no,
    )
    contexts = [s.session_context for s in pulled.items + pulled_more.items]
    assert {c for c in contexts if c} == {f"ctx-{i}" for i in range(0, 150, 3)}
    assert {c for c in contexts if not c} <= {"", None}  # unset: "" as Tencent answers
    assert [
        reply for body in receiver.bodies["reply"] for reply in parse_reply_push(body).items
    ] == list(pulled_reply.items)
    first = receiver.bodies["status"][0][0]
    assert set(first) >= {"user_receive_time", "nationcode", "mobile", "report_status", "errmsg"}
    assert set(first) >= {"description", "sid"}
    assert stats["status"]["items"] == 150
    assert stats["status"]["given_up"] == stats["reply"]["given_up"] == 0


async def test_a_failed_push_is_retried_twice() -> None:
    """Two failures, then OK: three attempts, delivered."""
    receiver = Receiver(failures=2)
    async with pushing_emulator(receiver) as emulator, httpx.AsyncClient() as http:
        api = Api(emulator, http)
        await api.inject(replies=[{"phone_number": NUMBER, "reply_content": "Y"}])
        await receiver.wait_until(lambda: len(receiver.bodies["reply"]) == 1)
        pusher = emulator.state.pusher
        assert pusher is not None
        await wait_until(lambda: pusher.reply_stats.delivered == 1, timeout=10.0, interval=0.01)
        stats = (await api.control("GET", "stats"))["push"]["reply"]
    assert receiver.attempts["reply"] == 3
    assert stats == {"pushes": 1, "items": 1, "attempts": 3, "delivered": 1, "given_up": 0}


async def test_a_push_failing_three_times_is_given_up_but_still_pullable() -> None:
    """Tencent gives up after three attempts; the receipt can still be pulled."""
    receiver = Receiver(failures=100)
    async with pushing_emulator(receiver) as emulator, httpx.AsyncClient() as http:
        api = Api(emulator, http)
        injected = await api.inject(send_statuses=[{"phone_number": NUMBER}])
        await receiver.wait_until(lambda: receiver.attempts["status"] == 3)
        pusher = emulator.state.pusher
        assert pusher is not None
        await wait_until(lambda: pusher.status_stats.given_up == 1, timeout=10.0, interval=0.01)
        answer = await api.call("PullSmsSendStatus", {"SmsSdkAppId": APP, "Limit": 10})
    assert receiver.bodies["status"] == []
    assert [item["SerialNo"] for item in answer["PullSmsSendStatusSet"]] == [
        injected["send_statuses"][0]["serial_no"]
    ]


async def test_records_injected_without_push_are_not_pushed() -> None:
    """``push: false`` keeps injected records off the callbacks."""
    receiver = Receiver()
    async with pushing_emulator(receiver) as emulator, httpx.AsyncClient() as http:
        api = Api(emulator, http)
        await api.inject(send_statuses=[{"phone_number": NUMBER, "serial_no": "quiet"}], push=False)
        await api.inject(send_statuses=[{"phone_number": NUMBER, "serial_no": "loud"}])
        await receiver.wait_until(lambda: len(receiver.bodies["status"]) == 1)
    assert [item["sid"] for item in receiver.bodies["status"][0]] == ["loud"]


def test_a_placeholder_is_pushed_without_status_time_or_texts() -> None:
    """A receipt before the carrier reported goes out with those fields empty, and the daemon's
    parser counts it as pending."""
    final = receipt(1_764_000_000, "s-1")
    body = [status_payload(final.placeholder()), status_payload(final)]
    assert {key: body[0][key] for key in ("report_status", "errmsg", "description")} == {
        "report_status": "",
        "errmsg": "",
        "description": "",
    }
    assert body[0]["user_receive_time"] == ""
    page = parse_status_push(body)
    assert ([status.serial_no for status, _ in page.items], page.pending) == (["s-1"], 1)
