"""Records per second through parse -> normalize -> dedupe -> outbox commit -> file sink.

The input is pre-built API answers: the JSON bodies Tencent sends for ``PullSmsReplyStatus`` and
``PullSmsSendStatus``, 100 items a page, half replies and half receipts, 10 % of the items
repeats of earlier ones. They go through the daemon's own code, minus the network: the two queue
workers (``QueueWorker.poll``, running at once as in the daemon) decode each answer as the client
does, parse it, build the records and commit them with ``Intake.commit_until_durable`` into a real
SQLite file opened as the daemon opens it (``synchronous = FULL``); the file sink, run by the real
``SinkFleet`` and ``Drainer`` with its defaults (``fsync: batch``, 500 records a batch), appends
them. The clock stops once every record is committed and the sink has acknowledged the last one;
the output is then checked (every new record once, no repeat).

With ``--state postgresql`` the state is a PostgreSQL database instead, on a local server the
benchmark starts for itself (``initdb`` into the temp dir, ``fsync = on``, every commit with
``synchronous_commit = on``, as the daemon uses it); the server runs on every core, outside
``--cores``. The JSON keys are the same; ``synchronous`` says which durability was measured.

The whole run is repeated (three times by default, each on a fresh state and sink file) and the
median run is reported, with every run's rate beside it: on a shared virtual machine one run can
be 10 % off either way.

    .venv/bin/python bench/pipeline.py [--records 200000] [--runs 3] [--cores 1] [--dir DIR]
                                       [--state sqlite|postgresql] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: find bench._common

import anyio
import anyio.lowlevel
import orjson

from bench._common import (
    cpu_seconds,
    exit_on_sigterm,
    filesystem_of,
    machine,
    percentile,
    postgres_server,
    print_result,
    self_peak_rss_mb,
    temp_dir,
)
from tcsms_poller.config import Config, StateSettings, config_from_mapping
from tcsms_poller.daemon import build_client
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.logs import configure_logging
from tcsms_poller.metrics import Metrics
from tcsms_poller.records import Record, format_received_at, reply_record, send_status_record
from tcsms_poller.sinks.fleet import SinkFleet
from tcsms_poller.state import CommitResult, StateStore, open_state
from tcsms_poller.state.roles import Change, Fence
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.models import Page, RejectedItem, parse_replies, parse_send_statuses
from tcsms_poller.workers import PollStats, WorkerContext
from tcsms_poller.workers.queue import QueueWorker

APP_ID = "1400006666"
PAGE = 100  # items per answer, the API's maximum
REPEAT_SHARE = 0.10
TARGET_RECORDS_PER_S = 50_000.0
BUDGET_S = 240.0  # all runs together, so a stuck pipeline fails instead of hanging
FIRST_SECOND = 1_764_000_000  # 2025-11-24, the ReplyTime/UserReceiveTime of the first item
END_OF_QUEUE = b'{"Response":{"RequestId":"end"}}'  # no set: "nothing new"
Parse = Callable[[Mapping[str, Any]], Page[Any]]

_REPLY_TEXTS = ("好的收到", "TD", "Y", "请明天上午再联系我", "ok thanks", "退订")
_STATUSES = (("SUCCESS", "用户短信送达成功"),) * 19 + (("FAIL", "用户关机或停机"),)


# -- the input ----------------------------------------------------------------------------------


def reply_item(index: int) -> dict[str, Any]:
    """The ``PullSmsReplyStatusSet`` item number ``index``; distinct indexes, distinct replies."""
    subscriber = f"1{37 + index % 3}{(index * 7_919 + 1_234) % 100_000_000:08d}"
    return {
        "PhoneNumber": f"+86{subscriber}",
        "CountryCode": "86",
        "SubscriberNumber": subscriber,
        "SignName": "腾讯云",
        "ReplyContent": f"{_REPLY_TEXTS[index % len(_REPLY_TEXTS)]} #{index}",
        "ReplyTime": FIRST_SECOND + index // 50,
        "ExtendCode": "" if index % 4 else "01",
    }


def status_item(index: int) -> dict[str, Any]:
    """The ``PullSmsSendStatusSet`` item number ``index``; its SerialNo is unique."""
    subscriber = f"1{50 + index % 9}{(index * 104_729 + 99) % 100_000_000:08d}"
    status, description = _STATUSES[index % len(_STATUSES)]
    return {
        "SerialNo": f"2433:{328_240_000_000_000_000_000 + index * 7_919}",
        "PhoneNumber": f"+86{subscriber}",
        "CountryCode": "86",
        "SubscriberNumber": subscriber,
        "ReportStatus": status,
        "Description": description,
        "UserReceiveTime": FIRST_SECOND + index // 50,
        "SessionContext": None if index % 3 else f"order-{index}",
    }


def answer_bodies(
    key: str, make: Callable[[int], dict[str, Any]], total: int, rng: random.Random
) -> tuple[list[bytes], int]:
    """``total`` items as JSON answers of ``PAGE`` items, 10 % repeating an earlier item.

    Items are made from their index when a page is serialized, so only the bytes stay in memory.
    Returns the bodies and how many items are distinct.
    """
    repeats = set(rng.sample(range(1, total), int(total * REPEAT_SHARE))) if total > 1 else set()
    bodies: list[bytes] = []
    distinct = 0
    for start in range(0, total, PAGE):
        items = []
        for position in range(start, min(start + PAGE, total)):
            if position in repeats:
                items.append(make(rng.randrange(distinct)))  # seen on an earlier page or this one
            else:
                items.append(make(distinct))
                distinct += 1
        document = {"Response": {key: items, "RequestId": f"bench-{key}-{start // PAGE}"}}
        bodies.append(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    return bodies, distinct


@dataclass(frozen=True, slots=True)
class Input:
    """The answers of both queues, as the bytes the HTTP client would receive."""

    replies: list[bytes]
    statuses: list[bytes]
    records: int
    distinct: int

    @property
    def size_mb(self) -> float:
        return sum(map(len, self.replies + self.statuses)) / 2**20


def build_input(records: int, seed: int) -> Input:
    """Half replies, half receipts (deterministic for a seed)."""
    rng = random.Random(seed)
    reply_count = records // 2
    replies, distinct_replies = answer_bodies("PullSmsReplyStatusSet", reply_item, reply_count, rng)
    statuses, distinct_statuses = answer_bodies(
        "PullSmsSendStatusSet", status_item, records - reply_count, rng
    )
    return Input(replies, statuses, records, distinct_replies + distinct_statuses)


def answers(bodies: Sequence[bytes], parse: Parse) -> Callable[[str], Awaitable[Page[Any]]]:
    """A queue puller that hands out ``bodies`` in order, then an empty page, as the API would."""
    queue = iter(bodies)

    async def pull(app_id: str) -> Page[Any]:
        await anyio.lowlevel.checkpoint()  # awaiting an HTTP answer lets the other tasks run
        body = next(queue, END_OF_QUEUE)
        return parse(orjson.loads(body)["Response"])  # what TencentClient does with the body

    return pull


# -- the run ------------------------------------------------------------------------------------


class TimedIntake(Intake):
    """The daemon's ``Intake``, timing each commit (one page, one transaction)."""

    def __init__(self, store: StateStore, metrics: Metrics) -> None:
        super().__init__(store, metrics)
        self.seconds: list[float] = []

    async def commit(
        self,
        records: Sequence[Record],
        *,
        source: str,
        rejected: Sequence[RejectedItem] = (),
        also: Change | None = None,
        fence: Fence | None = None,
    ) -> CommitResult:
        started = time.perf_counter()
        result = await super().commit(
            records, source=source, rejected=rejected, also=also, fence=fence
        )
        self.seconds.append(time.perf_counter() - started)
        return result


@dataclass(slots=True)
class Outcome:
    """What one run measured."""

    wall_s: float = 0.0
    committed_s: float = 0.0
    cpu_s: float = 0.0
    stats: PollStats = field(default_factory=PollStats)
    commit_s: list[float] = field(default_factory=list)
    drained: bool = False
    acked_seq: int = 0
    head: int = 0


def bench_config(workdir: Path, url: str | None = None) -> Config:
    """The daemon's defaults, with the state (or only dead letters: ``url``) and a file sink in
    ``workdir``.

    A daemon refuses a file sink with ``state.url`` (any instance of a cluster may drain it);
    this one process drains its own, so the URL is set after the configuration is checked."""
    config = config_from_mapping(
        {
            "tencent": {
                "secret_id": "AKIDBENCHMARK",
                "secret_key": "bench-secret-key",
                "endpoint": "http://127.0.0.1:9",  # never called: the answers are pre-built
            },
            "apps": [{"sms_sdk_app_id": APP_ID}],
            "state": {"path": str(workdir / "state.db")},
            "sinks": [{"type": "file", "path": str(workdir / "records.jsonl")}],
        },
        source="bench/pipeline.py",
        base_dir=workdir,
    )
    if url is None:
        return config
    state = StateSettings.model_validate({"path": str(workdir / "state.db"), "url": url})
    return config.model_copy(update={"state": state})


async def run_pipeline(data: Input, config: Config, budget: float) -> Outcome:
    """Both queue workers through the whole input, then drain the sink; see the docstring."""
    outcome = Outcome()
    metrics, board = Metrics(), HealthBoard()
    store = await open_state(config.state)
    client = build_client(config, metrics)  # the context wants one; the pullers replace it
    try:
        intake = TimedIntake(store, metrics)
        ctx = WorkerContext(
            client=client,
            store=store,
            intake=intake,
            metrics=metrics,
            board=board,
            stopping=anyio.Event(),
        )
        workers = [
            QueueWorker(
                ctx,
                kind="replies",
                action=Action.PULL_SMS_REPLY_STATUS,
                app_id=APP_ID,
                interval=2.0,
                pull=answers(data.replies, parse_replies),
                normalize=reply_record,
            ),
            QueueWorker(
                ctx,
                kind="send_status",
                action=Action.PULL_SMS_SEND_STATUS,
                app_id=APP_ID,
                interval=2.0,
                pull=answers(data.statuses, parse_send_statuses),
                normalize=send_status_record,
            ),
        ]
        fleet = SinkFleet(store=store, metrics=metrics, board=board, state_dir=store_dir(config))

        async def drain_queue(worker: QueueWorker) -> None:
            stats = await worker.poll()  # pulls until a short page: the end of the input
            for name in ("requests", "fetched", "new", "duplicates", "rejected"):
                setattr(outcome.stats, name, getattr(outcome.stats, name) + getattr(stats, name))

        with anyio.fail_after(budget):
            async with anyio.create_task_group() as tg:
                await tg.start(fleet.run, config.sinks)
                started, cpu_started = time.perf_counter(), cpu_seconds()
                async with anyio.create_task_group() as pollers:
                    for worker in workers:
                        pollers.start_soon(drain_queue, worker)
                outcome.committed_s = time.perf_counter() - started
                outcome.drained = await fleet.drain(budget)
                outcome.wall_s = time.perf_counter() - started
                outcome.cpu_s = cpu_seconds() - cpu_started
        outcome.commit_s = intake.seconds
        outcome.acked_seq = (await store.sink_cursor(config.sinks[0].sink_name)).acked_seq
        outcome.head = store.head
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
            await store.aclose()
    return outcome


def store_dir(config: Config) -> Path:
    """Where the daemon keeps dead letters: beside the state file."""
    return config.state.path.parent


# -- checks and figures -------------------------------------------------------------------------


def check_output(path: Path, data: Input, outcome: Outcome) -> list[str]:
    """What is wrong with the run's result (nothing, normally)."""
    problems = []
    if not outcome.drained or outcome.acked_seq != outcome.head:
        problems.append(f"sink acknowledged {outcome.acked_seq} of {outcome.head} records")
    if outcome.stats.fetched != data.records:
        problems.append(f"workers fetched {outcome.stats.fetched} of {data.records} items")
    if outcome.stats.new != data.distinct:
        problems.append(f"{outcome.stats.new} records were new, expected {data.distinct}")
    ids: set[str] = set()
    lines = 0
    with path.open("rb") as lines_file:
        for line in lines_file:
            lines += 1
            ids.add(json.loads(line)["id"])
    if lines != data.distinct or len(ids) != data.distinct:
        problems.append(f"file has {lines} lines, {len(ids)} ids; expected {data.distinct} each")
    return problems


def stage_costs(data: Input) -> dict[str, float]:
    """Microseconds per record of the CPU-bound steps, each timed alone on the same input."""
    totals = dict.fromkeys(("decode", "parse", "normalize", "to_json"), 0.0)
    clock = time.perf_counter
    received_at = format_received_at(time.time())
    kinds: tuple[tuple[list[bytes], Parse, Callable[..., Record], str], ...] = (
        (data.replies, parse_replies, reply_record, Action.PULL_SMS_REPLY_STATUS),
        (data.statuses, parse_send_statuses, send_status_record, Action.PULL_SMS_SEND_STATUS),
    )
    for bodies, parse, normalize, source in kinds:
        for body in bodies:
            t0 = clock()
            response = orjson.loads(body)["Response"]
            t1 = clock()
            page = parse(response)
            t2 = clock()
            records = [
                normalize(APP_ID, item, source=source, received_at=received_at)
                for item in page.items
            ]
            t3 = clock()
            for record in records:
                record.to_json()
            t4 = clock()
            totals["decode"] += t1 - t0
            totals["parse"] += t2 - t1
            totals["normalize"] += t3 - t2
            totals["to_json"] += t4 - t3
    return {name: round(seconds * 1e6 / data.records, 2) for name, seconds in totals.items()}


def pin_to_cores(count: int) -> list[int]:
    """Run this process (and the threads it starts later) on ``count`` CPUs; 0 leaves it free."""
    available = sorted(os.sched_getaffinity(0))
    if count <= 0 or count >= len(available):
        return available
    chosen = available[:count]
    os.sched_setaffinity(0, chosen)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=200_000, help="items in (default 200000)")
    parser.add_argument("--cores", type=int, default=1, help="CPUs to run on; 0: all (default 1)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the event loop thread")
    parser.add_argument(
        "--state", choices=("sqlite", "postgresql"), default="sqlite", help="the state backend"
    )
    args = parser.parse_args(argv)
    if args.records < 1 or args.runs < 1:
        parser.error("--records and --runs must be at least 1")
    exit_on_sigterm()
    with postgres_server(args.state, args.dir) as new_database:  # before pinning: free cores
        return measure(args, new_database)


def measure(args: argparse.Namespace, new_database: Callable[[], str] | None) -> int:
    """The runs and the figures; see the module docstring."""
    cores = pin_to_cores(args.cores)  # before any thread exists, so all of them inherit it
    configure_logging(level="warning", fmt="json", stream=sys.stderr)

    built = time.perf_counter()
    data = build_input(args.records, args.seed)
    build_s = time.perf_counter() - built
    rss_before_mb = self_peak_rss_mb()
    profiler = cProfile.Profile() if args.profile else None
    runs: list[tuple[Outcome, list[str]]] = []
    for _ in range(args.runs):
        with temp_dir("tcsms-bench-pipeline-", args.dir) as workdir:
            config = bench_config(workdir, new_database() if new_database else None)
            if profiler is not None:
                profiler.enable()
            run = anyio.run(run_pipeline, data, config, BUDGET_S / args.runs, backend="asyncio")
            if profiler is not None:
                profiler.disable()
            if not runs:  # the process's peak only grows: later runs would count the checks
                peak_rss_mb = self_peak_rss_mb()
            runs.append((run, check_output(workdir / "records.jsonl", data, run)))
            filesystem = filesystem_of(workdir)
    by_speed = sorted(runs, key=lambda run: run[0].wall_s)
    outcome = by_speed[len(by_speed) // 2][0]  # the median run
    problems = [problem for _, found in runs for problem in found]  # any run's are the result's
    stages = stage_costs(data)
    if profiler is not None:
        print("-- cProfile of the event loop thread, by own time --", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)

    records_per_s = data.records / outcome.wall_s
    cpu_s_per_100k = outcome.cpu_s * 100_000 / data.records
    commit_ms = [seconds * 1000 for seconds in outcome.commit_s]
    figures: dict[str, Any] = {
        "benchmark": "pipeline",
        "records_per_s": round(records_per_s),
        "runs_records_per_s": [round(data.records / run.wall_s) for run, _ in runs],
        "cpu_s_per_100k": round(cpu_s_per_100k, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "target_met": {"records_per_s": records_per_s >= TARGET_RECORDS_PER_S},
        "verified": not problems,
        "records": data.records,
        "new": outcome.stats.new,
        "duplicates": outcome.stats.duplicates,
        "pages": outcome.stats.requests,
        "wall_s": round(outcome.wall_s, 3),
        "committed_s": round(outcome.committed_s, 3),
        "cpu_s": round(outcome.cpu_s, 3),
        "cpu_utilization": round(outcome.cpu_s / outcome.wall_s, 2),
        "cores": len(cores),
        "commit_ms_p50": round(percentile(commit_ms, 0.50), 3),
        "commit_ms_p90": round(percentile(commit_ms, 0.90), 3),
        "commit_ms_p99": round(percentile(commit_ms, 0.99), 3),
        "commit_ms_max": round(max(commit_ms, default=0.0), 3),
        "stage_us_per_record": stages,
        "input_mb": round(data.size_mb, 1),
        "rss_before_run_mb": round(rss_before_mb, 1),
        "synchronous": "FULL" if new_database is None else "synchronous_commit=on",
        "sink_fsync": "batch",
        "filesystem": filesystem,
        "profiled": bool(profiler),
        "machine": machine(),
    }
    accounted = sum(stages.values())
    summary = [
        f"pipeline: {data.records:,} API items ({data.distinct:,} distinct, "
        f"{data.records - data.distinct:,} repeats) in {outcome.stats.requests:,} pages, "
        f"{args.state} state, sink file on {filesystem}, {len(cores)} core(s)"
        + (" [cProfile on: slower]" if profiler else ""),
        f"  end to end      {outcome.wall_s:8.2f} s  {records_per_s:10,.0f} records/s  "
        f"(target >= {TARGET_RECORDS_PER_S:,.0f}: "
        f"{'met' if figures['target_met']['records_per_s'] else 'MISSED'}), the median of "
        f"{len(runs)} runs: {', '.join(f'{rate:,}' for rate in figures['runs_records_per_s'])}",
        f"  all committed   {outcome.committed_s:8.2f} s  (then the sink drained the rest)",
        f"  CPU             {outcome.cpu_s:8.2f} s  {cpu_s_per_100k:.2f} s per 100k records, "
        f"{outcome.cpu_s / outcome.wall_s:.2f} cores busy",
        f"  commit per page p50 {figures['commit_ms_p50']} ms, p90 {figures['commit_ms_p90']} ms,"
        f" p99 {figures['commit_ms_p99']} ms, max {figures['commit_ms_max']} ms "
        f"({len(commit_ms)} commits)",
        f"  CPU steps alone {', '.join(f'{k} {v} µs' for k, v in stages.items())} per record "
        f"(sum {accounted:.1f} µs of {outcome.cpu_s * 1e6 / data.records:.1f} µs)",
        f"  peak RSS        {peak_rss_mb:8.1f} MB  (first run; before it {rss_before_mb:.1f} MB, "
        f"of which the input answers {data.size_mb:.1f} MB; built in {build_s:.1f} s)",
        "  output          " + ("verified" if not problems else "WRONG: " + "; ".join(problems)),
    ]
    print_result(summary, figures)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
