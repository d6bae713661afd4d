"""A running emulator per test (options overridable per module) and a raw signed caller."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, run_emulator
from tests.emulator.support import Api


@pytest.fixture
def options() -> EmulatorOptions:
    """The emulator's options; a test overrides this fixture to change them."""
    return EmulatorOptions(seed=7)


@pytest.fixture
async def emulator(options: EmulatorOptions) -> AsyncIterator[RunningEmulator]:
    """An emulator serving on a free loopback port for the test's duration."""
    async with run_emulator(options) as running:
        yield running


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    """Raw signed calls to the test's emulator."""
    async with httpx.AsyncClient() as http:
        yield Api(emulator, http)
