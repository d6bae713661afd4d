"""``tcsms-poller emulator``: the fake Tencent SMS API alone, until SIGTERM or SIGINT (exit 0).

The first line on stdout is ``emulator listening on http://HOST:PORT``, so a script or test can
start it with ``--listen 127.0.0.1:0`` and read the port. Logs go to stderr. The flags and their
variables are the emulator's own (``emulator/cli.py``); this adapter runs what they describe.
"""

from __future__ import annotations

import argparse
import signal
import sys

import anyio
import structlog

from tcsms_poller.emulator import EmulatorOptions, run_emulator
from tcsms_poller.emulator.cli import add_arguments, build_options
from tcsms_poller.exits import EX_FAILURE, EX_OK, UsageError
from tcsms_poller.logs import configure_logging

__all__ = ["add_arguments", "execute"]

log = structlog.get_logger("tcsms_poller.emulator")


async def serve_until_signalled(options: EmulatorOptions) -> None:
    """Serve until SIGTERM or SIGINT; announce the address on stdout first."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with run_emulator(options) as emulator:
            print(f"emulator listening on {emulator.url}", flush=True)
            log.info("emulator.started", url=emulator.url, seed=emulator.state.seed)
            async for signum in signals:
                log.info("emulator.stopping", signal=signal.Signals(signum).name)
                break


def execute(args: argparse.Namespace) -> int:
    options = build_options(args)
    try:
        configure_logging(level=args.log_level, secrets=[options.secret_key], stream=sys.stderr)
    except ValueError as error:
        raise UsageError(f"--log-level: {error}") from None
    try:
        anyio.run(serve_until_signalled, options, backend="asyncio")
    except OSError as error:
        print(
            f"tcsms-poller: emulator cannot listen on {options.host}:{options.port}: "
            f"{error.strerror or error}",
            file=sys.stderr,
        )
        return EX_FAILURE
    return EX_OK
