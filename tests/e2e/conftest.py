"""Fixtures of the e2e folder: a daemon listener's port and an emulator pushing to it.

The helpers once defined here live in tests/support/ (``emulator``, ``jsonl``, ``ports``,
``waiting``); the names below are re-exported so ``from tests.e2e.conftest import ...`` keeps
working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tcsms_poller.emulator import EmulatorOptions, PushOptions, RunningEmulator, run_emulator
from tcsms_poller.emulator.options import PendingStatus

# Re-exports: the home of these helpers is tests/support.
from tests.support.emulator import expected_ids as expected_ids
from tests.support.emulator import request_counts as request_counts
from tests.support.emulator import truth as truth
from tests.support.emulator import truth_reply_id as truth_reply_id
from tests.support.jsonl import ids_in as ids_in
from tests.support.jsonl import read_jsonl as read_jsonl
from tests.support.ports import free_port as free_port
from tests.support.waiting import wait_until as wait_until

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
