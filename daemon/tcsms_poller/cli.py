"""Pull Tencent Cloud SMS delivery receipts, replies and statistics; deliver each record once.

Receipts, replies and hourly statistics are pulled within Tencent's rate limits, deduplicated
durably (SQLite by default) and delivered to sinks: stdout, a file, an HTTP endpoint, plugins.

Each command lives in its own module under ``commands/`` exposing ``add_arguments(parser)`` and
``execute(args) -> int``; modules are imported only when their command runs, so a broken optional
part never stops ``check-config`` and the daemon starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Sequence
from typing import NamedTuple, Protocol, cast

from tcsms_poller import __version__
from tcsms_poller.exits import (
    EX_CONFIG,
    EX_FAILURE,
    EX_OK,
    EX_USAGE,
    ConfigError,
    ReportedError,
    UsageError,
)

__all__ = ["COMMANDS", "main"]


class Command(NamedTuple):
    """A command: its module under ``tcsms_poller.commands``, what it does, how it is used."""

    module: str
    summary: str
    details: str
    example: str


CONFIG = "/etc/tcsms-poller/config.yaml"
COMMANDS: dict[str, Command] = {
    "run": Command(
        "run",
        "run the daemon in the foreground",
        "Polls, deduplicates and delivers until SIGTERM or SIGINT (exit 0 after draining); "
        "SIGHUP re-reads numbers and sinks. Logs go to stdout, or to stderr when a stdout sink "
        "writes records there.",
        f"tcsms-poller run -c {CONFIG} --log-level debug",
    ),
    "once": Command(
        "once",
        "one pass of every enabled worker, drain the outbox to every sink, exit",
        "For cron and for trying a configuration against the real API: exit 0 when every "
        "worker succeeded and every sink drained, 1 otherwise. Logs as run.",
        f"tcsms-poller once -c {CONFIG} --drain-timeout 2m",
    ),
    "demo": Command(
        "demo",
        "run the daemon against the built-in emulator, no configuration needed",
        "The emulator with synthetic traffic and the daemon against it; records on stdout, "
        "logs on stderr.",
        "tcsms-poller demo --duration 20",
    ),
    "check-config": Command(
        "check_config",
        "validate a configuration and print it, secrets redacted",
        "Prints the effective configuration (every default, secrets as ***) on stdout; every "
        "problem, one line each with file:line, and warnings on stderr. Exit 0 valid, 78 not. "
        "--connect also signs one harmless request per app and probes each sink.",
        f"tcsms-poller check-config -c {CONFIG} --connect",
    ),
    "example-config": Command(
        "example_config",
        "print the example configuration: every option, its default",
        "The example ships in the package; edit the copy, then check-config it. --emulator "
        "fills in the emulator's credentials, app id and address, and a state file beside it.",
        f"tcsms-poller example-config > {CONFIG}",
    ),
    "status": Command(
        "status",
        "outbox depth per sink, tracked numbers, cursors, last errors",
        "Reads the state beside a running daemon; --json for scripts.",
        f"tcsms-poller status -c {CONFIG} --json",
    ),
    "report-conversion": Command(
        "report_conversion",
        "report one conversion now and print the result",
        "Calls ReportConversion for one SerialNo and commits its conversion record, as the "
        "reporter does; the answer on stdout, logs on stderr.",
        f"tcsms-poller report-conversion -c {CONFIG} --serial-no 2019:-1234567890",
    ),
    "track": Command(
        "track",
        "track sent messages until their receipt (or a receipt_missing record)",
        "As POST /v1/messages: one message from the options, or JSON Lines on stdin "
        '({"serial_no": …, "phone_number": …, "sent_at": …}); prints one JSON line each.',
        f"tcsms-poller track -c {CONFIG} --serial-no 2019:-1234567890 --phone +8613711112222",
    ),
    "dead-letter": Command(
        "dead_letter",
        "list dead-lettered batches, replay them into their sink, or purge them",
        "replay queues a sink's dead-lettered records again in front of its outbox, leaving out "
        "what a replay already delivered; a running daemon takes them on SIGHUP. purge removes "
        "a sink's dead letters (also a sink no longer configured) selected by --older-than "
        "and/or --replayed (both given: both must hold), or --all; never those queued for "
        "replay.",
        f"tcsms-poller dead-letter replay -c {CONFIG} --sink webhook --since 2h",
    ),
    "emulator": Command(
        "emulator",
        "serve the fake Tencent SMS API alone",
        "For tests, demos and load tests: the first stdout line is the URL, logs go to stderr.",
        "tcsms-poller emulator --listen 127.0.0.1:9000 --seed 7",
    ),
    "healthcheck": Command(
        "healthcheck",
        "exit 0 when the running daemon's /healthz says healthy",
        "Asks the listener of a running daemon; for container HEALTHCHECKs and monitoring.",
        "tcsms-poller healthcheck --url-file /var/lib/tcsms-poller/healthz.url",
    ),
}
_EPILOG = f"""\
configuration: -c FILE, else $TCSMS_POLLER_CONFIG, else {CONFIG}
logs: JSON lines (console lines at a terminal; NO_COLOR=1 for no colours), on stdout;
  on stderr when stdout carries records (a stdout sink, demo) or a command's result
exit codes: 0 ok, 1 runtime failure, 2 usage error, 78 invalid configuration

examples:
  tcsms-poller demo                                   # try it, nothing to configure
  tcsms-poller example-config > {CONFIG}
  tcsms-poller check-config -c {CONFIG}
  tcsms-poller run -c {CONFIG}
  tcsms-poller COMMAND --help                         # each command's options
"""


class CommandModule(Protocol):
    """What every module under ``commands/`` provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def execute(self, args: argparse.Namespace) -> int: ...


def _load(module_name: str) -> CommandModule:
    module = importlib.import_module(f"tcsms_poller.commands.{module_name}")
    return cast(CommandModule, module)


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """The top-level parser; only the selected command's module is imported."""
    summary, _, rest = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="tcsms-poller",
        description=summary + "\n\n" + rest.partition("\n\n")[0],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tcsms-poller {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command_parser = sub.add_parser(
            name,
            help=command.summary,
            description=f"{command.summary}.\n\n{textwrap.fill(command.details, 79)}"
            f"\n\nexample:\n  {command.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == selected:
            _load(command.module).add_arguments(command_parser)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; map user mistakes to their exit codes without a traceback."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(args_list)
    args = build_parser(selected).parse_args(args_list)
    module = _load(COMMANDS[args.command].module)
    try:
        return module.execute(args)
    except ConfigError as error:
        for line in str(error).splitlines():
            print(f"tcsms-poller: configuration error: {line}", file=sys.stderr)
        return EX_CONFIG
    except ReportedError:
        return EX_FAILURE
    except UsageError as error:
        print(f"tcsms-poller: {error}", file=sys.stderr)
        return EX_USAGE
    except KeyboardInterrupt:
        return EX_FAILURE
    except BrokenPipeError:
        return EX_OK
