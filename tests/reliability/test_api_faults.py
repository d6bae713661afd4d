"""The running daemon against a flaky Tencent API: 5xx, timeouts, garbage and rate-limit bursts.

Transient failures must be retried until every record arrives once, and ``/healthz`` must say
when a worker cannot get through (and stop saying it once the API answers again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, Fault, FaultKind, RunningEmulator, run_emulator
from tests.support.daemon_process import APP, daemon_config, running_daemon
from tests.support.emulator import emulator_truth, set_faults
from tests.support.jsonl import ids_in
from tests.support.ports import free_port
from tests.support.reliability import NUMBERS, HealthProbe, listener, live_traffic, reason_of
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# Seconds the emulator holds a timed-out request: well past the daemon's 1 s client timeout.
HELD = 3.0
FLAKY = (
    Fault(kind=FaultKind.HTTP_ERROR, probability=0.10, status=503),
    Fault(kind=FaultKind.TIMEOUT, probability=0.05, seconds=HELD),
    Fault(kind=FaultKind.MALFORMED, probability=0.02),
    # A burst: this request and every one of its action for the next half second.
    Fault(kind=FaultKind.RATE_LIMIT, probability=0.02, seconds=0.5),
)
# How often each kind must have struck before the traffic stops, so the run saw all of them.
MIN_STRIKES = {"http_error": 5, "timeout": 3, "malformed": 1, "rate_limit": 1}
WORKERS = (f"replies:{APP}", f"send_status:{APP}", f"by_number:{APP}")


@pytest.fixture
async def flaky_emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator whose every action fails now and then, in a seeded pattern."""
    async with run_emulator(EmulatorOptions(seed=11, faults=FLAKY)) as running:
        yield running


def strikes(emulator: RunningEmulator) -> Counter[str]:
    """How often each fault kind has struck so far, over every action."""
    total: Counter[str] = Counter()
    for action in emulator.state.stats_snapshot()["actions"].values():
        total.update(action["faults"])
    return total


def flaky_config(emulator: RunningEmulator, tmp_path: Path, port: int) -> dict[str, Any]:
    """Queue and per-number pulls with 1 s client timeouts and the listener on ``port``."""
    return daemon_config(
        emulator.url,
        tmp_path,
        # These faults strike before the action: a short queue timeout loses nothing here.
        tencent={"timeout": "1s", "queue_timeout": "1s"},
        app={"by_number": {"numbers": list(NUMBERS[:2]), "interval": "1s", "replies": True}},
        server=listener(port),
    )


async def test_flaky_api_under_live_traffic_delivers_every_record_once(
    tmp_path: Path, flaky_emulator: RunningEmulator
) -> None:
    """Every fault kind strikes while records arrive; retries still deliver each one once."""
    output = tmp_path / "records.jsonl"
    config = flaky_config(flaky_emulator, tmp_path, free_port())
    async with running_daemon(tmp_path, config) as daemon:
        async with live_traffic(flaky_emulator, seed=1) as traffic:
            await wait_until(
                lambda: all(strikes(flaky_emulator)[k] >= n for k, n in MIN_STRIKES.items()),
                timeout=90,
                what=f"every fault kind to strike (so far {dict(strikes(flaky_emulator))})",
            )
        expected = await emulator_truth(flaky_emulator)
        assert traffic.batches >= 10
        assert len(expected) >= 100
        await wait_until(lambda: set(ids_in(output)) >= expected, timeout=90, what="every record")
        assert daemon.process.poll() is None, "the daemon died under faults"
        await daemon.stop()
    delivered = ids_in(output)
    assert set(delivered) == expected
    assert Counter(delivered).most_common(1)[0][1] == 1, "a record was delivered twice"
    retried = Counter(event["code"] for event in daemon.events("tencent.retry_scheduled"))
    assert {"HTTP503", "Timeout", "MalformedResponse", "RequestLimitExceeded"} <= set(retried)


async def test_healthz_names_the_workers_an_outage_stops_and_clears_after_it(
    tmp_path: Path, flaky_emulator: RunningEmulator
) -> None:
    """A total outage at runtime turns /healthz 503 with the HTTP status; its end turns it 200."""
    port = free_port()
    output = tmp_path / "records.jsonl"
    config = flaky_config(flaky_emulator, tmp_path, port)
    async with (
        running_daemon(tmp_path, config) as daemon,
        httpx.AsyncClient() as client,
    ):
        health = HealthProbe(client, port)
        await set_faults(flaky_emulator, [{"kind": "http_error", "probability": 1.0}])
        body = await health.wait_for(503, unhealthy=WORKERS)
        for worker in WORKERS:
            assert "HTTP503" in reason_of(body, worker), body
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert f'tcsms_poller_worker_healthy{{worker="replies:{APP}"}} 0.0' in metrics

        await set_faults(flaky_emulator, [])
        body = await health.wait_for(200)
        assert body["unhealthy"] == []
        async with live_traffic(flaky_emulator, seed=2) as traffic:
            await wait_until(lambda: traffic.batches >= 3, what="some traffic")
        expected = await emulator_truth(flaky_emulator)
        await wait_until(lambda: set(ids_in(output)) >= expected, what="the later records")
        await daemon.stop()
    assert sorted(ids_in(output)) == sorted(expected)
