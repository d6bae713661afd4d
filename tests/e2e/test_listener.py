"""The listener in the running daemon: pushes beside pulls, health, queued conversions."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, PushOptions, RunningEmulator, run_emulator
from tests.e2e.conftest import expected_ids, free_port, ids_in, read_jsonl, truth, wait_until
from tests.e2e.daemon_process import APP, SECRET_ID, SECRET_KEY, daemon_config, running_daemon
from tests.e2e.test_pipeline import inject, receipts, replies

pytestmark = pytest.mark.anyio
TOKEN = "listener-token-0123456789"
CALLBACK = "callback-secret-0123456789"


def server(port: int) -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{port}", "token": TOKEN, "callback_secret": CALLBACK}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def pushing_emulator(port: int) -> AsyncIterator[RunningEmulator]:
    base = f"http://127.0.0.1:{port}/callback/{CALLBACK}"
    push = PushOptions(status_url=f"{base}/status", reply_url=f"{base}/reply", interval=0.2)
    async with run_emulator(EmulatorOptions(seed=3, push=push)) as running:
        yield running


async def test_pushed_and_pulled_copies_reach_the_sink_once(
    tmp_path: Path, pushing_emulator: RunningEmulator, port: int
) -> None:
    output = tmp_path / "records.jsonl"
    config = daemon_config(pushing_emulator.url, tmp_path, server=server(port))
    async with running_daemon(tmp_path, config) as daemon:
        await inject(pushing_emulator, send_statuses=receipts(120), replies=replies(10), push=True)
        expected = expected_ids(await truth(pushing_emulator))
        await wait_until(lambda: set(ids_in(output)) == expected, what="every record")

        def pushes_settled() -> bool:
            stats = pushing_emulator.state.stats_snapshot()["push"].values()
            return all(kind["pushes"] == kind["delivered"] + kind["given_up"] for kind in stats)

        await wait_until(pushes_settled, what="the pusher to finish")
        await daemon.stop()
    push = pushing_emulator.state.stats_snapshot()["push"]
    delivered = ids_in(output)
    assert Counter(delivered).most_common(1)[0][1] == 1
    sources = Counter(record["source"] for record in read_jsonl(output))
    assert sources["callback"] > 0  # some arrived by push first,
    assert sources["PullSmsSendStatus"] + sources["PullSmsReplyStatus"] > 0  # some by pull
    assert push["status"]["delivered"] > 0, push
    assert push["reply"]["delivered"] > 0, push


async def test_healthz_follows_an_auth_failure_and_its_repair(
    tmp_path: Path, emulator: RunningEmulator, port: int
) -> None:
    config = daemon_config(emulator.url, tmp_path, server=server(port))
    healthz = f"http://127.0.0.1:{port}/healthz"
    async with running_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
        assert (await client.get(healthz)).status_code == 200
        emulator.state.secrets[SECRET_ID] = "rotated-key-the-daemon-does-not-know"
        status: dict[str, Any] = {}

        async def poll() -> None:
            response = await client.get(healthz)
            status.update(code=response.status_code, body=response.json())

        async def until(code: int, *, unhealthy: str | None = None) -> None:
            """Poll until ``code``, naming ``unhealthy`` (each worker fails on its own poll)."""
            for _ in range(600):
                await poll()
                named = unhealthy is None or unhealthy in status["body"]["unhealthy"]
                if status["code"] == code and named:
                    return
            raise AssertionError(f"healthz never answered {code}: {status}")

        await until(503, unhealthy=f"replies:{APP}")
        reasons = str(status["body"])
        assert "AuthFailure.SignatureFailure" in reasons
        assert f"replies:{APP}" in status["body"]["unhealthy"]
        emulator.state.secrets[SECRET_ID] = SECRET_KEY
        await until(200)
        await daemon.stop()
    failures = daemon.events("poll.failed")
    assert failures
    assert all(event["level"] == "error" for event in failures)
    assert SECRET_KEY not in daemon.log_path.read_text()


async def test_queued_conversions_survive_a_restart(
    tmp_path: Path, emulator: RunningEmulator, port: int
) -> None:
    await inject(emulator, send_statuses=receipts(1))
    serial_no = (await truth(emulator))["send_statuses"][0]["serial_no"]
    async with httpx.AsyncClient() as client:
        fault = {"action": "ReportConversion", "kind": "internal_error", "probability": 1.0}
        response = await client.post(f"{emulator.url}/_emulator/faults", json={"faults": [fault]})
        response.raise_for_status()
        output = tmp_path / "records.jsonl"
        config = daemon_config(emulator.url, tmp_path, server=server(port))
        async with running_daemon(tmp_path, config) as daemon:
            queued = await client.post(
                f"http://127.0.0.1:{port}/v1/conversions",
                json={"serial_no": serial_no, "conversion_time": 1764000000},
                headers={"authorization": f"Bearer {TOKEN}"},
            )
            assert queued.status_code == 202
            await wait_until(lambda: bool(daemon.events("conversion.deferred")), what="a retry")
            await daemon.stop()
        assert not [r for r in read_jsonl(output) if r["kind"] == "conversion"]
        await client.post(f"{emulator.url}/_emulator/faults", json={"faults": []})
        async with running_daemon(tmp_path, config) as daemon:

            def conversions() -> list[dict[str, Any]]:
                return [r for r in read_jsonl(output) if r["kind"] == "conversion"]

            await wait_until(lambda: bool(conversions()), what="the conversion record")
            await daemon.stop()
    [record] = conversions()
    assert (record["id"], record["code"]) == (f"conversion:{serial_no}", "ok")
    assert [c["serial_no"] for c in (await truth(emulator))["conversions"]] == [serial_no]
