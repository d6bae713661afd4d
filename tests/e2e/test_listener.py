"""The listener in the running daemon: pushes beside pulls, health, queued conversions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tcsms_poller.emulator import RunningEmulator
from tcsms_poller.emulator.pusher import reply_payload, status_payload
from tcsms_poller.emulator.store import ReplyRecord, SendStatusRecord
from tests.e2e.conftest import CALLBACK
from tests.support.daemon_process import APP, SECRET_ID, SECRET_KEY, daemon_config, running_daemon
from tests.support.emulator import (
    expected_ids,
    inject,
    receipts,
    replies,
    request_counts,
    set_faults,
    truth,
    truth_reply_id,
)
from tests.support.jsonl import ids_in, read_jsonl
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio
TOKEN = "listener-token-0123456789"
PULLS = ("PullSmsSendStatus", "PullSmsReplyStatus")


def server(port: int) -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{port}", "token": TOKEN, "callback_secret": CALLBACK}


def handed_out(emulator: RunningEmulator, ids: set[str]) -> bool:
    """Whether the emulator's queues have handed out every record of ``ids`` (to a pull)."""
    held = emulator.state.truth()
    pulled = {item["serial_no"] for item in held["send_statuses"] if item["handed_out_at"]}
    pulled.update(truth_reply_id(item) for item in held["replies"] if item["handed_out_at"])
    return ids <= pulled


async def push_copies(port: int, created: dict[str, Any]) -> None:
    """Push ``created`` to the daemon as Tencent would; each answer means committed."""
    base = f"http://127.0.0.1:{port}/callback/{CALLBACK}"
    statuses = [status_payload(SendStatusRecord(**item)) for item in created["send_statuses"]]
    bodies: list[tuple[str, Any]] = [(f"{base}/status", statuses)]
    bodies += [(f"{base}/reply", reply_payload(ReplyRecord(**item))) for item in created["replies"]]
    async with httpx.AsyncClient() as client:
        for url, body in bodies:
            response = await client.post(url, json=body)
            assert response.json() == {"result": 0, "errmsg": "OK"}


async def test_pushed_and_pulled_copies_reach_the_sink_once(
    tmp_path: Path, pushing_emulator: RunningEmulator, port: int
) -> None:
    """Both orders, each forced: every record reaches the sink once, from the copy first in.

    The sink delivers in commit order, so a marker pulled after the late copies were committed
    proves they added nothing: one let through would have reached the file before the marker.
    """
    output = tmp_path / "records.jsonl"
    config = daemon_config(pushing_emulator.url, tmp_path, server=server(port))

    async def arrived(created: dict[str, Any], what: str) -> None:
        await wait_until(lambda: expected_ids(created) <= set(ids_in(output)), what=what)

    async def pull_marker(saying: str) -> None:
        marker = await inject(
            pushing_emulator, send_statuses=receipts(1), replies=replies(1, saying=saying)
        )
        await arrived(marker, saying)

    async with running_daemon(tmp_path, config) as daemon:
        # Pushed first: the emulator pushes while every pull fails, then the pulls resume.
        failing = [
            {"action": action, "kind": "internal_error", "probability": 1.0} for action in PULLS
        ]
        await set_faults(pushing_emulator, failing)
        pushed = await inject(
            pushing_emulator,
            send_statuses=receipts(60),
            replies=replies(5, saying="pushed"),
            push=True,
        )
        await arrived(pushed, "pushed copies")
        await set_faults(pushing_emulator, [])
        ids = expected_ids(pushed)
        await wait_until(lambda: handed_out(pushing_emulator, ids), what="pulled copies")
        await pull_marker("first marker")
        # Pulled first: the same records are pushed once the pulled copies have arrived.
        pulled = await inject(
            pushing_emulator, send_statuses=receipts(60), replies=replies(5, saying="pulled")
        )
        await arrived(pulled, "pulled copies")
        await push_copies(port, pulled)
        await pull_marker("second marker")
        await daemon.stop()
    records = read_jsonl(output)
    assert Counter(record["id"] for record in records).most_common(1)[0][1] == 1
    assert {record["id"] for record in records} == expected_ids(await truth(pushing_emulator))
    source = {record["id"]: record["source"] for record in records}
    assert {source[id_] for id_ in expected_ids(pushed)} == {"callback"}
    assert {source[id_] for id_ in expected_ids(pulled)} == set(PULLS)
    push = pushing_emulator.state.stats_snapshot()["push"]
    assert push["status"]["delivered"] > 0, push
    assert push["reply"]["delivered"] == 5, push


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
            deadline = anyio.current_time() + 60
            while anyio.current_time() < deadline:
                await poll()
                named = unhealthy is None or unhealthy in status["body"]["unhealthy"]
                if status["code"] == code and named:
                    return
                await anyio.sleep(0.05)  # a poll with a deadline: the workers' retries take time
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


async def test_a_permanently_refused_conversion_is_recorded_once_and_not_retried(
    tmp_path: Path, emulator: RunningEmulator, port: int
) -> None:
    """An unknown SerialNo is Tencent's final word: one request, one record with its code."""
    output = tmp_path / "records.jsonl"
    config = daemon_config(emulator.url, tmp_path, server=server(port))
    async with running_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
        queued = await client.post(
            f"http://127.0.0.1:{port}/v1/conversions",
            json={"serial_no": "5000:unknown", "conversion_time": 1764000000},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert queued.status_code == 202

        def conversions() -> list[dict[str, Any]]:
            return [r for r in read_jsonl(output) if r["kind"] == "conversion"]

        def reporter_rounds() -> int:
            rounds = daemon.events("poll.completed")
            return sum(1 for event in rounds if event.get("worker") == "conversions")

        await wait_until(lambda: bool(conversions()), what="the conversion record")
        rounds = reporter_rounds()
        # Two more rounds of the reporter (1 s apart): neither may ask Tencent again.
        await wait_until(lambda: reporter_rounds() >= rounds + 2, what="two more rounds")
        health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
        await daemon.stop()
    [record] = conversions()
    assert (record["serial_no"], record["code"]) == ("5000:unknown", "InvalidParameterValue")
    assert request_counts(emulator, "ReportConversion") == (1, 0)
    [reporter] = [part for part in health["parts"] if part["name"] == "conversions"]
    assert reporter["healthy"] is True
