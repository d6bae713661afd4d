"""How close one sweep of tracked numbers comes to the API's rate limit, without exceeding it.

Against the in-process emulator with strict default limits (``PullSmsSendStatusByPhoneNumber``
at most 20 requests in any ``1 s - 10 ms``, checked over 1 and 2 s) and 150 ms added to every
request, the daemon's own per-number machinery (``ByNumberWorker`` and its scheduler, the
real ``TencentClient`` from ``build_client`` with its process-wide limiter, real SQLite state;
see ``bench/_sweep.py``) polls every tracked number once. Figures:

- ``utilization``: admitted requests per second at the emulator, from the first request of the
  sweep to the last, over the limit (target >= 0.97);
- ``limit_errors``: ``RequestLimitExceeded`` answers the emulator reports (target 0);
- ``sweep_ratio``: the sweep's wall time over the ideal ``numbers / limit`` (target <= 1.03).

A sweep of the default 2,000 numbers at 20 requests/s takes 100 s.

    .venv/bin/python bench/ratelimit.py [--numbers 2000] [--latency-ms 150] [--dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: find bench._sweep

import anyio

from bench._common import exit_on_sigterm, load_average, machine, percentile, print_result, temp_dir
from bench._sweep import (
    ACTION,
    SweepOutcome,
    running_bench,
    sweep_with_daemon,
    tracked_numbers,
)
from tcsms_poller.logs import configure_logging

TARGET_UTILIZATION = 0.97
TARGET_SWEEP_RATIO = 1.03


async def run_sweep(numbers: Sequence[str], latency_s: float, workdir: Path) -> SweepOutcome:
    """One sweep of ``numbers`` against a fresh emulator."""
    async with running_bench(latency_s) as bench:
        return await sweep_with_daemon(bench, numbers, workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--numbers", type=int, default=2000, help="tracked numbers (default 2000)")
    parser.add_argument(
        "--latency-ms", type=float, default=150.0, help="added to every request (default 150)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    args = parser.parse_args(argv)
    if args.numbers < 2:
        parser.error("--numbers must be at least 2 (a rate needs two requests)")
    exit_on_sigterm()
    configure_logging(level="warning", fmt="json", stream=sys.stderr)

    load_before = load_average()
    with temp_dir("tcsms-bench-ratelimit-", args.dir) as workdir:
        numbers = tracked_numbers(args.numbers)
        outcome = anyio.run(run_sweep, numbers, args.latency_ms / 1000, workdir, backend="asyncio")
    load_after = load_average()

    requests = outcome.counts.requests
    gaps = outcome.gaps_ms
    even_ms = 1000 / outcome.limit
    long_gaps = [gap for gap in gaps if gap > 2 * even_ms]  # where the stream of requests paused
    # Beyond perfectly even pacing at the limit, first request to last.
    lost_s = outcome.steady_s - (len(outcome.admitted_at) - 1) / outcome.limit
    target_met = {
        "utilization": outcome.utilization >= TARGET_UTILIZATION,
        "limit_errors": outcome.counts.limit_errors == 0,
        "sweep_ratio": outcome.sweep_ratio <= TARGET_SWEEP_RATIO,
    }
    figures: dict[str, Any] = {
        "benchmark": "ratelimit",
        "utilization": round(outcome.utilization, 4),
        "limit_errors": outcome.counts.limit_errors,
        "sweep_ratio": round(outcome.sweep_ratio, 4),
        "target_met": target_met,
        "verified": not outcome.problems,
        "numbers": outcome.numbers,
        "requests": requests,
        "achieved_per_s": round(outcome.achieved_rate, 3),
        "steady_s": round(outcome.steady_s, 3),
        "sweep_s": round(outcome.sweep_s, 3),
        "ideal_s": round(outcome.ideal_s, 3),
        "limit": outcome.limit,
        "latency_ms": args.latency_ms,
        "gap_ms_p50": round(percentile(gaps, 0.50), 1),
        "gap_ms_p99": round(percentile(gaps, 0.99), 1),
        "gap_ms_max": round(max(gaps, default=0.0), 1),
        "long_gaps": len(long_gaps),
        "lost_s": round(lost_s, 3),
        "cpu_s": round(outcome.cpu_s, 3),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "machine": machine(),
    }

    def verdict(name: str) -> str:
        return "met" if target_met[name] else "MISSED"

    summary = [
        f"ratelimit: {outcome.numbers:,} tracked numbers swept once by the per-number worker, "
        f"{ACTION} limited to {outcome.limit}/s, {args.latency_ms:g} ms added to every request",
        f"  utilization  {outcome.utilization:8.4f}  {outcome.achieved_rate:.3f} requests/s "
        f"over {outcome.steady_s:.2f} s, first to last request "
        f"(target >= {TARGET_UTILIZATION}: {verdict('utilization')})",
        f"  limit errors {outcome.counts.limit_errors:8d}  RequestLimitExceeded of {requests:,} "
        f"requests (target 0: {verdict('limit_errors')})",
        f"  sweep        {outcome.sweep_s:8.2f} s  ideal {outcome.ideal_s:.2f} s, ratio "
        f"{outcome.sweep_ratio:.4f} (target <= {TARGET_SWEEP_RATIO}: {verdict('sweep_ratio')})",
        f"  gaps         p50 {figures['gap_ms_p50']} ms, p99 {figures['gap_ms_p99']} ms, max "
        f"{figures['gap_ms_max']} ms between requests (even pacing: {even_ms:g} ms); "
        f"{len(long_gaps)} over {2 * even_ms:g} ms; {lost_s:.2f} s more than even pacing",
        f"  CPU          {outcome.cpu_s:8.2f} s  (emulator included); load average "
        f"{load_before} before, {load_after} after",
        "  sweep        "
        + ("verified" if not outcome.problems else "WRONG: " + "; ".join(outcome.problems)),
    ]
    print_result(summary, figures)
    return 0 if not outcome.problems else 1


if __name__ == "__main__":
    sys.exit(main())
