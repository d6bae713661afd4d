"""The real emulator, for the commands that talk to Tencent (``emulator`` comes from
tests/support/emulator.py)."""

from __future__ import annotations

import pytest

from tcsms_poller.emulator import EmulatorOptions


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    """An emulator without traffic: tests inject what they need."""
    return EmulatorOptions(seed=11)
