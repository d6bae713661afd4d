"""A pulled queue page whose commit fails for a reason other than the database is kept.

Real parts: the emulator over loopback, our client, the SQLite state in a temp dir. The fault is
injected into the commit path (an ``Intake`` whose first commits raise ``OverflowError``, as a
value too large for SQLite's integers would), since nothing on the wire can cause it on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller.backoff import Backoff
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_RATE_LIMITS,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    run_emulator,
)
from tcsms_poller.health import HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.records import Record
from tcsms_poller.state import CommitResult
from tcsms_poller.state.store import SqliteStore
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.ratelimit import RateLimiters
from tcsms_poller.workers import WorkerContext, poll_cycle
from tcsms_poller.workers.queue import replies_worker
from tests.support.emulator import inject, replies, request_counts
from tests.support.log_capture import captured_logs, json_lines

pytestmark = pytest.mark.anyio
ACTION = "PullSmsReplyStatus"


class FaultyIntake(Intake):
    """Commits like ``Intake`` once its first ``failures`` attempts have raised."""

    def __init__(self, *args: Any, failures: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures
        self.failed = anyio.Event()

    async def commit(self, records: Sequence[Record], **kwargs: Any) -> CommitResult:
        if self.failures:
            self.failures -= 1
            self.failed.set()
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return await super().commit(records, **kwargs)


async def test_a_non_database_error_in_commit_keeps_the_page_and_pulls_nothing_more(
    tmp_path: Path,
) -> None:
    """The page is retried until it commits, the worker is unhealthy naming the error meanwhile,
    and the queue is not pulled again before the page is in the outbox."""
    async with run_emulator(EmulatorOptions(seed=4)) as emulator:
        await inject(emulator, replies=replies(7))
        metrics = Metrics()
        store = await SqliteStore.open(tmp_path / "state.db", dedupe_ttl=8 * 86_400.0)
        intake = FaultyIntake(store, metrics, failures=2)
        client = TencentClient(
            endpoint=emulator.url,
            region="ap-guangzhou",
            credentials=Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY),
            limiters=RateLimiters(DEFAULT_RATE_LIMITS),
            metrics=metrics,
            retry=RetryPolicy(max_attempts=1, backoff=Backoff(initial=0.01, maximum=0.01)),
        )
        async with client:
            ctx = WorkerContext(
                client=client,
                store=store,
                intake=intake,
                metrics=metrics,
                board=HealthBoard(),
                stopping=anyio.Event(),
            )
            worker = replies_worker(ctx, DEFAULT_APP_ID, interval=60.0)
            with captured_logs() as out, anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(poll_cycle, worker, ctx)
                    await intake.failed.wait()
                    assert not worker.health.is_healthy
                    assert "OverflowError" in (worker.health.reason or "")
                    assert store.head == 0
                # The cycle ended: the page was committed on a later attempt.
                assert intake.failures == 0
                assert store.head == 7
                assert request_counts(emulator, ACTION)[0] == 1
                await poll_cycle(worker, ctx)  # the next cycle finds the queue empty
                assert worker.health.is_healthy
        await store.aclose()
    failures = [line for line in json_lines(out) if line["event"] == "state.commit_failed"]
    assert [line["attempt"] for line in failures] == [0, 1]
    assert "OverflowError" in failures[0]["exception"]
    assert "exception" not in failures[1]
    assert not [line for line in json_lines(out) if line["event"] == "poll.crashed"]
