"""The contract every state backend keeps (``state/roles.py``), run on SQLite and PostgreSQL.

Each test opens the backend through ``Backend.open`` (``tests/support/backends.py``), as the
daemon does, on a fresh SQLite file or a fresh PostgreSQL database of the session's server;
``open`` again is a restart.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import psycopg
import pytest

from tcsms_poller.records import Record, format_received_at, send_status_record
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import MessageRacedError, NewMessage, Schedule
from tcsms_poller.state.roles import (
    CommitResult,
    ConversionReported,
    MessagesMissing,
    NumberPolled,
    TrackedMessages,
)
from tcsms_poller.state.store import PURGE_BATCH
from tcsms_poller.tencent.models import RejectedItem, SendStatus
from tests.support.backends import Backend

from .test_store import FakeClock, record

DAY = 86_400.0
TTL = 8 * DAY  # Backend.open's dedupe window
APP = "1400006666"
A, B, C = "+8613700000001", "+8613700000002", "+8613700000003"


def ids(rows: list[Any]) -> list[str]:
    return [row.as_dict()["id"] for row in rows]


def broken(record_id: str) -> Record:
    """A record that fails inside the transaction: its JSON cannot be written."""
    return record(record_id)._replace(fields={"unserializable": object()})


# -- commit --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_commit_that_fails_leaves_nothing(backend: Backend) -> None:
    """Records, seen ids and the change of a failing commit are all rolled back."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.sync_numbers(APP, "config", [A])
        change = NumberPolled(APP, A, next_due=clock.now + 99, polled_at=clock.now)
        item = RejectedItem(raw={"SerialNo": 5}, reason="not a string")
        with pytest.raises(TypeError):
            await store.commit([record("a"), broken("b")], rejected=[item], also=change)
        assert await store.read_outbox(after=0, limit=10) == []
        (number,) = await store.list_numbers()
        assert number.next_due == clock.now  # the change did not stay either
        assert (await store.snapshot())["rejected_items"] == 0
        result = await store.commit([record("a"), record("b")])
        assert [r.id for r in result.new] == ["a", "b"]


@pytest.mark.anyio
async def test_concurrent_commits_fail_alone(backend: Backend) -> None:
    """Among commits running at once, a failing one rolls back alone; the others stay."""
    async with backend.open(FakeClock()) as store:
        failures: list[BaseException] = []

        async def commit(index: int) -> None:
            try:
                extra = [broken(f"x{index}")] if index == 3 else []
                await store.commit([record(f"r{index}"), *extra])
            except TypeError as error:
                failures.append(error)

        async with anyio.create_task_group() as tg:
            for index in range(8):
                tg.start_soon(commit, index)
        assert len(failures) == 1
        rows = await store.read_outbox(after=0, limit=100)
        assert sorted(ids(rows)) == sorted(f"r{i}" for i in range(8) if i != 3)


@pytest.mark.anyio
async def test_rejected_items_are_quarantined_with_the_records(backend: Backend) -> None:
    """Quarantined items are counted in the snapshot once their commit returned."""
    async with backend.open(FakeClock()) as store:
        item = RejectedItem(raw={"SerialNo": 5}, reason="not a string")
        await store.commit([record("a")], rejected=[item, item], source="PullSmsSendStatus")
        assert (await store.snapshot())["rejected_items"] == 2


# -- dedupe --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_duplicates_are_dropped_within_across_commits_and_restarts(
    backend: Backend,
) -> None:
    """An id seen within the window is a duplicate: in the batch, later, and after a restart."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        first = await store.commit([record("a"), record("b"), record("a")])
        assert ([r.id for r in first.new], first.duplicates) == (["a", "b"], 1)
        second = await store.commit([record("b"), record("c")])
        assert ([r.id for r in second.new], second.duplicates) == (["c"], 1)
    async with backend.open(clock) as store:
        third = await store.commit([record("a"), record("d")])
        assert [r.id for r in third.new] == ["d"]
        assert ids(await store.read_outbox(after=0, limit=10)) == ["a", "b", "c", "d"]


@pytest.mark.anyio
async def test_an_id_is_new_again_once_its_window_passed_and_purge_keeps_the_others(
    backend: Backend,
) -> None:
    """After ``dedupe_ttl`` an id counts as new; purging expired ids keeps the live ones."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.commit([record("a"), record("b")])
        clock.now += TTL - 1
        assert (await store.commit([record("a")])).duplicates == 1
        await store.commit([record("c")])
        clock.now += 2
        await store.purge([])  # the ids of a and b expired; c's did not
        result = await store.commit([record("b"), record("c")])
        assert ([r.id for r in result.new], result.duplicates) == (["b"], 1)


# -- the outbox and sink cursors -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_new_sink_starts_at_the_head_and_acks_never_move_back(backend: Backend) -> None:
    """A sink seen first starts at the head; its cursor and position only move forward."""
    async with backend.open(FakeClock()) as store:
        await store.commit([record("a"), record("b")])
        cursor = await store.sink_cursor("file")
        assert (cursor.acked_seq, cursor.position) == (store.head, None)
        await store.commit([record("c")])
        await store.ack("file", seq=store.head, position={"offset": 42})
        await store.ack("file", seq=1, position={"offset": 1})  # late and stale: ignored
        await store.ack("file", seq=store.head, position=None)
        cursor = await store.sink_cursor("file")
        assert (cursor.acked_seq, cursor.position) == (store.head, {"offset": 42})
    async with backend.open(FakeClock()) as store:
        assert (await store.sink_cursor("file")).position == {"offset": 42}


@pytest.mark.anyio
async def test_an_ack_at_the_same_seq_moves_only_the_position(backend: Backend) -> None:
    """A replayed dead letter is not in the outbox: its ack keeps the seq, saves the offset."""
    async with backend.open(FakeClock()) as store:
        await store.sink_cursor("file")
        await store.commit([record("a")])
        await store.ack("file", seq=store.head, position={"offset": 10})
        await store.ack("file", seq=store.head, position={"offset": 25})
        cursor = await store.sink_cursor("file")
        assert (cursor.acked_seq, cursor.position) == (store.head, {"offset": 25})


@pytest.mark.anyio
async def test_a_reader_never_skips_or_repeats_a_row_under_concurrent_commits(
    backend: Backend,
) -> None:
    """A drainer reading after its cursor while many commits run gets each row once, in order."""
    async with backend.open(FakeClock()) as store:
        await store.sink_cursor("sink")
        expected = {f"r{w}-{n}" for w in range(6) for n in range(40)}
        got: list[str] = []
        seqs: list[int] = []
        done = anyio.Event()

        async def writer(w: int) -> None:
            rng = random.Random(w)
            for n in range(0, 40, 4):
                await store.commit([record(f"r{w}-{n + i}") for i in range(4)])
                if rng.random() < 0.5:
                    await anyio.lowlevel.checkpoint()

        async def drainer() -> None:
            after = 0
            while True:
                batch = await store.read_outbox(after=after, limit=7)
                if not batch:
                    if done.is_set() and store.head <= after:
                        return
                    with anyio.move_on_after(0.5):
                        await store.wait_for_commit(after)
                    continue
                seqs.extend(row.seq for row in batch)
                got.extend(ids(batch))
                after = batch[-1].seq
                await store.ack("sink", seq=after, position=None)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drainer)
                async with anyio.create_task_group() as writers:
                    for w in range(6):
                        writers.start_soon(writer, w)
                done.set()
        assert seqs == sorted(set(seqs))
        assert sorted(got) == sorted(expected)


@pytest.mark.anyio
async def test_wait_for_commit_wakes_on_new_records_only(backend: Backend) -> None:
    """A drainer waiting past the head wakes when new records commit, not on duplicates."""
    async with backend.open(FakeClock()) as store:
        await store.commit([record("a")])
        head = store.head
        woke = anyio.Event()

        async def wait() -> None:
            await store.wait_for_commit(head)
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await store.commit([record("a")])
            await anyio.wait_all_tasks_blocked()
            assert not woke.is_set()
            await store.commit([record("b")])
            with anyio.fail_after(5):
                await woke.wait()


@pytest.mark.anyio
async def test_purge_keeps_every_row_some_sink_still_needs(backend: Backend) -> None:
    """Rows go only once every sink with a cursor acked them; no cursor yet keeps them all."""
    async with backend.open(FakeClock()) as store:
        await store.commit([record(c) for c in "abcde"])
        assert (await store.purge(["file", "http"]))[1] == 0  # no cursor yet: keep all
        await store.sink_cursor("file")
        assert (await store.purge(["file", "http"]))[1] == 0  # http has no cursor yet
        await store.sink_cursor("http")
        await store.commit([record("f"), record("g")])
        await store.ack("file", seq=store.head, position=None)
        await store.ack("http", seq=store.head - 1, position=None)
        _, purged, _ = await store.purge(["file", "http"])
        assert purged == 6  # a..f are acked by both; g is not acked by http
        assert ids(await store.read_outbox(after=0, limit=10)) == ["g"]
        assert PURGE_BATCH >= 1000


@pytest.mark.anyio
async def test_a_removed_sink_keeps_its_cursor_for_the_dedupe_window(backend: Backend) -> None:
    """A sink no longer configured is forgotten only after ``dedupe_ttl`` without an ack."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.sink_cursor("old")
        await store.sink_cursor("kept")
        assert await store.forget_removed_sinks(["kept"]) == []
        clock.now += TTL + 1
        assert await store.forget_removed_sinks(["kept"]) == ["old"]
        assert [s["name"] for s in (await store.snapshot())["sinks"]] == ["kept"]


@pytest.mark.anyio
async def test_a_cursor_says_whether_it_was_created_and_can_be_forgotten_at_once(
    backend: Backend,
) -> None:
    """Only the first read creates a cursor; a forgotten one is created anew, at the new head.
    A cursor acked past where it was created (another instance drains the sink) is kept."""
    async with backend.open(FakeClock()) as store:
        await store.commit([record("a")])
        created = await store.sink_cursor("added")
        assert created.created
        assert not (await store.sink_cursor("added")).created
        await store.commit([record("b")])
        await store.forget_sink("added", acked_seq=created.acked_seq)
        assert [s["name"] for s in (await store.snapshot())["sinks"]] == []
        again = await store.sink_cursor("added")
        assert (again.created, again.acked_seq) == (True, store.head)
        await store.commit([record("c")])
        await store.ack("added", seq=store.head, position=None)
        await store.forget_sink("added", acked_seq=again.acked_seq)
        assert (await store.sink_cursor("added")).acked_seq == store.head


# -- tracked numbers -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tracked_numbers_are_scheduled_most_overdue_first(backend: Backend) -> None:
    """Sync adds and removes its origin's numbers; due ones come most overdue first, minus skip."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        assert await store.sync_numbers(APP, "config", [A, B, C]) == (3, 0)
        assert await store.track_number(APP, "+8613799999999", track_for=60)
        assert await store.sync_numbers(APP, "config", [A, B]) == (0, 1)
        await store.reschedule_number(APP, A, delay=30)
        clock.now += 10
        _, due = await store.due_numbers(APP, limit=10, skip=frozenset({"+8613799999999"}))
        assert [n.phone for n in due] == [B]
        clock.now += 30
        _, due = await store.due_numbers(APP, limit=10)
        assert [n.phone for n in due] == [B, "+8613799999999", A]
        oldest, none = await store.due_numbers("1400000000", limit=10)
        assert (oldest, none) == (None, [])
        assert (await store.number_counts())[APP][0] == 3


@pytest.mark.anyio
async def test_a_polled_page_moves_cursors_forward_only(backend: Backend) -> None:
    """``NumberPolled`` commits with its page: cursors never move back, None leaves them."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.sync_numbers(APP, "config", [A])
        now = clock.now
        await store.commit([], also=NumberPolled(APP, A, next_due=now + 60, polled_at=now))
        (number,) = await store.list_numbers()
        assert (number.status_cursor, number.reply_cursor, number.next_due) == (
            None,
            None,
            now + 60,
        )
        await store.commit(
            [record("a")], also=NumberPolled(APP, A, now + 60, now, status_cursor=500)
        )
        await store.commit([], also=NumberPolled(APP, A, now + 60, now, status_cursor=400))
        await store.commit([], also=NumberPolled(APP, A, now + 60, now, reply_cursor=7))
        (number,) = await store.list_numbers()
        assert (number.status_cursor, number.reply_cursor) == (500, 7)


@pytest.mark.anyio
async def test_api_numbers_expire_and_configured_ones_do_not(backend: Backend) -> None:
    """An API-tracked number is purged after its period; a configured one stays."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.sync_numbers(APP, "config", [A])
        await store.track_number(APP, A, track_for=10)  # configured: keeps no expiry
        await store.track_number(APP, B, track_for=10)
        assert not await store.track_number(APP, B, track_for=100)  # extends
        clock.now += 50
        assert [n.phone for n in await store.list_numbers(app_id=APP)] == [A, B]
        clock.now += 100
        assert (await store.purge([]))[2] == 1
        assert [n.phone for n in await store.list_numbers()] == [A]
        assert await store.untrack_number(APP, A)
        assert not await store.untrack_number(APP, A)


@pytest.mark.anyio
async def test_listing_pages_through_every_number(backend: Backend) -> None:
    """Pages in (app, phone) order cover every number once."""
    async with backend.open(FakeClock()) as store:
        phones = [f"+86137000{i:05d}" for i in range(25)]
        await store.sync_numbers(APP, "file", phones)
        seen: list[str] = []
        after: tuple[str, str] | None = None
        while page := await store.list_numbers(after=after, limit=10):
            seen += [n.phone for n in page]
            after = (page[-1].app_id, page[-1].phone)
        assert seen == phones


# -- conversions and workers ---------------------------------------------------------------------


async def elapse(backend: Backend, clock: FakeClock, seconds: float) -> None:
    """Let ``seconds`` pass for the conversion queue. SQLite's runs on the daemon's clock, which
    moves. PostgreSQL's runs on the database's clock, which a test cannot move: the queue's
    times move back by ``seconds`` instead, and the daemon's clock jumps a day, which must
    change nothing."""
    if backend.kind == "sqlite":
        clock.now += seconds
        return
    clock.now += DAY
    async with await psycopg.AsyncConnection.connect(backend.location, autocommit=True) as db:
        await db.execute(
            "UPDATE conversions SET next_attempt_at = next_attempt_at - %s, "
            "enqueued_at = enqueued_at - %s",
            (seconds, seconds),
        )


@pytest.mark.anyio
async def test_conversions_are_leased_deferred_and_finished_with_their_record(
    backend: Backend,
) -> None:
    """A leased conversion is not handed out again until its lease ends, a deferred one not
    before its delay; a finish commits with its record."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.enqueue_conversions([(APP, "s1", None), (APP, "s2", 1700000000)])
        leased = await store.lease_conversions(limit=10, lease=60)
        assert [c.serial_no for c in leased] == ["s1", "s2"]
        assert await store.lease_conversions(limit=10, lease=60) == []
        await store.defer_conversion(leased[0].id, delay=5, error="busy")
        await elapse(backend, clock, 4)
        assert await store.lease_conversions(limit=10, lease=60) == []
        await elapse(backend, clock, 2)
        (again,) = await store.lease_conversions(limit=10, lease=60)
        assert (again.serial_no, again.attempts) == ("s1", 1)
        await store.commit([record("s1")], also=ConversionReported(again.id))
        assert await store.pending_conversions() == 1
        await elapse(backend, clock, 53)
        assert await store.lease_conversions(limit=10, lease=60) == []
        await elapse(backend, clock, 2)
        assert [c.serial_no for c in await store.lease_conversions(limit=10, lease=60)] == ["s2"]


@pytest.mark.anyio
async def test_worker_health_is_kept_for_status(backend: Backend) -> None:
    """A failure keeps the time of the last success; the snapshot shows both."""
    async with backend.open(FakeClock()) as store:
        await store.save_worker_state("replies", healthy=True, error=None, last_success_at=5.0)
        await store.save_worker_state("replies", healthy=False, error="boom", last_success_at=None)
        (worker,) = (await store.snapshot())["workers"]
        assert (worker["healthy"], worker["last_error"], worker["last_success_at"]) == (
            False,
            "boom",
            5.0,
        )


# -- tracked messages ----------------------------------------------------------------------------

SCHEDULE = Schedule(first_poll=15.0, max_gap=3600.0)


def receipt(serial_no: str, phone: str, *, at: int, status: str = "SUCCESS", source: str) -> Record:
    """A final (or, with ``status`` another value, pending) receipt as ``source`` brings it."""
    description = {"SUCCESS": "DELIVRD", "FAIL": "UNDELIV"}.get(status, "")
    item = SendStatus(serial_no, phone, "86", phone[3:], status, description, at, None)
    return send_status_record(APP, item, source=source, received_at=format_received_at(at))


async def track(messages: TrackedMessages, *items: tuple[str, str, int]) -> list[bool]:
    """Track ``(serial_no, phone, sent_at)`` items of the app."""
    new = [NewMessage(APP, serial_no, phone, sent) for serial_no, phone, sent in items]
    return await messages.track(new, schedule=SCHEDULE)


async def give_up_expired(messages: TrackedMessages) -> CommitResult | None:
    """Give up on the app's messages pending three days after their send."""
    expired = await messages.expired(APP, give_up_after=3 * DAY)
    return await messages.give_up(expired, schedule=SCHEDULE)


async def states(messages: TrackedMessages, *serial_nos: str) -> list[str | None]:
    found = [await messages.get(serial_no) for serial_no in serial_nos]
    return [None if message is None else message.state for message in found]


@pytest.mark.anyio
async def test_tracking_a_message_is_idempotent(backend: Backend) -> None:
    """The same SerialNo twice, in one call or two, is one message, kept as first tracked."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        sent = int(clock.now)
        assert await track(messages, ("m:1", A, sent), ("m:2", B, sent), ("m:1", B, sent)) == [
            True,
            True,
            False,
        ]
        assert await track(messages, ("m:1", C, sent - 60)) == [False]
        message = await messages.get("m:1")
        assert message is not None
        assert (message.app_id, message.phone, message.sent_at, message.state) == (
            APP,
            A,
            sent,
            "pending",
        )
        assert (message.resolved_at, message.report_status, message.user_receive_time) == (
            None,
            None,
            None,
        )
        assert await messages.get("m:3") is None
        assert await messages.pending_counts() == {APP: 2}


@pytest.mark.anyio
async def test_a_receipt_resolves_its_message_by_every_path_in_its_commit(
    backend: Backend,
) -> None:
    """Pushed, pulled from the queue, pulled per number, or a repeat of a receipt committed
    before the message was tracked: the commit that brings it resolves the message, once."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        sent = int(clock.now)
        early = receipt("m:early", C, at=sent + 1, source="PullSmsSendStatus")
        await store.commit([early])  # its receipt came before it was tracked
        await track(
            messages,
            ("m:push", A, sent),
            ("m:queue", A, sent),
            ("m:number", B, sent),
            ("m:early", C, sent),
            ("m:later", B, sent),
        )
        pushed = await store.commit([receipt("m:push", A, at=sent + 2, source="callback")])
        assert [(r.state, r.sent_at, r.user_receive_time) for r in pushed.resolved] == [
            ("delivered", sent, sent + 2)
        ]
        queue = [
            receipt("m:queue", A, at=sent + 3, status="FAIL", source="PullSmsSendStatus"),
            receipt("m:other", A, at=sent + 3, source="PullSmsSendStatus"),  # not tracked
            receipt("m:later", B, at=sent + 3, status="", source="PullSmsSendStatus"),  # not final
        ]
        assert [r.state for r in (await store.commit(queue)).resolved] == ["failed"]
        step = messages.polled(APP, B, schedule=SCHEDULE)
        by_number = receipt("m:number", B, at=sent + 4, source="PullSmsSendStatusByPhoneNumber")
        assert [r.state for r in (await store.commit([by_number], also=step)).resolved] == [
            "delivered"
        ]
        again = await store.commit([early])  # a repeat: not new, and it resolves its message
        assert (again.new, again.duplicates, [r.state for r in again.resolved]) == (
            (),
            1,
            ["delivered"],
        )
        assert (await store.commit([early])).resolved == ()  # resolved once only
        assert await states(messages, "m:push", "m:queue", "m:number", "m:early", "m:later") == [
            "delivered",
            "failed",
            "delivered",
            "delivered",
            "pending",
        ]
        failed = await messages.get("m:queue")
        assert failed is not None
        assert (failed.report_status, failed.description, failed.user_receive_time) == (
            "FAIL",
            "UNDELIV",
            sent + 3,
        )
        assert failed.resolved_at == clock.now
        assert await messages.pending_counts() == {APP: 1}


@pytest.mark.anyio
async def test_a_failed_commit_resolves_nothing(backend: Backend) -> None:
    """A commit that rolls back leaves its receipts' messages pending."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, ("m:1", A, int(clock.now)))
        with pytest.raises(TypeError):
            await store.commit(
                [receipt("m:1", A, at=int(clock.now), source="callback"), broken("x")]
            )
        assert await states(messages, "m:1") == ["pending"]


@pytest.mark.anyio
async def test_due_numbers_follow_their_pending_messages_with_doubling_gaps(
    backend: Backend,
) -> None:
    """A number is due first_poll after its oldest pending send, then at doubling gaps after
    each polled page; a failed poll reschedules it; once nothing is pending it is never due."""
    clock = FakeClock()
    start = int(clock.now)
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, ("a:1", A, start), ("b:1", B, start + 5), ("a:2", A, start + 10))
        assert await messages.due(APP, limit=10, skip=frozenset()) == (start + 15.0, [])
        clock.now = start + 30
        first, due = await messages.due(APP, limit=10, skip=frozenset())
        assert (first, due) == (
            start + 15.0,
            [(A, start + 15.0, start), (B, start + 20.0, start + 5)],
        )
        assert (await messages.due(APP, limit=1, skip=frozenset({A})))[1] == [
            (B, start + 20.0, start + 5)
        ]
        assert await messages.due("1400000000", limit=10, skip=frozenset()) == (None, [])
        # A's page at +30: a:1 (age 30) next at +60, a:2 (age 20) at +40: the nearer wins.
        await store.commit([], also=messages.polled(APP, A, schedule=SCHEDULE))
        await messages.reschedule(APP, B, schedule=SCHEDULE)  # b:1 (age 25) next at +35
        assert await messages.due(APP, limit=10, skip=frozenset()) == (start + 35.0, [])
        clock.now = start + 40
        _, due = await messages.due(APP, limit=10, skip=frozenset())
        assert due == [(B, start + 35.0, start + 5), (A, start + 40.0, start)]
        # B's last message resolves with its page: B is dropped; A's page at +40 moves it on.
        b_receipt = receipt("b:1", B, at=start + 7, source="PullSmsSendStatusByPhoneNumber")
        await store.commit([b_receipt], also=messages.polled(APP, B, schedule=SCHEDULE))
        await store.commit([], also=messages.polled(APP, A, schedule=SCHEDULE))
        clock.now = start + 3 * 3600
        _, due = await messages.due(APP, limit=10, skip=frozenset())
        assert [phone for phone, _, _ in due] == [A]
        # Resolving A's messages by a push drops A too, without a poll.
        pushes = [receipt(s, A, at=start + 9, source="callback") for s in ("a:1", "a:2")]
        assert len((await store.commit(pushes)).resolved) == 2
        assert await messages.due(APP, limit=10, skip=frozenset()) == (None, [])


@pytest.mark.anyio
async def test_a_poll_gap_is_capped_at_max_gap(backend: Backend) -> None:
    """However old the pending message, its number is due again at most max_gap after a poll,
    and never sooner than a second."""
    clock = FakeClock()
    start = int(clock.now)
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, ("m:1", A, start))
        clock.now = start + 2 * 86_400.0
        await store.commit([], also=messages.polled(APP, A, schedule=SCHEDULE))
        assert (await messages.due(APP, limit=10, skip=frozenset()))[0] == clock.now + 3600.0
        quick = Schedule(first_poll=0.1, max_gap=0.2)
        await store.commit([], also=messages.polled(APP, A, schedule=quick))
        assert (await messages.due(APP, limit=10, skip=frozenset()))[0] == clock.now + 1.0


@pytest.mark.anyio
async def test_a_give_up_commits_receipt_missing_with_the_messages_once(backend: Backend) -> None:
    """Messages still pending give_up_after their send become missing, in the transaction of
    their receipt_missing records, exactly once; their number is dropped; a late receipt then
    leaves them missing."""
    clock = FakeClock()
    sent = int(clock.now)
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, ("m:1", A, sent), ("m:2", A, sent + 3600), ("m:3", B, sent))
        clock.now = sent + 3 * DAY - 1
        assert await give_up_expired(messages) is None
        clock.now = sent + 3 * DAY + 1
        given_up = await give_up_expired(messages)
        assert given_up is not None
        assert sorted(r.id for r in given_up.new) == ["missing:m:1", "missing:m:3"]
        missing = {r.fields["serial_no"]: r for r in given_up.new}
        assert missing["m:1"].kind == "receipt_missing"
        assert (missing["m:1"].fields["phone_number"], missing["m:1"].fields["sent_at"]) == (
            A,
            sent,
        )
        assert await give_up_expired(messages) is None
        assert await states(messages, "m:1", "m:2", "m:3") == ["missing", "pending", "missing"]
        first, _ = await messages.due(APP, limit=10, skip=frozenset())
        assert first is not None
        clock.now = first
        _, due = await messages.due(APP, limit=10, skip=frozenset())
        assert [phone for phone, _, _ in due] == [A]  # B has nothing pending left
        late = await store.commit([receipt("m:1", A, at=sent + 10, source="callback")])
        assert ([r.id for r in late.new], late.resolved) == (["m:1"], ())
        assert await states(messages, "m:1") == ["missing"]
        rows = await store.read_outbox(after=0, limit=10)
        assert sorted(ids(rows)) == ["m:1", "missing:m:1", "missing:m:3"]


@pytest.mark.anyio
async def test_a_give_up_raced_by_a_receipt_commits_nothing(backend: Backend) -> None:
    """A give-up whose message was resolved after it was read fails whole: no receipt_missing
    record, no message marked missing."""
    clock = FakeClock()
    sent = int(clock.now)
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, ("m:1", A, sent), ("m:2", A, sent))
        read = tuple([m for s in ("m:1", "m:2") if (m := await messages.get(s)) is not None])
        assert len(read) == 2
        await store.commit([receipt("m:1", A, at=sent + 2, source="callback")])  # meanwhile
        step = MessagesMissing(read, given_up_at=clock.now, schedule=SCHEDULE)
        missing = [record(f"missing:{serial_no}") for serial_no in ("m:1", "m:2")]
        with pytest.raises(MessageRacedError):
            await store.commit(missing, source="tracking", also=step)
        assert ids(await store.read_outbox(after=0, limit=10)) == ["m:1"]
        assert await states(messages, "m:1", "m:2") == ["delivered", "pending"]


@pytest.mark.anyio
async def test_pending_messages_and_their_schedule_survive_a_restart(backend: Backend) -> None:
    """After a restart every message keeps its state and a pending one's number stays due;
    resolved messages are forgotten with the dedupe window."""
    clock = FakeClock()
    sent = int(clock.now)
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, ("m:1", A, sent), ("m:2", B, sent))
        await store.commit([receipt("m:1", A, at=sent + 2, source="callback")])
    clock.now = sent + 20
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        assert await states(messages, "m:1", "m:2") == ["delivered", "pending"]
        assert await messages.pending_counts() == {APP: 1}
        assert await messages.due(APP, limit=10, skip=frozenset()) == (
            sent + 15.0,
            [(B, sent + 15.0, sent)],
        )
        snapshot = await store.snapshot()
        assert snapshot["messages"] == [{"app_id": APP, "pending": 1, "oldest_pending_age_s": 20.0}]
        clock.now = sent + TTL + 60
        await store.purge([])
        assert await states(messages, "m:1", "m:2") == [None, "pending"]


@pytest.mark.anyio
async def test_interleaved_receipts_give_ups_and_new_messages_stay_consistent(
    backend: Backend,
) -> None:
    """Receipts, give-ups and new messages of the same numbers from many tasks: each message
    ends delivered or missing (with its one receipt_missing record), never both, and a number
    with a message pending stays scheduled.

    One store runs its writes one transaction at a time (grouped, on either backend), so the
    writes interleave here without overlapping; transactions of two daemons really in flight
    at once are ``test_postgres.py``'s (``..._in_flight_at_once_resolve_each_once``)."""
    clock = FakeClock()
    sent = int(clock.now)
    phones = [f"+86137100{i:05d}" for i in range(24)]
    async with backend.open(clock) as store:
        messages = tracked_messages(store, clock=clock)
        await track(messages, *[(f"old:{i}", phone, sent) for i, phone in enumerate(phones)])
        clock.now = sent + 3 * DAY + 1

        async def receive(i: int) -> None:
            await store.commit([receipt(f"old:{i}", phones[i], at=sent + 5, source="callback")])

        async def follow_up(i: int) -> None:
            await track(messages, (f"new:{i}", phones[i], int(clock.now)))

        async def give_up() -> None:
            for _ in range(10):
                await give_up_expired(messages)
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(give_up)
                for i in range(len(phones)):
                    tg.start_soon(receive, i)
                    tg.start_soon(follow_up, i)
        olds = await states(messages, *[f"old:{i}" for i in range(len(phones))])
        assert set(olds) <= {"delivered", "missing"}
        rows = await store.read_outbox(after=0, limit=1000)
        missing_records = sorted(r for r in ids(rows) if r.startswith("missing:"))
        assert missing_records == sorted(
            f"missing:old:{i}" for i, state in enumerate(olds) if state == "missing"
        )
        assert await messages.pending_counts() == {APP: len(phones)}
        clock.now += 3600
        _, due = await messages.due(APP, limit=100, skip=frozenset())
        assert sorted(phone for phone, _, _ in due) == phones
