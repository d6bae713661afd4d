"""The emulator's options for this folder: a module overrides ``options`` to change them.

``emulator`` and ``api`` come from tests/support/emulator.py.
"""

from __future__ import annotations

import pytest

from tcsms_poller.emulator import EmulatorOptions


@pytest.fixture
def options() -> EmulatorOptions:
    """The emulator's options; a test overrides this fixture to change them."""
    return EmulatorOptions(seed=7)


@pytest.fixture
def emulator_options(options: EmulatorOptions) -> EmulatorOptions:
    """The ``emulator`` fixture (tests/support/emulator.py) serves ``options``."""
    return options
