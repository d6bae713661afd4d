"""Cluster mode: one daemon against three on one PostgreSQL state, and a failover after kill -9.

The emulator (in this process) has its strict default limits and a latency fault on every
request (150 ms by default), no traffic: each tracked number answers an empty page, so a sweep of
N numbers is N requests of ``PullSmsSendStatusByPhoneNumber``. The daemons are real processes
(``tcsms-poller run``) on a throwaway PostgreSQL server, each with the same configuration: the
per-number source (every number due once), the receipts queue and a stdout sink.

For 1 and for 3 instances, on a fresh database: the sweep's time from the first admitted request
to the N-th, over the ideal N / limit (``sweep_ratio_1``, ``sweep_ratio_3``); the requests the
emulator refused for the limit, over both runs (``limit_errors``); the CPU seconds of each
instance and, with 3, the per-number requests each made (they share the numbers under claims and
the limit under rate shares). Then, with 3: ``kill -9`` of the holder of the receipts queue's
lease and of the sink's lease, and the seconds until survivors hold both (``failover_s``; the
target is at most 2 x ``lease_ttl``).

    python bench/cluster.py [--numbers 2000] [--latency-ms 150] [--ttl 10] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import exit_on_sigterm, machine, print_result, temp_dir
from bench._sweep import (
    APP_ID,
    Bench,
    action_counts,
    running_bench,
    tracked_numbers,
)
from tcsms_poller.emulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY

SINK = "out"
QUEUE_LEASE = f"pull:{APP_ID}:PullSmsSendStatus"
SWEEP_BUDGET = 3.0  # a sweep slower than three times the ideal is a failure, not a figure


def instance_config(
    url: str, state_url: str, numbers: Path, workdir: Path, name: str, ttl: float
) -> dict[str, Any]:
    """One instance: per-number polls of every number once, the receipts queue, stdout."""
    return {
        "tencent": {
            "secret_id": DEFAULT_SECRET_ID,
            "secret_key": DEFAULT_SECRET_KEY,
            "endpoint": url,
        },
        "apps": [
            {
                "sms_sdk_app_id": APP_ID,
                "replies": {"enabled": False},
                "send_status": {"enabled": True, "interval": "1s"},
                "statistics": {"enabled": False},
                "by_number": {"numbers_file": str(numbers), "interval": "1h", "replies": False},
            }
        ],
        "state": {
            "path": str(workdir / "state.db"),
            "url": state_url,
            "pool_size": 4,
            "instance_id": name,
            "lease_ttl": f"{ttl:g}s",
        },
        "sinks": [{"type": "stdout", "name": SINK}],
        "log": {"level": "info", "format": "json"},
    }


def start(config: dict[str, Any], workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with (workdir / "daemon.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tcsms_poller", "run", "-c", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_number_requests(workdir: Path) -> int:
    """The per-number requests an instance made so far, from its ``poll.completed`` lines."""
    total = 0
    for line in (workdir / "daemon.log").read_text().splitlines():
        if '"poll.completed"' in line and '"by_number:' in line:
            total += int(json.loads(line).get("requests", 0))
    return total


async def holders(url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute(
            "SELECT name, holder FROM leases WHERE expires_at > clock_timestamp()"
        )
        return {str(name): str(holder) for name, holder in await cursor.fetchall()}


async def sweep(
    bench: Bench,
    instances: int,
    state_url: str,
    numbers: Path,
    workdir: Path,
    ttl: float,
    count: int,
) -> dict[str, Any]:
    """One sweep by ``instances`` daemons; with 3, the failover after killing the holders."""
    before = await action_counts(bench.emulator)
    admitted_from = len(bench.limiter.admitted_at)
    names = [f"i{n}" for n in range(1, instances + 1)]
    processes = {
        name: start(
            instance_config(bench.emulator.url, state_url, numbers, workdir / name, name, ttl),
            workdir / name,
        )
        for name in names
    }
    result: dict[str, Any] = {"instances": instances}
    try:
        ideal = count / bench.limit
        with anyio.fail_after(ideal * SWEEP_BUDGET + 30):
            while len(bench.limiter.admitted_at) - admitted_from < count:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        admitted = bench.limiter.admitted_at[admitted_from : admitted_from + count]
        sweep_s = admitted[-1] - admitted[0] + 1 / bench.limit
        result["sweep_s"] = round(sweep_s, 2)
        result["sweep_ratio"] = round(sweep_s / ideal, 3)
        result["cpu_s"] = {name: round(cpu_of(p.pid), 2) for name, p in processes.items()}
        result["requests"] = {name: by_number_requests(workdir / name) for name in names}
        if instances > 1:
            held = await holders(state_url)
            victims = {held[QUEUE_LEASE], held[f"sink:{SINK}"]}
            for victim in victims:
                processes[victim].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            survivors = set(names) - victims
            with anyio.fail_after(ttl * 4):
                while True:
                    held = await holders(state_url)
                    if {held.get(QUEUE_LEASE), held.get(f"sink:{SINK}")} <= survivors:
                        break
                    await anyio.sleep(0.05)
            result["failover_s"] = round(time.monotonic() - killed, 2)
            result["killed"] = sorted(victims)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    result["limit_errors"] = (await action_counts(bench.emulator) - before).limit_errors
    return result


async def measure(args: argparse.Namespace, new_database: Any, workdir: Path) -> dict[str, Any]:
    numbers = workdir / "numbers.txt"
    numbers.write_text("\n".join(tracked_numbers(args.numbers)) + "\n")
    async with running_bench(args.latency_ms / 1000) as bench:
        one = await sweep(
            bench, 1, new_database(), numbers, workdir / "one", args.ttl, args.numbers
        )
        three = await sweep(
            bench, 3, new_database(), numbers, workdir / "three", args.ttl, args.numbers
        )
    return {"one": one, "three": three, "limit": bench.limit}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--numbers", type=int, default=2000, help="tracked numbers (default 2000)")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="per request (150)")
    parser.add_argument("--ttl", type=float, default=10.0, help="lease_ttl in seconds (10)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    args = parser.parse_args(argv)
    if args.numbers < 1 or args.ttl < 3:
        parser.error("--numbers must be at least 1 and --ttl at least 3")
    exit_on_sigterm()
    from tests.support.postgres import running_server  # the test suite's throwaway server

    with (
        temp_dir("tcsms-bench-cluster-", args.dir) as workdir,
        running_server(fsync=True, parent=args.dir) as server,
    ):
        figures = anyio.run(measure, args, server.create_database, workdir, backend="asyncio")
    one, three = figures["one"], figures["three"]
    limit_errors = one["limit_errors"] + three["limit_errors"]
    summary = [
        f"{args.numbers} numbers, limit {figures['limit']}/s, latency {args.latency_ms:g} ms, "
        f"lease_ttl {args.ttl:g} s",
        f"1 instance:  sweep {one['sweep_s']} s = {one['sweep_ratio']} x ideal, CPU {one['cpu_s']}",
        f"3 instances: sweep {three['sweep_s']} s = {three['sweep_ratio']} x ideal, "
        f"CPU {three['cpu_s']}, per-number requests {three['requests']}",
        f"limit errors: {limit_errors} ({one['limit_errors']} with 1 instance, "
        f"{three['limit_errors']} with 3)",
        f"failover after kill -9 of {three['killed']}: {three['failover_s']} s "
        f"(target <= {2 * args.ttl:g} s)",
    ]
    print_result(
        summary,
        {
            "numbers": args.numbers,
            "latency_ms": args.latency_ms,
            "lease_ttl_s": args.ttl,
            "cpu_s_1": one["cpu_s"],
            "cpu_s_3": three["cpu_s"],
            "requests_3": three["requests"],
            "machine": machine(),
            "sweep_ratio_1": one["sweep_ratio"],
            "sweep_ratio_3": three["sweep_ratio"],
            "limit_errors": limit_errors,
            "limit_errors_1": one["limit_errors"],
            "limit_errors_3": three["limit_errors"],
            "failover_s": three["failover_s"],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
