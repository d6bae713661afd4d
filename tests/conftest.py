"""Suite-wide fixtures: the anyio plugin runs every async test on asyncio (aiolimiter needs it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tcsms_poller.emulator import (
    EmulatorOptions,
    RunningEmulator,
    WindowOrder,
    WindowTime,
    run_emulator,
)


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"


# postgres_server (one a session), postgres_url; backend (each state backend in turn)
pytest_plugins = ["tests.support.postgres", "tests.support.backends"]


@pytest.fixture(
    params=[(time, order) for time in WindowTime for order in WindowOrder],
    ids=lambda reading: f"{reading[0]}-{reading[1]}",
)
async def emulator_per_reading(request: pytest.FixtureRequest) -> AsyncIterator[RunningEmulator]:
    """An emulator without traffic under each reading of the per-number window in turn."""
    time, order = request.param
    options = EmulatorOptions(seed=7, by_number_time=time, by_number_order=order)
    async with run_emulator(options) as running:
        yield running
