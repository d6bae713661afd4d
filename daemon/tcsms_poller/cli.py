"""argv -> the command's module -> an exit code.

Each command lives in its own module under ``commands/`` exposing ``add_arguments(parser)`` and
``execute(args) -> int``; modules are imported only when their command runs, so a broken optional
part never stops ``check-config`` and the daemon starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

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

__all__ = ["main"]

# command name -> (module under tcsms_poller.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon in the foreground"),
    "once": ("once", "one pass of every enabled worker, drain the outbox to every sink, exit"),
    "demo": ("demo", "run the daemon against the built-in emulator, no configuration needed"),
    "check-config": ("check_config", "validate a configuration and print it, secrets redacted"),
    "example-config": ("example_config", "print the example configuration: every option, defaults"),
    "status": ("status", "outbox depth per sink, tracked numbers, cursors, last errors"),
    "report-conversion": ("report_conversion", "report one conversion now and print the result"),
    "emulator": ("emulator", "serve the fake Tencent SMS API alone"),
    "healthcheck": ("healthcheck", "exit 0 when the running daemon's /healthz says healthy"),
}


class CommandModule(Protocol):
    """What every module under ``commands/`` provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def execute(self, args: argparse.Namespace) -> int: ...


def _load(module_name: str) -> CommandModule:
    module = importlib.import_module(f"tcsms_poller.commands.{module_name}")
    return cast(CommandModule, module)


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """The top-level parser; only the selected command's module is imported."""
    parser = argparse.ArgumentParser(prog="tcsms-poller", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tcsms-poller {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _load(module_name).add_arguments(command_parser)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; map user mistakes to their exit codes without a traceback."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(args_list)
    args = build_parser(selected).parse_args(args_list)
    module = _load(COMMANDS[args.command][0])
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
