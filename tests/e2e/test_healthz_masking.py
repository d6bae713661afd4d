"""/healthz of the running daemon never shows what a downstream answered unmasked, or whole."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from tcsms_poller.emulator import RunningEmulator
from tcsms_poller.health import REASON_LIMIT
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import inject, receipts
from tests.support.http_receiver import Reply, http_receiver
from tests.support.jsonl import ids_in
from tests.support.ports import free_port
from tests.support.waiting import wait_until

TOKEN = "listener-token-0123456789"
CALLBACK = "callback-secret-0123456789"
NUMBERS = ("13711112222", "+8613799990000")


@pytest.mark.anyio
async def test_healthz_shows_no_number_a_failing_webhook_answered(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The webhook's 500 answer quotes phone numbers and a long page: /healthz (and the log)
    show them masked, in a short excerpt."""
    page = f"<html>no route for {NUMBERS[0]}, {NUMBERS[1]}</html>" + "<p>padding</p>" * 200
    await inject(emulator, send_statuses=receipts(3))
    port = free_port()
    with http_receiver() as receiver:
        receiver.fallback = Reply(500, body=page.encode())
        sinks = [
            {"type": "file", "path": str(tmp_path / "records.jsonl")},
            {"type": "http", "url": receiver.url, "unhealthy_after": "1ms"},
        ]
        server = {"listen": f"127.0.0.1:{port}", "token": TOKEN, "callback_secret": CALLBACK}
        config = daemon_config(emulator.url, tmp_path, sinks=sinks, server=server)
        async with (
            running_daemon(tmp_path, config) as daemon,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            await wait_until(lambda: len(ids_in(tmp_path / "records.jsonl")) == 3, what="records")

            with anyio.fail_after(30):
                while (
                    "sink:http" not in (answer := await client.get("/healthz")).json()["unhealthy"]
                ):
                    await anyio.sleep(0.1)
            await daemon.kill()  # a graceful stop would spend its drain time on the failing sink
    assert answer.status_code == 503
    [sink] = [part for part in answer.json()["parts"] if part["name"] == "sink:http"]
    assert sink["reason"].startswith("HTTP 500: <html>no route for 137****2222")
    assert len(sink["reason"]) <= REASON_LIMIT
    assert not [number for number in NUMBERS if number in answer.text]
    assert not [number for number in NUMBERS if number in daemon.log_path.read_text()]
