"""The account's limits shared through PostgreSQL: the database grants each instance its share
of an action's rate, never more in force than the limit (a decrease stays counted until its
holder applied it and one window passed), and a pause reaches every instance."""

from __future__ import annotations

import anyio
import pytest

from tcsms_poller.cluster.rates import SharedLimits
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.tencent.ratelimit import RateLimiters
from tests.state.test_postgres import opened

pytestmark = pytest.mark.anyio

ACTION = "PullSmsSendStatusByPhoneNumber"
LIMIT = 20
WINDOW = 0.3  # a short "second", so a freed share passes on quickly
TTL = 3.0


async def share(store: PostgresStore, instance: str, applied: int | None = None) -> int:
    """``instance`` asks for its share of ACTION (its limiter applying ``applied``)."""
    granted = await store.share_rates(
        instance,
        {ACTION: LIMIT},
        {} if applied is None else {ACTION: applied},
        ttl=TTL,
        window=WINDOW,
    )
    return granted[ACTION]


async def test_shares_split_the_limit_and_never_add_up_beyond_it(postgres_url: str) -> None:
    """a alone gets the whole limit; b gets nothing while a holds it; a's decrease to half is
    held until a reports its limiter applies it, and one window more; then b gets its half.
    An instance that stops calling the action gives its share up the same way."""
    async with opened(postgres_url) as store:
        assert await share(store, "a") == LIMIT
        assert await share(store, "b") == 0
        assert await share(store, "a", applied=LIMIT) == LIMIT // 2  # b wants it too
        assert await share(store, "b") == 0  # a may still send at its old rate
        assert await share(store, "a", applied=LIMIT // 2) == LIMIT // 2  # applied: freed soon
        assert await share(store, "b") == 0  # a's old requests are still in the window
        with anyio.fail_after(5):
            while (granted := await share(store, "b")) == 0:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert granted == LIMIT // 2
        assert await share(store, "c") == 0  # joins: the others give a third up first
        assert await share(store, "a", applied=LIMIT // 2) == 7  # 20 = 7 + 7 + 6, by id
        gone = await store.share_rates("a", {}, {ACTION: 7}, ttl=TTL, window=WINDOW)
        assert gone == {ACTION: 0}  # a no longer calls it
        snapshot = await store.cluster_snapshot()
        assert {(s["instance"], s["rate"]) for s in snapshot["rate_shares"]} == {
            ("b", 10),
            ("c", 0),
        }


async def test_a_pause_is_extended_never_shortened(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        assert await store.paused_actions() == {}
        await store.pause_action(ACTION, 2.0)
        await store.pause_action(ACTION, 0.5)
        left = (await store.paused_actions())[ACTION]
        assert 1.0 < left <= 2.0


async def test_two_instances_share_the_limit_and_a_pause(postgres_url: str) -> None:
    """Two instances' limiters, each asked for slots: the shares settle at the whole limit
    between them; a ``RequestLimitExceeded`` pause taken by one holds the other's limiter too."""
    async with opened(postgres_url) as store:
        limiters = {name: RateLimiters({ACTION: LIMIT}, shared=True) for name in ("a", "b")}
        shared = {
            name: SharedLimits(store, name, limiters[name], ttl=TTL, safety=1.0)
            for name in limiters
        }
        async with anyio.create_task_group() as tg:
            for name in limiters:
                await tg.start(shared[name].run)

                async def ask(name: str = name) -> None:
                    while True:
                        await limiters[name].for_action(ACTION).acquire()

                tg.start_soon(ask)
            with anyio.fail_after(4 * TTL):
                while True:
                    rates = [limiters[name].for_action(ACTION).rate for name in limiters]
                    if min(rates) > 0 and sum(rates) == LIMIT:
                        break
                    assert sum(rates) <= LIMIT
                    await anyio.sleep(0.05)
            limiters["a"].for_action(ACTION).pause(3.0)
            b = limiters["b"].for_action(ACTION)
            with anyio.fail_after(2):
                while b.paused_for <= 1.0:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


async def test_a_leaving_instance_hands_its_share_over_within_a_second(postgres_url: str) -> None:
    """A graceful stop gives the share up one window later (its last requests still count at
    Tencent), not after the share's TTL, and ends its number claims."""
    async with opened(postgres_url) as store:
        long = 30.0
        granted = await store.share_rates("a", {ACTION: LIMIT}, {}, ttl=long, window=1.0)
        assert granted == {ACTION: LIMIT}
        await store.claim_numbers("1400006666", ["+8613711112222"], holder="a", ttl=long)
        await store.leave_cluster("a")
        left = anyio.current_time()
        assert await store.share_rates("b", {ACTION: LIMIT}, {}, ttl=long, window=1.0) == {
            ACTION: 0
        }
        with anyio.fail_after(10):
            while (  # noqa: ASYNC110
                await store.share_rates("b", {ACTION: LIMIT}, {}, ttl=long, window=1.0)
            )[ACTION] < LIMIT:
                await anyio.sleep(0.05)
        assert 0.5 < anyio.current_time() - left < 5.0
        assert (await store.cluster_snapshot())["number_claims"] == {}


async def test_a_new_life_of_an_instance_waits_a_window_before_its_first_share(
    postgres_url: str,
) -> None:
    """A daemon restarted under its instance id (a container restarted in its pod keeps its
    hostname and pid) finds its previous life's share row counted as its own: it sends nothing
    for one window, so the previous life's last requests have left Tencent's window first."""
    async with opened(postgres_url) as store:
        assert await share(store, "a") == LIMIT  # the previous life held the whole limit
        limiters = RateLimiters({ACTION: LIMIT}, shared=True)
        limiter = limiters.for_action(ACTION)
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            await tg.start(SharedLimits(store, "a", limiters, ttl=TTL, safety=1.0).run)
            with anyio.fail_after(4 * TTL):
                await limiter.acquire()
            assert anyio.current_time() - started >= limiter.window
            tg.cancel_scope.cancel()
