"""Leases in PostgreSQL: one holder at a time, takeover only after the TTL on the database's
clock, fencing of a stale holder's writes, and a local deadline that ends before a takeover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import psycopg
import pytest

from tcsms_poller.cluster.leases import Membership, pull_lease
from tcsms_poller.records import Record, statistics_record
from tcsms_poller.state import StateError
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.roles import Fence, LeaseLostError
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.models import STATISTICS_FIELDS
from tests.state.test_postgres import opened
from tests.support.records import record

pytestmark = pytest.mark.anyio

APP = "1400006666"


async def wait_for_lease(store: PostgresStore, instance: str, name: str, ttl: float) -> int:
    """Claim ``name`` for ``instance`` until the database grants it; its token."""
    with anyio.fail_after(ttl + 10):
        while not (granted := await store.claim_leases(instance, [name], ttl=ttl)):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return granted[name]


async def test_a_lease_has_one_holder_until_it_expires_on_the_database_clock(
    postgres_url: str,
) -> None:
    """The holder renews with the same token; another instance gets nothing until the TTL
    passed without a renewal, then takes over with a larger token."""
    async with opened(postgres_url) as store:
        first = await store.claim_leases("a", ["sink:hook", "pull"], ttl=1.5)
        assert set(first) == {"sink:hook", "pull"}
        assert await store.claim_leases("b", ["sink:hook"], ttl=1.5) == {}
        assert await store.claim_leases("a", ["sink:hook"], ttl=1.5) == {
            "sink:hook": first["sink:hook"]
        }
        started = anyio.current_time()
        token = await wait_for_lease(store, "b", "sink:hook", 1.5)
        assert anyio.current_time() - started >= 1.0  # not before the TTL (minus scheduling)
        assert token > first["sink:hook"]
        assert await store.claim_leases("a", ["sink:hook"], ttl=1.5) == {}
        snapshot = await store.cluster_snapshot()
        holders = {lease["name"]: lease["holder"] for lease in snapshot["leases"]}
        assert holders == {"sink:hook": "b", "pull": "a"}


async def test_a_stale_holder_cannot_move_the_cursor_after_its_lease_passed_on(
    postgres_url: str,
) -> None:
    """Fencing: instance a (paused past its TTL) acks a batch after b took the sink over; the
    ack is refused in its own transaction and the cursor stays b's. Without the fence the
    cursor would jump to a's seq, past records b has not delivered."""
    async with opened(postgres_url) as store:
        await store.sink_cursor("hook")  # a new sink starts at the head: before the records
        await store.commit([record(f"r{n}") for n in range(5)])
        stale = Fence("sink:hook", "a", await wait_for_lease(store, "a", "sink:hook", 1.0))
        await store.ack("hook", seq=1, position=None, fence=stale)  # while it holds: fine
        fresh = Fence("sink:hook", "b", await wait_for_lease(store, "b", "sink:hook", 1.0))
        await store.ack("hook", seq=2, position=None, fence=fresh)
        with pytest.raises(LeaseLostError, match="passed from a to b"):
            await store.ack("hook", seq=5, position={"offset": 9}, fence=stale)
        cursor = await store.sink_cursor("hook")
        assert (cursor.acked_seq, cursor.position) == (2, None)
        await store.ack("hook", seq=3, position=None, fence=fresh)
        assert (await store.sink_cursor("hook")).acked_seq == 3


def statistics(hour: str, callbacks: int) -> Record:
    """The statistics record of one hour with ``callbacks`` receipts (all other counters 0)."""
    counters = {name: 0 for name, _ in STATISTICS_FIELDS} | {"callback_count": callbacks}
    return statistics_record(
        APP,
        begin_time=hour,
        end_time=hour,
        counters=counters,
        source=Action.CALLBACK_STATUS_STATISTICS,
        received_at="2026-12-07T08:00:00.000Z",
    )


async def test_a_stale_holder_commits_no_statistics_after_its_lease_passed_on(
    postgres_url: str,
) -> None:
    """Fencing of the statistics commit: instance a (paused past its TTL) commits the hours it
    asked for after b took the app's statistics lease over; the commit is refused in its own
    transaction (no record, no seen id: b's later commit of the same hours is new). A queue
    page carries no fence and is committed whoever holds the lease."""
    name = pull_lease(APP, Action.CALLBACK_STATUS_STATISTICS)
    assert name is not None
    async with opened(postgres_url) as store:
        stale = Fence(name, "a", await wait_for_lease(store, "a", name, 1.0))
        first = await store.commit([statistics("2026120708", 3)], fence=stale)  # while held
        assert len(first.new) == 1
        fresh = Fence(name, "b", await wait_for_lease(store, "b", name, 1.0))
        hours = [statistics("2026120709", 5), statistics("2026120710", 2)]
        with pytest.raises(LeaseLostError, match="passed from a to b"):
            await store.commit(hours, source=Action.CALLBACK_STATUS_STATISTICS, fence=stale)
        assert [r.seq for r in await store.read_outbox(after=0, limit=10)] == [1]
        assert len((await store.commit(hours, fence=fresh)).new) == 2
        page = await store.commit([record("queued")], source=Action.PULL_SMS_REPLY_STATUS)
        assert len(page.new) == 1  # no fence: a queue page is always committed
        assert len(await store.read_outbox(after=0, limit=10)) == 4


class FailingAfterFirst:
    """The real store, whose claims fail after the first one (a partition, a pause)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.cut = False

    async def heartbeat(
        self, instance: str, *, version: str, healthy: bool, detail: str | None
    ) -> None:
        if self.cut:
            raise StateError("state database cut off")
        await self._store.heartbeat(instance, version=version, healthy=healthy, detail=detail)

    async def claim_leases(
        self, instance: str, names: Sequence[str], *, ttl: float
    ) -> dict[str, int]:
        return await self._store.claim_leases(instance, names, ttl=ttl)

    async def release_leases(self, instance: str, names: Sequence[str]) -> None:
        await self._store.release_leases(instance, names)

    async def leave_cluster(self, instance: str) -> None:
        await self._store.leave_cluster(instance)

    async def cluster_snapshot(self) -> dict[str, Any]:
        return await self._store.cluster_snapshot()


async def test_a_cut_off_holder_stops_before_another_can_take_over(postgres_url: str) -> None:
    """The local monotonic deadline ends while the database still refuses the lease to
    others; they get it only afterwards (and within the TTL and one claim round)."""
    async with opened(postgres_url) as store:
        cut = FailingAfterFirst(store)
        membership = Membership(cut, "a", ttl=3.0)
        lease = membership.lease("pull")
        async with anyio.create_task_group() as tg:
            await tg.start(membership.run)
            assert lease.held
            assert lease.fence == Fence("pull", "a", lease.token or 0)
            cut.cut = True
            with anyio.fail_after(5):
                await lease.wait_lost()
            lost_at = anyio.current_time()
            assert await store.claim_leases("b", ["pull"], ttl=3.0) == {}  # not free yet
            await wait_for_lease(store, "b", "pull", 3.0)
            assert anyio.current_time() - lost_at < 3.0
            tg.cancel_scope.cancel()
        assert not lease.held


async def test_a_leaving_instance_hands_its_leases_over_within_a_second(
    postgres_url: str,
) -> None:
    """A graceful stop leaves the registry and lets the leases expire after one limit window
    (its last requests still count at Tencent), not after the TTL."""
    async with opened(postgres_url) as store:
        membership = Membership(store, "a", ttl=30.0)
        lease = membership.lease("sink:hook")
        async with anyio.create_task_group() as tg:
            await tg.start(membership.run)
            assert lease.held
            snapshot = await store.cluster_snapshot()
            assert [one["id"] for one in snapshot["instances"]] == ["a"]
            await membership.leave()
            tg.cancel_scope.cancel()
        assert not lease.held
        left = anyio.current_time()
        assert await store.claim_leases("b", ["sink:hook"], ttl=30.0) == {}
        await wait_for_lease(store, "b", "sink:hook", 30.0)
        assert 0.5 < anyio.current_time() - left < 5.0
        assert (await store.cluster_snapshot())["instances"] == []


async def test_a_fenced_write_holds_off_a_takeover_until_it_committed(postgres_url: str) -> None:
    """The fence locks the lease row: a takeover waits for the guarded write's transaction, so
    a write and a takeover never interleave; once it took over, the old holder is refused."""
    async with opened(postgres_url) as store:
        await store.sink_cursor("hook")
        await store.commit([record("r1")])
        fence = Fence("sink:hook", "a", await wait_for_lease(store, "a", "sink:hook", 0.3))
        claimed: dict[str, int] = {}

        async def take_over() -> None:
            claimed["sink:hook"] = await wait_for_lease(store, "b", "sink:hook", 5.0)

        holder = await psycopg.AsyncConnection.connect(postgres_url)
        async with holder, anyio.create_task_group() as tg, holder.transaction():
            # What check_fence does in a guarded write, held open.
            await holder.execute("SELECT 1 FROM leases WHERE name = 'sink:hook' FOR SHARE")
            tg.start_soon(take_over)
            with anyio.fail_after(10):
                while not await someone_waits_for_a_lock(postgres_url):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            assert claimed == {}
        assert set(claimed) == {"sink:hook"}
        with pytest.raises(LeaseLostError):
            await store.ack("hook", seq=1, position=None, fence=fence)
        assert (await store.sink_cursor("hook")).acked_seq == 0


async def someone_waits_for_a_lock(url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url) as probe:
        cursor = await probe.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        row = await cursor.fetchone()
    return bool(row and row[0])
