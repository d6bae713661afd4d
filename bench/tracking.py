"""Tracked messages against today's fixed-interval per-number polling, in one run.

``--messages`` messages to ``--numbers`` numbers (two each by default) are sent through the
emulator's ``SendSms`` at a steady ``--rate``; their receipts follow the emulator's default
delay distribution (median 5 s, 95 % within a minute, 1 % hours late, 0.5 % never). The
run has two phases, one after the other so that they do not compete for the CPU: each starts
a fresh emulator with the run's seed and feeds it the same sends on the same schedule, so both
hold the same receipts at the same moments after their start, and runs one real daemon
(``tcsms-poller run``, per-number pulls only, queue APIs off) against it:

- **tracking**: every message tracked through ``POST /v1/messages`` as it is sent;
- **baseline**: every number tracked as today, polled every ``by_number.interval`` (1 min).

Time is compressed by ``--scale`` (default 0.1): every receipt delay, every interval of both
daemons is multiplied by it, and the per-number rate limit divided by it, so a run of
``messages / rate`` simulated seconds takes ``scale`` times that. Delays are reported in
simulated seconds (real / scale); the daemons' own fixed overheads (commit, sink) are not
compressed, so they count ten times over at the default scale: the figures are pessimistic.
Receipts hours late fall beyond the run (``--settle`` after the last send), as do those that
never come: ``resolved_share`` counts both against the tracking daemon.

With ``--state postgresql`` each daemon keeps its state in a fresh database of a local
PostgreSQL server the benchmark starts for itself (as ``bench/pipeline.py`` does; ``fsync = on``)
and delivers to a stdout sink (a daemon with ``state.url`` refuses a file sink), whose output
the benchmark reads as it reads the file sink's with SQLite. ``state`` says which was measured.

Figures: ``requests_per_receipt`` (per-number requests / receipts delivered to the sink,
target <= 1.5), ``baseline_requests_per_receipt``, ``p50_s``/``p99_s`` (from a receipt
becoming pullable at the emulator to its record in the sink's file; ``pull_p50_s`` to the
record's ``received_at``, when the daemon pulled it) and the baseline's,
``resolved_share`` (messages resolved by the end / messages sent).

    .venv/bin/python bench/tracking.py [--messages 10000] [--numbers 5000] [--rate 10]
                                       [--state sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: find bench._common

import anyio
import httpx
import yaml

from bench._common import (
    exit_on_sigterm,
    load_average,
    machine,
    percentile,
    postgres_server,
    print_result,
    temp_dir,
)
from bench._sweep import tracked_numbers
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    RunningEmulator,
    run_emulator,
)
from tcsms_poller.emulator.options import ReceiptDelays

ACTION = "PullSmsSendStatusByPhoneNumber"
APP = DEFAULT_APP_ID
TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (the bench's own daemons)
TICK = 0.05  # seconds between send batches and between reads of the sinks' files
READY_TIMEOUT = 120.0
RECORDS = "records.jsonl"  # what the sink delivered, in the daemon's directory


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(
    emulator: RunningEmulator,
    workdir: Path,
    scale: float,
    *,
    tracking: bool,
    port: int,
    url: str | None,
) -> dict[str, Any]:

    def seconds(value: float) -> str:
        return f"{max(value * scale, 0.01) * 1000:.0f}ms"

    app: dict[str, Any] = {
        "sms_sdk_app_id": DEFAULT_APP_ID,
        "replies": {"enabled": False},
        "send_status": {"enabled": False},
        "statistics": {"enabled": False},
        "conversions": {"enabled": False},
    }
    if tracking:
        app["by_number"] = {"enabled": False}
        app["tracking"] = {
            "first_poll": seconds(15),
            "max_gap": seconds(3600),
            "margin": "5s",
            "give_up_after": "72h",
        }
    else:
        app["by_number"] = {
            "numbers_file": str(workdir / "numbers.txt"),
            "interval": seconds(60),
            "lookback": "24h",
        }
        app["tracking"] = {"enabled": False}
    rate = round(20 / scale)
    config: dict[str, Any] = {
        "tencent": {
            "secret_id": DEFAULT_SECRET_ID,
            "secret_key": DEFAULT_SECRET_KEY,
            "endpoint": emulator.url,
            "rate_limits": {ACTION: rate},
        },
        "apps": [app],
        "state": {"path": str(workdir / "state.db")},
        "sinks": [{"type": "file", "path": str(workdir / RECORDS), "fsync": "never"}],
        "log": {"level": "warning", "format": "json"},
        "server": {
            "listen": f"127.0.0.1:{port}",
            "token": TOKEN,
            "callback_secret": "bench-callback-0123456789",
        },
    }
    if url is not None:  # the records on stdout, which _start sends to the same file
        config["state"]["url"] = url
        config["sinks"] = [{"type": "stdout", "format": "json"}]
    return config


@dataclass(slots=True)
class Side:
    """One daemon, its emulator and what its sink delivered (record id -> first seen)."""

    name: str
    emulator: RunningEmulator
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    seen: dict[str, float] = field(default_factory=dict)
    pulled: dict[str, float] = field(default_factory=dict)  # the record's received_at
    _offset: int = 0

    def read_sink(self) -> None:
        path = self.workdir / RECORDS
        if not path.exists():
            return
        now = time.time()
        with path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            record = json.loads(line)
            self.seen.setdefault(record["id"], now)
            moment = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))
            self.pulled.setdefault(record["id"], moment.timestamp())

    def requests(self) -> int:
        stats = self.emulator.state.stats_snapshot()["actions"].get(ACTION, {})
        return int(stats.get("requests", 0))


async def _start(side: Side, config: dict[str, Any]) -> None:
    side.workdir.mkdir(parents=True, exist_ok=True)
    path = side.workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (side.workdir / "daemon.log").open("ab")
    stdout_sink = config["sinks"][0]["type"] == "stdout"  # its logs then go to stderr
    side.process = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
        [sys.executable, "-m", "tcsms_poller", "run", "-c", str(path)],
        stdout=(side.workdir / RECORDS).open("ab") if stdout_sink else log,
        stderr=log if stdout_sink else subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(READY_TIMEOUT):
            while True:
                try:
                    answer = await http.get(f"http://127.0.0.1:{side.port}/healthz")
                    if answer.status_code in (200, 503):
                        return
                except httpx.TransportError:
                    pass
                if side.process.poll() is not None:
                    raise SystemExit(f"{side.name} daemon exited; see {side.workdir}/daemon.log")
                await anyio.sleep(0.1)


def _stop(side: Side) -> None:
    if side.process is not None and side.process.poll() is None:
        side.process.terminate()
        try:
            side.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            side.process.kill()


def _figures(side: Side, available: dict[str, float], scale: float) -> dict[str, Any]:
    delivered = [s for s in available if s in side.seen]
    delays = [max(0.0, side.seen[s] - available[s]) / scale for s in delivered]
    pulls = [max(0.0, side.pulled[s] - available[s]) / scale for s in delivered]
    requests = side.requests()
    return {
        "requests": requests,
        "receipts": len(delivered),
        "requests_per_receipt": round(requests / max(1, len(delivered)), 3),
        "p50_s": round(percentile(delays, 0.50), 2) if delays else None,
        "p99_s": round(percentile(delays, 0.99), 2) if delays else None,
        "pull_p50_s": round(percentile(pulls, 0.50), 2) if pulls else None,
    }


@dataclass(frozen=True, slots=True)
class Phase:
    """What one daemon did with the run's sends."""

    figures: dict[str, Any]
    serials: frozenset[str]
    resolved: int
    available: int
    sending_s: float


async def _phase(
    args: argparse.Namespace, workdir: Path, *, tracking: bool, url: str | None
) -> Phase:
    """One daemon against a fresh emulator of the run's seed, fed the run's sends."""
    scale = args.scale
    receipts = ReceiptDelays(scale=scale)
    limits = {ACTION: round(20 / scale), "SendSms": 100_000}
    options = EmulatorOptions(seed=args.seed, receipts=receipts, rate_limits=limits)
    numbers = tracked_numbers(args.numbers)
    name = "tracking" if tracking else "baseline"
    async with run_emulator(options) as emulator:
        side = Side(name, emulator, workdir / name, _free_port())
        side.workdir.mkdir(parents=True)
        (side.workdir / "numbers.txt").write_text("\n".join(numbers) + "\n")
        try:
            await _start(
                side,
                _config(emulator, side.workdir, scale, tracking=tracking, port=side.port, url=url),
            )
            started = time.time()
            real_rate = args.rate / scale
            sent = 0
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as http:
                while sent < args.messages:
                    due = min(args.messages, int((time.time() - started) * real_rate) + 1)
                    batch = []
                    for index in range(sent, due):
                        number = numbers[index % len(numbers)]
                        [answer] = emulator.state.outbound.send(APP, [number], "")
                        batch.append(
                            {
                                "serial_no": answer["SerialNo"],
                                "phone_number": number,
                                # Whole seconds, rounded: truncating would move every
                                # first poll up to 10 simulated seconds earlier.
                                "sent_at": round(time.time()),
                            }
                        )
                    sent = due
                    for first in range(0, len(batch) if tracking else 0, 1000):
                        response = await http.post(
                            f"http://127.0.0.1:{side.port}/v1/messages",
                            json=batch[first : first + 1000],
                        )
                        response.raise_for_status()
                    side.read_sink()
                    await anyio.sleep(TICK)
                sending_s = time.time() - started
                settle_until = time.time() + args.settle
                while time.time() < settle_until:
                    side.read_sink()
                    await anyio.sleep(TICK)
                side.read_sink()
        finally:
            _stop(side)
        messages = emulator.state.outbound.sent
        available = {
            serial: message.due
            for serial, message in messages.items()
            if message.due is not None and message.due <= time.time()
        }
        return Phase(
            figures=_figures(side, available, scale),
            serials=frozenset(messages),
            resolved=sum(1 for serial in messages if serial in side.seen),
            available=len(available),
            sending_s=round(sending_s, 1),
        )


async def run(
    args: argparse.Namespace, workdir: Path, new_database: Callable[[], str] | None
) -> dict[str, Any]:
    """The tracking daemon, then the baseline daemon, each with the same sends (and, with
    PostgreSQL, a fresh database each)."""
    ours = await _phase(args, workdir, tracking=True, url=new_database and new_database())
    theirs = await _phase(args, workdir, tracking=False, url=new_database and new_database())
    return {
        "requests_per_receipt": ours.figures["requests_per_receipt"],
        "baseline_requests_per_receipt": theirs.figures["requests_per_receipt"],
        "p50_s": ours.figures["p50_s"],
        "p99_s": ours.figures["p99_s"],
        "baseline_p50_s": theirs.figures["p50_s"],
        "baseline_p99_s": theirs.figures["p99_s"],
        "pull_p50_s": ours.figures["pull_p50_s"],
        "baseline_pull_p50_s": theirs.figures["pull_p50_s"],
        "resolved_share": round(ours.resolved / max(1, len(ours.serials)), 4),
        "baseline_resolved_share": round(theirs.resolved / max(1, len(theirs.serials)), 4),
        "messages": len(ours.serials),
        "numbers": args.numbers,
        "receipts_available": ours.available,
        "receipts_delivered": ours.figures["receipts"],
        "baseline_receipts_delivered": theirs.figures["receipts"],
        "requests": ours.figures["requests"],
        "baseline_requests": theirs.figures["requests"],
        "same_sends": ours.serials == theirs.serials,
        "scale": args.scale,
        "state": args.state,
        "sending_s": ours.sending_s,
        "settle_s": args.settle,
        "target_met": ours.figures["requests_per_receipt"] <= 1.5,
        "load": load_average(),
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--numbers", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per simulated second")
    parser.add_argument("--scale", type=float, default=0.1, help="real seconds per simulated one")
    parser.add_argument(
        "--settle", type=float, default=30.0, help="real seconds after the last send"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--state", choices=("sqlite", "postgresql"), default="sqlite", help="the state backend"
    )
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with (
        temp_dir("tcsms-bench-tracking-") as workdir,
        postgres_server(args.state, None) as new_database,
    ):
        figures = anyio.run(run, args, workdir, new_database, backend="asyncio")
    print_result(
        [
            f"{figures['messages']} messages to {figures['numbers']} numbers, "
            f"scale {args.scale}, {args.state} state",
            f"tracking: {figures['requests_per_receipt']} requests/receipt, "
            f"p50 {figures['p50_s']} s, p99 {figures['p99_s']} s, "
            f"resolved {figures['resolved_share']:.2%}",
            f"baseline: {figures['baseline_requests_per_receipt']} requests/receipt, "
            f"p50 {figures['baseline_p50_s']} s, p99 {figures['baseline_p99_s']} s",
        ],
        figures,
    )


if __name__ == "__main__":
    main()
