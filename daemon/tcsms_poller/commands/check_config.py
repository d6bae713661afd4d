"""``tcsms-poller check-config -c FILE [--connect]``: validate, print the effective configuration.

The printout includes every default, so an operator sees what the daemon will really do; every
secret is ``***``, so the output can be pasted into a ticket. ``--connect`` then tries it (see
``preflight``): one read-only signed call per app and a probe of each sink, one ``# `` line each
after the configuration (so stdout stays YAML); exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from tcsms_poller.commands._common import add_config_argument
from tcsms_poller.config import load_config, render_config
from tcsms_poller.config.advice import config_warnings
from tcsms_poller.exits import EX_FAILURE, EX_OK
from tcsms_poller.masking import Masker

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only validate; print nothing when valid"
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="also sign one read-only call per app (credentials, clock, reachability) and "
        "probe each sink; consumes no record",
    )


def execute(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for warning in config_warnings(config):
        print(f"tcsms-poller: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"# {config.source}: valid")
        print(render_config(config), end="")
    if not args.connect:
        return EX_OK
    from tcsms_poller.preflight import preflight  # here: httpx and the client only for this

    verdicts = anyio.run(preflight, config, backend="asyncio")
    masker = Masker(config.secrets())  # whatever a library's error quotes
    for verdict in verdicts:
        if not (args.quiet and verdict.ok):
            print(f"# {masker.text(verdict.line())}", flush=True)
    return EX_OK if all(verdict.ok for verdict in verdicts) else EX_FAILURE
