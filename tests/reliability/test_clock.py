"""Tencent's clock runs 10 minutes ahead of ours: every signature is refused as expired.

The operator must be told plainly that the local clock is off (in the log, ``/healthz`` and
``tcsms-poller status``), the daemon must stay up, and it must pick up where it left off as soon
as the clocks agree again, without losing or repeating a record.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator
from tests.support.daemon_process import APP, daemon_config, running_daemon
from tests.support.emulator import emulator_truth
from tests.support.jsonl import ids_in
from tests.support.ports import free_port
from tests.support.reliability import HealthProbe, listener, live_traffic, reason_of
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SKEW = 600.0  # twice the ±300 s a signature may be off by
# The daemon's own words, not the emulator's (Tencent's message need not mention any clock).
NAMES_OUR_CLOCK = re.compile(r"\b(system|local) clock\b")
WORKERS = (f"replies:{APP}", f"send_status:{APP}")


class SkewableClock:
    """A wall clock ``offset`` seconds ahead of this machine's."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> SkewableClock:
    return SkewableClock()


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions(seed=13)


@pytest.fixture
def emulator_clock(clock: SkewableClock) -> SkewableClock:
    """The emulator runs on the skewable clock."""
    return clock


async def status_text(config_path: Path) -> str:
    """What ``tcsms-poller status`` prints beside the running daemon."""
    result = await anyio.run_process(
        [sys.executable, "-m", "tcsms_poller", "status", "-c", str(config_path)],
        stderr=subprocess.STDOUT,
    )
    return result.stdout.decode()


async def test_a_skewed_clock_is_named_and_recovered_from(
    tmp_path: Path, emulator: RunningEmulator, clock: SkewableClock
) -> None:
    """Expired signatures name the clock everywhere; once it agrees, every record comes once."""
    port = free_port()
    output = tmp_path / "records.jsonl"
    config = daemon_config(emulator.url, tmp_path, server=listener(port))
    async with running_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
        health = HealthProbe(client, port)
        async with live_traffic(emulator, seed=5) as traffic:
            await wait_until(lambda: len(ids_in(output)) >= 20, what="records before the skew")

            clock.offset = SKEW
            body = await health.wait_for(503, unhealthy=WORKERS)
            for worker in WORKERS:
                reason = reason_of(body, worker)
                assert "AuthFailure.SignatureExpire" in reason, reason
                assert NAMES_OUR_CLOCK.search(reason), reason
            await wait_until(
                lambda: len(daemon.events("poll.failed")) >= 2 * len(WORKERS),
                what="slow retries of the refused pulls",
            )
            status = await status_text(tmp_path / "config.yaml")
            assert f"replies:{APP}: UNHEALTHY" in status, status
            assert NAMES_OUR_CLOCK.search(status), status
            batches = traffic.batches
            await wait_until(lambda: traffic.batches >= batches + 5, what="traffic during skew")
            assert daemon.process.poll() is None, "the daemon died of a skewed clock"

            clock.offset = 0.0
            await health.wait_for(200)
        expected = await emulator_truth(emulator)
        await wait_until(lambda: set(ids_in(output)) >= expected, what="every record")
        await daemon.stop()
    delivered = ids_in(output)
    assert set(delivered) == expected
    assert Counter(delivered).most_common(1)[0][1] == 1, "a record was delivered twice"
    failures = daemon.events("poll.failed")
    assert failures
    assert all(event["level"] == "error" for event in failures)
    assert all(event["code"] == "AuthFailure.SignatureExpire" for event in failures)
    assert all(NAMES_OUR_CLOCK.search(event["error"]) for event in failures)
