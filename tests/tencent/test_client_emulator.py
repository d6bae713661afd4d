"""Our own ``TencentClient`` against the emulator: every action, errors classified, limits kept."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
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
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.errors import AuthError, RequestError, ServerError
from tcsms_poller.tencent.ratelimit import RateLimiters
from tests.support.emulator_api import APP, NUMBER, Api

pytestmark = pytest.mark.anyio

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


async def test_a_request_counts_against_the_limit_from_when_its_body_was_written(
    client: TencentClient,
) -> None:
    """The client marks each slot when its request has been written (the limiter's window runs
    from then), not when the slot was granted."""
    limiter = client.limiters.for_action(Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER)
    await client.pull_sms_send_status_by_phone_number(APP, NUMBER, begin=int(time.time()) - 60)
    [slot] = limiter.recent()
    assert slot.at > slot.granted


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
