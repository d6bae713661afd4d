"""A big state: 1,000,000 seen ids and 100,000 tracked numbers. Memory, scheduler cost, start-up.

The state is built first, through the daemon's own state layer (``SqliteStore``, with
``synchronous = OFF`` while building only): the numbers are synced from a numbers file as the
daemon syncs them, then spread over the schedule (half of them overdue, so the per-number worker
polls at the full rate for the whole run); the seen ids are committed as records 5,000 at a
time, acknowledged by the file sink and purged from the outbox, as a daemon that ran for a week
would have done. Their commit times are spread over the last seven days, so none expires during
the run. Then three figures:

- ``peak_rss_mb``: the real ``tcsms-poller run -c CONFIG``, started as a subprocess against the
  in-process emulator (traffic to the numbers polled first; queue workers and by-number polling
  with replies on), after ``--run-seconds`` of polling: its ``VmHWM`` from ``/proc``.
- ``ready_s``: from just before the daemon process is spawned to its ``READY=1`` on a
  ``$NOTIFY_SOCKET`` this benchmark binds, the median of ``--ready-starts`` starts (all are
  listed; the page cache is warm). Before each start, a process that only imports what ``run``
  imports is timed too (``imports_s``): the part no state size changes, under the same load.
- ``scheduler_us_per_request``: in-process, against the same file once the daemon has stopped,
  what the per-number worker spends on scheduling per number polled: each round's read of the
  most overdue numbers (``SqliteStore.due_numbers``: the lag read and the pick in one
  transaction on the writer's connection, thread hops included, skipping the previous round's
  numbers as if still in flight) divided by the numbers it picked, plus the ``advance_number``
  statement that reschedules a polled number (the daemon runs it inside the page's commit). The
  pick statement alone is reported beside it. The store's clock runs one interval ahead, so
  every number is due, as for a daemon catching up after downtime.

    .venv/bin/python bench/scale.py [--seen 1000000] [--numbers 100000] [--run-seconds 25]
        [--ready-starts 5] [--scheduler-picks 20000] [--dir DIR]

Nothing is cached between runs; the whole run takes two to three minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: find bench._common

import anyio
import anyio.to_thread
import yaml
from tests.support.notify_socket import NotifySocket, notify_socket

from bench._common import (
    exit_on_sigterm,
    filesystem_of,
    load_average,
    machine,
    percentile,
    print_result,
    proc_status_mb,
    temp_dir,
)
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    TrafficOptions,
    run_emulator,
)
from tcsms_poller.logs import configure_logging
from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.state.numbers import TrackedNumber, advance_number, due_numbers
from tcsms_poller.state.store import SqliteStore
from tcsms_poller.tencent.models import ReplyStatus, SendStatus
from tcsms_poller.workers.by_number import STATUS_ACTION

APP_ID = DEFAULT_APP_ID
SINK = "file"  # the sink_name of the configured file sink: its cursor is acknowledged at build
DEDUPE_TTL = 8 * 86_400.0  # the daemon's default
WEEK = 7 * 86_400.0
INTERVAL = 7_200.0  # by_number.interval: 100,000 numbers at 20 req/s need 5,000 s a round
BY_NUMBER_RATE = 20  # PullSmsSendStatusByPhoneNumber, requests per second
ROUND = 2 * BY_NUMBER_RATE  # numbers picked per round, as ByNumberWorker sizes its batches
COMMIT_CHUNK = 5_000  # records a build commit; PURGE_BATCH, so one purge empties the outbox
TRAFFIC_NUMBERS = 500  # the emulator sends to the numbers due first, so polls find records
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
TARGETS = {"peak_rss_mb": 150.0, "scheduler_us_per_request": 50.0, "ready_s": 1.0}


# -- the state ----------------------------------------------------------------------------------


def phone_numbers(count: int) -> list[str]:
    """``count`` distinct mainland mobile numbers (7,919 is prime to 10**9: no collisions)."""
    return [f"+861{3 + index % 7}{(index * 7_919 + 12_345) % 10**9:09d}" for index in range(count)]


class BuildClock:
    """The store's clock while building: each chunk of records is committed at its own time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seen_records(start: int, stop: int, phones: Sequence[str], received_at: str) -> list[Record]:
    """Records ``start`` to ``stop``: four receipts to one reply, to the tracked numbers."""
    records: list[Record] = []
    for index in range(start, stop):
        phone = phones[index % len(phones)]
        subscriber = phone.removeprefix("+86")
        moment = 1_764_000_000 + index // 20
        if index % 5:
            status = SendStatus(
                serial_no=f"{2433 + index % 7}:{328_240_000_000_000_000_000 + index * 7_919}",
                phone_number=phone,
                country_code="86",
                subscriber_number=subscriber,
                report_status="SUCCESS" if index % 13 else "FAIL",
                description="用户短信送达成功",
                user_receive_time=moment,
                session_context=None,
            )
            records.append(
                send_status_record(
                    APP_ID, status, source="PullSmsSendStatus", received_at=received_at
                )
            )
        else:
            reply = ReplyStatus(
                phone_number=phone,
                country_code="86",
                subscriber_number=subscriber,
                sign_name="腾讯云",
                reply_content=f"好的 #{index}",
                reply_time=moment,
                extend_code="",
            )
            records.append(
                reply_record(APP_ID, reply, source="PullSmsReplyStatus", received_at=received_at)
            )
    return records


@dataclass(slots=True)
class Built:
    """The state on disk and what building it took."""

    phones: list[str]
    first_due: list[str]  # the most overdue numbers, polled first
    numbers_s: float = 0.0
    seen_s: float = 0.0


async def build_state(path: Path, numbers_file: Path, seen: int, count: int, seed: int) -> Built:
    """Sync ``count`` numbers, commit ``seen`` records (``SqliteStore``); see the docstring."""
    now = time.time()
    clock = BuildClock(now)
    phones = phone_numbers(count)
    await anyio.Path(numbers_file).write_text("".join(f"{phone}\n" for phone in phones))
    rng = random.Random(seed)
    due = {phone: now - INTERVAL + 2 * INTERVAL * rng.random() for phone in phones}
    built = Built(phones, sorted(phones, key=due.__getitem__)[:TRAFFIC_NUMBERS])
    # synchronous OFF only while building: a crash here just means building again.
    store = await SqliteStore.open(path, dedupe_ttl=DEDUPE_TTL, synchronous="OFF", clock=clock)
    try:
        started = time.perf_counter()
        await store.sync_numbers(APP_ID, "file", phones)  # what the daemon does at start

        def spread(connection: sqlite3.Connection) -> None:
            for phone, next_due in due.items():
                polled_at = next_due - INTERVAL
                advance_number(
                    connection,
                    APP_ID,
                    phone,
                    next_due=next_due,
                    polled_at=polled_at,
                    status_cursor=int(polled_at) - 30,
                    reply_cursor=int(polled_at) - 600,
                )

        await store.write(spread)
        built.numbers_s = time.perf_counter() - started

        started = time.perf_counter()
        await store.sink_cursor(SINK)
        for start in range(0, seen, COMMIT_CHUNK):
            stop = min(start + COMMIT_CHUNK, seen)
            clock.now = now - WEEK * (1 - start / seen)  # expires one to eight days from now
            records = seen_records(start, stop, phones, format_received_at(clock.now))
            result = await store.commit(records, source="bench")
            assert len(result.new) == len(records), "seen ids must be distinct"
            await store.ack(SINK, seq=store.head, position=None)  # the sink took them
            await store.purge([SINK])  # and housekeeping dropped them from the outbox
        built.seen_s = time.perf_counter() - started
    finally:
        await store.aclose()
    return built


def state_facts(path: Path, since: float) -> dict[str, int]:
    """Counts read straight from the file: seen ids, outbox rows, numbers polled since ``since``."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (seen,) = connection.execute(
            "SELECT (SELECT COUNT(*) FROM seen) + (SELECT COUNT(*) FROM seen_recent)"
        ).fetchone()
        (outbox,) = connection.execute("SELECT COUNT(*) FROM outbox").fetchone()
        (polled,) = connection.execute(
            "SELECT COUNT(*) FROM numbers WHERE last_polled_at >= ?", (since,)
        ).fetchone()
        (tracked,) = connection.execute("SELECT COUNT(*) FROM numbers").fetchone()
    finally:
        connection.close()
    return {"seen": seen, "outbox": outbox, "polled": polled, "tracked": tracked}


def state_mb(path: Path) -> float:
    """The database and its WAL, as they lie on disk."""
    files = (path, path.with_name(path.name + "-wal"))
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


# -- the daemon ---------------------------------------------------------------------------------


def daemon_config(workdir: Path, endpoint: str, numbers_file: Path) -> Path:
    """A production-like configuration against the emulator; returns its path."""
    config = {
        "tencent": {
            "secret_id": DEFAULT_SECRET_ID,
            "secret_key": DEFAULT_SECRET_KEY,
            "endpoint": endpoint,
        },
        "apps": [
            {
                "sms_sdk_app_id": APP_ID,
                "replies": {"enabled": True, "interval": "2s"},
                "send_status": {"enabled": True, "interval": "2s"},
                "by_number": {
                    "enabled": True,
                    "numbers_file": str(numbers_file),
                    "interval": f"{INTERVAL:.0f}s",
                    "lookback": "24h",
                    "replies": True,
                },
            }
        ],
        "state": {"path": str(workdir / "state.db"), "dedupe_ttl": f"{DEDUPE_TTL:.0f}s"},
        "sinks": [{"type": "file", "path": str(workdir / "records.jsonl")}],
        "log": {"level": "info", "format": "json"},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_ready(notify: NotifySocket, process: subprocess.Popen[bytes], timeout: float) -> float:
    """The monotonic time ``READY=1`` arrived; fails at once if the daemon exits instead."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            notify.wait_for("READY=1", timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            return time.monotonic()
        except TimeoutError:
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"the daemon exited with {code} before READY=1") from None
            if time.monotonic() >= deadline:
                raise


def imports_s() -> float:
    """Seconds to spawn Python, import what ``run`` imports, and exit: no state, no config.

    Timed just before each daemon start, under the same load: the part of ``ready_s`` that no
    state size changes.
    """
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import tcsms_poller.cli, tcsms_poller.commands.run"], check=True
    )
    return time.monotonic() - started


@dataclass(slots=True)
class DaemonRun:
    """What the running daemons showed."""

    ready_s: list[float] = field(default_factory=list)
    imports_s: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    rss_mb: list[float] = field(default_factory=list)  # VmRSS once a second
    polled_s: float = 0.0
    stop_s: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    limit_hits: int = 0


class Daemon:
    """One ``tcsms-poller run`` child: logs to our stderr, notifies the socket it is given."""

    def __init__(self, config: Path, notify: NotifySocket) -> None:
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tcsms_poller", "run", "-c", str(config)],
            stdout=sys.stderr.fileno(),
            stderr=sys.stderr.fileno(),
            env={**os.environ, **notify.environ()},
        )
        self.notify = notify

    async def ready(self) -> float:
        """Seconds from spawning to ``READY=1``."""
        arrived = await anyio.to_thread.run_sync(
            wait_ready, self.notify, self.process, READY_TIMEOUT
        )
        return arrived - self.spawned

    async def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return await anyio.to_thread.run_sync(partial(self.process.wait, timeout=STOP_TIMEOUT))

    def kill(self) -> None:
        """The way out if something failed on the way."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def run_daemons(
    workdir: Path, numbers_file: Path, built: Built, seconds: float, starts: int
) -> DaemonRun:
    """Start the daemon, poll ``seconds`` and read its peak RSS; then time more starts."""
    outcome = DaemonRun()
    traffic = TrafficOptions(
        phone_numbers=tuple(built.first_due),
        heavy_numbers=0,
        send_rate=20.0,
        reply_rate=2.0,
        backfill=600.0,
    )
    options = EmulatorOptions(seed=11, traffic=traffic)
    async with run_emulator(options) as emulator:
        config = daemon_config(workdir, emulator.url, numbers_file)
        for start in range(starts):
            outcome.imports_s.append(await anyio.to_thread.run_sync(imports_s))
            with notify_socket() as notify:
                daemon = Daemon(config, notify)
                try:
                    outcome.ready_s.append(await daemon.ready())
                    if start == 0:
                        polling_from = time.monotonic()
                        while time.monotonic() - polling_from < seconds:
                            rss = proc_status_mb(daemon.process.pid, "VmRSS")
                            outcome.rss_mb.append(rss if rss is not None else 0.0)
                            await anyio.sleep(min(1.0, seconds - (time.monotonic() - polling_from)))
                        outcome.peak_rss_mb = proc_status_mb(daemon.process.pid, "VmHWM") or 0.0
                        outcome.polled_s = time.monotonic() - polling_from
                    stopping = time.monotonic()
                    outcome.exit_codes.append(await daemon.stop())
                    if start == 0:
                        outcome.stop_s = time.monotonic() - stopping
                finally:
                    daemon.kill()
        for action, stats in emulator.state.stats_snapshot()["actions"].items():
            outcome.requests[action] = stats["requests"]
            outcome.limit_hits += stats["limit_hits"]
    return outcome


# -- the scheduler ------------------------------------------------------------------------------


@dataclass(slots=True)
class SchedulerCost:
    """Seconds spent choosing (per round, and its SQL alone) and rescheduling (per number)."""

    pick_s: list[float] = field(default_factory=list)
    pick_sql_s: list[float] = field(default_factory=list)
    advance_s: list[float] = field(default_factory=list)
    picked: int = 0

    @property
    def us_per_request(self) -> float:
        if not self.picked:
            return 0.0
        return (sum(self.pick_s) + sum(self.advance_s)) * 1e6 / self.picked


async def time_scheduler(path: Path, picks: int) -> SchedulerCost:
    """Pick rounds of ``ROUND`` numbers and reschedule each, as the worker does; see docstring.

    The store's clock runs ``INTERVAL`` ahead, so every number is due and every round finds
    ``ROUND`` numbers, however many the daemon run polled. A round's numbers are rescheduled
    after the next round is picked, which must skip them: the worker's overlap of batches.
    """
    cost = SchedulerCost()

    def clock() -> float:
        return time.time() + INTERVAL

    store = await SqliteStore.open(path, dedupe_ttl=DEDUPE_TTL, clock=clock)  # synchronous FULL

    def pick(
        connection: sqlite3.Connection, skip: frozenset[str]
    ) -> tuple[float | None, list[TrackedNumber]]:
        # What store.due_numbers runs in its transaction, with the statement timed.
        started = time.perf_counter()
        picked = due_numbers(connection, APP_ID, now=clock(), limit=ROUND, skip=skip)
        cost.pick_sql_s.append(time.perf_counter() - started)
        return picked

    def reschedule(connection: sqlite3.Connection, phone: str, cursor: int | None) -> float:
        now = clock()
        started = time.perf_counter()
        advance_number(
            connection,
            APP_ID,
            phone,
            next_due=now + INTERVAL,
            polled_at=now,
            status_cursor=(cursor or int(now) - 60) + 30,
        )
        return time.perf_counter() - started

    in_flight: list[TrackedNumber] = []
    try:
        while cost.picked < picks:
            started = time.perf_counter()
            skip = frozenset(number.phone for number in in_flight)
            _, numbers = await store.write(partial(pick, skip=skip))  # store.due_numbers
            cost.pick_s.append(time.perf_counter() - started)
            if not numbers:
                break  # every number is scheduled in the future: nothing more to time
            cost.picked += len(numbers)
            for number in in_flight:
                cost.advance_s.append(
                    await store.write(
                        partial(reschedule, phone=number.phone, cursor=number.status_cursor)
                    )
                )
            in_flight = numbers
    finally:
        await store.aclose()
    return cost


# -- figures ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seen", type=int, default=1_000_000, help="seen ids (default 1000000)")
    parser.add_argument("--numbers", type=int, default=100_000, help="tracked (default 100000)")
    parser.add_argument("--run-seconds", type=float, default=25.0, help="polling before RSS")
    parser.add_argument("--ready-starts", type=int, default=5, help="daemon starts timed")
    parser.add_argument("--scheduler-picks", type=int, default=20_000, help="numbers picked")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.seen < 0 or args.numbers < TRAFFIC_NUMBERS or args.ready_starts < 1:
        parser.error(f"need --seen >= 0, --numbers >= {TRAFFIC_NUMBERS}, --ready-starts >= 1")
    exit_on_sigterm()
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    load_before = load_average()

    with temp_dir("tcsms-bench-scale-", args.dir) as workdir:
        path, numbers_file = workdir / "state.db", workdir / "numbers.txt"
        built = anyio.run(
            build_state, path, numbers_file, args.seen, args.numbers, args.seed, backend="asyncio"
        )
        size_mb = state_mb(path)
        run_from = time.time()
        run = anyio.run(
            run_daemons,
            workdir,
            numbers_file,
            built,
            args.run_seconds,
            args.ready_starts,
            backend="asyncio",
        )
        facts = state_facts(path, run_from)
        cost = anyio.run(time_scheduler, path, args.scheduler_picks, backend="asyncio")
        filesystem = filesystem_of(workdir)
    load_after = load_average()

    ready_s = percentile(run.ready_s, 0.5)
    imports_median_s = percentile(run.imports_s, 0.5)
    state_part_s = percentile([r - i for r, i in zip(run.ready_s, run.imports_s, strict=True)], 0.5)
    picked = max(cost.picked, 1)
    pick_us = sum(cost.pick_s) * 1e6 / picked
    pick_sql_us = sum(cost.pick_sql_s) * 1e6 / picked
    advance_us_mean = sum(cost.advance_s) * 1e6 / max(len(cost.advance_s), 1)
    pick_ms = [seconds * 1e3 for seconds in cost.pick_s]
    advance_us = [seconds * 1e6 for seconds in cost.advance_s]
    values = {
        "peak_rss_mb": run.peak_rss_mb,
        "scheduler_us_per_request": cost.us_per_request,
        "ready_s": ready_s,
    }
    met = {name: values[name] <= target for name, target in TARGETS.items()}
    problems = []
    if any(code != 0 for code in run.exit_codes):
        problems.append(f"daemon exit codes {run.exit_codes}")
    if facts["polled"] == 0 or run.requests.get(STATUS_ACTION, 0) == 0:
        problems.append("the daemon polled no number")
    if facts["seen"] < args.seen or facts["tracked"] != args.numbers:
        problems.append(f"state holds {facts['seen']} ids and {facts['tracked']} numbers")
    if cost.picked < min(args.scheduler_picks, args.numbers):
        problems.append(f"only {cost.picked} numbers were due for the scheduler timing")
    figures: dict[str, Any] = {
        "benchmark": "scale",
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "scheduler_us_per_request": round(cost.us_per_request, 1),
        "ready_s": round(ready_s, 3),
        "target_met": met,
        "verified": not problems,
        "seen_ids": args.seen,
        "numbers": args.numbers,
        "state_mb": round(size_mb, 1),
        "ready_s_each": [round(seconds, 3) for seconds in run.ready_s],
        "rss_mb_at_ready": round(run.rss_mb[0], 1) if run.rss_mb else None,
        "rss_mb_last": round(run.rss_mb[-1], 1) if run.rss_mb else None,
        "polled_s": round(run.polled_s, 1),
        "numbers_polled": facts["polled"],
        "requests": run.requests,
        "limit_hits": run.limit_hits,
        "stop_s": round(run.stop_s, 3),
        "imports_s": round(imports_median_s, 3),
        "imports_s_each": [round(seconds, 3) for seconds in run.imports_s],
        "ready_minus_imports_s": round(state_part_s, 3),
        "scheduler_pick_us": round(pick_us, 1),
        "scheduler_pick_sql_us": round(pick_sql_us, 1),
        "scheduler_advance_us": round(advance_us_mean, 1),
        "scheduler_pick_ms_per_round_p50": round(percentile(pick_ms, 0.5), 3),
        "scheduler_pick_ms_per_round_p99": round(percentile(pick_ms, 0.99), 3),
        "scheduler_advance_us_p50": round(percentile(advance_us, 0.5), 1),
        "scheduler_advance_us_p99": round(percentile(advance_us, 0.99), 1),
        "scheduler_numbers_picked": cost.picked,
        "scheduler_round": ROUND,
        "build_numbers_s": round(built.numbers_s, 1),
        "build_seen_s": round(built.seen_s, 1),
        "filesystem": filesystem,
        "load_average": {"before": load_before, "after": load_after},
        "machine": machine(),
    }
    verdict = {True: "met", False: "MISSED"}
    summary = [
        f"scale: {args.seen:,} seen ids and {args.numbers:,} tracked numbers, state "
        f"{size_mb:.1f} MB on {filesystem} (built in {built.numbers_s:.1f} s + "
        f"{built.seen_s:.1f} s); load average {load_before} -> {load_after}",
        f"  peak RSS        {run.peak_rss_mb:8.1f} MB  after {run.polled_s:.0f} s of polling, "
        f"{facts['polled']:,} numbers polled "
        f"(target <= {TARGETS['peak_rss_mb']:.0f}: {verdict[met['peak_rss_mb']]}); RSS at READY "
        f"{figures['rss_mb_at_ready']} MB, at the end {figures['rss_mb_last']} MB",
        f"  ready           {ready_s:8.3f} s   median of {len(run.ready_s)} "
        f"starts {figures['ready_s_each']} (target <= {TARGETS['ready_s']:.0f}: "
        f"{verdict[met['ready_s']]})",
        f"  (of which)      {imports_median_s:8.3f} s   spawning Python and importing (no state), "
        f"so {state_part_s:.3f} s config, state, sync of the numbers file, workers (median)",
        f"  scheduler       {cost.us_per_request:8.1f} µs  per number polled "
        f"(target <= {TARGETS['scheduler_us_per_request']:.0f}: "
        f"{verdict[met['scheduler_us_per_request']]}), {cost.picked:,} numbers in rounds of "
        f"{ROUND}",
        f"  (of which)      {pick_us:8.1f} µs  choosing: lag read and pick statement "
        f"({pick_sql_us:.1f} µs), thread hops; round p50 "
        f"{figures['scheduler_pick_ms_per_round_p50']} ms",
        f"                  {advance_us_mean:8.1f} µs  rescheduling: advance_number (p50 "
        f"{figures['scheduler_advance_us_p50']} µs)",
        f"  requests        {run.requests}, {run.limit_hits} answered RequestLimitExceeded",
        "  checks          " + ("passed" if not problems else "FAILED: " + "; ".join(problems)),
    ]
    print_result(summary, figures)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
