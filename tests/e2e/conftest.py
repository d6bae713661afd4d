"""An in-process emulator for the daemon subprocess to talk to, and helpers to read results."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, PushOptions, RunningEmulator, run_emulator
from tcsms_poller.emulator.options import PendingStatus
from tcsms_poller.records import reply_id
from tcsms_poller.tencent.models import ReplyStatus

__all__ = [
    "CALLBACK",
    "expected_ids",
    "free_port",
    "ids_in",
    "read_jsonl",
    "request_counts",
    "truth",
    "truth_reply_id",
    "wait_until",
]


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator without traffic (tests inject exactly what they need)."""
    async with run_emulator(EmulatorOptions(seed=7)) as running:
        yield running


CALLBACK = "callback-secret-0123456789"  # the secret path segment of the daemon's listener


@pytest.fixture
def port() -> int:
    """A free loopback port for the daemon's listener."""
    return free_port()


@pytest.fixture
async def pushing_emulator(
    port: int, request: pytest.FixtureRequest
) -> AsyncIterator[RunningEmulator]:
    """An emulator without traffic pushing receipts and replies to the listener at ``port``;
    an indirect parameter is its ``pending_status``."""
    base = f"http://127.0.0.1:{port}/callback/{CALLBACK}"
    push = PushOptions(status_url=f"{base}/status", reply_url=f"{base}/reply", interval=0.2)
    pending_status: PendingStatus = getattr(request, "param", "empty")
    options = EmulatorOptions(seed=3, push=push, pending_status=pending_status)
    async with run_emulator(options) as running:
        yield running


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON Lines file (none if it does not exist yet).

    A line still being written (no newline yet) is left out: tests read while the daemon writes.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1].decode()
    return [json.loads(line) for line in complete.splitlines() if line]


def ids_in(path: Path) -> list[str]:
    """The ``id`` of every complete record in a JSON Lines sink file, in file order."""
    return [record["id"] for record in read_jsonl(path)]


async def truth(emulator: RunningEmulator) -> dict[str, Any]:
    """``GET /_emulator/truth``: every record the emulator created, and when it handed it out."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{emulator.url}/_emulator/truth")
        response.raise_for_status()
        return dict(response.json())


def request_counts(emulator: RunningEmulator, action: str) -> tuple[int, int]:
    """``(requests, ok)`` the emulator has seen for ``action`` so far."""
    stats = emulator.state.stats_snapshot()["actions"].get(action, {})
    return stats.get("requests", 0), stats.get("ok", 0)


def expected_ids(truth: dict[str, Any]) -> set[str]:
    """The record ids the emulator's receipts and replies must arrive under."""
    ids = {status["serial_no"] for status in truth["send_statuses"]}
    ids.update(truth_reply_id(reply) for reply in truth["replies"])
    return ids


def truth_reply_id(reply: dict[str, Any]) -> str:
    """The record id a reply of ``/_emulator/truth`` arrives under."""
    fields = {key: value for key, value in reply.items() if key not in ("app_id", "handed_out_at")}
    return reply_id(reply["app_id"], ReplyStatus(**fields))


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``condition`` (cheap, observable state) until true, failing after ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout}s") from None


def free_port() -> int:
    """A loopback port free right now (for a listener whose URL must be known in advance)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
