"""An in-process emulator for the daemon subprocess to talk to, and helpers to read results."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, run_emulator
from tcsms_poller.records import reply_id
from tcsms_poller.tencent.models import ReplyStatus

__all__ = ["expected_ids", "free_port", "read_jsonl", "wait_until"]


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator without traffic (tests inject exactly what they need)."""
    async with run_emulator(EmulatorOptions(seed=7)) as running:
        yield running


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON Lines file (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def expected_ids(truth: dict[str, Any]) -> set[str]:
    """The record ids the emulator's receipts and replies must arrive under."""
    ids = {status["serial_no"] for status in truth["send_statuses"]}
    for reply in truth["replies"]:
        fields = {
            key: value for key, value in reply.items() if key not in ("app_id", "handed_out_at")
        }
        ids.add(reply_id(reply["app_id"], ReplyStatus(**fields)))
    return ids


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
