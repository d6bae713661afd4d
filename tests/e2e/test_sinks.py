"""Sinks in the running daemon: a webhook that fails and recovers, a dead letter, a plugin."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tcsms_poller.emulator import RunningEmulator
from tcsms_poller.sinks.http import verify_signature
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import expected_ids, inject, receipts, replies, truth
from tests.support.http_receiver import Reply, http_receiver

# Re-exported for the tests that import it from here; the home is tests/support/http_receiver.py.
from tests.support.http_receiver import posted_ids as posted_ids
from tests.support.jsonl import ids_in, read_jsonl
from tests.support.third_party import install_example
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio
HOOK_SECRET = "hook-secret-0123456789"


async def test_a_failing_webhook_gets_everything_once_it_recovers(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """500s and a 429 while the file sink goes on; then every record, signed, in order."""
    await inject(emulator, send_statuses=receipts(150), replies=replies(20))
    expected = expected_ids(await truth(emulator))
    output = tmp_path / "records.jsonl"
    with http_receiver() as receiver:
        receiver.script(
            Reply(500), Reply(500), Reply(429, headers={"Retry-After": "1"}), Reply(503)
        )
        sinks: list[dict[str, Any]] = [
            {"type": "file", "path": str(output)},
            {
                "type": "http",
                "url": receiver.url,
                "hmac_secret": HOOK_SECRET,
                "batch_size": 50,
                "max_backoff": "500ms",
            },
        ]
        config = daemon_config(emulator.url, tmp_path, sinks=sinks)
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(lambda: set(ids_in(output)) == expected, what="the file sink")

            def accepted() -> list[bytes]:  # after the four scripted failures
                return [request.body for request in receiver.requests[4:]]

            await wait_until(lambda: set(posted_ids(accepted())) == expected, what="the webhook")
            await daemon.stop()
        failed_bodies = [request.body for request in receiver.requests[:4]]
    assert len(set(failed_bodies)) == 1  # the same first batch, retried until it went through
    delivered = posted_ids(accepted())
    assert len(delivered) == len(set(delivered))
    assert delivered == ids_in(output)  # the same order as the file sink
    for request in receiver.requests:
        assert verify_signature(
            HOOK_SECRET,
            request.headers["X-Signature-Timestamp"],
            request.body,
            request.headers["X-Signature"],
        )


async def test_a_refused_batch_goes_to_the_dead_letter_file(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    await inject(emulator, send_statuses=receipts(3))
    expected = expected_ids(await truth(emulator))
    with http_receiver() as receiver:
        receiver.script(Reply(400, body=b'{"error":"schema mismatch"}'))
        sinks = [{"type": "http", "url": receiver.url}]
        config = daemon_config(emulator.url, tmp_path, sinks=sinks)
        dead = tmp_path / "dead-letter" / "http.jsonl"
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(lambda: len(read_jsonl(dead)) == 3, what="dead letters")
            await daemon.stop()
    lines = read_jsonl(dead)
    assert {line["record"]["id"] for line in lines} == expected
    assert all("HTTP 400" in line["reason"] and line["sink"] == "http" for line in lines)


async def test_a_third_party_sink_receives_records(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_example(site)
    await inject(emulator, send_statuses=receipts(12))
    output = tmp_path / "mysink.jsonl"
    config = daemon_config(emulator.url, tmp_path, sinks=[{"type": "mysink", "path": str(output)}])
    async with running_daemon(tmp_path, config, environ={"PYTHONPATH": str(site)}) as daemon:
        await wait_until(lambda: len(ids_in(output)) == 12, what="the plugin's file")
        await daemon.stop()
    assert set(ids_in(output)) == expected_ids(await truth(emulator))
    [loaded] = [e for e in daemon.events() if e.get("distribution") == "tcsms-poller-mysink"]
    assert loaded["version"] == "0.1.0"


async def test_a_second_stop_signal_skips_the_grace_period_and_loses_nothing(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A webhook that is down holds the first SIGTERM in the sinks' grace period; a second one
    stops at once, and the next start delivers every record the webhook had not taken."""
    await inject(emulator, replies=replies(30))
    expected = expected_ids(await truth(emulator))
    output = tmp_path / "records.jsonl"
    with http_receiver() as receiver:
        receiver.fallback = Reply(503)  # down until further notice
        sinks: list[dict[str, Any]] = [
            {"type": "file", "path": str(output)},
            {"type": "http", "url": receiver.url, "max_backoff": "200ms"},
        ]
        config = daemon_config(emulator.url, tmp_path, sinks=sinks)
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(lambda: set(ids_in(output)) == expected, what="the file sink")
            await wait_until(lambda: len(receiver.requests) >= 2, what="the webhook failing")
            daemon.signal(signal.SIGTERM)
            await wait_until(lambda: bool(daemon.events("daemon.stopping")), what="stopping")
            await daemon.stop()  # the second SIGTERM
        assert daemon.events("daemon.forced_stop")
        assert not daemon.events("sink.drain_timeout")  # it did not sit out the grace period
        receiver.fallback = Reply(200)
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(
                lambda: set(posted_ids([r.body for r in receiver.accepted])) == expected,
                what="the webhook's records after the restart",
            )
            await daemon.stop()
    assert len(ids_in(output)) == len(expected)  # the file sink got nothing twice


async def test_logrotate_then_sighup_continues_in_a_new_file(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """logrotate's create mode: the old file is moved away, SIGHUP, new records in a new file."""
    output = tmp_path / "records.jsonl"
    rotated = tmp_path / "records.jsonl.1"
    await inject(emulator, replies=replies(10))
    config = daemon_config(emulator.url, tmp_path)
    async with running_daemon(tmp_path, config) as daemon:
        await wait_until(lambda: len(ids_in(output)) == 10, what="the first records")
        output.rename(rotated)
        daemon.signal(signal.SIGHUP)
        await wait_until(lambda: bool(daemon.events("daemon.reloaded")), what="the reload")
        await inject(emulator, replies=replies(5, saying="after rotation"))
        await wait_until(lambda: len(ids_in(output)) == 5, what="records in the new file")
        await daemon.stop()
    assert len(ids_in(rotated)) == 10
    assert not set(ids_in(rotated)) & set(ids_in(output))
