"""Claims on phone numbers in PostgreSQL (the ``NumberClaims`` role): one poller at a time per
(app, phone), takeover only after the claim expired on the database's clock, fencing of a stale
claimer's writes (page commits, reschedules, give-ups), and the local deadline of
``NumberClaimer``."""

from __future__ import annotations

import math

import anyio
import pytest

from tcsms_poller.cluster.claims import NumberClaimer
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import NewMessage, Schedule
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.roles import LeaseLostError, NumberClaim, NumberPolled
from tests.state.test_postgres import opened
from tests.state.test_store import record
from tests.support.records import FakeClock

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


async def test_a_stale_claimer_reschedules_nothing_after_its_claim_passed_on(
    postgres_url: str,
) -> None:
    """Fencing of a failed poll's reschedule, of a tracked number and of a tracked message's
    number: instance a, paused past its claim, reschedules after b claimed the number; each
    write is refused whole (the due times stay as they were), b's goes through."""
    clock = FakeClock()
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    async with opened(postgres_url) as store:
        messages = tracked_messages(store, clock=clock)
        await store.sync_numbers(APP, "config", [PHONE])
        sent = int(clock.now)
        await messages.track([NewMessage(APP, "m:1", PHONE, sent)], schedule=schedule)
        (number,) = await store.list_numbers(app_id=APP)
        first_due, _ = await messages.due(APP, limit=10, skip=frozenset())
        assert first_due == sent + 15.0
        stale = await wait_for_claim(store, "a", PHONE, 1.0)
        fresh = await wait_for_claim(store, "b", PHONE, 1.0)
        clock.now += 100  # a reschedule now would move both due times
        with pytest.raises(LeaseLostError, match="passed to b"):
            await store.reschedule_number(APP, PHONE, delay=600.0, claim=stale)
        with pytest.raises(LeaseLostError, match="passed to b"):
            await messages.reschedule(APP, PHONE, schedule=schedule, claim=stale)
        assert (await store.list_numbers(app_id=APP))[0].next_due == number.next_due
        assert (await messages.due(APP, limit=10, skip=frozenset()))[0] == first_due
        await store.reschedule_number(APP, PHONE, delay=600.0, claim=fresh)
        await messages.reschedule(APP, PHONE, schedule=schedule, claim=fresh)
        assert (await store.list_numbers(app_id=APP))[0].next_due != number.next_due
        assert (await messages.due(APP, limit=10, skip=frozenset()))[0] == schedule.next_poll(
            sent, clock.now
        )


async def test_a_stale_give_up_marks_nothing_missing_after_a_claim_passed_on(
    postgres_url: str,
) -> None:
    """Fencing of a give-up: instance a read the expired messages of two numbers and claimed
    both, then paused; b claimed one of them meanwhile. a's give-up is refused whole: no
    receipt_missing record, every message still pending, the schedule unchanged. Given up under
    live claims, each message then gets its one receipt_missing."""
    clock = FakeClock()
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    sent = int(clock.now)
    async with opened(postgres_url) as store:
        messages = tracked_messages(store, clock=clock)
        await messages.track(
            [NewMessage(APP, "m:1", PHONE, sent), NewMessage(APP, "m:2", SECOND, sent)],
            schedule=schedule,
        )
        clock.now = sent + 3 * 86_400.0 + 1
        expired = await messages.expired(APP, give_up_after=3 * 86_400.0)
        assert sorted(m.serial_no for m in expired) == ["m:1", "m:2"]
        due_before = await messages.due(APP, limit=10, skip=frozenset())
        stale = await store.claim_numbers(APP, [PHONE, SECOND], holder="a", ttl=1.0)
        assert len(stale) == 2
        taken = await wait_for_claim(store, "b", SECOND, 1.0)
        with pytest.raises(LeaseLostError, match="passed to b"):
            await messages.give_up(expired, schedule=schedule, claims=stale)
        assert await store.read_outbox(after=0, limit=10) == []
        assert [(await messages.get(s)).state for s in ("m:1", "m:2")] == ["pending"] * 2  # type: ignore[union-attr]
        first, due = await messages.due(APP, limit=10, skip=frozenset())  # b's number not due
        assert (first, set(due) <= set(due_before[1])) == (due_before[0], True)
        mine = await wait_for_claim(store, "b", PHONE, 1.0)
        given_up = await messages.give_up(expired, schedule=schedule, claims=[mine, taken])
        assert given_up is not None
        assert sorted(r.id for r in given_up.new) == ["missing:m:1", "missing:m:2"]
        assert await messages.give_up(expired, schedule=schedule, claims=[mine, taken]) is None
        assert len(await store.read_outbox(after=0, limit=10)) == 2
