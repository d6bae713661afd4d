"""Our own ``TencentClient`` against the emulator: every action, errors classified, limits kept."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
import httpx
import pytest

from tcsms_poller.backoff import Backoff
from tcsms_poller.emulator import (
    DEFAULT_RATE_LIMITS,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    Fault,
    FaultKind,
    RunningEmulator,
    run_emulator,
)
from tcsms_poller.metrics import Metrics
from tcsms_poller.state.roles import LeaseLostError
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.errors import AuthError, RequestError, ServerError
from tcsms_poller.tencent.models import Page, SendStatus
from tcsms_poller.tencent.ratelimit import REQUEST_GATE, ActionLimiter, RateLimiters
from tests.support.emulator import inject, receipts, request_counts
from tests.support.emulator_api import APP, NUMBER, Api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

T = TypeVar("T")

FAST_RETRY = RetryPolicy(max_attempts=2, backoff=Backoff(initial=0.01, maximum=0.02))


def make_client(
    emulator: RunningEmulator, *, secret_key: str = DEFAULT_SECRET_KEY
) -> TencentClient:
    """Our client, configured as the daemon would be for this emulator."""
    return TencentClient(
        endpoint=emulator.url,
        region="ap-guangzhou",
        credentials=Credentials(DEFAULT_SECRET_ID, secret_key),
        limiters=RateLimiters(DEFAULT_RATE_LIMITS),
        metrics=Metrics(),
        retry=FAST_RETRY,
    )


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[TencentClient]:
    """Our client pointed at the test's emulator."""
    async with make_client(emulator) as tencent:
        yield tencent


async def test_every_action_works_with_our_client(client: TencentClient, api: Api) -> None:
    """Queue pulls, windows, statistics and a conversion, parsed into our types."""
    now = int(time.time())
    injected = await api.inject(
        send_statuses=[{"phone_number": NUMBER, "user_receive_time": now - i} for i in range(3)],
        replies=[{"phone_number": NUMBER, "reply_content": "Y", "reply_time": now - 1}],
    )
    serials = [status["serial_no"] for status in injected["send_statuses"]]
    queue = await client.pull_sms_send_status(APP)
    assert [status.serial_no for status in queue.items] == serials
    assert (await client.pull_sms_send_status(APP)).items == ()
    replies = await client.pull_sms_reply_status(APP)
    assert [reply.reply_content for reply in replies.items] == ["Y"]
    window = await client.pull_sms_send_status_by_phone_number(APP, NUMBER, begin=now - 60)
    assert [status.serial_no for status in window.items] == serials[::-1]  # ascending time
    limited = await client.pull_sms_send_status_by_phone_number(
        APP, NUMBER, begin=now - 60, end=now - 1, limit=1
    )
    assert [status.serial_no for status in limited.items] == [serials[2]]
    mine = await client.pull_sms_reply_status_by_phone_number(APP, NUMBER, begin=now - 60)
    assert mine.items == replies.items
    hour = time.strftime("%Y%m%d%H", time.gmtime(now + 8 * 3600))
    next_hour = time.strftime("%Y%m%d%H", time.gmtime(now + 9 * 3600))
    statistics = await client.callback_status_statistics(APP, begin_hour=hour, end_hour=next_hour)
    assert statistics.counters["callback_count"] == 3
    conversion = await client.report_conversion(APP, serials[0], conversion_time=now)
    assert conversion.is_ok


async def test_a_request_counts_against_the_limit_from_when_it_was_written(
    client: TencentClient,
) -> None:
    """The client marks each slot as its request is written (the limiter's window runs from
    then), not when the slot was granted."""
    limiter = client.limiters.for_action(Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER)
    await client.pull_sms_send_status_by_phone_number(APP, NUMBER, begin=int(time.time()) - 60)
    [slot] = limiter.recent()
    assert slot.left
    assert slot.at > slot.granted


def expire_before_sending(expire: Callable[[], None]) -> httpx.AsyncClient:
    """An HTTP client that calls ``expire`` once, after the first request's slot was granted
    and the request signed, before any byte of it is written (where a pause would strike)."""
    calls: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        if not calls:
            expire()
        calls.append(request)

    return httpx.AsyncClient(event_hooks={"request": [hook]})


def shared_client(
    emulator: RunningEmulator, http: httpx.AsyncClient, metrics: Metrics
) -> TencentClient:
    """Our client in cluster mode (every action waits for its share) over ``http``."""
    return TencentClient(
        endpoint=emulator.url,
        region="ap-guangzhou",
        credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
        limiters=RateLimiters(DEFAULT_RATE_LIMITS, shared=True),
        metrics=metrics,
        retry=FAST_RETRY,
        http=http,
    )


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_request_whose_share_ran_out_before_it_left_waits_for_the_next_share(
    emulator: RunningEmulator,
) -> None:
    """Cluster mode: the share's deadline passes between the slot's grant and the write (a
    pause would do that): nothing is sent, and the request leaves under the next share, once,
    with its records; not an error, not a retry, no answer lost."""
    action = Action.PULL_SMS_SEND_STATUS
    metrics = Metrics()
    await inject(emulator, send_statuses=receipts(3))
    limiter: ActionLimiter | None = None

    def expire() -> None:
        assert limiter is not None
        limiter.share(limiter.limit, anyio.current_time())  # the deadline is now

    async with expire_before_sending(expire) as http:
        client = shared_client(emulator, http, metrics)
        limiter = client.limiters.for_action(action)
        limiter.share(limiter.limit, anyio.current_time() + 60)
        pages: list[Page[SendStatus]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: collect(pages, client.pull_sms_send_status(APP)))
            await wait_until(
                lambda: bool(pages) or (limiter.waiting and limiter.rate == 0),
                what="the answer or a wait for a share",
                timeout=10,
            )
            assert request_counts(emulator, action) == (0, 0)  # nothing left without a share
            assert pages == []
            limiter.share(limiter.limit, anyio.current_time() + 60)
    [page] = pages
    assert len(page.items) == 3
    assert request_counts(emulator, action) == (1, 1)
    assert counted(metrics, "tcsms_poller_tencent_requests_total", action=action, code="ok") == 1
    assert counted(metrics, "tcsms_poller_tencent_retries_total", action=action) == 0
    lost = counted(metrics, "tcsms_poller_queue_answers_lost_total", action=action, app_id=APP)
    assert lost == 0
    assert [slot.left for slot in limiter.recent()] == [True]


async def test_a_request_whose_claim_passed_on_before_it_left_is_not_sent(
    emulator: RunningEmulator,
) -> None:
    """The request's gate closes between the slot's grant and the write (its number's claim
    passed to another instance): ``LeaseLostError``, and nothing reaches Tencent."""
    action = Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER
    metrics = Metrics()
    held = [True]

    def expire() -> None:
        held[0] = False

    async with expire_before_sending(expire) as http:
        client = shared_client(emulator, http, metrics)
        limiter = client.limiters.for_action(action)
        limiter.share(limiter.limit, anyio.current_time() + 60)
        token = REQUEST_GATE.set(lambda: held[0])
        try:
            with pytest.raises(LeaseLostError):
                await client.pull_sms_send_status_by_phone_number(
                    APP, NUMBER, begin=int(time.time()) - 60
                )
        finally:
            REQUEST_GATE.reset(token)
    assert request_counts(emulator, action) == (0, 0)
    assert limiter.recent() == ()
    assert counted(metrics, "tcsms_poller_tencent_requests_total", action=action, code="ok") == 0


async def collect(into: list[T], call: Awaitable[T]) -> None:
    into.append(await call)


async def test_errors_are_classified(emulator: RunningEmulator, client: TencentClient) -> None:
    """A wrong key is an AuthError, an unknown SerialNo a RequestError."""
    async with make_client(emulator, secret_key="wrong") as wrong:
        with pytest.raises(AuthError, match=r"AuthFailure\.SignatureFailure"):
            await wrong.pull_sms_reply_status(APP)
    with pytest.raises(RequestError, match="InvalidParameterValue"):
        await client.report_conversion(APP, "5000:unknown")


async def test_injected_internal_errors_are_retried(client: TencentClient, api: Api) -> None:
    """InternalError.* is transient: the client retries, and gives up after its attempts."""
    await api.control("POST", "faults", {"faults": [{"kind": "internal_error"}]})
    with pytest.raises(ServerError):
        await client.pull_sms_reply_status(APP)
    stats = await api.control("GET", "stats")
    assert stats["actions"]["PullSmsReplyStatus"]["requests"] == FAST_RETRY.max_attempts


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """The documented limits, but CallbackStatusStatistics at 20 per second for a short test."""
    return EmulatorOptions(rate_limits={"CallbackStatusStatistics": 20})


LIMITED = "CallbackStatusStatistics"  # 10 requests a second, as documented
LATENCY = 0.150  # seconds the emulator holds every answer, as a distant API would
SLACK = 0.030  # the emulator's window is 1 s minus this: here it shares our event loop


async def test_our_limiter_holds_the_sliding_window_at_the_server_with_latency() -> None:
    """Sixty calls at once, every answer 150 ms late: arrival times at the emulator show at most
    N in any window and at least 95 % of N used, and no call is refused."""
    options = EmulatorOptions(
        slack=SLACK,
        faults=(Fault(action=LIMITED, kind=FaultKind.LATENCY, seconds=LATENCY),),
    )
    limit = options.rate_limits[LIMITED]
    hour = time.strftime("%Y%m%d%H", time.gmtime(time.time() + 8 * 3600))
    next_hour = time.strftime("%Y%m%d%H", time.gmtime(time.time() + 9 * 3600))
    async with run_emulator(options) as emulator:
        arrivals: list[float] = []
        monotonic = emulator.state.monotonic

        def timed_arrival() -> float:
            arrivals.append(monotonic())
            return arrivals[-1]

        emulator.state.monotonic = timed_arrival
        tencent = TencentClient(
            endpoint=emulator.url,
            region="ap-guangzhou",
            credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
            limiters=RateLimiters({LIMITED: limit}),
            metrics=Metrics(),
            retry=RetryPolicy(max_attempts=1),
        )

        async def one() -> None:
            await tencent.callback_status_statistics(APP, begin_hour=hour, end_hour=next_hour)

        with anyio.fail_after(60):
            async with tencent, anyio.create_task_group() as tg:
                for _ in range(6 * limit):
                    tg.start_soon(one)
        stats = emulator.state.stats_snapshot()["actions"][LIMITED]
    assert (stats["ok"], stats["limit_hits"]) == (6 * limit, 0)
    # The (N+1)-th arrival after any arrival comes a whole window later.
    assert (
        min(later - first for first, later in zip(arrivals, arrivals[limit:], strict=False))
        > 1 - SLACK
    )
    # Requests per second over the run, counting the first window's burst as one second's worth.
    used = (len(arrivals) - limit) / (arrivals[-1] - arrivals[limit - 1])
    assert used >= 0.95 * limit
