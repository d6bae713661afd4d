"""Suite-wide fixtures: the anyio plugin runs every async test on asyncio (aiolimiter needs it)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"


pytest_plugins = ["tests.support.postgres"]  # postgres_server (one a session), postgres_url
