"""Chaos in a cluster of three daemons on one PostgreSQL state, under live traffic: random
``kill -9``s of random instances (each restarted), two ``SIGSTOP``s longer than the lease TTL
followed by ``SIGCONT``, and a restart of the PostgreSQL server.

At the end, against the emulator's truth: every delivery status at the webhook; no reply lost but
those handed out just before a kill (they died with the process, and are counted); every record the
webhook got twice is the replay of the last batch some instance sent before another took the sink
over (sent, not acknowledged), or before the lease's fence refused its ack and the lease came back
to it with no batch of another in between (its log says so: ``replayed_batches``); no number was
polled by two instances at once; the daemons, by their own send times, never sent more than a
limit in one second; and the emulator refused no request for its limits.

The emulator runs in a process of its own (``tests.support.emulator_process``), fed through its
control endpoint, and times each request when the kernel received it (``EmulatorState.arrival``):
timed as late as a busy event loop got to it, requests looked closer together than they were
sent, and its strict limits refused some. Any refusal is set beside the daemons' own send times
(``tests.support.limit_audit``), in the assertion and in ``limit-refusals.txt``.
"""

from __future__ import annotations

import random
import signal
import time
from contextlib import AsyncExitStack
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller.tencent.api import DEFAULT_RATE_LIMITS as LIMITS
from tests.e2e.test_cluster import (
    INSTANCE_HEADER,
    REPLIES_LEASE,
    SINK_LEASE,
    cluster_config,
    holders,
    limit_hits,
    overlapping_polls,
)
from tests.support.daemon_process import DaemonProcess, running_daemon
from tests.support.emulator import control, expected_ids, poll_log, truth, truth_reply_id
from tests.support.emulator_process import emulator_process
from tests.support.http_receiver import http_receiver
from tests.support.limit_audit import (
    busiest_second,
    lateness,
    log_entries,
    refusal_report,
    sent_requests,
)
from tests.support.postgres import running_server
from tests.support.reliability import CHAOS_NUMBERS as NUMBERS
from tests.support.reliability import CHAOS_TRAFFIC as TRAFFIC
from tests.support.reliability import Tally, batch_ids, posted_traffic, replayed_batches
from tests.support.waiting import settle

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEED = 20_251_207
KILLS = 20
PAUSES = 2
INSTANCES = ("a", "b", "c")
GAP = (0.5, 1.5)  # seconds between two strikes: the chaos plan, not a wait
IN_FLIGHT = 0.25  # a reply handed out this shortly before a kill may have died with it
# A page pulled while the database is down is held and its commit retried with backoff (0.5 s,
# 1 s, 2 s, 4 s...): a kill before that commit succeeds takes the page with it too.
COMMIT_RETRY = 8.0
TTL = 3.0


def plan(rng: random.Random) -> list[str]:
    """The strikes in a seeded order: kills, pauses and one database restart."""
    strikes = ["kill"] * KILLS + ["pause"] * PAUSES + ["restart_db"]
    rng.shuffle(strikes)
    return strikes


Kill = tuple[float, float]  # when the kill was sent; when the emulator had read what it left


def in_flight(at: float, kills: list[Kill], outage: tuple[float, float] | None) -> bool:
    """Whether a reply handed out at ``at`` may have died with a kill: within ``IN_FLIGHT``
    before it (or after it, to a request the victim wrote before it died and the emulator read
    later), or during the database's outage and before its commit could succeed."""
    if any(kill - IN_FLIGHT <= at <= read for kill, read in kills):
        return True
    if outage is None or not outage[0] - IN_FLIGHT <= at <= outage[1]:
        return False
    return any(at <= kill <= outage[1] + COMMIT_RETRY for kill, _ in kills)


def lost_replies(
    snapshot: dict[str, Any],
    delivered: set[str],
    kills: list[Kill],
    outage: tuple[float, float] | None,
) -> list[str]:
    """Replies not delivered that no kill explains (``in_flight``)."""
    unexplained = []
    for reply in snapshot["replies"]:
        reply_id = truth_reply_id(reply)
        at = reply["handed_out_at"]
        if reply_id in delivered:
            continue
        if at is None or not in_flight(at, kills, outage):
            unexplained.append(f"{reply_id} handed out at {at}")
    return unexplained


@pytest.mark.timeout(300)  # typically 55 s
async def test_kills_pauses_and_a_database_restart_lose_nothing_and_repeat_only_replays(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    kills: list[Kill] = []
    outage: tuple[float, float] | None = None
    generation = dict.fromkeys(INSTANCES, 0)
    running: dict[str, DaemonProcess] = {}
    async with (
        emulator_process(tmp_path / "emulator.log", seed=SEED) as emulator,
        AsyncExitStack() as stack,
    ):
        await control(emulator, "polls", {"logging": True})
        server = stack.enter_context(running_server())
        url = server.create_database()
        receiver = stack.enter_context(http_receiver())

        async def start(name: str) -> None:
            generation[name] += 1
            config = cluster_config(
                emulator,
                tmp_path / name,
                url,
                receiver.url,
                f"{name}.{generation[name]}",
                app={"by_number": {"numbers": list(NUMBERS), "interval": "1s"}},
            )
            running[name] = await stack.enter_async_context(running_daemon(tmp_path / name, config))

        async with posted_traffic(emulator, TRAFFIC, seed=SEED) as traffic:
            for name in INSTANCES:
                await start(name)
            for strike in plan(rng):
                await anyio.sleep(rng.uniform(*GAP))
                victim = await pick(rng, url)
                if strike == "kill":
                    killed = time.time()
                    await running[victim].kill()
                    # A request the victim wrote just before it died may be read a moment
                    # later: a round trip lets the emulator catch up.
                    await control(emulator, "stats")
                    kills.append((killed, time.time()))
                    await start(victim)
                elif strike == "pause":
                    running[victim].signal(signal.SIGSTOP)
                    await anyio.sleep(TTL + 1.5)  # longer than the lease: the point of it
                    running[victim].signal(signal.SIGCONT)
                else:
                    stopped = time.time()
                    server.stop()
                    await anyio.sleep(2.0)  # down for a while, under traffic
                    server.start()
                    outage = (stopped, time.time())
            await traffic.stop()
            snapshot = await truth(emulator)
            must_have = expected_ids(snapshot) - {
                truth_reply_id(reply)
                for reply in snapshot["replies"]
                if reply["handed_out_at"] is not None
                and in_flight(reply["handed_out_at"], kills, outage)
            }
            posted = Tally(receiver)
            await settle(lambda: posted.update() >= must_have, timeout=90)
            async with anyio.create_task_group() as tg:  # each drains its part, at once
                for daemon in running.values():
                    tg.start_soon(daemon.stop)
        requests = list(receiver.accepted)
        final = await truth(emulator)
        refused = limit_hits(await control(emulator, "stats"))
        logs = await control(emulator, "polls")  # and the requests that reached a limiter
        overlaps = overlapping_polls(await poll_log(emulator))

    sent = sent_requests({name: tmp_path / name / "daemon.log" for name in INSTANCES})
    busiest = {
        action: busiest_second(sorted(s.at for s in sent.values() if s.action == action))
        for action in {s.action for s in sent.values()}
    }
    report = refusal_report(logs["requests"], sent, LIMITS)
    (tmp_path / "limit-refusals.txt").write_text("\n".join(report) + "\n")
    late = lateness(logs["requests"], sent)
    timing = f"{late[len(late) // 2]:.4f} s (median) to {late[-1]:.4f} s" if late else "-"
    print(  # noqa: T201 (shown with -s, whatever the assertions below say)
        f"\nrefused for the limits: {refused}; numbers polled by two at once: {overlaps}; "
        f"most requests sent in one second: {busiest}; arrivals timed after the send by {timing}",
        *report,
        sep="\n",
    )
    delivered = {record_id for request in requests for record_id in batch_ids(request)}
    expected = expected_ids(final)
    assert delivered <= expected, f"records no one sent: {sorted(delivered - expected)[:5]}"
    missing = [s for s in final["send_statuses"] if s["serial_no"] not in delivered]
    assert not missing, f"{len(missing)} delivery statuses lost: {missing[:3]}"
    unexplained = lost_replies(final, delivered, kills, outage)
    assert not unexplained, f"replies lost outside any kill's last {IN_FLIGHT}s: {unexplained}"
    segments = [list(group) for _, group in groupby(requests, key=sender)]
    refused_acks_by_life = {
        life: times
        for name in INSTANCES
        for life, times in refused_acks(tmp_path / name / "daemon.log", name).items()
    }
    replays, problems = replayed_batches(segments, sender=sender, refused=refused_acks_by_life)
    assert not problems, problems
    # A request a SIGSTOP caught between its grant and its write is checked again right before
    # it is written, after SIGCONT: its share ran out and its number's claim passed on, so it is
    # not sent. Only a pause in the microseconds between that check and the write system call
    # lets one leave late (docs/cluster.md, "Measured": 1 in 60 pauses at 100 requests/s).
    assert overlaps == [], f"numbers polled by two instances at once: {overlaps[:5]}"
    # The instances' shares never add up to more than the limit and each request is checked
    # against its slot right before it is written: by the daemons' own clocks, no second holds
    # more than a limit, and the emulator, timing arrivals as the kernel received them, refuses
    # none, pauses and kills included.
    over = {action: n for action, (n, _) in busiest.items() if n > LIMITS[action]}
    assert not over, f"more requests sent in one second than the limit: {busiest}"
    assert refused == {}, "\n".join([f"requests refused: {refused}", *report])
    copies = sum(len(batch_ids(request)) for request in requests)
    print(  # noqa: T201 (what the run cost is its report, shown with -s)
        f"\n{len(kills)} kills, {PAUSES} pauses, 1 database restart; "
        f"{len(expected - delivered)} replies lost in flight; {len(segments)} sender changes at "
        f"the webhook, {replays} replayed batches, {copies - len(delivered)} repeated records"
    )


async def pick(rng: random.Random, url: str) -> str:
    """A random instance; two times in three, the holder of a random lease (the work moves)."""
    lease = rng.choice([REPLIES_LEASE, SINK_LEASE, None])
    held = await holders(url) if lease is not None else {}
    holder = held.get(lease or "")
    return rng.choice(INSTANCES) if holder is None else holder.partition(".")[0]


def refused_acks(log: Path, name: str) -> dict[str, list[float]]:
    """When each life of instance ``name`` had an ack refused by the sink lease's fence (the
    lease had passed on; its drainer starts again from the shared cursor once it holds the lease
    again), by sender (``name.LIFE``, as ``start`` numbers them)."""
    refused: dict[str, list[float]] = {}
    for life, entry in log_entries(log):
        if entry.get("event") == "sink.lease_lost" and "write refused" in entry.get("error", ""):
            at = datetime.fromisoformat(entry["ts"]).timestamp()
            refused.setdefault(f"{name}.{life}", []).append(at)
    return refused


def sender(request: Any) -> str:
    """Which instance (and which life of it) posted a batch."""
    return str(request.headers[INSTANCE_HEADER])
