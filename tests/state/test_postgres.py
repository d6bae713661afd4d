"""What only the PostgreSQL backend has to prove: outbox order with several writers, migration
by two daemons at once, a newer schema, lost connections, masked URLs, and daemons whose clocks
differ sharing the conversion queue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import psycopg
import pytest

from tcsms_poller.records import OutboxRecord
from tcsms_poller.state import StateError
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import NewMessage, Schedule, final_receipts
from tcsms_poller.state.postgres import PostgresStore, mask_url
from tcsms_poller.state.postgres import messages as postgres_messages
from tcsms_poller.state.postgres.outbox import OUTBOX_LOCK, append
from tcsms_poller.state.postgres.schema import MIGRATIONS
from tcsms_poller.state.roles import TrackedMessages
from tests.support.postgres import PASSWORD, CuttableLink, PostgresServer
from tests.support.records import FakeClock, record

from .test_contract import APP, receipt

pytestmark = pytest.mark.anyio
TTL = 8 * 86_400.0
NUMBER = "+8613700000001"


@asynccontextmanager
async def opened(url: str, clock: FakeClock | None = None) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(url, dedupe_ttl=TTL, clock=clock or FakeClock())
    try:
        yield store
    finally:
        await store.aclose()


async def connect(url: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    return await psycopg.AsyncConnection.connect(url)


async def waiting_for_outbox_lock(url: str) -> bool:
    """Whether some session waits for ``OUTBOX_LOCK`` right now."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as probe:
        cursor = await probe.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s AND objid = %s",
            OUTBOX_LOCK,
        )
        row = await cursor.fetchone()
    return bool(row and row[0])


def seqs(rows: list[OutboxRecord]) -> list[int]:
    return [row.seq for row in rows]


async def test_numbering_rows_while_the_transaction_runs_would_skip_a_late_commit(
    postgres_url: str,
) -> None:
    """The hazard itself: a row numbered first but committed last lands behind a reader."""
    async with opened(postgres_url) as store:
        slow, fast = await connect(postgres_url), await connect(postgres_url)
        async with slow, fast:
            await slow.execute("INSERT INTO outbox (data) VALUES ('{}')")  # seq 1, not committed
            await fast.execute("INSERT INTO outbox (data) VALUES ('{}')")  # seq 2
            await fast.commit()
            after = seqs(await store.read_outbox(after=0, limit=10))[-1]
            await slow.commit()
            assert after == 2
            assert seqs(await store.read_outbox(after=after, limit=10)) == []  # seq 1: skipped


async def test_a_commit_waits_to_number_its_rows_until_an_earlier_one_is_visible(
    postgres_url: str,
) -> None:
    """Rows numbered under the outbox lock become visible in seq order: a reader never steps
    past one still to commit."""
    async with opened(postgres_url) as store:
        slow = await connect(postgres_url)
        async with slow:
            await append(slow, [record("slow")], expires_at=2**40, now=0)  # numbered, uncommitted
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.commit, [record("fast")])
                with anyio.fail_after(30):
                    # The wait happens inside the server: polled, with a deadline.
                    while not await waiting_for_outbox_lock(postgres_url):  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                assert await store.read_outbox(after=0, limit=10) == []  # nothing to step past
                await slow.commit()
        rows = await store.read_outbox(after=0, limit=10)
        assert [row.as_dict()["id"] for row in rows] == ["slow", "fast"]
        assert seqs(rows) == sorted(seqs(rows))


async def test_three_daemons_starting_at_once_all_open_and_the_schema_is_made_once(
    postgres_url: str,
) -> None:
    """The migration runs under an advisory lock, so concurrent starts migrate once; the
    daemons then share the database as a cluster (cluster/ arbitrates the work)."""
    stores: list[PostgresStore] = []

    async def start() -> None:
        stores.append(await PostgresStore.open(postgres_url, dedupe_ttl=TTL))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(start)
    assert len(stores) == 3
    for store in stores:
        await store.aclose()
    async with await connect(postgres_url) as probe:
        cursor = await probe.execute("SELECT version FROM tcsms_schema ORDER BY version")
        assert [row[0] for row in await cursor.fetchall()] == list(range(1, len(MIGRATIONS) + 1))


async def test_a_database_of_schema_4_gains_the_dead_letter_tables_and_keeps_its_rows(
    postgres_url: str,
) -> None:
    """Migrations 5 and 6 on a database an earlier release wrote: its outbox and cursors stay,
    and the sinks' dead letters are kept in it from then on, indexed by record id too."""
    async with await connect(postgres_url) as connection:
        await connection.execute("CREATE TABLE tcsms_schema (version integer NOT NULL)")
        for number, script in enumerate(MIGRATIONS[:4], start=1):
            await connection.execute(script.encode())
            await connection.execute("INSERT INTO tcsms_schema (version) VALUES (%s)", (number,))
        await connection.execute("INSERT INTO outbox (data) VALUES (%s)", (record("a").to_json(),))
        await connection.execute(
            "INSERT INTO sink_cursors (name, acked_seq, updated_at) VALUES ('file', 0, 0)"
        )
        await connection.commit()
    async with opened(postgres_url) as store:
        assert [row.as_dict()["id"] for row in await store.read_outbox(after=0, limit=10)] == ["a"]
        assert (await store.sink_cursor("file")).acked_seq == 0
        dead = store.dead_letters("file")
        await dead.write(await store.read_outbox(after=0, limit=10), reason="refused", now=0.0)
        assert [letter.record_id for letter in await dead.letters()] == ["a"]
    async with await connect(postgres_url) as probe:
        cursor = await probe.execute("SELECT max(version) FROM tcsms_schema")
        assert await cursor.fetchone() == (len(MIGRATIONS),)
        cursor = await probe.execute(  # migration 6: dead letters looked up by record id
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'dead_letters_by_record'"
        )
        [(definition,)] = await cursor.fetchall()
        assert str(definition).endswith("ON public.dead_letters USING btree (sink, record_id)")


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    """A database written by a newer release is not touched."""
    async with opened(postgres_url):
        pass
    async with await connect(postgres_url) as connection:
        await connection.execute("INSERT INTO tcsms_schema (version) VALUES (99)")
        await connection.commit()
    with pytest.raises(StateError, match="schema version 99 is newer"):
        await PostgresStore.open(postgres_url, dedupe_ttl=TTL)


async def test_terminated_connections_fail_one_call_and_the_pool_reconnects(
    postgres_url: str,
) -> None:
    """``pg_terminate_backend`` fails the calls on those connections; retries go through."""
    async with opened(postgres_url) as store:
        await store.commit([record("before")])
        async with await connect(postgres_url) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tcsms-poller' AND pid <> pg_backend_pid()"
            )
            await admin.commit()
        errors: list[str] = []
        for _ in range(5):  # each dead connection fails one call and leaves the pool
            try:
                await store.commit([record("after")])
                break
            except StateError as error:
                errors.append(str(error))
        assert len(errors) <= 1
        assert all(PASSWORD not in error for error in errors)
        rows = await store.read_outbox(after=0, limit=10)
        assert [row.as_dict()["id"] for row in rows] == ["before", "after"]


async def test_status_of_a_missing_database_names_it_masked() -> None:
    """An unreachable URL fails with the URL shown, its password masked."""
    url = f"postgresql://tcsms:{PASSWORD}@127.0.0.1:1/gone"
    with pytest.raises(StateError) as raised:
        await PostgresStore.open(url, dedupe_ttl=TTL)
    assert "postgresql://tcsms:***@127.0.0.1:1/gone" in str(raised.value)
    assert PASSWORD not in str(raised.value)


async def test_a_one_character_password_leaves_the_error_readable() -> None:
    """Password ``p``: the driver's "port 1 failed" reads as written, not "***ort 1"."""
    with pytest.raises(StateError) as raised:
        await PostgresStore.open("postgresql://tcsms:p@127.0.0.1:1/gone", dedupe_ttl=TTL)
    assert "postgresql://tcsms:***@127.0.0.1:1/gone" in str(raised.value)
    assert "port 1 failed" in str(raised.value)
    assert "***ort" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u:p%40ss@db:5432/x?sslmode=require",
            "postgresql://u:***@db:5432/x?sslmode=require",
        ),
        ("postgresql:///x?host=/run/postgresql", "postgresql:///x?host=/run/postgresql"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    """Only the password is masked; the rest helps an operator see where the state is."""
    assert mask_url(url) == shown


async def test_daemons_whose_clocks_differ_share_the_conversion_queue_on_the_databases_clock(
    postgres_url: str,
) -> None:
    """Two daemons, one's clock 10 minutes behind the other's (the database's in between): each
    sees the other's conversions due, and neither takes one the other holds, leased or deferred,
    also when both claim at once."""
    now = time.time()
    behind, ahead = FakeClock(now - 300), FakeClock(now + 300)
    async with opened(postgres_url, behind) as slow, opened(postgres_url, ahead) as fast:
        await slow.enqueue_conversions([(APP, "slow", None)])
        await fast.enqueue_conversions([(APP, "fast", None)])
        leased = await slow.lease_conversions(limit=10, lease=120)
        assert [c.serial_no for c in leased] == ["slow", "fast"]
        assert await fast.lease_conversions(limit=10, lease=120) == []
        await slow.defer_conversion(leased[0].id, delay=60, error="busy")
        assert await fast.lease_conversions(limit=10, lease=120) == []

        await slow.enqueue_conversions([(APP, f"c{i}", None) for i in range(60)])
        first = await fast.lease_conversions(limit=1, lease=120)
        taken = {"slow": [], "fast": [c.serial_no for c in first]}
        assert taken["fast"] == ["c0"]

        async def drain(name: str, store: PostgresStore) -> None:
            while batch := await store.lease_conversions(limit=7, lease=120):
                taken[name] += [c.serial_no for c in batch]

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, "slow", slow)
                tg.start_soon(drain, "fast", fast)
        both = taken["slow"] + taken["fast"]
        assert sorted(both) == sorted(f"c{i}" for i in range(60))


async def test_a_network_cut_fails_calls_until_it_heals_and_loses_nothing(
    postgres_server: PostgresServer,
) -> None:
    """Connections cut and refused: commits fail with ``StateError``; once the network is back
    the pool reconnects and nothing committed is lost."""
    database = postgres_server.create_database().rpartition("/")[2]
    link = CuttableLink(postgres_server)
    async with anyio.create_task_group() as tg:
        await tg.start(link.serve)
        async with opened(link.url(database)) as store:
            await store.commit([record("before")])
            await link.cut()
            with pytest.raises(StateError) as raised:
                await store.commit([record("during")])
            assert PASSWORD not in str(raised.value)
            link.restore()
            with anyio.fail_after(30):
                while True:  # each failed call discards a dead connection; callers retry so
                    try:
                        await store.commit([record("during")])
                        break
                    except StateError:
                        await anyio.sleep(0.1)
            rows = await store.read_outbox(after=0, limit=10)
            assert [row.as_dict()["id"] for row in rows] == ["before", "during"]
        tg.cancel_scope.cancel()


async def lock_waiters(url: str) -> int:
    """How many sessions of the database wait for a lock right now."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as probe:
        cursor = await probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_message_tracked_while_its_numbers_last_one_resolves_keeps_it_scheduled(
    postgres_url: str,
) -> None:
    """A receipt resolving a number's last pending message waits for a transaction tracking a
    new one on that number, then sees it: the number stays scheduled (without the row lock it
    would be dropped from the schedule, as the deletion would judge by its older snapshot)."""
    clock = FakeClock()
    sent = int(clock.now)
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    async with opened(postgres_url) as store:
        messages = tracked_messages(store, clock=clock)
        await messages.track([NewMessage(APP, "old", NUMBER, sent)], schedule=schedule)
    tracker, resolver = await connect(postgres_url), await connect(postgres_url)
    async with tracker, resolver:
        new = [NewMessage(APP, "new", NUMBER, sent + 5)]
        await postgres_messages.add_messages(tracker, new, now=clock.now, schedule=schedule)

        async def resolve() -> None:
            old = receipt("old", NUMBER, at=sent + 2, source="callback")
            receipts = final_receipts([old])
            await postgres_messages.resolve_messages(resolver, receipts, now=clock.now)
            await resolver.commit()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(resolve)
                # Another session's wait shows only in the server's views: poll them.
                while not await lock_waiters(postgres_url):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                await tracker.commit()
    async with opened(postgres_url) as store:
        messages = tracked_messages(store, clock=clock)
        assert [(await messages.get(s)).state for s in ("old", "new")] == [  # type: ignore[union-attr]
            "delivered",
            "pending",
        ]
        clock.now = sent + 60
        _, due = await messages.due(APP, limit=10, skip=frozenset())
        assert due == [(NUMBER, sent + 15.0, sent + 5)]  # as the old message had it


async def test_two_daemons_tracking_the_same_batch_at_once_track_each_message_once(
    postgres_url: str,
) -> None:
    """Two instances receive the same batch (in different orders) at the same moment: each
    message is tracked once, by exactly one of them, and its number once."""
    clock = FakeClock()
    sent = int(clock.now)
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    batch = [NewMessage(APP, f"m:{i:03}", f"+86137000{i % 7:05}", sent) for i in range(60)]
    async with opened(postgres_url) as one, opened(postgres_url) as two:
        outcomes: list[list[bool]] = []

        async def track(store: PostgresStore, items: list[NewMessage]) -> None:
            created = await tracked_messages(store, clock=clock).track(items, schedule=schedule)
            outcomes.append([created[items.index(m)] for m in batch])

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(track, one, batch)
                    tg.start_soon(track, two, batch[::-1])
        assert [sum(column) for column in zip(*outcomes, strict=True)] == [1] * len(batch)
        messages = tracked_messages(one, clock=clock)
        assert await messages.pending_counts() == {APP: len(batch)}
        clock.now = sent + 60
        _, due = await messages.due(APP, limit=100, skip=frozenset())
        assert sorted(phone for phone, _, _ in due) == sorted({m.phone for m in batch})


async def blocked_on(url: str, gate: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """How many sessions of the database wait for ``gate``'s transaction to end."""
    row = await (await gate.execute("SELECT pg_current_xact_id()::text")).fetchone()
    assert row is not None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as probe:
        cursor = await probe.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted "
            "AND transactionid::text = %s",
            (row[0],),
        )
        found = await cursor.fetchone()
    return int(found[0]) if found else 0


async def test_a_page_of_receipts_resolves_a_message_another_daemon_just_tracked(
    postgres_url: str,
) -> None:
    """A page of receipts commits in one statement while no message is pending; once another
    daemon tracks one, the next page resolves it, its records appended once."""
    clock = FakeClock()
    sent = int(clock.now)
    async with opened(postgres_url, clock) as one, opened(postgres_url, clock) as two:
        first = await one.commit([receipt("m:0", NUMBER, at=sent + 1, source="callback")])
        assert ([r.id for r in first.new], first.resolved) == (["m:0"], ())
        other = tracked_messages(two, clock=clock)
        await other.track(
            [NewMessage(APP, "m:1", NUMBER, sent)], schedule=Schedule(first_poll=15, max_gap=60)
        )
        page = [receipt(s, NUMBER, at=sent + 2, source="PullSmsSendStatus") for s in ("m:1", "m:2")]
        result = await one.commit(page)
        assert [r.id for r in result.new] == ["m:1", "m:2"]
        assert [r.state for r in result.resolved] == ["delivered"]
        message = await other.get("m:1")
        assert message is not None
        assert message.state == "delivered"
        rows = await two.read_outbox(after=0, limit=10)
        assert [row.as_dict()["id"] for row in rows] == ["m:0", "m:1", "m:2"]


async def test_grouped_writes_of_two_daemons_taking_rows_in_opposite_orders_both_commit(
    postgres_url: str,
) -> None:
    """Each daemon groups the writes that wait into one transaction, so the rows its writes
    take add up in arrival order, whatever order each write keeps: two daemons can deadlock.
    PostgreSQL then fails one write; it is run again and both daemons' writes commit.

    Staged with two gates (rows another session inserts and holds): daemon one groups
    ``track a`` then ``track gate2, b``, daemon two ``track b`` then ``track gate2, a``; both
    groups take their first row and wait at gate 2; opening it closes the cycle."""
    clock = FakeClock()
    sent = int(clock.now)
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    phones = {"0gate1": "+8613700000091", "0gate2": "+8613700000092"}
    phones |= {"a": NUMBER, "b": "+8613700000002"}  # a number each, or they queue on its row

    def batch(*serial_nos: str) -> list[NewMessage]:
        return [NewMessage(APP, serial_no, phones[serial_no], sent) for serial_no in serial_nos]

    gate1, gate2 = await connect(postgres_url), await connect(postgres_url)
    async with opened(postgres_url) as one, opened(postgres_url) as two, gate1, gate2:
        for gate, serial_no in ((gate1, "0gate1"), (gate2, "0gate2")):
            await postgres_messages.add_messages(
                gate, batch(serial_no), now=clock.now, schedule=schedule
            )
        created: dict[str, list[bool]] = {}

        async def track(store: PostgresStore, name: str, *serial_nos: str) -> None:
            messages = tracked_messages(store, clock=clock)
            created[name] = await messages.track(batch(*serial_nos), schedule=schedule)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(track, one, "one:gate1", "0gate1")  # holds daemon one's writer
                tg.start_soon(track, two, "two:gate1", "0gate1")
                while await blocked_on(postgres_url, gate1) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # another session's wait shows only in its views
                tg.start_soon(track, one, "one:a", "a")
                tg.start_soon(track, one, "one:b", "0gate2", "b")
                tg.start_soon(track, two, "two:b", "b")
                tg.start_soon(track, two, "two:a", "0gate2", "a")
                await anyio.wait_all_tasks_blocked()  # all four wait in their daemon's queue
                await gate1.rollback()
                while await blocked_on(postgres_url, gate2) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                await gate2.rollback()
        assert created["one:a"] == created["two:b"] == [True]
        assert sorted([created["one:gate1"], created["two:gate1"]]) == [[False], [True]]
        assert sorted([created["one:b"], created["two:a"]]) == [[False, False], [True, False]]
        messages = tracked_messages(one, clock=clock)
        assert await messages.pending_counts() == {APP: 4}


async def in_flight_at_once(url: str, *steps: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``steps`` (each a transaction on the messages) so that all are in flight at once:
    a gate session locks every message; each step starts once the ones before it wait for
    it, in that order (which is the order PostgreSQL lets them through); then it opens."""
    gate = await connect(url)
    async with gate:
        await gate.execute("SELECT 1 FROM messages ORDER BY serial_no FOR UPDATE")
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for waiting, step in enumerate(steps, start=1):
                    tg.start_soon(step)
                    while await lock_waiters(url) < waiting:  # noqa: ASYNC110
                        await anyio.sleep(0.05)  # another session's wait: in its views only
                await gate.rollback()


@pytest.mark.parametrize("first", ["give_up", "receipts"])
async def test_a_give_up_and_receipts_of_the_same_messages_in_flight_at_once_resolve_each_once(
    postgres_url: str, first: str
) -> None:
    """One daemon gives up on expired messages while another commits their receipts: both
    transactions are running at once (held at a gate on the messages' rows until both wait).
    Whichever takes the rows first wins for all of them, the other changes none: each message
    ends delivered (no receipt_missing) or missing (one receipt_missing, its receipt kept as
    a record and resolving nothing), never both, never neither."""
    clock = FakeClock()
    sent = int(clock.now)
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    phones = [f"+86137000{i:05}" for i in range(6)]
    serial_nos = [f"m:{i}" for i in range(len(phones))]
    async with opened(postgres_url) as one, opened(postgres_url) as two:
        giver = tracked_messages(one, clock=clock)
        await giver.track(
            [NewMessage(APP, s, phone, sent) for s, phone in zip(serial_nos, phones, strict=True)]
            + [NewMessage(APP, "m:silent", phones[0], sent)],  # no receipt ever
            schedule=schedule,
        )
        clock.now = sent + 3 * 86_400.0 + 1
        receipts = [
            receipt(s, phone, at=sent + 5, source="callback")
            for s, phone in zip(serial_nos, phones, strict=True)
        ]
        outcome: dict[str, Any] = {}

        async def give_up() -> None:
            outcome["give_up"] = await giver.give_up(
                await giver.expired(APP, give_up_after=3 * 86_400.0), schedule=schedule
            )

        async def receive() -> None:
            outcome["receipts"] = await two.commit(receipts, source="callback")

        steps = {"give_up": give_up, "receipts": receive}
        await in_flight_at_once(
            postgres_url, steps[first], *(f for n, f in steps.items() if n != first)
        )
        resolved = [r.state for r in outcome["receipts"].resolved]
        if first == "give_up":
            assert outcome["give_up"] is not None
            assert sorted(r.id for r in outcome["give_up"].new) == sorted(
                f"missing:{s}" for s in [*serial_nos, "m:silent"]
            )
            assert resolved == []  # the receipts came, and found their messages missing
        else:
            assert outcome["give_up"] is None  # raced: rolled back whole, to be read again
            assert resolved == ["delivered"] * len(serial_nos)
            assert await giver.give_up(
                await giver.expired(APP, give_up_after=3 * 86_400.0), schedule=schedule
            )
        states = {s: (await giver.get(s)).state for s in [*serial_nos, "m:silent"]}  # type: ignore[union-attr]
        rows = await one.read_outbox(after=0, limit=100)
        missing = sorted(
            r.as_dict()["id"] for r in rows if r.as_dict()["kind"] == "receipt_missing"
        )
        assert missing == sorted(
            f"missing:{s}" for s, state in states.items() if state == "missing"
        )
        assert states["m:silent"] == "missing"
        expected = "missing" if first == "give_up" else "delivered"
        assert [states[s] for s in serial_nos] == [expected] * len(serial_nos)
        assert sorted(r.as_dict()["id"] for r in rows if r.as_dict()["kind"] == "send_status") == (
            sorted(serial_nos)
        )
        assert await giver.pending_counts() == {}
        assert await giver.due(APP, limit=10, skip=frozenset()) == (None, [])


async def test_the_same_receipts_and_give_ups_on_two_daemons_at_once_resolve_each_once(
    postgres_url: str,
) -> None:
    """A push retried to the other daemon while the first still commits it, and two daemons
    giving up at once (a worker's handover): each message resolves once in all, one
    receipt_missing each, and the receipt's record once."""
    clock = FakeClock()
    sent = int(clock.now)
    schedule = Schedule(first_poll=15.0, max_gap=3600.0)
    async with opened(postgres_url) as one, opened(postgres_url) as two:
        daemons = [tracked_messages(store, clock=clock) for store in (one, two)]
        items = [("pushed", NUMBER), ("silent", "+8613700000002")]
        await daemons[0].track([NewMessage(APP, s, p, sent) for s, p in items], schedule=schedule)
        push = [receipt("pushed", NUMBER, at=sent + 5, source="callback")]
        results: list[Any] = []

        async def receive(store: PostgresStore) -> None:
            results.append(await store.commit(push, source="callback"))

        await in_flight_at_once(postgres_url, partial(receive, one), partial(receive, two))
        assert sorted(len(r.resolved) for r in results) == [0, 1]
        assert sorted(len(r.new) for r in results) == [0, 1]
        clock.now = sent + 3 * 86_400.0 + 1
        given_up: list[Any] = []

        async def give_up(daemon: TrackedMessages) -> None:
            given_up.append(
                await daemon.give_up(
                    await daemon.expired(APP, give_up_after=3 * 86_400.0), schedule=schedule
                )
            )

        await in_flight_at_once(postgres_url, *(partial(give_up, d) for d in daemons))
        assert sorted([r is None for r in given_up]) == [False, True]  # one raced, rolled back
        [won] = [r for r in given_up if r is not None]
        assert [r.id for r in won.new] == ["missing:silent"]
        rows = await one.read_outbox(after=0, limit=100)
        assert sorted(r.as_dict()["id"] for r in rows) == ["missing:silent", "pushed"]
        assert [(await daemons[1].get(s)).state for s, _ in items] == [  # type: ignore[union-attr]
            "delivered",
            "missing",
        ]
        assert (
            await daemons[1].give_up(
                await daemons[1].expired(APP, give_up_after=3 * 86_400.0), schedule=schedule
            )
            is None
        )


async def refused(url: str) -> str:
    """The one-line reason ``PostgresStore.open`` refuses the database at ``url`` with."""
    with pytest.raises(StateError) as caught:
        await PostgresStore.open(url, dedupe_ttl=TTL)
    message = str(caught.value)
    assert "\n" not in message
    assert PASSWORD not in message
    assert mask_url(url) in message
    return message


async def a_state_with_records(url: str) -> int:
    """A state of three records and a sink ``file`` at the head; the head."""
    async with opened(url) as store:
        await store.commit([record(f"id-{n}") for n in range(3)])
        await store.sink_cursor("file")
        await store.ack("file", seq=store.head, position={"offset": 1})
        return store.head


async def run_sql(url: str, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Run ``statements`` (the last with ``params``) as the database's owner, and commit."""
    async with await connect(url) as connection:
        for n, statement in enumerate(statements, start=1):
            await connection.execute(statement.encode(), params if n == len(statements) else ())
        await connection.commit()


async def test_a_sink_cursor_beyond_the_head_is_refused(postgres_url: str) -> None:
    """As with SQLite: the sink would skip every new record while reporting nothing pending."""
    head = await a_state_with_records(postgres_url)
    await run_sql(postgres_url, "UPDATE sink_cursors SET acked_seq = %s", params=(head + 50,))
    message = await refused(postgres_url)
    assert f"sink 'file' acknowledged up to {head + 50}, beyond the newest record {head}" in message
    assert "restore it from a backup" in message


async def test_a_cursor_at_a_head_whose_rows_were_purged_opens(postgres_url: str) -> None:
    """The head is the identity's last value, not the newest row: an outbox emptied by the
    purge leaves its sinks' cursors valid."""
    head = await a_state_with_records(postgres_url)
    await run_sql(postgres_url, "DELETE FROM outbox")
    async with opened(postgres_url) as store:
        assert store.head == head
        assert (await store.sink_cursor("file")).acked_seq == head


@pytest.mark.parametrize("position", ["{not json", "[1, 2]", "42"])
async def test_a_position_that_is_not_a_json_object_is_refused(
    postgres_url: str, position: str
) -> None:
    await a_state_with_records(postgres_url)
    await run_sql(postgres_url, "UPDATE sink_cursors SET position = %s", params=(position,))
    assert "unreadable position for sink 'file'" in await refused(postgres_url)


async def test_outbox_rows_beyond_their_identity_are_refused(postgres_url: str) -> None:
    """A restore that left the sequence behind: every append would fail on a duplicate seq."""
    await a_state_with_records(postgres_url)
    await run_sql(postgres_url, "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), 1)")
    message = await refused(postgres_url)
    assert "has record 3 in its outbox beyond the last seq its identity gave (1)" in message


async def test_our_tables_without_a_schema_version_are_refused_untouched(postgres_url: str) -> None:
    """An emptied ``tcsms_schema`` (or another program's ``outbox``): not migrated over."""
    await a_state_with_records(postgres_url)
    await run_sql(postgres_url, "DELETE FROM tcsms_schema")
    message = await refused(postgres_url)
    assert "it has tables seen, outbox, sink_cursors but tcsms_schema records no version" in message
    async with await connect(postgres_url) as probe:
        cursor = await probe.execute("SELECT count(*) FROM outbox")
        assert await cursor.fetchone() == (3,)


async def test_a_tcsms_schema_of_another_program_is_refused(postgres_url: str) -> None:
    await run_sql(postgres_url, "CREATE TABLE tcsms_schema (name text)")
    assert "tcsms_schema is not tcsms-poller's" in await refused(postgres_url)


async def test_a_version_without_its_tables_is_refused(postgres_url: str) -> None:
    await a_state_with_records(postgres_url)
    await run_sql(postgres_url, "DROP TABLE sink_cursors")
    message = await refused(postgres_url)
    assert "has a tcsms_schema version but not its tables sink_cursors" in message


async def test_a_database_with_other_tables_gains_ours(postgres_url: str) -> None:
    """Tables of other programs are no concern: ours are created beside them."""
    await run_sql(postgres_url, "CREATE TABLE notes (text text)", "CREATE TABLE seen_by (n int)")
    async with opened(postgres_url) as store:
        await store.commit([record("a")])
        assert store.head == 1


async def test_a_role_that_may_only_read_and_write_opens_a_current_schema(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A role without CREATE: one line before the schema is made, and the daemon's role once
    it is (made by an owner); without rights on the tables, one line again."""
    postgres_server.execute("DROP ROLE IF EXISTS worker")
    postgres_server.execute(f"CREATE ROLE worker LOGIN PASSWORD '{PASSWORD}'")
    url = postgres_url.replace("tcsms:", "worker:", 1)
    assert "permission denied for schema public" in await refused(url)
    await a_state_with_records(postgres_url)
    assert "permission denied for table" in await refused(url)
    await run_sql(
        postgres_url,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO worker",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO worker",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO worker",
    )
    async with opened(url) as store:
        await store.commit([record("by-worker")])
        assert store.head == 4


async def test_a_database_that_accepts_no_writes_is_refused_at_open(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """As a standby would: refused at start rather than failing every write later."""
    await a_state_with_records(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    message = await refused(postgres_url)
    assert "accepts no writes" in message
    assert "state.url must name the primary" in message
