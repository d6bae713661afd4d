"""The daemon on an account where Tencent has not activated ``PullSmsReplyStatus``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator
from tests.support.daemon_process import APP, daemon_config, running_daemon
from tests.support.jsonl import ids_in
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

TOKEN = "activation-token-0123456789"
ACTION = "PullSmsReplyStatus"


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """An account with every action but ``PullSmsReplyStatus`` activated."""
    return EmulatorOptions(seed=7, inactive={ACTION: "UnsupportedOperation"})


def refused(emulator: RunningEmulator) -> int:
    stats = emulator.state.stats_snapshot()["actions"].get(ACTION, {})
    return int(stats.get("errors", {}).get("UnsupportedOperation", 0))


async def test_a_queue_action_not_activated_keeps_the_daemon_healthy(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """/healthz stays 200 with a note on the idle worker, the other workers deliver, one
    warning is logged, and the refused action is not asked again within the hour."""
    port = free_port()
    server: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "token": TOKEN,
        "callback_secret": "activation-callback-0123456789",
    }
    config = daemon_config(emulator.url, tmp_path, server=server)
    base = f"http://127.0.0.1:{port}"
    async with running_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
        await wait_until(lambda: refused(emulator) >= 1, what="a refused PullSmsReplyStatus")
        receipt = {"phone_number": "+8613711112222", "serial_no": "5000:activation"}
        injected = await client.post(
            f"{emulator.url}/_emulator/records", json={"send_statuses": [receipt]}
        )
        injected.raise_for_status()
        sink = tmp_path / "records.jsonl"
        await wait_until(lambda: "5000:activation" in ids_in(sink), what="the receipt delivered")
        health = await client.get(f"{base}/healthz")
        metrics = (await client.get(f"{base}/metrics")).text
        cycles = len(
            [e for e in daemon.events("poll.completed") if e.get("worker") == f"send_status:{APP}"]
        )
        await daemon.stop()
    assert health.status_code == 200, health.text
    [part] = [p for p in health.json()["parts"] if p["name"] == f"replies:{APP}"]
    assert part["healthy"] is True
    assert "not activated" in part["note"]
    assert f'tcsms_poller_worker_not_activated{{worker="replies:{APP}"}} 1.0' in metrics
    assert cycles >= 2  # the other queue worker kept polling meanwhile
    warnings = daemon.events("queue.not_activated")
    assert len(warnings) == 1
    assert warnings[0]["recheck_in_s"] == 3600
    assert refused(emulator) == 1
