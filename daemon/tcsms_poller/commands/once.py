"""``tcsms-poller once -c FILE``: one pass of every enabled worker, drain every sink, exit.

For cron-style use and for checking a configuration against the real API. Exits 0 when every
worker succeeded and every sink drained within ``--drain-timeout``, 1 otherwise. Per-number
workers poll the numbers that are due: the schedule is durable, so running ``once`` more often
than ``by_number.interval`` does not poll a number more often than the interval allows.
"""

from __future__ import annotations

import argparse

import structlog

from tcsms_poller.commands._common import (
    add_config_argument,
    add_duration_argument,
    load_and_configure,
    run_reporting,
)
from tcsms_poller.daemon import Daemon
from tcsms_poller.exits import EX_FAILURE, EX_OK

__all__ = ["add_arguments", "execute"]

log = structlog.get_logger("tcsms_poller.daemon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, logs=True)
    add_duration_argument(
        parser,
        "--drain-timeout",
        default=60.0,
        help="how long the sinks may take to deliver (default 60s)",
    )


def execute(args: argparse.Namespace) -> int:
    config = load_and_configure(args)
    daemon = Daemon(config, config_path=args.config)
    ok = run_reporting(
        lambda: daemon.run_once(drain_timeout=args.drain_timeout), event="once.failed"
    )
    return EX_OK if ok else EX_FAILURE
