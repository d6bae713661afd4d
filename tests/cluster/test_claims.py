"""Claims on phone numbers in PostgreSQL (the ``NumberClaims`` role): one poller at a time per
(app, phone), takeover only after the claim expired on the database's clock, fencing of a stale
claimer's commits, and the local deadline of ``NumberClaimer``."""

from __future__ import annotations

import math

import anyio
import pytest

from tcsms_poller.cluster.claims import NumberClaimer
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.roles import LeaseLostError, NumberClaim, NumberPolled
from tests.state.test_postgres import opened
from tests.state.test_store import record

pytestmark = pytest.mark.anyio

APP = "1400006666"
OTHER_APP = "1400007777"
PHONE = "+8613711112222"
SECOND = "+8613722223333"
CLAIM_TTL = 3.0  # long enough for the steps before the expiry on a loaded machine


async def wait_for_claim(store: PostgresStore, holder: str, phone: str, ttl: float) -> NumberClaim:
    """Claim ``phone`` for ``holder`` until the database grants it."""
    with anyio.fail_after(ttl + 10):
        while not (won := await store.claim_numbers(APP, [phone], holder=holder, ttl=ttl)):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return won[0]


async def test_a_number_has_one_claimer_until_its_claim_ends(postgres_url: str) -> None:
    """A claimed number is refused to everyone (its claimer included) until released or expired;
    the claim is keyed by (app, phone), so the same phone of another app is free; a renewal
    keeps the token, a takeover draws a larger one."""
    async with opened(postgres_url) as store:
        (first, second) = await store.claim_numbers(APP, [PHONE, SECOND], holder="a", ttl=CLAIM_TTL)
        assert (first.phone, first.holder) == (PHONE, "a")
        assert await store.claim_numbers(APP, [PHONE], holder="b", ttl=CLAIM_TTL) == []
        assert await store.claim_numbers(APP, [PHONE], holder="a", ttl=CLAIM_TTL) == []
        (elsewhere,) = await store.claim_numbers(OTHER_APP, [PHONE], holder="b", ttl=CLAIM_TTL)
        assert elsewhere.app_id == OTHER_APP
        assert await store.renew_numbers([first], ttl=CLAIM_TTL) == [first]
        await store.release_numbers([second])
        (again,) = await store.claim_numbers(APP, [SECOND], holder="b", ttl=CLAIM_TTL)
        assert again.token > second.token
        await store.release_numbers([second])  # a stale release leaves b's claim alone
        assert await store.claim_numbers(APP, [SECOND], holder="c", ttl=CLAIM_TTL) == []
        started = anyio.current_time()
        taken = await wait_for_claim(store, "b", PHONE, CLAIM_TTL)
        assert anyio.current_time() - started >= CLAIM_TTL - 0.5  # not before the TTL
        assert taken.token > first.token
        assert await store.renew_numbers([first], ttl=CLAIM_TTL) == []  # a's claim is gone
        snapshot = await store.cluster_snapshot()
        assert snapshot["number_claims"] == {"b": 1}  # the others expired meanwhile


async def test_a_claimed_number_is_not_due_for_anyone(postgres_url: str) -> None:
    """``due_numbers`` leaves out the numbers some poller holds a live claim on."""
    async with opened(postgres_url) as store:
        await store.sync_numbers(APP, "config", [PHONE, SECOND])
        _, due = await store.due_numbers(APP, limit=10)
        assert {number.phone for number in due} == {PHONE, SECOND}
        (claim,) = await store.claim_numbers(APP, [PHONE], holder="a", ttl=5.0)
        _, due = await store.due_numbers(APP, limit=10)
        assert [number.phone for number in due] == [SECOND]
        await store.release_numbers([claim])
        _, due = await store.due_numbers(APP, limit=10)
        assert {number.phone for number in due} == {PHONE, SECOND}


async def test_a_stale_claimer_commits_no_cursor_after_its_claim_passed_on(
    postgres_url: str,
) -> None:
    """Fencing: instance a (paused past its claim's TTL) commits a page of the number after b
    claimed it and committed its own: the commit is refused whole in its own transaction (no
    cursor, no next due time, no record). Without the fence the cursor would jump to a's newer
    time and the next due time to a's, whatever b polled."""
    async with opened(postgres_url) as store:
        await store.sync_numbers(APP, "config", [PHONE])
        stale = await wait_for_claim(store, "a", PHONE, 1.0)
        fresh = await wait_for_claim(store, "b", PHONE, 1.0)
        polled = NumberPolled(APP, PHONE, next_due=5_000.0, polled_at=1_000.0, status_cursor=100)
        await store.commit([record("b1")], also=_claimed(polled, fresh))
        late = NumberPolled(APP, PHONE, next_due=9_000.0, polled_at=2_000.0, status_cursor=900)
        with pytest.raises(LeaseLostError, match="passed to b"):
            await store.commit([record("a1")], also=_claimed(late, stale))
        (number,) = await store.list_numbers(app_id=APP)
        assert (number.status_cursor, number.next_due) == (100, 5_000.0)
        assert [r.seq for r in await store.read_outbox(after=0, limit=10)] == [1]
        assert await store.commit([record("a1")]) is not None  # the record itself was not seen
        assert len(await store.read_outbox(after=0, limit=10)) == 2


def _claimed(change: NumberPolled, claim: NumberClaim) -> NumberPolled:
    return NumberPolled(
        change.app_id,
        change.phone,
        next_due=change.next_due,
        polled_at=change.polled_at,
        status_cursor=change.status_cursor,
        claim=claim,
    )


async def test_the_claimer_stops_before_the_database_could_give_the_number_away(
    postgres_url: str,
) -> None:
    """``NumberClaimer`` counts a claim as held until ``ttl - safety`` after it was sent, renews
    every claim it holds every ``ttl / 3`` (``run``) with the same token, and releases it; alone
    (no store) every number is held and nothing is written."""
    async with opened(postgres_url) as store:
        claimer = NumberClaimer(store, "a", ttl=3.0)
        (claimed,) = await claimer.claim(APP, [PHONE])
        assert claimed.held
        assert claimer.held_count == 1
        first_deadline = claimed.deadline
        assert first_deadline - anyio.current_time() <= 2.0  # 3 s - 1 s of safety
        assert await NumberClaimer(store, "b", ttl=3.0).claim(APP, [PHONE]) == []
        token = claimed.claim.token if claimed.claim else None
        async with anyio.create_task_group() as tg:
            await tg.start(claimer.run)
            with anyio.fail_after(5):
                while claimed.deadline <= first_deadline + 1.5:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert await claimer.keep(claimed)  # renewed twice: still held, the same token
        assert claimed.claim is not None
        assert claimed.claim.token == token
        await claimer.release([claimed])
        assert claimer.held_count == 0
        assert claimed.deadline == -math.inf  # no request leaves for it any more
        assert await NumberClaimer(store, "b", ttl=3.0).claim(APP, [PHONE]) != []
    alone = NumberClaimer()
    (mine,) = await alone.claim(APP, [PHONE])
    assert mine.claim is None
    assert mine.held
    assert await alone.keep(mine)
