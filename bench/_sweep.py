"""One sweep of tracked numbers by the daemon's own per-number machinery, against the emulator.

Both ``ratelimit.py`` and ``baseline.py`` measure this sweep, so it lives here once. The emulator
is the in-process one with its strict defaults (``PullSmsSendStatusByPhoneNumber`` 20 requests in
any ``1 s - 10 ms``) and a latency fault on every request, so a request takes as long as a real
round trip to Tencent; it has no traffic, so every number answers an empty page (the common case)
and a sweep of N numbers is exactly N requests.

Ours is the daemon's code path for one pass, as ``Daemon.run_once`` drives it: the configuration
model, ``build_client`` (the real ``TencentClient`` with its process-wide ``RateLimiters``),
``build_workers`` (which yields the ``ByNumberWorker`` and its scheduler over the real
SQLite state), ``Intake`` and ``poll_cycle`` repeated while more numbers are due. Sinks are left
out: with empty pages there is nothing to deliver.

The emulator's limiter of the swept action is swapped for one that behaves identically and also
notes when each admitted request reached it, on the emulator's own clock: the achieved rate is
measured where the limit is enforced.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench._common import cpu_seconds
from tcsms_poller.config import config_from_mapping
from tcsms_poller.daemon import build_client
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    Fault,
    FaultKind,
    RunningEmulator,
    run_emulator,
)
from tcsms_poller.emulator.numbers import make_mainland_numbers
from tcsms_poller.emulator.ratelimit import SlidingWindowLimiter
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.state.store import SqliteStore
from tcsms_poller.workers import WorkerContext, build_workers, poll_cycle

__all__ = [
    "ACTION",
    "APP_ID",
    "ActionCounts",
    "Bench",
    "SweepOutcome",
    "action_counts",
    "per_number_config",
    "running_bench",
    "sweep_with_daemon",
    "tracked_numbers",
]

ACTION = "PullSmsSendStatusByPhoneNumber"
APP_ID = DEFAULT_APP_ID
# Long enough that a number polled once is not due again during the pass: one pass, one sweep.
NUMBER_INTERVAL = "1h"
SWEEP_BUDGET_FACTOR = 3.0  # a sweep slower than three times the ideal is a failure, not a figure


class RecordingLimiter(SlidingWindowLimiter):
    """The emulator's sliding-window limiter, noting the arrival time of each admitted request."""

    def __init__(self, rate: int, *, slack: float, horizon: int) -> None:
        super().__init__(rate, slack=slack, horizon=horizon)
        self.admitted_at: list[float] = []

    def admit(self, now: float) -> bool:
        admitted = super().admit(now)
        if admitted:
            self.admitted_at.append(now)
        return admitted


@dataclass(frozen=True, slots=True)
class Bench:
    """A serving emulator and the recording limiter of the swept action."""

    emulator: RunningEmulator
    limiter: RecordingLimiter
    latency_s: float

    @property
    def limit(self) -> int:
        """Requests per second the emulator allows for the swept action."""
        return self.limiter.rate


@asynccontextmanager
async def running_bench(latency_s: float) -> AsyncIterator[Bench]:
    """The emulator with strict default limits and ``latency_s`` added to every request."""
    options = EmulatorOptions(
        seed=1,
        faults=(Fault(kind=FaultKind.LATENCY, seconds=latency_s, probability=1.0),),
    )
    async with run_emulator(options) as emulator:
        limiter = RecordingLimiter(
            options.rate_limits[ACTION], slack=options.slack, horizon=options.limit_horizon
        )
        emulator.state.limiters[ACTION] = limiter  # before any request: nothing is lost
        yield Bench(emulator, limiter, latency_s)


def tracked_numbers(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct mainland mobile numbers, the same ones for a seed."""
    return make_mainland_numbers(count, random.Random(seed))


@dataclass(frozen=True, slots=True)
class ActionCounts:
    """The emulator's counters of the swept action (``GET /_emulator/stats``)."""

    requests: int = 0
    ok: int = 0
    limit_errors: int = 0

    def __sub__(self, other: ActionCounts) -> ActionCounts:
        return ActionCounts(
            requests=self.requests - other.requests,
            ok=self.ok - other.ok,
            limit_errors=self.limit_errors - other.limit_errors,
        )


async def action_counts(emulator: RunningEmulator) -> ActionCounts:
    """What the emulator reports for the swept action, asked over HTTP as any client would."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{emulator.url}/_emulator/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()["actions"].get(ACTION, {})
    return ActionCounts(
        requests=stats.get("requests", 0),
        ok=stats.get("ok", 0),
        limit_errors=stats.get("errors", {}).get("RequestLimitExceeded", 0),
    )


@dataclass(slots=True)
class SweepOutcome:
    """What one sweep by the daemon's machinery measured."""

    numbers: int
    limit: int
    sweep_s: float = 0.0
    counts: ActionCounts = field(default_factory=ActionCounts)
    admitted_at: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # this process: the emulator's share included, it runs in the same loop
    problems: list[str] = field(default_factory=list)

    @property
    def ideal_s(self) -> float:
        """The sweep at exactly the limit: one request per number."""
        return self.numbers / self.limit

    @property
    def steady_s(self) -> float:
        """From the first admitted request to the last, at the emulator."""
        return self.admitted_at[-1] - self.admitted_at[0] if len(self.admitted_at) > 1 else 0.0

    @property
    def achieved_rate(self) -> float:
        """Admitted requests per second between the first and the last (n - 1 intervals)."""
        return (len(self.admitted_at) - 1) / self.steady_s if self.steady_s else 0.0

    @property
    def utilization(self) -> float:
        """The achieved rate as a share of the limit.

        A steady figure only for sweeps of many seconds: the limit allows N requests at once, so
        a sweep of a few dozen numbers can average more than N per second and stay within it.
        """
        return self.achieved_rate / self.limit

    @property
    def gaps_ms(self) -> list[float]:
        """Milliseconds between consecutive admitted requests (ideally ``1000 / limit`` each)."""
        arrivals = self.admitted_at
        return [(later - earlier) * 1000 for earlier, later in itertools.pairwise(arrivals)]

    @property
    def sweep_ratio(self) -> float:
        """The sweep's wall time over the ideal."""
        return self.sweep_s / self.ideal_s


def per_number_config(
    url: str, numbers: Sequence[str], workdir: Path, *, rate: int, **by_number: Any
) -> dict[str, Any]:
    """One app whose only source is the per-number one, tracking ``numbers``."""
    off = {"enabled": False}
    return {
        "tencent": {
            "secret_id": DEFAULT_SECRET_ID,
            "secret_key": DEFAULT_SECRET_KEY,
            "endpoint": url,
            "rate_limits": {ACTION: rate},
        },
        "apps": [
            {
                "sms_sdk_app_id": APP_ID,
                "replies": off,
                "send_status": off,
                "statistics": off,
                "conversions": off,
                "tracking": off,
                "by_number": {"numbers": list(numbers), **by_number},
            }
        ],
        "state": {"path": str(workdir / "state.db")},
        "sinks": [{"type": "file", "path": str(workdir / "records.jsonl")}],
    }


async def sweep_with_daemon(bench: Bench, numbers: Sequence[str], workdir: Path) -> SweepOutcome:
    """Every number polled once by the daemon's per-number worker; see the module docstring."""
    config = config_from_mapping(
        per_number_config(
            bench.emulator.url, numbers, workdir, rate=bench.limit, interval=NUMBER_INTERVAL
        ),
        source="bench/_sweep.py",
        base_dir=workdir,
    )
    outcome = SweepOutcome(numbers=len(numbers), limit=bench.limit)
    metrics = Metrics()
    store = await SqliteStore.open(config.state.path, dedupe_ttl=config.state.dedupe_ttl)
    client = build_client(config, metrics)
    try:
        await store.sync_numbers(APP_ID, "config", config.apps[0].by_number.numbers)
        ctx = WorkerContext(
            client=client,
            store=store,
            intake=Intake(store, metrics),
            metrics=metrics,
            board=HealthBoard(),
            stopping=anyio.Event(),
            unhealthy_retry=config.tencent.unhealthy_retry,
        )
        (worker,) = build_workers(config, ctx)
        before, first_admitted = await action_counts(bench.emulator), len(bench.limiter.admitted_at)
        with anyio.fail_after(outcome.ideal_s * SWEEP_BUDGET_FACTOR + 30):
            cpu_started, started = cpu_seconds(), time.monotonic()
            # What Daemon.run_once does: poll_cycle says more is due while numbers are overdue.
            while (await poll_cycle(worker, ctx)).more_due:
                pass
            outcome.sweep_s = time.monotonic() - started
            outcome.cpu_s = cpu_seconds() - cpu_started
        outcome.counts = await action_counts(bench.emulator) - before
        outcome.admitted_at = bench.limiter.admitted_at[first_admitted:]
        if worker.health.failing_since is not None:
            outcome.problems.append(f"the worker is unhealthy: {worker.health.reason}")
        polled = await _polled_numbers(store)
        if polled != len(numbers):
            outcome.problems.append(f"{polled} of {len(numbers)} numbers were polled")
        if outcome.counts.ok != len(numbers):
            outcome.problems.append(f"{outcome.counts.ok} requests succeeded for {len(numbers)}")
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
            await store.aclose()
    return outcome


async def _polled_numbers(store: SqliteStore) -> int:
    """How many tracked numbers have been polled at least once."""
    polled = 0
    after: tuple[str, str] | None = None
    while page := await store.list_numbers(app_id=APP_ID, after=after, limit=500):
        polled += sum(number.last_polled_at is not None for number in page)
        after = (page[-1].app_id, page[-1].phone)
    return polled
