"""The real emulator, for the commands that talk to Tencent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, run_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator on a free loopback port, without traffic: tests inject what they need."""
    async with run_emulator(EmulatorOptions(seed=11)) as running:
        yield running
