"""``tcsms-poller check-config -c FILE``: validate, then print the effective configuration.

The printout includes every default, so an operator sees what the daemon will really do; every
secret is ``***``, so the output can be pasted into a ticket.
"""

from __future__ import annotations

import argparse
import sys

from tcsms_poller.commands._common import add_config_argument
from tcsms_poller.config import load_config, render_config
from tcsms_poller.config.advice import config_warnings
from tcsms_poller.exits import EX_OK

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only validate; print nothing when valid"
    )


def execute(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for warning in config_warnings(config):
        print(f"tcsms-poller: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"# {config.source}: valid")
        print(render_config(config), end="")
    return EX_OK
