"""``tcsms-poller demo [--duration S]``: the daemon against the built-in emulator, no setup.

The emulator generates traffic on a free loopback port (receipts, replies, a few numbers busy
enough to need paging); the daemon pulls it under the real rate limits into a throwaway state
database and prints the records on stdout: short lines on a terminal, JSON Lines in a pipe.
Logs go to stderr. At the end a summary compares, per sink, the records delivered with those
collected, and what the emulator holds with what was collected (explaining the difference: not
yet pulled at stop, duplicate replies merged by id); one OK/FAIL line ends it and the exit code
follows it, so the demo is also a quick end-to-end check of an installation. A closed stdout
(``| head``) stops the demo at once: nothing more can be delivered.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sqlite3
import stat
import sys
import tempfile
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from tcsms_poller.commands._common import add_duration_argument
from tcsms_poller.commands.run import serve_until_signalled
from tcsms_poller.config import Config, config_from_mapping
from tcsms_poller.daemon import Daemon
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    RunningEmulator,
    TrafficOptions,
    run_emulator,
)
from tcsms_poller.exits import EX_FAILURE, EX_OK
from tcsms_poller.logs import configure_logging
from tcsms_poller.records import reply_id
from tcsms_poller.tencent.models import ReplyStatus

__all__ = ["add_arguments", "execute"]

SHARED_LOOP_SLACK = 0.1  # seconds; see _demo
NUMBERS = tuple(f"+861370000{index:04d}" for index in range(1, 13))
KINDS = ("send_status", "reply", "callback_statistics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_duration_argument(
        parser,
        "--duration",
        default=20.0,
        help="how long to run (default 20s; Ctrl-C stops earlier)",
    )
    parser.add_argument("--seed", type=int, default=1, help="traffic seed (default 1)")


def _config(emulator: RunningEmulator, state_dir: Path) -> Config:
    return config_from_mapping(
        {
            "tencent": {
                "secret_id": DEFAULT_SECRET_ID,
                "secret_key": DEFAULT_SECRET_KEY,
                "endpoint": emulator.url,
                "timeout": "5s",
            },
            "apps": [
                {
                    "sms_sdk_app_id": DEFAULT_APP_ID,
                    "replies": {"interval": "1s"},
                    "send_status": {"enabled": True, "interval": "1s"},
                    "by_number": {"numbers": list(NUMBERS[:4]), "interval": "5s"},
                    "statistics": {"interval": "10s", "lookback": "2h"},
                }
            ],
            "state": {"path": str(state_dir / "state.db")},
            "sinks": [{"type": "stdout", "format": "auto"}],
        },
        source="<demo>",
    )


@dataclass(frozen=True, slots=True)
class Held:
    """What the emulator holds of one kind, and how much of it the daemon collected."""

    noun: str
    held: int  # items, duplicates included
    distinct: int  # distinct record ids
    collected: int  # of those ids, committed by the daemon
    not_pulled: int  # not collected and not yet handed out by the queue at stop

    @property
    def missing(self) -> int:
        """Handed out (or pullable) but not collected: what nothing explains."""
        return self.distinct - self.collected - self.not_pulled

    def describe(self) -> str:
        merged = self.held - self.distinct
        text = f"{self.held} {self.noun}, {self.collected} collected"
        if merged:
            text += f", {merged} duplicates merged by id"
        if self.not_pulled:
            text += f", {self.not_pulled} not yet pulled at stop"
        if self.missing:
            text += f", {self.missing} NOT COLLECTED"
        return text


@dataclass(frozen=True, slots=True)
class SinkTally:
    """One sink's share of the collected records."""

    name: str
    delivered: int
    dead_lettered: int
    pending: int

    def describe(self, collected: int) -> str:
        text = f"{self.delivered} of {collected} collected records delivered"
        if self.dead_lettered:
            text += f", {self.dead_lettered} dead-lettered"
        if self.pending:
            text += f", {self.pending} NOT DELIVERED"
        return text


def _samples(daemon: Daemon, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for metric in daemon.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == name
    ]


def _collected(daemon: Daemon, kind: str) -> int:
    """Records of ``kind`` committed as new (not duplicates), from every source."""
    return sum(
        int(value)
        for labels, value in _samples(daemon, "tcsms_poller_records_total")
        if labels["kind"] == kind and labels["outcome"] == "new"
    )


def _per_sink(daemon: Daemon, name: str) -> dict[str, int]:
    return {labels["sink"]: int(value) for labels, value in _samples(daemon, name)}


def _sink_tallies(daemon: Daemon, collected: int) -> list[SinkTally]:
    delivered = _per_sink(daemon, "tcsms_poller_sink_delivered_records_total")
    dead = _per_sink(daemon, "tcsms_poller_dead_lettered_records_total")
    return [
        SinkTally(
            name,
            delivered.get(name, 0),
            dead.get(name, 0),
            collected - delivered.get(name, 0) - dead.get(name, 0),
        )
        for name in (sink.sink_name for sink in daemon.config.sinks)
    ]


def _collected_ids(database: Path) -> set[str]:
    """Every record id the daemon committed (the dedupe set of its throwaway state)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT id FROM seen UNION SELECT id FROM seen_recent")
        return {row[0] for row in rows}


def _held(noun: str, items: list[tuple[str, bool]], collected: set[str]) -> Held:
    """``items``: (record id, handed out by the queue) of every item the emulator holds."""
    handed_out: dict[str, bool] = {}
    for record_id, out in items:
        handed_out[record_id] = handed_out.get(record_id, False) or out
    return Held(
        noun,
        held=len(items),
        distinct=len(handed_out),
        collected=sum(1 for record_id in handed_out if record_id in collected),
        not_pulled=sum(
            1 for record_id, out in handed_out.items() if not out and record_id not in collected
        ),
    )


def _emulator_holds(emulator: RunningEmulator, collected: set[str]) -> list[Held]:
    truth = emulator.state.truth()
    receipts = [
        (item["serial_no"], item["handed_out_at"] is not None) for item in truth["send_statuses"]
    ]
    replies = [
        (
            reply_id(
                item["app_id"],
                ReplyStatus(
                    phone_number=item["phone_number"],
                    country_code=item["country_code"],
                    subscriber_number=item["subscriber_number"],
                    sign_name=item["sign_name"],
                    reply_content=item["reply_content"],
                    reply_time=item["reply_time"],
                    extend_code=item["extend_code"],
                ),
            ),
            item["handed_out_at"] is not None,
        )
        for item in truth["replies"]
    ]
    return [_held("receipts", receipts, collected), _held("replies", replies, collected)]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The demo's verdict and the summary that explains it."""

    is_ok: bool
    summary: str


def summarize(
    daemon: Daemon,
    emulator: RunningEmulator,
    database: Path,
    *,
    seconds: float,
    stdout_closed: bool,
) -> Outcome:
    """Collected vs delivered per sink, what the emulator still holds and why, one verdict."""
    truth = emulator.state.truth()
    actions: dict[str, Any] = emulator.state.stats_snapshot()["actions"]
    requests = sum(action["requests"] for action in actions.values())
    limit_hits = sum(action["limit_hits"] for action in actions.values())
    held = _emulator_holds(emulator, _collected_ids(database))
    by_kind = {kind: _collected(daemon, kind) for kind in KINDS}
    collected = sum(by_kind.values())
    sinks = _sink_tallies(daemon, collected)
    lines = [
        "",
        f"demo summary after {seconds:.0f}s (seed {truth['seed']}):",
        f"  emulator: {truth['messages_sent']} messages sent; "
        f"{requests} API requests, {limit_hits} rate-limit errors",
        *(f"  emulator holds: {one.describe()}" for one in held),
        "  collected: " + ", ".join(f"{count} {kind}" for kind, count in by_kind.items()),
        *(f"  sink {sink.name}: {sink.describe(collected)}" for sink in sinks),
    ]
    problems = [f"sink {sink.name} did not drain" for sink in sinks if sink.pending]
    problems += [
        f"sink {sink.name} dead-lettered {sink.dead_lettered} records"
        for sink in sinks
        if sink.dead_lettered
    ]
    problems += [f"{one.missing} {one.noun} not collected" for one in held if one.missing]
    if stdout_closed:
        problems.insert(0, "stdout was closed before the end")
    if problems:
        lines.append("FAIL: " + "; ".join(problems))
    else:
        lines.append(f"OK: all {collected} collected records delivered to every sink")
    return Outcome(not problems, "\n".join(lines))


async def _wait_until_closed(fd: int) -> None:
    """Return once the reader of the pipe or socket at ``fd`` has gone (never for a terminal
    or a file): the kernel reports it as POLLERR/POLLHUP without our writing anything."""
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        await anyio.sleep_forever()
    wake_read, wake_write = os.pipe()

    def watch() -> bool:
        try:
            poller = select.poll()
            poller.register(fd, 0)  # POLLERR and POLLHUP are reported whatever is asked
            poller.register(wake_read, select.POLLIN)
            return any(ready == fd for ready, _ in poller.poll())
        finally:
            os.close(wake_read)

    try:
        closed = await anyio.to_thread.run_sync(watch, abandon_on_cancel=True)
    finally:
        with suppress(BrokenPipeError):  # the thread has ended and closed its end already
            os.write(wake_write, b"x")  # ends the thread if we were cancelled while it polls
        os.close(wake_write)
    if not closed:
        await anyio.sleep_forever()


async def _demo(duration: float, seed: int) -> bool:
    traffic = TrafficOptions(phone_numbers=NUMBERS, send_rate=4.0, reply_rate=0.5, backfill=900)
    with tempfile.TemporaryDirectory(prefix="tcsms-poller-demo-") as directory:
        # The emulator shares the daemon's event loop here, so a request's arrival stamp also
        # carries whatever the daemon was doing then (committing a page, rendering records): on a
        # busy machine that is more than the usual 10 ms of slack. The limiter's exact window is
        # proven on a fake clock in the tests, and against the strict emulator by the benchmarks.
        options = EmulatorOptions(seed=seed, traffic=traffic, slack=SHARED_LOOP_SLACK)
        async with run_emulator(options) as emulator:
            print(f"emulator listening on {emulator.url}", file=sys.stderr)
            daemon = Daemon(_config(emulator, Path(directory)))
            started = anyio.current_time()
            stdout_closed = False
            async with anyio.create_task_group() as tg:

                async def stop_when_stdout_closes() -> None:
                    nonlocal stdout_closed
                    await _wait_until_closed(sys.stdout.fileno())
                    stdout_closed = True
                    print("stdout was closed: stopping the demo", file=sys.stderr)
                    # A graceful stop, as on Ctrl-C: pulls in flight are committed (a queue
                    # pull cannot be repeated), and the stdout sink dead-letters at once.
                    signal.raise_signal(signal.SIGTERM)

                tg.start_soon(stop_when_stdout_closes)
                await serve_until_signalled(daemon, stop_after=duration)
                tg.cancel_scope.cancel()
            outcome = summarize(
                daemon,
                emulator,
                daemon.config.state.path,
                seconds=anyio.current_time() - started,
                stdout_closed=stdout_closed,
            )
            print(outcome.summary, file=sys.stderr)
            return outcome.is_ok


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def execute(args: argparse.Namespace) -> int:
    configure_logging(level="info", fmt="auto", stream=sys.stderr)
    try:
        is_ok = anyio.run(_demo, args.duration, args.seed, backend="asyncio")
    except OSError as error:
        print(f"tcsms-poller demo: {error}", file=sys.stderr)
        return EX_FAILURE
    finally:
        _silence_stdout()
    return EX_OK if is_ok else EX_FAILURE
