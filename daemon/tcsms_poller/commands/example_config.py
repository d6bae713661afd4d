"""``tcsms-poller example-config``: print the example configuration, every option and default.

The file ships inside the package, so the printout always matches the installed release::

    tcsms-poller example-config > /etc/tcsms-poller/config.yaml
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files

from tcsms_poller.exits import EX_OK

__all__ = ["EXAMPLE", "add_arguments", "example_text", "execute"]

EXAMPLE = "config.example.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def example_text() -> str:
    """The example configuration shipped in the package."""
    return files("tcsms_poller").joinpath(EXAMPLE).read_text(encoding="utf-8")


def execute(args: argparse.Namespace) -> int:
    sys.stdout.write(example_text())
    sys.stdout.flush()
    return EX_OK
