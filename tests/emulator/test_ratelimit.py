"""Strict per-action limits: exact boundaries on a fake clock, then the real thing over HTTP."""

from __future__ import annotations

import json
import threading
import time

import anyio
import anyio.to_thread
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcsms_poller.emulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, EmulatorOptions
from tcsms_poller.emulator.ratelimit import SlidingWindowLimiter
from tcsms_poller.tencent import API_VERSION, SERVICE
from tcsms_poller.tencent.signing import TC3Auth
from tests.support.emulator_api import APP, Api

RATES = [1, 10, 20, 100, 1000]


def refusals(limiter: SlidingWindowLimiter, rate: float, seconds: float) -> int:
    """How many requests of a client evenly paced at ``rate`` per second are refused."""
    count = int(rate * seconds)
    return sum(not limiter.admit(index / rate) for index in range(count))


@pytest.mark.parametrize("rate", RATES)
def test_a_client_paced_at_exactly_the_limit_is_never_refused(rate: int) -> None:
    """N requests per second, evenly spaced, for ten seconds: all admitted."""
    assert refusals(SlidingWindowLimiter(rate), rate, 10) == 0


@pytest.mark.parametrize("rate", RATES)
def test_a_client_one_percent_too_fast_is_caught(rate: int) -> None:
    """1.01 N per second is refused within three seconds."""
    assert refusals(SlidingWindowLimiter(rate), rate * 1.01, 3) > 0


def test_one_window_alone_would_miss_one_percent() -> None:
    """Why the limiter also looks at two seconds: 1 s - 10 ms alone lets 1.01 N through."""
    assert refusals(SlidingWindowLimiter(100, horizon=1), 101, 10) == 0
    assert refusals(SlidingWindowLimiter(100, horizon=2), 101, 10) > 0


def test_a_burst_gets_exactly_the_limit() -> None:
    """2N requests at one instant: N admitted, N refused."""
    limiter = SlidingWindowLimiter(20)
    assert [limiter.admit(5.0) for _ in range(40)] == [True] * 20 + [False] * 20


def test_refused_requests_do_not_count() -> None:
    """After a refused burst, the next second has the full rate again."""
    limiter = SlidingWindowLimiter(20)
    for _ in range(100):
        limiter.admit(5.0)
    assert all(limiter.admit(6.0) for _ in range(20))
    assert not limiter.admit(6.0)


def test_the_window_is_one_second_minus_slack() -> None:
    """Request N+1 is refused 989 ms after request 1 and admitted 991 ms after it."""
    limiter = SlidingWindowLimiter(2, slack=0.010, horizon=1)
    assert limiter.admit(0.0)
    assert limiter.admit(0.5)
    assert not limiter.admit(0.989)
    assert limiter.admit(0.991)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 50),
    gaps=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=300),
    jitter=st.lists(st.floats(0.0, 0.0049), min_size=300, max_size=300),
)
def test_a_correct_client_is_never_refused_despite_jitter(
    rate: int, gaps: list[float], jitter: list[float]
) -> None:
    """At most N starts per sliding second at the client, arrivals up to 5 ms late: all pass."""
    starts: list[float] = []
    for gap in gaps:
        start = (starts[-1] + gap) if starts else 0.0
        if len(starts) >= rate:
            start = max(start, starts[-rate] + 1.0)
        starts.append(start)
    arrivals = sorted(start + late for start, late in zip(starts, jitter, strict=False))
    limiter = SlidingWindowLimiter(rate)
    assert all(limiter.admit(arrival) for arrival in arrivals)


# -- over HTTP ----------------------------------------------------------------------------------

LIMIT = 10
QUEUE = {"SmsSdkAppId": APP, "Limit": 1}


@pytest.fixture
def options() -> EmulatorOptions:
    """PullSmsReplyStatus limited to 10 per second."""
    return EmulatorOptions(rate_limits={"PullSmsReplyStatus": LIMIT})


async def _code(api: Api) -> str:
    answer = await api.call("PullSmsReplyStatus", QUEUE)
    return "ok" if "Error" not in answer else str(answer["Error"]["Code"])


@pytest.mark.anyio
async def test_a_burst_over_http_gets_exactly_the_limit(api: Api) -> None:
    """15 requests at once: 10 answered, 5 RequestLimitExceeded, all of it in the stats."""
    codes: list[str] = []

    async def one() -> None:
        codes.append(await _code(api))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(15):
                tg.start_soon(one)
    assert sorted(codes) == ["RequestLimitExceeded"] * 5 + ["ok"] * 10
    stats = (await api.control("GET", "stats"))["actions"]["PullSmsReplyStatus"]
    assert stats["requests"] == 15
    assert stats["ok"] == 10
    assert stats["limit_hits"] == 5
    assert stats["max_in_window"] == 15
    assert stats["errors"] == {"RequestLimitExceeded": 5}


@pytest.mark.anyio
async def test_a_paced_client_over_http_is_never_limited(api: Api) -> None:
    """One request at a time, each started 1/(0.8 N) s after the previous one: never limited."""
    gap = 1 / (0.8 * LIMIT)
    codes = []
    with anyio.fail_after(30):
        for _ in range(2 * LIMIT):
            started = anyio.current_time()
            codes.append(await _code(api))
            await anyio.sleep(max(0.0, started + gap - anyio.current_time()))
    assert set(codes) == {"ok"}
    stats = (await api.control("GET", "stats"))["actions"]["PullSmsReplyStatus"]
    assert stats["limit_hits"] == 0
    assert stats["max_in_window"] <= LIMIT


@pytest.mark.anyio
async def test_a_client_too_fast_over_http_is_caught(api: Api) -> None:
    """Requests started on a 1.5 N/s schedule (not waiting for answers) are refused."""
    gap = 1 / (1.5 * LIMIT)
    codes: list[str] = []

    async def one() -> None:
        codes.append(await _code(api))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            begin = anyio.current_time()
            for index in range(int(2 * 1.5 * LIMIT)):
                await anyio.sleep(max(0.0, begin + index * gap - anyio.current_time()))
                tg.start_soon(one)
    assert "RequestLimitExceeded" in codes
    stats = (await api.control("GET", "stats"))["actions"]["PullSmsReplyStatus"]
    assert stats["limit_hits"] == codes.count("RequestLimitExceeded")


@pytest.mark.anyio
async def test_a_request_cut_off_before_its_body_is_no_request(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that wrote its headers and closed the connection before its body (it found its
    slot lapsed) made no request: not counted, not limited, no error; the next one is answered."""
    stream = await anyio.connect_tcp(api.emulator.host, api.emulator.port)
    async with stream:
        await stream.send(
            b"POST / HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/json\r\n"
            b"X-TC-Action: PullSmsReplyStatus\r\nContent-Length: 40\r\n\r\n"
        )
    with anyio.fail_after(10):
        assert await _code(api) == "ok"
    stats = (await api.control("GET", "stats"))["actions"]["PullSmsReplyStatus"]
    assert stats["requests"] == 1
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.anyio
async def test_a_request_is_timed_when_it_arrived_not_when_a_busy_emulator_got_to_it(
    api: Api,
) -> None:
    """The emulator's event loop is stuck for half a second (a busy process) while a request
    arrives: it is timed when the kernel received it, as Tencent's servers would time it, so a
    client that kept the limit is not refused because the server read it late."""
    await api.control("POST", "polls", {"logging": True})
    sending = threading.Event()
    sent_at: list[float] = []

    def call() -> int:  # a client of its own thread, so it writes while the loop is stuck
        auth = TC3Auth(secret_id=DEFAULT_SECRET_ID, secret_key=DEFAULT_SECRET_KEY, service=SERVICE)
        headers = {
            "Content-Type": "application/json",
            "X-TC-Action": "PullSmsReplyStatus",
            "X-TC-Version": API_VERSION,
            "X-TC-Region": "ap-guangzhou",
        }
        with httpx.Client(auth=auth, timeout=30) as http:
            sending.set()
            sent_at.append(time.monotonic())
            response = http.post(api.emulator.url + "/", content=json.dumps(QUEUE), headers=headers)
            return response.status_code

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, call)
            await anyio.to_thread.run_sync(sending.wait)
            time.sleep(0.5)  # noqa: ASYNC251 (the point: the emulator's loop cannot read)
    [request] = (await api.control("GET", "polls"))["requests"]
    assert request["admitted"]
    # Written within a moment of ``sent_at`` (the thread had the processor to itself), and
    # read by the loop at least 0.5 s later. The kernel's time is to one tick (up to 10 ms)
    # either side.
    assert -0.011 <= request["arrived"] - sent_at[0] < 0.25, request["arrived"] - sent_at[0]
