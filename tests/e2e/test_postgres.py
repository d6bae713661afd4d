"""The daemon with its state in PostgreSQL: end to end, ``status``, and a server restart."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tcsms_poller.emulator import RunningEmulator, TrafficOptions
from tcsms_poller.state.postgres import PostgresStore
from tests.e2e.test_listener import server as server_settings
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import (
    NUMBER,
    expected_ids,
    inject,
    receipts,
    replies,
    request_counts,
    truth,
)
from tests.support.http_receiver import http_receiver, posted_ids
from tests.support.ports import free_port
from tests.support.postgres import PASSWORD, running_server
from tests.support.reliability import generated_traffic
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def postgres_config(
    emulator: RunningEmulator, directory: Path, url: str, hook: str | None = None
) -> dict[str, Any]:
    """The e2e configuration, its state in the database at ``url``, its records posted to
    ``hook`` (a file sink cannot be used with a shared state), else written to stdout."""
    sink = {"type": "stdout"} if hook is None else {"type": "http", "url": hook, "batch_size": 50}
    config = daemon_config(
        emulator.url,
        directory,
        app={"by_number": {"numbers": [NUMBER], "interval": "1s", "replies": True}},
        sinks=[sink],
    )
    config["state"] = {"path": str(directory / "state.db"), "url": url, "pool_size": 4}
    return config


def cli(command: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcsms_poller", command, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_every_record_reaches_the_http_sink_once(
    tmp_path: Path, emulator: RunningEmulator, postgres_url: str
) -> None:
    """Queue and per-number pulls through PostgreSQL: each record once at the sink; ``status``
    and ``check-config`` show the URL without its password."""
    await inject(emulator, send_statuses=receipts(200), replies=replies(40))
    expected = expected_ids(await truth(emulator))
    with http_receiver() as receiver:
        config = postgres_config(emulator, tmp_path, postgres_url, receiver.url)
        async with running_daemon(tmp_path, config) as daemon:
            bodies = receiver.requests
            await wait_until(
                lambda: set(posted_ids([r.body for r in bodies])) == expected, what="the webhook"
            )
            await daemon.stop()
    delivered = posted_ids([r.body for r in receiver.requests])
    assert Counter(delivered).most_common(1)[0][1] == 1
    assert sum(event["duplicates"] for event in daemon.events("poll.completed")) > 0

    status = cli("status", tmp_path / "config.yaml")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "state: postgresql://tcsms:***@127.0.0.1" in status.stdout
    assert f"outbox head: {len(expected)}" in status.stdout
    checked = cli("check-config", tmp_path / "config.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for text in (status.stdout, status.stderr, checked.stdout, daemon.log_tail(10_000)):
        assert PASSWORD not in text


async def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A daemon whose database refuses connections exits with an error naming the masked URL."""
    url = f"postgresql://tcsms:{PASSWORD}@127.0.0.1:1/nowhere"
    config = postgres_config(emulator, tmp_path, url)
    async with running_daemon(tmp_path, config, wait_ready=False) as daemon:
        code = await daemon.wait()
    log = daemon.log_tail(10_000)
    assert code != 0
    assert "postgresql://tcsms:***@127.0.0.1:1/nowhere" in log
    assert PASSWORD not in log
    status = cli("status", tmp_path / "config.yaml")
    assert status.returncode != 0
    assert "postgresql://tcsms:***@127.0.0.1:1/nowhere" in status.stdout
    assert PASSWORD not in status.stdout + status.stderr


async def test_a_sink_cursor_beyond_the_head_stops_the_daemon_with_one_line(
    tmp_path: Path, emulator: RunningEmulator, postgres_url: str
) -> None:
    """As with SQLite: exit 1, one ``daemon.failed`` line with the URL masked, nothing pulled."""
    store = await PostgresStore.open(postgres_url, dedupe_ttl=60.0)
    await store.sink_cursor("stdout")
    await store.aclose()
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection:
        await connection.execute("UPDATE sink_cursors SET acked_seq = 1000")
        await connection.commit()
    await inject(emulator, send_statuses=receipts(5))
    config = postgres_config(emulator, tmp_path, postgres_url)
    async with running_daemon(tmp_path, config, wait_ready=False) as daemon:
        assert await daemon.wait() == 1
    [failed] = daemon.events("daemon.failed")
    assert "sink 'stdout' acknowledged up to 1000, beyond the newest record 0" in failed["error"]
    assert "postgresql://tcsms:***@127.0.0.1" in failed["error"]
    log = daemon.log_tail(10_000)
    assert "Traceback" not in log
    assert PASSWORD not in log
    assert request_counts(emulator, "PullSmsSendStatus")[0] == 0


LIVE = TrafficOptions(
    numbers=10,
    heavy_numbers=1,
    send_rate=300.0,
    reply_rate=20.0,
    receipt_delay_min=0.1,
    receipt_delay_max=0.5,
    backfill=2.0,
)


async def test_a_database_restart_under_live_traffic_loses_nothing(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The server stops while traffic flows: the daemon stays up, reports the state unhealthy,
    holds what it pulled (pulling nothing more), reconnects, and the sink ends up with the
    emulator's truth, once."""
    port = free_port()
    healthz = f"http://127.0.0.1:{port}/healthz"
    with running_server() as server, http_receiver() as receiver:

        def delivered() -> list[str]:
            return posted_ids([r.body for r in receiver.requests])

        config = postgres_config(emulator, tmp_path, server.create_database(), receiver.url)
        config["server"] = server_settings(port)
        async with (
            generated_traffic(emulator, LIVE, seed=11) as traffic,
            running_daemon(tmp_path, config) as daemon,
            httpx.AsyncClient() as client,
        ):
            await wait_until(lambda: len(delivered()) >= 300, what="the first records")
            server.stop()

            def failed_commits() -> int:  # of the receipts worker, holding the page it pulled
                events = daemon.events("state.commit_failed")
                return sum(event["worker"].startswith("send_status") for event in events)

            await wait_until(lambda: failed_commits() > 0, what="a failed commit")
            pulls = request_counts(emulator, "PullSmsSendStatus")[0]
            seen = failed_commits()
            await wait_until(lambda: failed_commits() > seen, what="a retried commit")
            assert request_counts(emulator, "PullSmsSendStatus")[0] == pulls  # holding its page
            health = await client.get(healthz)
            assert health.status_code == 503
            assert "state database postgresql://tcsms:***@127.0.0.1" in health.text
            assert PASSWORD not in health.text
            assert daemon.process.poll() is None  # still up

            server.start()
            resumed = len(delivered()) + 300
            await wait_until(lambda: len(delivered()) >= resumed, what="records after it")
            traffic.stop()
            expected = expected_ids(await truth(emulator))
            await wait_until(lambda: set(delivered()) >= expected, what="every record")
            await daemon.stop()
        ids = delivered()
    assert Counter(ids).most_common(1)[0][1] == 1
    assert set(ids) == expected
    assert len(expected) > 600
