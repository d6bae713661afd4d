"""``tcsms-poller demo [--duration S]``: the daemon against the built-in emulator, no setup.

The emulator generates traffic on a free loopback port (receipts, replies, a few numbers busy
enough to need paging); the daemon pulls it under the real rate limits into a throwaway state
database and prints the records on stdout: short lines on a terminal, JSON Lines in a pipe.
Logs go to stderr. At the end a summary compares what the daemon delivered with what the
emulator holds, so the demo is also a quick end-to-end check of an installation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from tcsms_poller.commands._common import duration_argument
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

__all__ = ["add_arguments", "execute"]

SHARED_LOOP_SLACK = 0.1  # seconds; see _demo
NUMBERS = tuple(f"+861370000{index:04d}" for index in range(1, 13))
KINDS = ("send_status", "reply", "callback_statistics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=duration_argument,
        default=20.0,
        metavar="DURATION",
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


def _delivered(daemon: Daemon, kind: str) -> int:
    registry = daemon.metrics.registry
    return sum(
        int(sample.value)
        for metric in registry.collect()
        if metric.name == "tcsms_poller_records"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels["kind"] == kind
        and sample.labels["outcome"] == "new"
    )


def _summary(daemon: Daemon, emulator: RunningEmulator, seconds: float) -> str:
    truth = emulator.state.truth()
    stats: dict[str, Any] = emulator.state.stats_snapshot()["actions"]
    requests = sum(action["requests"] for action in stats.values())
    limit_hits = sum(action["limit_hits"] for action in stats.values())
    lines = [
        "",
        f"demo summary after {seconds:.0f}s (seed {truth['seed']}):",
        f"  emulator: {truth['messages_sent']} messages sent, "
        f"{len(truth['send_statuses'])} receipts, {len(truth['replies'])} replies",
        f"  daemon:   {requests} API requests, {limit_hits} rate-limit errors",
    ]
    lines += [f"  records delivered: {kind:<20} {_delivered(daemon, kind)}" for kind in KINDS]
    return "\n".join(lines)


async def _demo(duration: float, seed: int) -> None:
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
            await serve_until_signalled(daemon, stop_after=duration)
            print(_summary(daemon, emulator, anyio.current_time() - started), file=sys.stderr)


def execute(args: argparse.Namespace) -> int:
    configure_logging(level="info", fmt="auto", stream=sys.stderr)
    try:
        anyio.run(_demo, args.duration, args.seed, backend="asyncio")
    except OSError as error:
        print(f"tcsms-poller demo: {error}", file=sys.stderr)
        return EX_FAILURE
    return EX_OK
