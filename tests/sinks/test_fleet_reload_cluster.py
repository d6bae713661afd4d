"""Sink reloads in cluster mode: all or nothing on the instance that reloads, its leases kept
through a failure, a removed sink's lease released, an added sink taken by one instance.

Two instances in one process (each its own ``PostgresStore``, ``Membership`` and ``SinkFleet``)
on one fresh database of the session's PostgreSQL server; real HTTP sinks posting to receivers
on loopback, and the ``probe`` plugin sink of ``test_fleet_reload`` for an open that fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tcsms_poller.cluster.leases import Membership
from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import SinkSettings
from tcsms_poller.sinks.fleet import SinkFleet, SinkReloadError
from tcsms_poller.sinks.http import HttpSettings
from tcsms_poller.state.postgres import PostgresStore
from tests.sinks.test_fleet_reload import probe_sink
from tests.support.http_receiver import Receiver, http_receiver, posted_ids
from tests.support.log_capture import captured_logs, json_lines
from tests.support.records import records
from tests.support.state import DAY
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

__all__ = ["probe_sink"]  # the fixture, used here

TTL = 3.0  # lease TTL: a claim round every second


def http(name: str, receiver: Receiver, *, batch_size: int = 50) -> HttpSettings:
    return HttpSettings.model_validate(
        {"type": "http", "name": name, "url": receiver.url, "batch_size": batch_size}
    )


def posted(receiver: Receiver) -> list[str]:
    """The record ids the receiver accepted, in order (a duplicate shows twice)."""
    return posted_ids(request.body for request in list(receiver.accepted))


@dataclass
class Instance:
    store: PostgresStore
    membership: Membership
    fleet: SinkFleet
    board: HealthBoard


@asynccontextmanager
async def instance(
    url: str, name: str, sinks: Sequence[SinkSettings], tmp_path: Path
) -> AsyncIterator[Instance]:
    """One daemon's sink side on the shared database: joined, sinks running; then drained,
    left (its leases handed over) and closed."""
    store = await PostgresStore.open(url, dedupe_ttl=8 * DAY)
    membership = Membership(store, name, ttl=TTL)
    board = HealthBoard()
    fleet = SinkFleet(
        store=store,
        metrics=Metrics(),
        board=board,
        state_dir=tmp_path,
        membership=membership,
    )
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(membership.run)
            await tg.start(fleet.run, sinks)
            yield Instance(store, membership, fleet, board)
            await fleet.drain(10)
            await membership.leave()
            tg.cancel_scope.cancel()
    finally:
        await store.aclose()


async def leases(store: PostgresStore) -> dict[str, tuple[str, int]]:
    """Each lease in the database: its holder and token."""
    snapshot = await store.cluster_snapshot()
    return {one["name"]: (one["holder"], one["token"]) for one in snapshot["leases"]}


async def holds(one: Instance, names: list[str]) -> None:
    await wait_until(
        lambda: one.membership.held() == names,
        what=f"{one.membership.instance} holding {names}",
        timeout=4 * TTL,
    )


async def delivered(receiver: Receiver, ids: list[str], what: str) -> None:
    """Wait until ``receiver`` accepted at least ``ids``; then exactly them, each once."""
    await wait_until(lambda: len(posted(receiver)) >= len(ids), what=what, timeout=30)
    assert posted(receiver) == ids


async def test_a_reload_failing_halfway_keeps_the_sinks_and_leases_of_every_instance(
    tmp_path: Path, postgres_url: str, probe_sink: type[SinkSettings]
) -> None:
    """Instance a reloads a changed webhook and a changed probe whose open fails: a's webhook
    was stopped and its new self opened before the failure. a runs both as before, under the
    same leases (same tokens: no instance had them meanwhile); b's sink, which a waits for as a
    standby, is untouched. Every record reaches each webhook once."""
    with http_receiver() as to_a, http_receiver() as to_hook:
        hook = http("hook", to_hook)
        probe = probe_sink(type="probe", name="p")
        ids = [f"r{n:03}" for n in range(200)]
        with anyio.fail_after(90):
            async with instance(postgres_url, "b", [hook], tmp_path / "b") as b:
                await holds(b, ["sink:hook"])
                sinks = [http("a", to_a), hook, probe]
                async with instance(postgres_url, "a", sinks, tmp_path / "a") as a:
                    await holds(a, ["sink:a", "sink:p"])
                    before = await leases(a.store)
                    await a.store.commit(records(*ids[:100]))  # in flight during the reload
                    refusing = probe_sink.model_validate(
                        {"type": "probe", "name": "p", "refuse_open": True}
                    )
                    with captured_logs() as out, pytest.raises(SinkReloadError) as failed:
                        await a.fleet.reload([http("a", to_a, batch_size=7), hook, refusing])
                    assert str(failed.value) == "RuntimeError: probe refused to open"
                    assert failed.value.restored == ["a", "p"]
                    assert failed.value.unrestored == []
                    stopped = [e["sink"] for e in json_lines(out) if e["event"] == "sink.stopped"]
                    assert stopped == ["a", "p", "a"]  # the old a, the old p, the unused new a
                    assert a.fleet.names == ["a", "hook", "p"]
                    assert a.membership.held() == ["sink:a", "sink:p"]
                    assert b.membership.held() == ["sink:hook"]

                    await b.store.commit(records(*ids[100:]))
                    await delivered(to_a, ids, "every record at a's webhook")
                    await delivered(to_hook, ids, "every record at b's webhook")
                    assert await leases(a.store) == before
                    assert before["sink:hook"][0] == "b"


async def test_a_removed_sink_is_drained_by_the_instances_still_configured_with_it(
    tmp_path: Path, postgres_url: str
) -> None:
    """A rolling configuration change that removes a webhook: its holder a reloads first and
    releases its lease; b, still on the old configuration, takes the sink over at its next
    claim and delivers what follows, each record once. Once b has the new configuration too,
    no instance wants the lease and the sink's cursor waits in the state."""
    with http_receiver() as to_gone, http_receiver() as to_hook:
        old = [http("gone", to_gone), http("hook", to_hook)]
        new = [http("hook", to_hook)]
        with anyio.fail_after(90):
            async with instance(postgres_url, "a", old, tmp_path / "a") as a:
                await holds(a, ["sink:gone", "sink:hook"])
                async with instance(postgres_url, "b", old, tmp_path / "b") as b:
                    await a.store.commit(records("r1"))
                    await delivered(to_gone, ["r1"], "r1 through a")
                    await a.fleet.reload(new)
                    assert a.fleet.names == ["hook"]
                    await holds(b, ["sink:gone"])
                    assert a.membership.held() == ["sink:hook"]
                    await a.store.commit(records("r2", "r3"))
                    await delivered(to_gone, ["r1", "r2", "r3"], "r2 and r3 through b")

                    await b.fleet.reload(new)
                    assert b.membership.held() == []
                    assert "sink:gone" not in await leases(a.store)
                    await a.store.commit(records("r4"))
                    await delivered(to_hook, ["r1", "r2", "r3", "r4"], "r4 at the kept webhook")
                    # Two claim rounds of each: no instance takes the removed sink again.
                    await anyio.sleep(2 * TTL / 3)  # nothing to wait for: an absence
                    assert "sink:gone" not in await leases(a.store)
                    assert posted(to_gone) == ["r1", "r2", "r3"]
                    cursor = await a.store.sink_cursor("gone")
                    assert (cursor.created, cursor.acked_seq) == (False, 3)  # kept: r1 to r3


async def test_an_added_sink_is_drained_by_one_instance(tmp_path: Path, postgres_url: str) -> None:
    """Both instances reload to a configuration with a new webhook: exactly one of them takes
    its lease, the other waits as a standby; every record committed after reaches it once."""
    with http_receiver() as to_hook, http_receiver() as to_new:
        old = [http("hook", to_hook)]
        new = [*old, http("new", to_new)]
        with anyio.fail_after(90):
            async with (
                instance(postgres_url, "a", old, tmp_path / "a") as a,
                instance(postgres_url, "b", old, tmp_path / "b") as b,
            ):
                await a.fleet.reload(new)
                await b.fleet.reload(new)
                assert a.fleet.names == b.fleet.names == ["hook", "new"]
                await wait_until(
                    lambda: "sink:new" in a.membership.held() + b.membership.held(),
                    what="an instance holding the new sink",
                    timeout=4 * TTL,
                )
                ids = [f"r{n:02}" for n in range(30)]
                for n in range(0, len(ids), 10):
                    await (a if n % 20 else b).store.commit(records(*ids[n : n + 10]))
                await delivered(to_new, ids, "every record at the new webhook")
                await delivered(to_hook, ids, "every record at the old webhook")
                holders = [
                    one.membership.instance for one in (a, b) if "sink:new" in one.membership.held()
                ]
                assert len(holders) == 1
                assert (await leases(a.store))["sink:new"][0] == holders[0]


async def test_a_sink_that_cannot_open_when_its_lease_comes_is_tried_again(
    tmp_path: Path, postgres_url: str, probe_sink: type[SinkSettings]
) -> None:
    """Instance a's plugin sink opened when a reloaded to it, but not when a gets its lease
    (b, its holder, stopped; the sink's downstream went down meanwhile): a reports the sink
    unhealthy, keeps the lease and opens it again with backoff, then delivers from the cursor.
    Nothing else in a's fleet stops."""
    down = tmp_path / "down"
    probe = probe_sink.model_validate(
        {"type": "probe", "name": "p", "refuse_open_while": str(down)}
    )
    with anyio.fail_after(90), captured_logs() as out:
        async with instance(postgres_url, "a", [], tmp_path / "a") as a:
            async with instance(postgres_url, "b", [probe], tmp_path / "b") as b:
                await holds(b, ["sink:p"])
                await a.fleet.reload([probe])  # opened once, unused: a waits as a standby
                down.write_text("")
                await b.store.commit(records("r1", "r2"))
            await holds(a, ["sink:p"])  # b left: a takes the lease over
            await wait_until(
                lambda: any(e["event"] == "sink.failed" for e in json_lines(out)),
                what="a's failed start of the sink",
                timeout=10,
            )
            assert [part.name for part in a.board.unhealthy()] == ["sink:p"]
            assert a.fleet.names == ["p"]
            assert a.membership.held() == ["sink:p"]
            await a.store.commit(records("r3", "r4"))
            assert (await a.store.sink_cursor("p")).acked_seq == 2  # b delivered r1 and r2
            down.unlink()
            while (await a.store.sink_cursor("p")).acked_seq < 4:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # a's next try opens the sink and delivers
            assert a.board.unhealthy() == []
    [failed, *_] = [e for e in json_lines(out) if e["event"] == "sink.failed"]
    assert failed["sink"] == "p"
    assert failed["error"] == "RuntimeError: probe refused to open"
