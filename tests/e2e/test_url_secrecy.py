"""The running daemon's logs carry no webhook URL secret, even at debug."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcsms_poller.emulator import RunningEmulator
from tests.sinks.test_http_url_secrecy import CLEAR, PASSWORD, TOKEN
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import inject, receipts
from tests.support.http_receiver import Reply, http_receiver
from tests.support.jsonl import ids_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


async def test_the_daemon_logs_no_url_secret_at_debug(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """At debug, httpx logs every delivery's URL, and a failing webhook's errors are logged: the
    password and the token appear in none of it."""
    await inject(emulator, send_statuses=receipts(5))
    with http_receiver() as receiver:
        receiver.script(Reply(500))
        url = receiver.url.replace("http://", f"http://hooker:{PASSWORD}@") + f"?token={TOKEN}"
        output = tmp_path / "records.jsonl"
        sinks = [
            {"type": "file", "path": str(output)},
            {"type": "http", "url": url, "max_backoff": "200ms"},
        ]
        config = daemon_config(emulator.url, tmp_path, sinks=sinks)
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(lambda: len(receiver.accepted) >= 1, what="a delivery")
            await wait_until(lambda: len(ids_in(output)) >= 5, what="the file sink")
            await daemon.stop()
    log = daemon.log_path.read_text()
    assert "HTTP Request: POST" in log  # httpx's line, with the URL in it
    assert daemon.events("sink.retry_scheduled")
    assert not [secret for secret in CLEAR if secret in log]
