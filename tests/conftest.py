"""Suite-wide fixtures: the anyio plugin runs every async test on asyncio (aiolimiter needs it).

Shared helpers live in ``tests/support/`` (one module per topic); the fixtures several folders
use are registered here from its plugin modules, under the same names everywhere.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"


pytest_plugins = [
    "tests.support.postgres",  # postgres_server (one a session), postgres_url
    "tests.support.emulator",  # emulator (from emulator_options), emulator_per_reading
    "tests.support.backends",  # backend (each state backend in turn)
]
