"""Tracked messages end to end: sent through the emulator with the official SDK, tracked over
``POST /v1/messages`` or ``track``, resolved across a restart, and one never receipted; with
the state in SQLite and in PostgreSQL alike."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from tencentcloud.sms.v20210111 import models

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator
from tcsms_poller.emulator.options import ReceiptDelays
from tcsms_poller.state import StateStore
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.store import SqliteStore
from tcsms_poller.workers.by_number import STATUS_ACTION
from tests.e2e.test_cluster import cluster_config, overlapping_polls
from tests.support.daemon_process import APP, daemon_config, running_daemon
from tests.support.emulator import request_counts
from tests.support.emulator_api import in_thread, sdk_client
from tests.support.http_receiver import Receiver, http_receiver
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

TOKEN = "tracking-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
NUMBERS = ["+8613711110001", "+8613711110002", "+8613711110003"]
NEVER = ("5000:never-receipted", "+8613711110009")
FAST = ReceiptDelays(median=0.3, p95=1.0, late_share=0, never_share=0, fail_ratio=0)


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """Receipts follow sent messages quickly, and every message gets one."""
    return EmulatorOptions(seed=5, receipts=FAST)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn: None for SQLite (``state.path``), else a fresh database's URL."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """Where the daemon posts its records (a file sink cannot share a PostgreSQL state)."""
    with http_receiver() as receiver:
        yield receiver


def config(
    emulator: RunningEmulator,
    tmp_path: Path,
    port: int,
    state_url: str | None = None,
    hook: str | None = None,
) -> dict[str, Any]:
    settings = daemon_config(
        emulator.url,
        tmp_path,
        app={
            "replies": {"enabled": False},
            "send_status": {"enabled": False},
            "tracking": {"first_poll": "5s", "max_gap": "1s", "give_up_after": "12s"},
        },
        server={
            "listen": f"127.0.0.1:{port}",
            "token": TOKEN,
            "callback_secret": "callback-secret-0123456789",
        },
        sinks=None if hook is None else [{"type": "http", "url": hook, "batch_size": 50}],
    )
    if state_url is not None:
        settings["state"]["url"] = state_url
    return settings


def posted(receiver: Receiver) -> list[dict[str, Any]]:
    """Every record the webhook received."""
    return [r for request in receiver.requests for r in json.loads(request.body)["records"]]


async def open_state(tmp_path: Path, state_url: str | None) -> StateStore:
    """The daemon's state, as ``config`` placed it."""
    if state_url is None:
        return await SqliteStore.open(tmp_path / "state.db", dedupe_ttl=8 * 86_400.0)
    return await PostgresStore.open(state_url, dedupe_ttl=8 * 86_400.0)


def status(config_path: Path) -> str:
    """``tcsms-poller status``'s output."""
    done = subprocess.run(
        [sys.executable, "-m", "tcsms_poller", "status", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


async def send(emulator: RunningEmulator) -> list[tuple[str, str]]:
    """SendSms to ``NUMBERS`` through the official SDK: (SerialNo, number) each."""
    request = models.SendSmsRequest()
    request.from_json_string(
        json.dumps({"PhoneNumberSet": NUMBERS, "SmsSdkAppId": APP, "TemplateId": "1"})
    )
    client = sdk_client(emulator)
    answer = await in_thread(lambda: client.SendSms(request))
    return [(status.SerialNo, status.PhoneNumber) for status in answer.SendStatusSet]


async def test_messages_resolve_across_a_restart_and_a_lost_one_is_reported_missing(
    tmp_path: Path, emulator: RunningEmulator, state_url: str | None, webhook: Receiver
) -> None:
    """Pending messages survive a restart (``status`` shows them meanwhile); each receipt
    resolves its message once; the one without a receipt becomes one receipt_missing record;
    the queue APIs are never asked."""
    port = free_port()
    settings = config(emulator, tmp_path, port, state_url, webhook.url)
    sent = await send(emulator)
    body = [{"serial_no": s, "phone_number": n} for s, n in [*sent, NEVER]]
    base = f"http://127.0.0.1:{port}/v1/messages"
    async with httpx.AsyncClient(headers=HEADERS) as http:
        async with running_daemon(tmp_path / "a", settings) as daemon:
            answer = await http.post(base, json=body)
            assert answer.status_code == 201
            assert [item["created"] for item in answer.json()] == [True] * 4
            again = await http.post(base, json=body[0])
            assert (again.status_code, again.json()["created"]) == (200, False)
            pending = await http.get(f"{base}/{sent[0][0]}")
            assert pending.json()["state"] == "pending"
            assert pending.json()["receipt"] is None
            await daemon.stop()  # before the first poll (5 s after tracking): all pending
        assert request_counts(emulator, STATUS_ACTION)[0] == 0
        assert f"tracked messages:\n  {APP}: 4 pending" in status(tmp_path / "a" / "config.yaml")
        async with running_daemon(tmp_path / "b", settings) as daemon:

            async def states() -> list[str]:
                answers = [await http.get(f"{base}/{s}") for s, _ in [*sent, NEVER]]
                return [a.json()["state"] for a in answers]

            with anyio.fail_after(60):
                while await states() != ["delivered"] * 3 + ["missing"]:
                    await anyio.sleep(0.2)
            delivered = (await http.get(f"{base}/{sent[0][0]}")).json()
            assert delivered["receipt"]["report_status"] == "SUCCESS"
            assert delivered["receipt"]["description"] == "DELIVRD"
            unknown = await http.get(f"{base}/5000:unknown")
            assert unknown.status_code == 404
            await wait_until(lambda: len(posted(webhook)) >= 4, what="the records")
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            await daemon.stop()
    assert "tracked messages:\n  none pending" in status(tmp_path / "b" / "config.yaml")
    kinds = sorted((r["kind"], r["id"]) for r in posted(webhook))
    assert kinds == sorted(
        [("send_status", s) for s, _ in sent] + [("receipt_missing", f"missing:{NEVER[0]}")]
    )
    assert request_counts(emulator, "PullSmsSendStatus")[0] == 0
    assert request_counts(emulator, "PullSmsReplyStatus")[0] == 0
    assert 'tcsms_poller_messages_resolved_total{outcome="missing"} 1.0' in metrics
    assert 'tcsms_poller_messages_pending{app_id="1400006666"} 0.0' in metrics


async def test_bad_bodies_are_refused_and_track_nothing(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """422 with the field named; 401 without the token; nothing tracked."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1/messages"
    async with (
        running_daemon(tmp_path, config(emulator, tmp_path, port)) as daemon,
        httpx.AsyncClient(headers=HEADERS) as http,
    ):
        good = {"serial_no": "5000:1", "phone_number": NUMBERS[0]}
        bad_phone = await http.post(base, json=[good, {"serial_no": "5000:2", "phone_number": "1"}])
        assert bad_phone.status_code == 422
        assert bad_phone.json()["fields"][0]["field"] == "1.phone_number"
        future = await http.post(base, json={**good, "sent_at": int(time.time()) + 86_400})
        assert (future.status_code, future.json()["fields"][0]["field"]) == (422, "sent_at")
        too_many = await http.post(base, json=[good] * 1001)
        assert too_many.status_code == 422
        unauthorized = await http.post(base, json=good, headers={"Authorization": "Bearer x"})
        assert unauthorized.status_code == 401
        assert (await http.get(f"{base}/5000:1")).status_code == 404
        await daemon.stop()


async def track(config_path: Path, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    command = [sys.executable, "-m", "tcsms_poller", "track", "-c", str(config_path), *args]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, input=stdin, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_the_track_command_tracks_one_or_json_lines_and_refuses_bad_input(
    tmp_path: Path, emulator: RunningEmulator, state_url: str | None
) -> None:
    """Options or JSON Lines; a bad line is one line on stderr, exit 2, nothing tracked."""
    path = tmp_path / "config.yaml"
    hook = None if state_url is None else "http://127.0.0.1:9/records"  # never started
    path.write_text(yaml.safe_dump(config(emulator, tmp_path, 0, state_url, hook)))
    code, out, _ = await track(path, "--serial-no", "5000:a", "--phone", NUMBERS[0])
    assert (code, json.loads(out)) == (0, {"serial_no": "5000:a", "created": True})
    lines = b"".join(
        json.dumps({"serial_no": s, "phone_number": NUMBERS[1], "sent_at": 1764000000}).encode()
        + b"\n"
        for s in ("5000:a", "5000:b")
    )
    code, out, _ = await track(path, stdin=lines)
    assert code == 0
    assert [json.loads(line)["created"] for line in out.splitlines()] == [False, True]
    bad = b'{"serial_no": "5000:c", "phone_number": "+8613711110001"}\n{"serial_no": "5000:d"}\n'
    code, out, err = await track(path, stdin=bad)
    assert (code, out) == (2, "")
    assert "stdin:2: phone_number" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = await track(path, "--serial-no", "5000:e", "--phone", "137")
    assert code == 2
    assert "--phone" in err
    store = await open_state(tmp_path, state_url)
    try:
        messages = tracked_messages(store)
        assert (await messages.get("5000:b")) is not None
        assert (await messages.get("5000:b")).sent_at == 1764000000  # type: ignore[union-attr]
        assert await messages.get("5000:c") is None
        assert await messages.get("5000:e") is None
        assert await messages.pending_counts() == {APP: 2}
    finally:
        await store.aclose()


async def test_in_a_cluster_messages_tracked_on_any_instance_resolve_and_no_number_is_polled_twice(
    tmp_path: Path, emulator: RunningEmulator, postgres_url: str, webhook: Receiver
) -> None:
    """Two daemons on one PostgreSQL state: messages tracked through either listener resolve,
    each number polled by one instance at a time (both poll: a number is claimed, not the work)."""
    emulator.state.number_log = []
    sent = await send(emulator)
    ports = {"a": free_port(), "b": free_port()}
    configs: dict[str, dict[str, Any]] = {}
    for name, port in ports.items():
        app = {
            "replies": {"enabled": False},
            "send_status": {"enabled": False},
            "tracking": {"first_poll": "2s", "max_gap": "1s", "give_up_after": "1h"},
        }
        configs[name] = cluster_config(
            emulator, tmp_path / name, postgres_url, webhook.url, name, app=app
        )
        configs[name]["server"] = config(emulator, tmp_path, port)["server"]
    async with AsyncExitStack() as stack, httpx.AsyncClient(headers=HEADERS) as http:
        first = await stack.enter_async_context(running_daemon(tmp_path / "a", configs["a"]))
        second = await stack.enter_async_context(running_daemon(tmp_path / "b", configs["b"]))
        for (serial_no, number), name in zip(sent, ["a", "b", "b"], strict=True):
            item = {"serial_no": serial_no, "phone_number": number}
            answer = await http.post(f"http://127.0.0.1:{ports[name]}/v1/messages", json=item)
            assert answer.status_code == 201

        async def states() -> list[str]:
            base = f"http://127.0.0.1:{ports['b']}/v1/messages"
            return [(await http.get(f"{base}/{s}")).json()["state"] for s, _ in sent]

        with anyio.fail_after(60):
            while await states() != ["delivered"] * 3:
                await anyio.sleep(0.2)
        await second.stop()
        await first.stop()
    polls = {
        name: sum(
            event["requests"]
            for event in daemon.events("poll.completed")
            if event["worker"] == f"tracking:{APP}"
        )
        for name, daemon in (("a", first), ("b", second))
    }
    assert polls["a"] + polls["b"] >= 1
    assert overlapping_polls(emulator.state.number_log) == []
    assert sorted(r["id"] for r in posted(webhook)) == sorted(s for s, _ in sent)
