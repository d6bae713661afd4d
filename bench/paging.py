"""What per-number paging costs: requests per poll of a busy and of a quiet number.

Each poll of a number sweeps its whole ``lookback`` and splits full windows (see
``workers/windows.py``), so its cost grows with the records in that span. For each reading of
the window Tencent leaves open ((send | receive time) x (ascending | descending)), the
in-process emulator holds one number with ``--records`` receipts spread over the default 24-hour
lookback (a fifth of them piled on three seconds, a tenth of them arrived 10 to 40 minutes after
their send) and one with ``--quiet`` receipts; the daemon's own per-number worker
(``build_client``, ``build_workers``, real SQLite state) polls each ``--polls`` times, a
simulated interval apart, on a clock the bench moves. Figures, the worst reading each:

- ``first_poll_requests``: the first poll of the busy number (nothing known yet);
- ``requests_per_poll``: a later poll of it (it starts from the windows the last one ended with);
- ``quiet_requests_per_poll``: any poll of the quiet number (target 1);
- ``verified``: every receipt reached the outbox exactly once, under every reading.

Rate limits are raised out of the way: this counts requests, it does not time them.

    .venv/bin/python bench/paging.py [--records 250] [--quiet 40] [--polls 10]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: find bench._sweep

import anyio

from bench._common import exit_on_sigterm, load_average, machine, print_result, temp_dir
from bench._sweep import ACTION, APP_ID, per_number_config, tracked_numbers
from tcsms_poller.config import config_from_mapping
from tcsms_poller.daemon import build_client
from tcsms_poller.emulator import (
    DEFAULT_RATE_LIMITS,
    EmulatorOptions,
    RunningEmulator,
    WindowOrder,
    WindowTime,
    run_emulator,
)
from tcsms_poller.emulator.numbers import split_number
from tcsms_poller.emulator.store import SendStatusRecord
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.logs import configure_logging
from tcsms_poller.metrics import Metrics
from tcsms_poller.state.store import SqliteStore
from tcsms_poller.workers import ByNumberWorker, WorkerContext, build_workers

RATE = 1000  # requests/s for both sides: far above what the polls need
INTERVAL = 60.0
LOOKBACK = 86_400.0  # the configuration's default
PILED_SHARE, PILES = 0.2, 3
LATE_SHARE, LATE_DELAY = 0.1, (600, 2400)


class Clock:
    """Wall time that moves only when the bench says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass(slots=True)
class NumberRun:
    """The requests of each poll of one number, and what reached the outbox."""

    requests: list[int] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)
    delivered: Counter[str] = field(default_factory=Counter)

    @property
    def verified(self) -> bool:
        """Every receipt delivered, exactly once."""
        return set(self.delivered) == self.expected and max(self.delivered.values()) == 1


def add_receipts(emulator: RunningEmulator, phone: str, count: int, now: int) -> set[str]:
    """``count`` receipts of ``phone`` spread over the lookback; their SerialNos."""
    rng = random.Random(f"paging:{phone}:{count}")
    first, last = now - int(LOOKBACK) + 3600, now - 60  # inside the span, late sends included
    piles = [rng.randrange(first, last) for _ in range(PILES)]
    country_code, subscriber = split_number(phone)
    serials = set()
    for _ in range(count):
        received = rng.choice(piles) if rng.random() < PILED_SHARE else rng.randrange(first, last)
        late = rng.random() < LATE_SHARE
        record = SendStatusRecord(
            app_id=APP_ID,
            serial_no=emulator.state.make_serial(),
            phone_number=phone,
            country_code=country_code,
            subscriber_number=subscriber,
            report_status="SUCCESS",
            description="DELIVRD",
            user_receive_time=received,
            session_context=None,
            send_time=received - (rng.randrange(*LATE_DELAY) if late else 3),
        )
        emulator.state.add_send_status(record, push=False)
        serials.add(record.serial_no)
    return serials


def requests_so_far(emulator: RunningEmulator) -> int:
    stats: dict[str, Any] = emulator.state.stats_snapshot()["actions"].get(ACTION, {})
    return int(stats.get("requests", 0))


async def run_number(
    time_read: WindowTime, order: WindowOrder, records: int, polls: int, workdir: Path
) -> NumberRun:
    """Poll one number holding ``records`` receipts ``polls`` times under one reading."""
    options = EmulatorOptions(
        seed=1,
        by_number_time=time_read,
        by_number_order=order,
        rate_limits={**DEFAULT_RATE_LIMITS, ACTION: RATE},
    )
    [phone] = tracked_numbers(1)
    clock = Clock()
    run = NumberRun()
    async with run_emulator(options) as emulator:
        run.expected = add_receipts(emulator, phone, records, int(clock.now))
        data = per_number_config(
            emulator.url, [phone], workdir, rate=RATE, interval="1m", lookback="24h"
        )
        config = config_from_mapping(data, source="bench/paging.py", base_dir=workdir)
        metrics = Metrics()
        store = await SqliteStore.open(config.state.path, dedupe_ttl=86_400 * 8, clock=clock)
        client = build_client(config, metrics)
        try:
            await store.sync_numbers(APP_ID, "config", [phone])
            ctx = WorkerContext(
                client=client,
                store=store,
                intake=Intake(store, metrics),
                metrics=metrics,
                board=HealthBoard(clock=clock),
                stopping=anyio.Event(),
                clock=clock,
            )
            (worker,) = build_workers(config, ctx)
            assert isinstance(worker, ByNumberWorker)
            for _ in range(polls):
                before = requests_so_far(emulator)
                await worker.poll()
                run.requests.append(requests_so_far(emulator) - before)
                clock.now += INTERVAL
            rows = await store.read_outbox(after=0, limit=10 * records + 100)
            run.delivered = Counter(str(row.as_dict()["id"]) for row in rows)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()
                await store.aclose()
    return run


async def measure(records: int, quiet: int, polls: int, base: Path | None) -> dict[str, Any]:
    """Both numbers under every reading; the figures per reading."""
    readings: dict[str, Any] = {}
    for time_read in WindowTime:
        for order in WindowOrder:
            with temp_dir("tcsms-paging-", base) as busy_dir, temp_dir("tcsms-paging-", base) as q:
                busy = await run_number(time_read, order, records, polls, busy_dir)
                calm = await run_number(time_read, order, quiet, polls, q)
            later = busy.requests[1:] or busy.requests
            readings[f"{time_read}-{order}"] = {
                "first_poll": busy.requests[0],
                "later_polls_max": max(later),
                "later_polls_mean": round(sum(later) / len(later), 2),
                "quiet_max": max(calm.requests),
                "verified": busy.verified and calm.verified,
            }
    return readings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=250, help="of the busy number (250)")
    parser.add_argument("--quiet", type=int, default=40, help="of the quiet number (40)")
    parser.add_argument("--polls", type=int, default=10, help="of each number (10)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dirs go")
    args = parser.parse_args(argv)
    if args.polls < 2 or args.records < 1 or not 1 <= args.quiet < 100:
        parser.error("--polls must be at least 2, --records at least 1, --quiet 1 to 99")
    exit_on_sigterm()
    configure_logging(level="warning", stream=sys.stderr)
    readings = anyio.run(measure, args.records, args.quiet, args.polls, args.dir)
    figures = {
        "records": args.records,
        "quiet_records": args.quiet,
        "polls": args.polls,
        "lookback_s": LOOKBACK,
        "first_poll_requests": max(r["first_poll"] for r in readings.values()),
        "requests_per_poll": max(r["later_polls_max"] for r in readings.values()),
        "quiet_requests_per_poll": max(r["quiet_max"] for r in readings.values()),
        "verified": all(r["verified"] for r in readings.values()),
        "readings": readings,
        "load_average": load_average(),
        "machine": machine(),
    }
    summary = [
        f"{name}: first poll {r['first_poll']}, later polls up to {r['later_polls_max']} "
        f"(mean {r['later_polls_mean']}), quiet number {r['quiet_max']} requests"
        + ("" if r["verified"] else "  NOT VERIFIED")
        for name, r in readings.items()
    ]
    print_result(summary, figures)
    return 0 if figures["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
