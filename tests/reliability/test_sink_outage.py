"""The webhook down for a while (connections refused, then 503s), then back, under heavy traffic.

A slow or failing sink must never block the pollers, and its backlog must wait in the outbox on
disk, not in the daemon's memory: thousands of records pile up while the resident memory stays
flat, and once the webhook answers again every one of them arrives.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, TrafficOptions, run_emulator
from tcsms_poller.state.seen import MERGE_AT
from tcsms_poller.state.status import read_snapshot
from tests.support.daemon_process import DaemonProcess, daemon_config, running_daemon
from tests.support.emulator import expected_ids, request_counts, truth
from tests.support.http_receiver import Reply, http_receiver
from tests.support.ports import free_port
from tests.support.reliability import Tally, batch_ids, generated_traffic, replayed_batches, rss_kib
from tests.support.waiting import settle, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEED = 8_675_309
TRAFFIC = TrafficOptions(
    numbers=40,
    heavy_numbers=0,
    send_rate=2000.0,
    reply_rate=50.0,
    receipt_delay_min=0.1,
    receipt_delay_max=1.0,
    backfill=2.0,
)
# Tracked numbers without traffic: the per-number poller must keep polling through the outage too.
QUIET = ("+8613900001111", "+8613900002222")
PULLS = ("PullSmsReplyStatus", "PullSmsSendStatus", "PullSmsSendStatusByPhoneNumber")
# The memory baseline is taken at WARM: by then SQLite's page cache (8 MiB a connection) is full
# or nearly (the daemon's SQLite held 10.4 MiB from about 16,000 records on, at most 1.7 MiB less
# at WARM) and the pools are warm.
WARM = 20_000
REFUSED_UNTIL = 30_000  # backlog while connections are refused; then 503s
BACKLOG = 40_000  # backlog at which the webhook comes back
# What grows on purpose from WARM to BACKLOG: the dedupe set's RAM part (``state/seen.py``) keeps
# the id of every record committed until MERGE_AT ids are pending, and this run ends before the
# first merge. Its dict doubles its table at 21,845 ids (a 1 MiB step in every run); with the id
# strings it grows 2.4 MiB over the watch. It is counted out of the growth (``dedupe_ram``).
ID_BYTES = 88  # a SerialNo string in pymalloc; replies' ids are longer, but one record in 40
# Beyond the dedupe set the peak lay 0.8 to 3.4 MiB above the baseline (allocator noise, the last
# of SQLite's cache) in 28 runs, idle or beside two busy processes. The 20,000 records from WARM
# to BACKLOG hold about 10 MiB as outbox rows: the backlog kept in memory (an outbox tail without
# a bound) measured 13 MiB beyond the dedupe set, twice.
RSS_GROWTH_KIB = 6 * 1024
LONGEST_PAUSE = 5.0  # seconds without a request of a pull action, or a commit, that is a pause


@dataclass(slots=True)
class Progress:
    """When a counter last moved, and its longest standstill while watched."""

    value: float = 0.0
    moved_at: float = field(default_factory=time.monotonic)
    longest_still: float = 0.0

    def observe(self, value: float) -> None:
        now = time.monotonic()
        self.longest_still = max(self.longest_still, now - self.moved_at)
        if value != self.value:
            self.value, self.moved_at = value, now


@dataclass(slots=True)
class Watch:
    """What the test samples during the outage: backlog, memory, pulls, commits."""

    daemon: DaemonProcess
    emulator: RunningEmulator
    database: Path
    depth: int = 0
    rss_baseline: int | None = None
    rss_peak: int = 0
    head_baseline: int = 0
    head: int = 0
    disk_peak: int = 0
    pulls: dict[str, Progress] = field(default_factory=lambda: {a: Progress() for a in PULLS})
    commits: Progress = field(default_factory=Progress)

    async def sample(self) -> None:
        """One look at the state (as ``tcsms-poller status`` reads it), ``/proc``, the emulator."""
        snapshot = await anyio.to_thread.run_sync(
            lambda: read_snapshot(self.database, now=time.time())
        )
        [sink] = snapshot["sinks"]
        self.depth = sink["depth"]
        self.head = snapshot["outbox_head"]
        self.commits.observe(self.head)
        for action, progress in self.pulls.items():
            progress.observe(request_counts(self.emulator, action)[0])
        rss = rss_kib(self.daemon.process.pid)
        disk = sum(path.stat().st_size for path in self.database.parent.glob("state.db*"))
        self.disk_peak = max(self.disk_peak, disk)
        if self.rss_baseline is None and self.depth >= WARM:
            self.rss_baseline, self.head_baseline = rss, self.head
        if self.rss_baseline is not None:
            self.rss_peak = max(self.rss_peak, rss)

    def restart_clocks(self) -> None:
        """Standstills count from now (the watch begins with the outage)."""
        now = time.monotonic()
        for progress in (*self.pulls.values(), self.commits):
            progress.moved_at, progress.longest_still = now, 0.0

    async def until_backlog(self, records: int) -> None:
        """Sample until the webhook's backlog reaches ``records`` (failing after 90 s)."""
        try:
            with anyio.fail_after(90):
                while self.depth < records:
                    await self.sample()
                    await anyio.sleep(0.2)  # the sampling period
        except TimeoutError:
            raise AssertionError(
                f"the webhook's backlog is {self.depth}, not {records}, after 90s "
                f"({self.commits.value:.0f} records committed)"
            ) from None


def dedupe_ram(ids: int) -> int:
    """KiB the dedupe set's RAM part takes with ``ids`` ids pending a merge (``state/seen.py``)."""
    return (sys.getsizeof(dict.fromkeys(range(ids))) + ids * ID_BYTES) // 1024


def outage_config(emulator: RunningEmulator, directory: Path, hook_port: int) -> dict[str, Any]:
    """Queue-mode replies and receipts, quiet tracked numbers, the webhook."""
    sink = {
        "type": "http",
        "url": f"http://127.0.0.1:{hook_port}/hook",
        "batch_size": 500,
        "max_backoff": "1s",  # comes back within a second of the webhook
    }
    return daemon_config(
        emulator.url,
        directory,
        sinks=[sink],
        app={"by_number": {"numbers": list(QUIET), "interval": "1s"}},
    )


@pytest.mark.timeout(240)  # typically 35 s; room for a busy machine
async def test_a_webhook_outage_keeps_the_backlog_on_disk_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """Refused, then 503, then back: pollers go on, memory flat, every record arrives once."""
    hook_port = free_port()
    async with run_emulator(EmulatorOptions(seed=SEED)) as emulator:
        config = outage_config(emulator, tmp_path, hook_port)
        async with (
            generated_traffic(emulator, TRAFFIC, seed=SEED) as traffic,
            running_daemon(tmp_path, config) as daemon,
        ):
            watch = Watch(daemon, emulator, tmp_path / "state.db")
            with http_receiver(hook_port) as before:
                await wait_until(lambda: bool(before.accepted), what="the first batch")
            # Closed: connections are refused from now on.
            watch.restart_clocks()
            await watch.until_backlog(REFUSED_UNTIL)
            with http_receiver(hook_port) as after:
                after.fallback = Reply(503, body=b'{"error":"maintenance"}')
                await watch.until_backlog(BACKLOG)
                traffic.stop()
                after.fallback = Reply()
                expected = expected_ids(await truth(emulator))
                tallies = Tally(before), Tally(after)
                await settle(
                    lambda: expected <= tallies[0].update() | tallies[1].update(), timeout=90
                )
                await daemon.stop()
            segments = [list(before.accepted), list(after.accepted)]

    posted = {record_id for segment in segments for r in segment for record_id in batch_ids(r)}
    assert posted == expected, f"{len(expected - posted)} records never arrived"
    # At most the batch whose answer the closing webhook cut off comes again, first.
    replays, problems = replayed_batches(segments)
    assert not problems, problems
    for action, progress in watch.pulls.items():
        assert progress.longest_still < LONGEST_PAUSE, f"{action} paused {progress.longest_still}s"
    still = watch.commits.longest_still
    assert still < LONGEST_PAUSE, f"no record committed for {still}s"
    assert watch.rss_baseline is not None
    # Every record committed is one id in the dedupe set, none merged yet (the model's premise).
    assert watch.head < MERGE_AT, f"{watch.head} records: the dedupe set merged, shrinking"
    dedupe = dedupe_ram(watch.head) - dedupe_ram(watch.head_baseline)
    growth = watch.rss_peak - watch.rss_baseline - dedupe
    print(  # noqa: T201 (the memory figures are the run's report, shown with -s)
        f"\nbacklog {watch.depth:.0f} records; RSS {watch.rss_baseline} KiB at {WARM}, "
        f"peak {watch.rss_peak} KiB (+{growth} KiB beyond the dedupe set's +{dedupe} KiB); "
        f"state files {watch.disk_peak // 1024} KiB; "
        f"{len(expected)} records in all; {replays} batch replayed after the cut; longest "
        f"standstills: {', '.join(f'{a} {p.longest_still:.1f}s' for a, p in watch.pulls.items())}, "
        f"commits {still:.1f}s"
    )
    assert growth < RSS_GROWTH_KIB
