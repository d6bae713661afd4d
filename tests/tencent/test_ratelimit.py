"""The per-action limiter: hard sliding-window cap, near-full use, FIFO fairness, pauses."""

from __future__ import annotations

from bisect import bisect_left

import anyio
import pytest

from tcsms_poller.state.roles import LeaseLostError
from tcsms_poller.tencent.ratelimit import (
    REQUEST_GATE,
    ActionLimiter,
    RateLimiters,
    SlotLapsedError,
)


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of ``times`` inside any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    return max(
        (bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)), default=0
    )


async def grant_times(limiter: ActionLimiter, requests: int, concurrency: int) -> list[float]:
    """Have ``concurrency`` callers take ``requests`` slots; return each grant's time."""
    times: list[float] = []
    remaining = iter(range(requests))

    async def caller() -> None:
        for _ in remaining:
            await limiter.acquire()
            times.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(caller)
    return times


@pytest.mark.anyio
@pytest.mark.parametrize("rate", [10, 50])
async def test_never_more_than_rate_in_any_second(rate: int) -> None:
    """Even from a cold start (where a bare token bucket admits ~2N), no window exceeds N."""
    limiter = ActionLimiter(rate)
    times = await grant_times(limiter, requests=rate * 3, concurrency=rate * 2)
    assert max_in_any_window(times) <= rate


@pytest.mark.anyio
async def test_uses_at_least_95_percent_of_the_rate() -> None:
    """With plenty of waiting callers, grants keep pace with the limit."""
    rate = 40
    limiter = ActionLimiter(rate)
    times = await grant_times(limiter, requests=rate * 3, concurrency=20)
    # At the ideal even pace, consecutive grants are 1/rate apart.
    elapsed = max(times) - min(times)
    achieved = (len(times) - 1) / elapsed
    assert achieved >= 0.95 * rate


@pytest.mark.anyio
async def test_grants_in_arrival_order() -> None:
    """Callers are served first come, first served, so no worker starves."""
    limiter = ActionLimiter(5)
    order: list[int] = []

    async def caller(index: int) -> None:
        await limiter.acquire()
        order.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(12):
            tg.start_soon(caller, index)
            await anyio.lowlevel.checkpoint()
    assert order == list(range(12))


@pytest.mark.anyio
async def test_pause_holds_every_request() -> None:
    """After a server-side limit error, no request of the action starts during the pause."""
    limiter = ActionLimiter(100)
    await limiter.acquire()
    limiter.pause(0.3)
    paused_at = anyio.current_time()
    waited = await limiter.acquire()
    assert anyio.current_time() - paused_at >= 0.3
    assert waited >= 0.29


@pytest.mark.anyio
async def test_a_request_that_left_late_counts_from_when_it_left() -> None:
    """A request written 0.3 s after its grant holds the next one back a whole window from its
    departure: counted from the grant, the next would reach the server 0.3 s too early."""
    limiter = ActionLimiter(1)
    first = await limiter.slot()
    await anyio.sleep(0.3)
    first.leave()
    second = await limiter.slot()
    assert first.at >= first.granted + 0.3
    assert second.granted - first.at >= 1.0


@pytest.mark.anyio
async def test_a_slot_is_refused_at_the_last_moment_once_the_window_filled_since_granted() -> None:
    """A request held past a window after its grant (a paused process) may not leave once
    another left meanwhile: two in one window. Nothing was sent, so it does not count, and a
    fresh slot waits a window from the one that left."""
    limiter = ActionLimiter(1, window=0.2, margin=0.0)
    late = await limiter.slot()
    await anyio.sleep(0.25)  # the grant leaves the window; the request has not left yet
    prompt = await limiter.slot()
    prompt.leave()
    with pytest.raises(SlotLapsedError, match="window filled"):
        late.leave()
    assert late.refused
    assert not late.left
    assert late not in limiter.recent()
    fresh = await limiter.slot()
    fresh.leave()
    assert fresh.at - prompt.at >= 0.2


@pytest.mark.anyio
async def test_a_slot_is_refused_at_the_last_moment_once_its_share_ran_out() -> None:
    """Cluster mode: a slot granted under a share whose deadline passed before the request
    left, or while the action got paused, lets nothing leave; a gate closed meanwhile refuses
    it with ``LeaseLostError``."""
    limiter = ActionLimiter(10, shared=True)
    limiter.share(10, anyio.current_time() + 60)
    ran_out = await limiter.slot()
    limiter.share(10, anyio.current_time())  # the deadline is now: the share ran out
    with pytest.raises(SlotLapsedError, match="share ran out"):
        ran_out.leave()
    limiter.share(10, anyio.current_time() + 60)
    paused = await limiter.slot()
    limiter.pause(5.0, announce=False)
    with pytest.raises(SlotLapsedError, match="paused"):
        paused.leave()
    limiter = ActionLimiter(10)
    held = [True]
    token = REQUEST_GATE.set(lambda: held[0])
    try:
        gated = await limiter.slot()
    finally:
        REQUEST_GATE.reset(token)
    held[0] = False  # the lease or claim passed on after the grant
    with pytest.raises(LeaseLostError):
        gated.leave()
    assert limiter.recent() == ()
    allowed = await limiter.slot()
    allowed.leave()  # a slot without a gate leaves
    assert allowed.left
    assert limiter.recent() == (allowed,)


def test_zero_rate_is_rejected() -> None:
    """A limit below one request per window cannot be honoured."""
    with pytest.raises(ValueError, match="at least 1"):
        ActionLimiter(0)


@pytest.mark.anyio
async def test_one_limiter_per_action_for_the_process() -> None:
    """Every caller of an action shares one limiter; actions are independent."""
    limiters = RateLimiters({"A": 5, "B": 7})
    assert limiters.for_action("A") is limiters.for_action("A")
    assert limiters.for_action("B").rate == 7
    assert limiters.for_action("A") is not limiters.for_action("B")


@pytest.mark.anyio
async def test_a_shared_limiter_sends_only_within_its_share_and_its_deadline() -> None:
    """Cluster mode: no slot before a share; at most the share in any window while it holds;
    none after its deadline until the next grant; a lower share applies at once; a caller
    waiting without a share asks for one; a pause is announced to the cluster."""
    asked: list[str] = []
    paused: list[float] = []
    limiter = ActionLimiter(
        20,
        window=0.5,
        margin=0.0,
        shared=True,
        announce=paused.append,
        starving=lambda: asked.append("share"),
    )
    times: list[float] = []

    async def caller() -> None:
        while True:
            await limiter.acquire()
            times.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await anyio.sleep(0.2)
        assert times == []
        assert asked  # it asked for a share
        granted_at = anyio.current_time()
        limiter.share(4, granted_at + 1.2)
        await anyio.sleep(1.5)
        assert max_in_any_window(times, 0.5) <= 4
        assert len(times) >= 8  # the share is used
        assert max(times) < granted_at + 1.2  # nothing after the deadline
        assert limiter.rate == 0
        count = len(times)
        limiter.share(2, anyio.current_time() + 1.0)
        await anyio.sleep(0.9)
        later = times[count:]
        assert 1 <= len(later) <= 4  # 2 per half second
        assert max_in_any_window(later, 0.5) <= 2
        tg.cancel_scope.cancel()
    limiter.pause(1.0)
    assert paused == [1.0]
    limiter.pause(1.0, announce=False)  # a pause read from the cluster is not sent back
    assert paused == [1.0]
    assert limiter.paused_for > 0.5
