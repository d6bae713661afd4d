"""The benchmarks run as real processes at tiny sizes and end with a sane JSON result line.

Each benchmark's last stdout line is the machine-readable result; these smoke tests keep the
scripts working (imports, arguments, the emulator wiring) without paying for a full run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1] / "bench"
# The daemon runs at exactly the emulator's limit, with 30 ms of margin between the two windows
# (20 ms ours, 10 ms the emulator's slack). On a saturated machine the delay between our slot and
# the emulator's arrival stamp (one event loop, preempted) has been measured at up to 47 ms, and
# one request in 60 was then refused (and retried). The full-size run reports the exact count;
# a smoke test must not fail on a busy machine.
JITTER_REFUSALS = 2


def _run_sweep_benchmark(script: str, *args: str) -> dict[str, Any]:
    """Run ``bench/<script>`` to completion; its last stdout line parsed as JSON."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def test_ratelimit_sweeps_within_the_limit() -> None:
    """bench/ratelimit.py sweeps 60 numbers with no RequestLimitExceeded, near the limit."""
    figures = _run_sweep_benchmark("ratelimit.py", "--numbers", "60")
    required = {"utilization", "limit_errors", "sweep_ratio", "requests", "sweep_s", "ideal_s"}
    assert required | {"limit", "latency_ms", "machine"} <= figures.keys()
    assert figures["verified"] is True
    assert figures["limit_errors"] <= JITTER_REFUSALS
    assert figures["requests"] == 60 + figures["limit_errors"]  # a refused request is retried
    assert figures["limit"] == 20
    assert figures["ideal_s"] == 3.0
    # A few seconds is no steady state (the limit allows 20 at once), so only sanity here.
    assert 0.5 < figures["utilization"] < 1.5
    assert 0.95 <= figures["sweep_ratio"] < 2.0


def test_baseline_compares_the_sdk_with_ours() -> None:
    """bench/baseline.py: the sequential SDK is slower than ours, the unlimited one is refused."""
    figures = _run_sweep_benchmark("baseline.py", "--numbers", "30")
    required = {"ours_sweep_s", "sdk_sequential_sweep_s", "speedup", "sdk_gather_limit_errors"}
    assert required | {"sdk_gather_sweep_s", "numbers", "machine"} <= figures.keys()
    assert figures["verified"] is True
    assert figures["numbers"] == 30
    assert figures["ours_limit_errors"] <= JITTER_REFUSALS
    assert figures["sdk_sequential_limit_errors"] == 0
    assert figures["sdk_sequential_sweep_s"] > figures["ours_sweep_s"]
    assert figures["speedup"] > 1
    assert figures["sdk_gather_limit_errors"] > 0  # 30 at once against a limit of 20
    assert figures["sdk_gather_ok"] + figures["sdk_gather_limit_errors"] == 30


def test_scale_reports_memory_scheduler_and_startup_on_a_small_state() -> None:
    """bench/scale.py at a tiny size: a real daemon polls, starts, stops; every figure is sane."""
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "scale.py"),
            *("--seen", "20000", "--numbers", "2000", "--run-seconds", "3"),
            *("--ready-starts", "1", "--scheduler-picks", "2000"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    required = {"peak_rss_mb", "scheduler_us_per_request", "ready_s", "seen_ids", "numbers"}
    assert required | {"state_mb", "machine", "target_met", "load_average"} <= figures.keys()
    assert figures["verified"] is True
    assert (figures["seen_ids"], figures["numbers"]) == (20_000, 2_000)
    assert 20 < figures["peak_rss_mb"] < 1_000  # a Python daemon, not a leak nor a misread
    assert 0 < figures["scheduler_us_per_request"] < 100_000
    assert figures["scheduler_numbers_picked"] == 2_000
    assert 0 < figures["ready_s"] < 30
    assert 1 < figures["state_mb"] < 100
    assert figures["numbers_polled"] > 0
    assert figures["requests"]["PullSmsSendStatusByPhoneNumber"] > 0


def test_paging_reports_requests_per_poll_under_every_reading() -> None:
    """bench/paging.py: a quiet number costs one request a poll, a busy one fewer once known."""
    figures = _run_sweep_benchmark("paging.py", "--records", "250", "--polls", "3")
    assert set(figures["readings"]) == {"receive-asc", "receive-desc", "send-asc", "send-desc"}
    assert figures["verified"] is True
    assert figures["quiet_requests_per_poll"] == 1
    assert 3 <= figures["requests_per_poll"] < figures["first_poll_requests"]
    assert figures["records"] == 250


def test_tracking_compares_tracked_messages_with_fixed_interval_polling() -> None:
    """bench/tracking.py at a tiny size: both daemons deliver, every figure is sane."""
    # Settling longer than the baseline's interval (6 s at this scale): it polls again.
    figures = _run_sweep_benchmark(
        "tracking.py", "--messages", "120", "--numbers", "60", "--settle", "8"
    )
    required = {"requests_per_receipt", "baseline_requests_per_receipt", "p50_s", "p99_s"}
    assert required | {"resolved_share", "baseline_p50_s", "baseline_p99_s"} <= figures.keys()
    assert figures["same_sends"] is True
    assert figures["messages"] == 120
    assert figures["receipts_delivered"] > 0
    assert figures["baseline_receipts_delivered"] > 0
    assert 0 < figures["requests_per_receipt"] < 5
    assert 0 <= figures["p50_s"] <= figures["p99_s"]
    assert 0 < figures["resolved_share"] <= 1


def test_pipeline_runs_on_both_state_backends() -> None:
    """bench/pipeline.py at a tiny size: verified output, the same keys for either state."""
    sqlite = _run_sweep_benchmark("pipeline.py", "--records", "3000", "--runs", "1")
    postgres = _run_sweep_benchmark(
        "pipeline.py", "--records", "3000", "--runs", "1", "--state", "postgresql"
    )
    assert sqlite["verified"] is True
    assert postgres["verified"] is True
    assert sqlite.keys() == postgres.keys()
    assert (sqlite["synchronous"], postgres["synchronous"]) == ("FULL", "synchronous_commit=on")
    assert postgres["new"] == sqlite["new"] > 0


def test_cluster_sweeps_alike_with_one_and_three_instances_and_fails_over() -> None:
    """bench/cluster.py with 40 numbers: both sweeps near the ideal, the failover after
    kill -9 of the lease holders within 2 x TTL."""
    figures = _run_sweep_benchmark("cluster.py", "--numbers", "40", "--ttl", "3")
    assert 0.5 < figures["sweep_ratio_1"] < 3.0
    assert 0.5 < figures["sweep_ratio_3"] < 3.0
    assert figures["limit_errors"] <= JITTER_REFUSALS
    assert 0 < figures["failover_s"] <= 6.0
