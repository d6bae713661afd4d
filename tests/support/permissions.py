"""File modes in tests: the mode of a path, and a process without a umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["mode", "no_umask"]


@pytest.fixture
def no_umask() -> Iterator[None]:
    """umask 000 for the test, so only the daemon's own care keeps files private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)
