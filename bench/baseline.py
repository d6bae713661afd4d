"""One sweep of tracked numbers done the usual ways with Tencent's SDK, and done by the daemon.

Three contenders poll ``PullSmsSendStatusByPhoneNumber`` once for each of the same numbers, one
after the other against the same in-process emulator (strict default limits: 20 requests in any
``1 s - 10 ms``; 150 ms added to every request):

1. ours: the daemon's per-number machinery, exactly as ``bench/ratelimit.py`` runs it (the code
   is shared, in ``bench/_sweep.py``);
2. the official SDK's synchronous ``SmsClient`` in a plain sequential loop (run in a worker
   thread, so the emulator keeps serving on the event loop): one request at a time, so each
   costs a full round trip plus the SDK's own time per call (``requests`` underneath; about
   2 ms a call with no added latency: ``sdk_sequential_ms_per_call`` shows it). It used to be
   about 45 ms, none of it the SDK's: the emulator's connections kept Nagle's algorithm on, so
   each answer's body waited for the client's delayed ACK of its headers (``asgi.py`` now sets
   ``TCP_NODELAY``). With no latency at all it is fast enough to be refused now and then;
3. the official SDK's asyncio ``SmsClient`` (``sms_client_async``, in the installed SDK) with
   every number started at once, as ``asyncio.gather`` would (an anyio task group here) and no
   rate limiting: the only bound is the SDK's own connection pool (httpx's default, 100
   connections). It is fast, and most of its requests are refused with
   ``RequestLimitExceeded``: those numbers were not swept at all.

Between contenders the benchmark waits ``limit_horizon`` (2 s), the longest window the
emulator's limiter remembers, so each one starts with an empty window.

A sequential sweep costs about ``numbers x (latency + overhead)``: 2,000 numbers would take over
five minutes, so the default is 400 numbers (about 61 s sequentially, 20 s for ours), the same
count for all three.

    .venv/bin/python bench/baseline.py [--numbers 400] [--latency-ms 150] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: find bench._sweep

import anyio
import anyio.to_thread
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models, sms_client, sms_client_async

from bench._common import exit_on_sigterm, load_average, machine, print_result, temp_dir
from bench._sweep import (
    APP_ID,
    ActionCounts,
    Bench,
    SweepOutcome,
    action_counts,
    running_bench,
    sweep_with_daemon,
    tracked_numbers,
)
from tcsms_poller.emulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from tcsms_poller.logs import configure_logging

REGION = "ap-guangzhou"
LOOKBACK_S = 86_400  # the daemon's default by_number lookback: the same window for everyone
LIMIT_EXCEEDED = "RequestLimitExceeded"


@dataclass(slots=True)
class SdkOutcome:
    """What one SDK sweep measured: its wall time and each answer's outcome."""

    sweep_s: float = 0.0
    answers: Counter[str] = field(default_factory=Counter)  # "ok" or the error code
    counts: ActionCounts = field(default_factory=ActionCounts)

    @property
    def ok(self) -> int:
        return self.answers["ok"]

    @property
    def limit_errors(self) -> int:
        return self.answers[LIMIT_EXCEEDED]


@dataclass(frozen=True, slots=True)
class Contenders:
    """The three sweeps of one run."""

    ours: SweepOutcome
    sequential: SdkOutcome
    gathered: SdkOutcome


def sdk_profile(bench: Bench) -> ClientProfile:
    """The SDK pointed at the emulator over plain HTTP."""
    endpoint = f"{bench.emulator.host}:{bench.emulator.port}"
    return ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http"))


def sdk_credential() -> Any:
    """The emulator's published fake credentials, as an SDK ``Credential``."""
    return credential.Credential(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)


def status_request(phone: str, begin: int, end: int) -> Any:
    """The SDK request for one number's receipts in ``[begin, end]``, one full page."""
    request = models.PullSmsSendStatusByPhoneNumberRequest()
    request.from_json_string(
        json.dumps(
            {
                "SmsSdkAppId": APP_ID,
                "PhoneNumber": phone,
                "BeginTime": begin,
                "EndTime": end,
                "Offset": 0,
                "Limit": 100,
            }
        )
    )
    return request


def sequential_loop(profile: ClientProfile, numbers: Sequence[str]) -> SdkOutcome:
    """The usual loop, blocking: one number after the other (runs in a worker thread)."""
    client = sms_client.SmsClient(sdk_credential(), REGION, profile)
    outcome = SdkOutcome()
    started = time.monotonic()
    for phone in numbers:
        now = int(time.time())
        try:
            client.PullSmsSendStatusByPhoneNumber(status_request(phone, now - LOOKBACK_S, now))
        except TencentCloudSDKException as error:
            outcome.answers[error.get_code() or "unknown"] += 1
        else:
            outcome.answers["ok"] += 1
    outcome.sweep_s = time.monotonic() - started
    return outcome


async def sdk_sequential(bench: Bench, numbers: Sequence[str]) -> SdkOutcome:
    """Contender 2: the synchronous SDK client in a sequential loop."""
    before = await action_counts(bench.emulator)
    outcome = await anyio.to_thread.run_sync(partial(sequential_loop, sdk_profile(bench), numbers))
    outcome.counts = await action_counts(bench.emulator) - before
    return outcome


async def sdk_gather(bench: Bench, numbers: Sequence[str]) -> SdkOutcome:
    """Contender 3: the asyncio SDK client, every number at once, no rate limiting."""
    before = await action_counts(bench.emulator)
    outcome = SdkOutcome()
    async with sms_client_async.SmsClient(sdk_credential(), REGION, sdk_profile(bench)) as client:

        async def pull(phone: str) -> None:
            now = int(time.time())
            try:
                await client.PullSmsSendStatusByPhoneNumber(
                    status_request(phone, now - LOOKBACK_S, now)
                )
            except TencentCloudSDKException as error:
                outcome.answers[error.get_code() or "unknown"] += 1
            else:
                outcome.answers["ok"] += 1

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for phone in numbers:
                tg.start_soon(pull, phone)
        outcome.sweep_s = time.monotonic() - started
    outcome.counts = await action_counts(bench.emulator) - before
    return outcome


async def run_contenders(numbers: Sequence[str], latency_s: float, workdir: Path) -> Contenders:
    """The three sweeps in turn against one emulator, each starting with an empty window."""
    async with running_bench(latency_s) as bench:
        quiet_s = bench.emulator.state.options.limit_horizon
        ours = await sweep_with_daemon(bench, numbers, workdir)
        await anyio.sleep(quiet_s)  # let the emulator's limiter forget the previous contender
        sequential = await sdk_sequential(bench, numbers)
        await anyio.sleep(quiet_s)
        gathered = await sdk_gather(bench, numbers)
    return Contenders(ours, sequential, gathered)


def check(contenders: Contenders, count: int) -> list[str]:
    """What is wrong with the run (nothing, normally): every answer accounted for."""
    problems = list(contenders.ours.problems)
    sdk_runs = (("sdk sequential", contenders.sequential), ("sdk gather", contenders.gathered))
    for name, sdk in sdk_runs:
        if sdk.answers.total() != count:
            problems.append(f"{name}: {sdk.answers.total()} answers for {count} numbers")
        if sdk.counts.requests != count or sdk.counts.ok != sdk.ok:
            problems.append(
                f"{name}: the emulator saw {sdk.counts.requests} requests, {sdk.counts.ok} ok; "
                f"the client counted {sdk.ok} ok of {sdk.answers.total()}"
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--numbers", type=int, default=400, help="tracked numbers (default 400)")
    parser.add_argument(
        "--latency-ms", type=float, default=150.0, help="added to every request (default 150)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    args = parser.parse_args(argv)
    if args.numbers < 2:
        parser.error("--numbers must be at least 2")
    exit_on_sigterm()
    configure_logging(level="warning", fmt="json", stream=sys.stderr)

    load_before = load_average()
    numbers = tracked_numbers(args.numbers)
    with temp_dir("tcsms-bench-baseline-", args.dir) as workdir:
        contenders = anyio.run(
            run_contenders, numbers, args.latency_ms / 1000, workdir, backend="asyncio"
        )
    load_after = load_average()
    problems = check(contenders, args.numbers)

    ours, sequential, gathered = contenders.ours, contenders.sequential, contenders.gathered
    speedup = sequential.sweep_s / ours.sweep_s
    count, ideal = args.numbers, ours.ideal_s
    figures: dict[str, Any] = {
        "benchmark": "baseline",
        "ours_sweep_s": round(ours.sweep_s, 3),
        "sdk_sequential_sweep_s": round(sequential.sweep_s, 3),
        "speedup": round(speedup, 2),
        "sdk_gather_limit_errors": gathered.limit_errors,
        "sdk_gather_sweep_s": round(gathered.sweep_s, 3),
        "sdk_gather_ok": gathered.ok,
        "sdk_gather_answers": dict(gathered.answers),
        "sdk_sequential_limit_errors": sequential.limit_errors,
        "sdk_sequential_ms_per_call": round(sequential.sweep_s * 1000 / count, 1),
        "ours_limit_errors": ours.counts.limit_errors,
        "ours_utilization": round(ours.utilization, 4),
        "ours_sweep_ratio": round(ours.sweep_ratio, 4),
        "sdk_sequential_sweep_ratio": round(sequential.sweep_s / ours.ideal_s, 4),
        "ideal_s": round(ours.ideal_s, 3),
        "numbers": args.numbers,
        "limit": ours.limit,
        "latency_ms": args.latency_ms,
        "verified": not problems,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "machine": machine(),
    }
    summary = [
        f"baseline: one sweep of {count:,} numbers, PullSmsSendStatusByPhoneNumber limited to "
        f"{ours.limit}/s (ideal {ideal:.2f} s), {args.latency_ms:g} ms added to every request",
        f"  ours            {ours.sweep_s:8.2f} s  {ours.sweep_s / ideal:.3f} x ideal, "
        f"{ours.counts.ok:,} ok, {ours.counts.limit_errors} RequestLimitExceeded",
        f"  SDK sequential  {sequential.sweep_s:8.2f} s  {sequential.sweep_s / ideal:.3f} x ideal, "
        f"{sequential.ok:,} ok, {sequential.limit_errors} RequestLimitExceeded, "
        f"{figures['sdk_sequential_ms_per_call']} ms a call",
        f"  SDK gather      {gathered.sweep_s:8.2f} s  {gathered.ok:,} ok, "
        f"{gathered.limit_errors:,} RequestLimitExceeded: "
        f"{count - gathered.ok:,} numbers not swept",
        f"  speedup         {speedup:8.2f} x  (SDK sequential / ours)",
        f"  load average    {load_before} before, {load_after} after",
        "  answers         "
        + ("accounted for" if not problems else "WRONG: " + "; ".join(problems)),
    ]
    print_result(summary, figures)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
