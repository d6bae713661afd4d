"""Several daemons on one PostgreSQL state (cluster mode), as real processes against the emulator:
a paused holder that resumes after its leases passed on, three instances under the account's
limits, and a ``kill -9`` of the holder of every lease.

The three instances' test judges the limits to the request, so its emulator runs in a process of
its own (``tests.support.emulator_process``), read only through its control endpoints: it times
each arrival when the kernel received it, wherever it runs, and there it also answers as a
server would, not as late as this busy test process gets to it."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from tcsms_poller.emulator import RunningEmulator
from tcsms_poller.state.postgres import PostgresStore
from tests.e2e.test_listener import server as server_settings
from tests.support.daemon_process import APP, DaemonProcess, daemon_config, running_daemon
from tests.support.emulator import (
    NUMBER,
    Reachable,
    control,
    expected_ids,
    inject,
    poll_log,
    receipts,
    replies,
    truth,
)
from tests.support.emulator_process import emulator_process
from tests.support.http_receiver import Receiver, http_receiver, posted_ids
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

TTL = 3.0  # seconds: the shortest lease_ttl the configuration allows, for quick failovers
BATCH = 50
SINK_LEASE = "sink:http"
REPLIES_LEASE = f"pull:{APP}:PullSmsReplyStatus"
STATUS_LEASE = f"pull:{APP}:PullSmsSendStatus"
LEASES = (SINK_LEASE, REPLIES_LEASE, STATUS_LEASE)
LIMITED = "PullSmsSendStatusByPhoneNumber"
LIMIT = 20  # the emulator's (and Tencent's) limit of LIMITED
INSTANCE_HEADER = "X-Instance"  # which instance posted a batch (a configured sink header)


def cluster_config(
    emulator: Reachable,
    directory: Path,
    url: str,
    hook: str,
    instance: str,
    *,
    app: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One instance's configuration: state in ``url``, records posted to ``hook``."""
    config = daemon_config(
        emulator.url,
        directory,
        app=app or {"by_number": {"numbers": [NUMBER], "interval": "1s", "replies": True}},
        sinks=[
            {
                "type": "http",
                "name": "http",
                "url": hook,
                "batch_size": BATCH,
                "headers": {INSTANCE_HEADER: instance},
            }
        ],
    )
    config["state"] = {
        "path": str(directory / "state.db"),
        "url": url,
        "pool_size": 4,
        "instance_id": instance,
        "lease_ttl": f"{TTL:g}s",
    }
    return config


async def holders(url: str) -> dict[str, str]:
    """Lease name -> holder, as the database has it now (expired ones included)."""
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SELECT name, holder FROM leases")
        return {str(name): str(holder) for name, holder in await cursor.fetchall()}


async def wait_for_holder(url: str, name: str, wanted: Sequence[str], timeout: float) -> str:
    """Wait until one of ``wanted`` holds ``name``; which one."""
    with anyio.fail_after(timeout):
        while (holder := (await holders(url)).get(name)) not in wanted:
            await anyio.sleep(0.05)
    assert holder is not None
    return holder


@asynccontextmanager
async def instances(
    stack: AsyncExitStack, configs: dict[str, tuple[Path, dict[str, Any]]]
) -> AsyncIterator[dict[str, DaemonProcess]]:
    """Start every instance of ``configs`` (name -> (directory, config)) at once."""
    started: dict[str, DaemonProcess] = {}

    async def start(name: str) -> None:
        directory, config = configs[name]
        started[name] = await stack.enter_async_context(running_daemon(directory, config))

    async with anyio.create_task_group() as tg:
        for name in configs:
            tg.start_soon(start, name)
    yield started


def delivered(receiver: Receiver) -> list[str]:
    return posted_ids([request.body for request in receiver.requests])


async def test_a_paused_holder_that_resumes_after_its_leases_passed_on_commits_nothing(
    tmp_path: Path, emulator: RunningEmulator, postgres_url: str
) -> None:
    """SIGSTOP the holder of every lease for longer than the TTL: the other instance takes the
    leases over and delivers; after SIGCONT the paused one finds its leases gone (its local
    deadline passed), sends nothing and moves no cursor, and every record arrives once."""
    with http_receiver() as receiver:
        configs = {
            name: (
                tmp_path / name,
                cluster_config(emulator, tmp_path / name, postgres_url, receiver.url, name),
            )
            for name in ("a", "b")
        }
        async with AsyncExitStack() as stack:
            first = await stack.enter_async_context(running_daemon(*configs["a"]))
            await wait_for_holder(postgres_url, SINK_LEASE, ["a"], 10)
            second = await stack.enter_async_context(running_daemon(*configs["b"]))
            assert (await holders(postgres_url)) == dict.fromkeys(LEASES, "a")
            first.signal(signal.SIGSTOP)
            paused_at = anyio.current_time()
            for lease in LEASES:
                await wait_for_holder(postgres_url, lease, ["b"], 2 * TTL)
            assert anyio.current_time() - paused_at >= TTL - 0.5  # not before the lease expired
            await inject(emulator, send_statuses=receipts(120), replies=replies(30))
            expected = expected_ids(await truth(emulator))
            await wait_until(lambda: set(delivered(receiver)) == expected, what="b's deliveries")
            posts_by_a = posted_by(receiver, "a")
            first.signal(signal.SIGCONT)
            await wait_until(
                lambda: bool(first.events("cluster.lease_lost")), what="a noticing its loss"
            )
            await inject(emulator, replies=replies(20, saying="after"))
            expected = expected_ids(await truth(emulator))
            await wait_until(lambda: set(delivered(receiver)) == expected, what="the new replies")
            assert (await holders(postgres_url)) == dict.fromkeys(LEASES, "b")
            await first.stop()
            await second.stop()
    ids = delivered(receiver)
    assert Counter(ids).most_common(1)[0][1] == 1
    assert posted_by(receiver, "a") == posts_by_a  # a sent nothing after it resumed
    assert posted_by(receiver, "b") > 0
    assert len(first.events("sink.started")) == 1  # and did not drain again


def posted_by(receiver: Receiver, instance: str) -> int:
    return sum(r.headers[INSTANCE_HEADER] == instance for r in receiver.requests)


def numbers_file(path: Path, count: int) -> Path:
    """``count`` distinct Chinese mobile numbers, ``NUMBER`` first."""
    numbers = [NUMBER] + [f"+86137{n:08d}" for n in range(1, count)]
    path.write_text("\n".join(numbers) + "\n")
    return path


async def test_three_instances_share_the_numbers_and_the_limit_and_fail_over_after_kill_9(
    tmp_path: Path, postgres_url: str
) -> None:
    """Three instances, 2,000 tracked numbers, live records: the emulator refuses no request
    for the limits while the per-number action runs at 95 % of its limit or more, the three
    instances each make a fair part of the per-number requests, no two polls of one number
    overlap; ``kill -9`` of the holder of the queue and sink leases hands them to another
    instance within 2 x TTL, which delivers what follows."""
    numbers = numbers_file(tmp_path / "numbers.txt", 2000)
    app = {"by_number": {"numbers_file": str(numbers), "interval": "1s", "replies": False}}
    async with (
        emulator_process(tmp_path / "emulator.log", seed=7) as emulator,
        AsyncExitStack() as stack,
    ):
        await control(emulator, "polls", {"logging": True})
        await inject(emulator, send_statuses=receipts(150), replies=replies(30))
        receiver = stack.enter_context(http_receiver())
        configs = {
            name: (
                tmp_path / name,
                cluster_config(
                    emulator, tmp_path / name, postgres_url, receiver.url, name, app=app
                ),
            )
            for name in ("a", "b", "c")
        }
        async with instances(stack, configs) as running:
            expected = expected_ids(await truth(emulator))
            await wait_until(lambda: set(delivered(receiver)) >= expected, what="the records")
            await wait_for_shares(postgres_url, LIMITED, ["a", "b", "c"], timeout=6 * TTL)
            # Utilization, measured over 8 s of the sweep (2,000 numbers at 20/s take 100 s).
            before, started = await request_count(emulator), anyio.current_time()
            await anyio.sleep(8.0)
            rate = (await request_count(emulator) - before) / (anyio.current_time() - started)
            assert rate >= 0.95 * LIMIT, f"{rate:.2f} requests/s of {LIMIT}"
            # The shares never add up to more than the limit, and each instance counts a request
            # from when it was written, so even a loaded machine's late request lets no later one
            # in early: not one refusal (two instances pulling at once are refused by the dozen).
            stats = await control(emulator, "stats")
            assert limit_hits(stats) == {}
            assert stats["actions"][LIMITED]["max_in_window"] <= LIMIT
            assert overlapping_polls(await poll_log(emulator)) == []
            shares = {name: by_number_requests(running[name]) for name in running}
            total = sum(shares.values())
            assert all(count >= total / 6 for count in shares.values()), shares

            now_held = await holders(postgres_url)
            victims = {now_held[lease] for lease in LEASES}  # one instance or more
            if len(victims) == len(running):  # keep one survivor: spare the sink's holder
                victims.discard(now_held[SINK_LEASE])
            for victim in victims:
                running[victim].signal(signal.SIGKILL)
            killed_at = anyio.current_time()
            others = [name for name in running if name not in victims]
            for lease in LEASES:
                await wait_for_holder(postgres_url, lease, others, 2 * TTL + 1)
            failover = anyio.current_time() - killed_at
            assert failover <= 2 * TTL, failover
            new = (await holders(postgres_url))[REPLIES_LEASE]
            await inject(emulator, replies=replies(40, saying="after the kill"))
            expected = expected_ids(await truth(emulator))
            await wait_until(lambda: set(delivered(receiver)) >= expected, what="after failover")
            assert limit_hits(await control(emulator, "stats")) == {}
            assert overlapping_polls(await poll_log(emulator)) == []
            config_file = configs[new][0] / "config.yaml"
            status = await anyio.run_process(
                [sys.executable, "-m", "tcsms_poller", "status", "-c", str(config_file)],
                check=False,
            )
            output = status.stdout.decode()
            assert status.returncode == 0, output + status.stderr.decode()
            assert f"  {REPLIES_LEASE}: {new} (token" in output
            assert "cluster instances:" in output
            assert f"  {LIMITED}: {new} " in output  # its share of the limit
            assert "cluster number claims (polls in progress):" in output
            for name in others:
                await running[name].stop()
    repeats = [n for n, times in Counter(delivered(receiver)).items() if times > 1]
    assert len(repeats) <= BATCH  # at most the batch the killed holder had not acknowledged


async def wait_for_shares(url: str, action: str, members: Sequence[str], timeout: float) -> None:
    """Wait until every one of ``members`` holds a share of ``action``'s limit, the shares
    adding up to the whole limit (the cluster's steady state)."""
    query = (
        "SELECT instance, rate FROM rate_shares WHERE action = %s "
        "AND expires_at > clock_timestamp() AND held_until < clock_timestamp()"
    )
    with anyio.fail_after(timeout):
        while True:
            async with await psycopg.AsyncConnection.connect(url) as connection:
                cursor = await connection.execute(query, (action,))
                rates = {str(name): int(rate) for name, rate in await cursor.fetchall()}
            if set(members) <= {n for n, r in rates.items() if r > 0} and sum(rates.values()) == (
                LIMIT
            ):
                return
            await anyio.sleep(0.2)


def overlapping_polls(log: Sequence[tuple[str, float, float]] | None) -> list[str]:
    """Numbers two of whose requests were at the emulator at once (two pollers at a time)."""
    assert log is not None
    overlaps = []
    by_number: dict[str, list[tuple[float, float]]] = {}
    for phone, arrived, answered in log:
        by_number.setdefault(phone, []).append((arrived, answered))
    for phone, spans in by_number.items():
        spans.sort()
        for (_, answered), (arrived, _) in pairwise(spans):
            if arrived < answered:
                overlaps.append(f"{phone}: {arrived:.3f} < {answered:.3f}")
    return overlaps


def by_number_requests(daemon: DaemonProcess) -> int:
    """Per-number requests ``daemon`` made, from its ``poll.completed`` lines."""
    return sum(
        int(event.get("requests", 0))
        for event in daemon.events("poll.completed")
        if str(event.get("worker", "")).startswith("by_number")
    )


async def request_count(emulator: Reachable) -> int:
    """Requests of ``LIMITED`` the emulator has seen so far (``GET /_emulator/stats``)."""
    stats = await control(emulator, "stats")
    return int(stats["actions"].get(LIMITED, {}).get("requests", 0))


def limit_hits(stats: Mapping[str, Any]) -> dict[str, int]:
    """Requests the emulator refused with ``RequestLimitExceeded``, per action, from its
    counters (``GET /_emulator/stats``)."""
    actions = stats["actions"]
    return {name: one["limit_hits"] for name, one in actions.items() if one["limit_hits"]}


async def test_records_committed_while_a_dead_holder_keeps_the_sink_are_delivered(
    tmp_path: Path, emulator: RunningEmulator, postgres_url: str
) -> None:
    """The sink's lease is still a dead instance's when the daemon starts and pulls: the
    sink's cursor is made at start, so the records committed before the lease passed on are
    delivered once it does (a cursor made at the takeover would start after them)."""
    store = await PostgresStore.open(postgres_url, dedupe_ttl=8 * 86_400.0)
    try:
        assert await store.claim_leases("ghost", [SINK_LEASE], ttl=4.0)
    finally:
        await store.aclose()
    await inject(emulator, send_statuses=receipts(60), replies=replies(20))
    expected = expected_ids(await truth(emulator))
    port = free_port()
    with http_receiver() as receiver:
        config = cluster_config(emulator, tmp_path, postgres_url, receiver.url, "a")
        config["server"] = server_settings(port)
        async with running_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
            await wait_until(
                lambda: (
                    sum(e.get("new", 0) for e in daemon.events("poll.completed")) >= len(expected)
                ),
                what="the records committed",
            )
            assert receiver.requests == []  # the ghost still holds the sink
            health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
            assert health["healthy"]  # a standby sink is not a failing one
            cluster = health["cluster"]
            assert (cluster["instance"], cluster["lease_ttl_s"]) == ("a", TTL)
            assert cluster["holds"] == [REPLIES_LEASE, STATUS_LEASE]
            assert cluster["number_claims"] >= 0
            await wait_until(lambda: set(delivered(receiver)) == expected, what="the records")
            await daemon.stop()
    assert Counter(delivered(receiver)).most_common(1)[0][1] == 1
