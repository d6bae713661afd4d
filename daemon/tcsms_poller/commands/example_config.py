"""``tcsms-poller example-config [--emulator]``: print the example configuration.

The file ships inside the package, so the printout always matches the installed release::

    tcsms-poller example-config > /etc/tcsms-poller/config.yaml

``--emulator`` fills in what the emulator expects (its credentials, app id and default address)
and a state file beside the configuration, for a try without root or real credentials::

    tcsms-poller emulator &
    tcsms-poller example-config --emulator > try.yaml && tcsms-poller run -c try.yaml
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files

from tcsms_poller.emulator_account import (
    DEFAULT_APP_ID,
    DEFAULT_LISTEN,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
)
from tcsms_poller.exits import EX_OK

__all__ = ["EXAMPLE", "add_arguments", "example_text", "execute", "for_the_emulator"]

EXAMPLE = "config.example.yaml"
EMULATOR_URL = f"http://{DEFAULT_LISTEN}"  # the emulator command's default --listen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="for the emulator at its default address (tcsms-poller emulator): its "
        "credentials and app id, the state beside the file",
    )


def example_text() -> str:
    """The example configuration shipped in the package."""
    return files("tcsms_poller").joinpath(EXAMPLE).read_text(encoding="utf-8")


def for_the_emulator(text: str) -> str:
    """The example with the emulator's values in place of the variables it names."""
    values = {
        "${TENCENTCLOUD_SECRET_ID}": DEFAULT_SECRET_ID,
        "${TENCENTCLOUD_SECRET_KEY}": DEFAULT_SECRET_KEY,
        "${TCSMS_SMS_SDK_APP_ID}": f'"{DEFAULT_APP_ID}"',
        "${TCSMS_ENDPOINT:-https://sms.tencentcloudapi.com}": EMULATOR_URL,
        "${TCSMS_STATE_PATH:-/var/lib/tcsms-poller/state.db}": "state.db",
    }
    for variable, value in values.items():
        if variable not in text:  # the example changed: this must change with it
            raise LookupError(f"{EXAMPLE} no longer has {variable}")
        text = text.replace(variable, value)
    return text


def execute(args: argparse.Namespace) -> int:
    text = example_text()
    sys.stdout.write(for_the_emulator(text) if args.emulator else text)
    sys.stdout.flush()
    return EX_OK
