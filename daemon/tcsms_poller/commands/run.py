"""``tcsms-poller run -c FILE``: the daemon in the foreground, driven by signals.

SIGTERM/SIGINT stop it gracefully (exit 0); a second one stops it at once, still consistent,
because every commit is a transaction. SIGHUP reloads numbers and sinks.
"""

from __future__ import annotations

import argparse
import signal

import anyio
import structlog

from tcsms_poller.commands._common import (
    add_config_argument,
    add_duration_argument,
    load_and_configure,
    run_reporting,
)
from tcsms_poller.config.advice import config_warnings
from tcsms_poller.daemon import SINK_GRACE, Daemon
from tcsms_poller.exits import EX_OK
from tcsms_poller.sdnotify import Notifier
from tcsms_poller.units import format_duration

__all__ = ["add_arguments", "execute", "serve_until_signalled"]

log = structlog.get_logger("tcsms_poller.daemon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, logs=True)
    add_duration_argument(
        parser,
        "--drain-grace",
        default=SINK_GRACE,
        help="at a stop, how long the sinks may take to deliver what is committed "
        f"(default {format_duration(SINK_GRACE)}); keep the stop timeout of systemd or "
        "Docker above it plus tencent.timeout",
    )


async def serve_until_signalled(daemon: Daemon, *, stop_after: float | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop_after`` seconds); SIGHUP reloads.

    A second stop signal forces the exit.
    """
    shutdown = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with anyio.create_task_group() as tg:

            async def handle_signals() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP:
                        tg.start_soon(daemon.reload)
                    elif not shutdown.is_set():
                        log.info("daemon.signal_received", signal=name)
                        shutdown.set()
                    else:
                        log.warning("daemon.forced_stop", signal=name)
                        tg.cancel_scope.cancel()

            async def stop_in_time(seconds: float) -> None:
                await anyio.sleep(seconds)
                shutdown.set()

            tg.start_soon(handle_signals)
            if stop_after is not None:
                tg.start_soon(stop_in_time, stop_after)
            await daemon.serve(shutdown.wait)
            tg.cancel_scope.cancel()


def execute(args: argparse.Namespace) -> int:
    config = load_and_configure(args)
    for warning in config_warnings(config):
        log.warning("config.warning", warning=warning)
    daemon = Daemon(
        config,
        config_path=args.config,
        notifier=Notifier.from_environ(),
        sink_grace=args.drain_grace,
    )
    # A state in use or not creatable, a port in use, a sink that cannot open its file: one
    # daemon.failed line and exit 1.
    run_reporting(lambda: serve_until_signalled(daemon), event="daemon.failed")
    return EX_OK
