"""Queue workers on an account where Tencent has not activated the action, and its activation.

Real parts: the emulator over loopback (refusing the action, then activating it live through
its control endpoint), our client, the SQLite state in a temp dir, the worker's own run loop.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest

from tcsms_poller.backoff import Backoff
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    NOT_ACTIVATED_CODES,
    EmulatorOptions,
    Fault,
    FaultKind,
    RunningEmulator,
    run_emulator,
)
from tcsms_poller.tencent.client import RetryPolicy
from tcsms_poller.workers import NextCycle, WorkerContext, poll_cycle, run_worker
from tcsms_poller.workers.queue import QueueWorker, replies_worker, send_status_worker
from tests.support.emulator import control
from tests.support.log_capture import captured_logs, json_lines
from tests.support.waiting import wait_until
from tests.workers.support import committed, worker_context

pytestmark = pytest.mark.anyio

ACTION = "PullSmsReplyStatus"
STATUS = "PullSmsSendStatus"
NUMBER = "+8613711112222"
RECHECK = 0.3  # seconds between re-checks here; an hour in the daemon


def refused(emulator: RunningEmulator) -> int:
    """How many pulls of the action the emulator refused so far."""
    stats = emulator.state.stats_snapshot()["actions"].get(ACTION, {})
    return sum(stats.get("errors", {}).values())


def not_activated_gauge(ctx: WorkerContext, worker: QueueWorker) -> float | None:
    return ctx.metrics.registry.get_sample_value(
        "tcsms_poller_worker_not_activated", {"worker": worker.name}
    )


@pytest.mark.parametrize("code", NOT_ACTIVATED_CODES)
async def test_a_queue_action_not_activated_idles_healthy_and_starts_once_activated(
    tmp_path: Path, code: str
) -> None:
    """Refused as not activated: healthy with a note, one warning, a re-check every period;
    activated live: the next re-check pulls, the note goes, the reply arrives."""
    options = EmulatorOptions(seed=11, inactive={ACTION: code})
    async with (
        run_emulator(options) as emulator,
        worker_context(tmp_path, emulator, not_activated_recheck=RECHECK) as ctx,
    ):
        worker = replies_worker(ctx, DEFAULT_APP_ID, interval=0.05)
        with captured_logs(level="debug") as out, anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(run_worker, worker, ctx))
                await wait_until(lambda: refused(emulator) >= 3, what="three refused pulls")
                assert worker.health.is_healthy
                assert ctx.board.is_healthy
                assert worker.health.note is not None
                assert "not activated" in worker.health.note
                assert not_activated_gauge(ctx, worker) == 1

                await control(emulator, "activation", {"inactive": {}})
                injected = {"phone_number": NUMBER, "reply_content": "Y"}
                await control(emulator, "records", {"replies": [injected]})
                records = await committed(ctx)
                while not records:  # the next re-check pulls it
                    await anyio.sleep(0.05)
                    records = await committed(ctx)
                ctx.stopping.set()
        assert [r["reply_content"] for r in records] == ["Y"]
        assert worker.health.note is None
        assert not_activated_gauge(ctx, worker) == 0
        assert refused(emulator) >= 3
    events = [e["event"] for e in json_lines(out)]
    assert events.count("queue.not_activated") == 1
    assert events.count("queue.still_not_activated") >= 2
    assert events.count("queue.activated") == 1
    warning = next(e for e in json_lines(out) if e["event"] == "queue.not_activated")
    assert warning["code"] == code
    assert "SMS Helper" in warning["fix"]
    assert "replies.enabled: false" in warning["fix"]


async def test_a_refusal_documented_for_another_cause_still_fails_the_worker(
    tmp_path: Path,
) -> None:
    """An app of another account (``SmsSdkAppIdVerifyFail``) is a mistake to fix: unhealthy."""
    async with (
        run_emulator(EmulatorOptions(seed=11)) as emulator,
        worker_context(tmp_path, emulator) as ctx,
    ):
        worker = replies_worker(ctx, "1400000000", interval=1.0)
        next_cycle = await poll_cycle(worker, ctx)
    assert not worker.health.is_healthy
    assert worker.health.reason is not None
    assert "SmsSdkAppIdVerifyFail" in worker.health.reason
    assert worker.health.note is None
    assert next_cycle == NextCycle(wait=ctx.unhealthy_retry)


async def test_answers_lost_in_flight_are_counted_and_everything_else_arrives_once(
    tmp_path: Path,
) -> None:
    """Pulls whose answer breaks after the queue handed records out (truncated, or later than
    the queue timeout): each such answer is counted lost, exactly the records in them are
    missing, and every other record is committed once."""
    total = 1000
    faults = (
        Fault(action=STATUS, kind=FaultKind.LOST_TRUNCATED, probability=0.3),
        Fault(action=STATUS, kind=FaultKind.LOST_TIMEOUT, probability=0.2, seconds=5.0),
    )
    retry = RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.01, maximum=0.01))
    async with (
        run_emulator(EmulatorOptions(seed=13, faults=faults)) as emulator,
        worker_context(tmp_path, emulator, retry=retry, queue_timeout=0.5) as ctx,
    ):
        receipts = [{"phone_number": NUMBER, "serial_no": f"5000:{i}"} for i in range(total)]
        await control(emulator, "records", {"send_statuses": receipts})
        worker = send_status_worker(ctx, DEFAULT_APP_ID, interval=1.0)
        with captured_logs() as out, anyio.fail_after(120):
            while any(
                s["handed_out_at"] is None
                for s in (await control(emulator, "truth"))["send_statuses"]
            ):
                await poll_cycle(worker, ctx)
        delivered = [r["serial_no"] for r in await committed(ctx)]
        stats = emulator.state.stats_snapshot()["actions"][STATUS]
        lost_answers = ctx.metrics.registry.get_sample_value(
            "tcsms_poller_queue_answers_lost_total",
            {"action": STATUS, "app_id": DEFAULT_APP_ID},
        )
    struck = stats["faults"].get("lost_truncated", 0) + stats["faults"].get("lost_timeout", 0)
    assert stats["faults"].get("lost_truncated", 0) >= 1
    assert stats["faults"].get("lost_timeout", 0) >= 1
    assert lost_answers == struck
    assert stats["lost_items"] >= 1
    assert len(delivered) == len(set(delivered)) == total - stats["lost_items"]
    assert set(delivered) <= {r["serial_no"] for r in receipts}
    warnings = [e for e in json_lines(out) if e["event"] == "tencent.queue_answer_lost"]
    # Identical warnings within the log throttle's interval are one line; the metric counts all.
    assert 1 <= len(warnings) <= struck
